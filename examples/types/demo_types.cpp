// Type support for the example types: lets `ferry topic echo/pub --types libdemo_types.so`
// print and publish demo::Pose as JSON. One line per type.
#include <ferry/type_support.hpp>

#include "pose.hpp"

FERRY_TYPE(demo::Pose)
