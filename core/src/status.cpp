#include <ferry/error.hpp>
#include <ferry/qos.hpp>
#include <ferry/status.hpp>
#include <ferry/transport/text.hpp>

namespace ferry {

const char* errc_name(Errc code) noexcept {
    switch (code) {
        case Errc::ok: return "ok";
        case Errc::timeout: return "timeout";
        case Errc::would_block: return "would_block";
        case Errc::too_large: return "too_large";
        case Errc::no_resources: return "no_resources";
        case Errc::closed: return "closed";
        case Errc::invalid_argument: return "invalid_argument";
        case Errc::permission_denied: return "permission_denied";
        case Errc::io_error: return "io_error";
        case Errc::unsupported: return "unsupported";
        case Errc::internal: return "internal";
        case Errc::corrupt: return "corrupt";
    }
    return "unknown";
}

const char* overflow_name(Overflow overflow) noexcept {
    switch (overflow) {
        case Overflow::block: return "block";
        case Overflow::drop_oldest: return "drop_oldest";
        case Overflow::fail: return "fail";
    }
    return "unknown";
}

Error::Error(Errc code, const std::string& message)
    : std::runtime_error(transport::escape_control(message)), code_(code) {}

namespace detail {
void throw_error(const Status& status) { throw Error(status); }
}  // namespace detail

}  // namespace ferry
