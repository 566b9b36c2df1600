// ferry::Error: what setting things up throws (Node, advertise, subscribe) when it cannot be
// done: a malformed config, an unknown transport, a type mismatch, a plugin that will not load.
// Sending and receiving do not throw; they report a Status (see <ferry/status.hpp>).
#pragma once

#include <stdexcept>
#include <string>

#include <ferry/export.hpp>
#include <ferry/status.hpp>

namespace ferry {

// what() is one line: control characters in `message` (from names, paths, the OS) are escaped.
class FERRY_API Error : public std::runtime_error {
public:
    Error(Errc code, const std::string& message);
    explicit Error(const Status& status) : Error(status.code(), status.message()) {}
    Errc code() const noexcept { return code_; }

private:
    Errc code_;
};

}  // namespace ferry
