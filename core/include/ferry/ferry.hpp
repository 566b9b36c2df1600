// The whole ferry API. Include <ferry/node.hpp> instead for faster builds when no message type
// needs cereal.
#pragma once

#include <ferry/cereal.hpp>
#include <ferry/codec.hpp>
#include <ferry/error.hpp>
#include <ferry/message.hpp>
#include <ferry/node.hpp>
#include <ferry/publisher.hpp>
#include <ferry/qos.hpp>
#include <ferry/status.hpp>
#include <ferry/subscriber.hpp>
