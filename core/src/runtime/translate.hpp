// The user API's codes and the transport SDK's are separate types, so that the SDK may change
// without changing the user API; these are the only places they meet.
#pragma once

#include <ferry/qos.hpp>
#include <ferry/status.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::detail {

inline Errc to_public(transport::Errc code) noexcept {
    switch (code) {
        case transport::Errc::ok: return Errc::ok;
        case transport::Errc::timeout: return Errc::timeout;
        case transport::Errc::would_block: return Errc::would_block;
        case transport::Errc::too_large: return Errc::too_large;
        case transport::Errc::no_resources: return Errc::no_resources;
        case transport::Errc::closed: return Errc::closed;
        case transport::Errc::invalid_argument: return Errc::invalid_argument;
        case transport::Errc::permission_denied: return Errc::permission_denied;
        case transport::Errc::io_error: return Errc::io_error;
        case transport::Errc::unsupported: return Errc::unsupported;
        case transport::Errc::internal: return Errc::internal;
    }
    return Errc::internal;
}

inline Status to_public(const transport::Status& st) {
    return st ? Status::ok() : Status(to_public(st.code()), st.message());
}

inline transport::Overflow to_transport(Overflow o) noexcept {
    switch (o) {
        case Overflow::block: return transport::Overflow::block;
        case Overflow::drop_oldest: return transport::Overflow::drop_oldest;
        case Overflow::fail: return transport::Overflow::fail;
    }
    return transport::Overflow::block;
}

}  // namespace ferry::detail
