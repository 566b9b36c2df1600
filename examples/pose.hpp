// A user message type: any struct with a cereal serialize function can travel on ferry.
#pragma once

#include <string>
#include <vector>

#include <ferry/ferry.hpp>

namespace demo {

struct Pose {
    std::string frame;
    double x = 0, y = 0, theta = 0;
    std::vector<double> covariance;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(frame), CEREAL_NVP(x), CEREAL_NVP(y), CEREAL_NVP(theta), CEREAL_NVP(covariance));
    }
};

}  // namespace demo

// The name the registry records for the type (else the demangled C++ name).
FERRY_TYPE_NAME(demo::Pose, "demo/Pose")
