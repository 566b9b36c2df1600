// Errors of the ferry API.
//
// Setting things up (Node, advertise, subscribe) throws ferry::Error when it cannot be done:
// a malformed config, an unknown transport, a type mismatch, a plugin that will not load.
// Sending and receiving do not throw: publish() returns a Status, take() an empty optional.
#pragma once

#include <stdexcept>
#include <string>

#include <ferry/export.hpp>
#include <ferry/transport/text.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry {

using Errc = transport::Errc;
using Status = transport::Status;
using Overflow = transport::Overflow;

// what() is one line: control characters in `message` (from names, paths, the OS) are escaped.
class FERRY_API Error : public std::runtime_error {
public:
    Error(Errc code, const std::string& message)
        : std::runtime_error(transport::escape_control(message)), code_(code) {}
    Errc code() const noexcept { return code_; }

private:
    Errc code_;
};

}  // namespace ferry
