// How a module exports its transport. In exactly one .cpp of the plugin:
//
//   FERRY_TRANSPORT_PLUGIN(ferry::uds::UdsTransport)
//
// The class must be constructible from `const ferry::transport::Host&`. The loader calls
// ferry_transport_abi_version() first and refuses the module unless it equals kAbiVersion,
// and ferry_transport_build_tag() (the standard library and its ABI mode the module was built
// with) unless it equals kBuildTag as ferry was built; then ferry_transport_create(); the
// returned object is deleted with ferry_transport_destroy().
// ferry_transport_version() names the plugin's own version (FERRY_PLUGIN_VERSION, set by the
// build; `ferry plugin list` shows it).
#pragma once

#include <ferry/transport/transport.hpp>

#define FERRY_TRANSPORT_EXPORT extern "C" __attribute__((visibility("default")))

#ifndef FERRY_PLUGIN_VERSION
#define FERRY_PLUGIN_VERSION "unknown"
#endif

#define FERRY_TRANSPORT_PLUGIN(TransportClass)                                                  \
    FERRY_TRANSPORT_EXPORT std::uint32_t ferry_transport_abi_version() noexcept {                \
        return ::ferry::transport::kAbiVersion;                                                  \
    }                                                                                            \
    FERRY_TRANSPORT_EXPORT const char* ferry_transport_version() noexcept {                      \
        return FERRY_PLUGIN_VERSION;                                                             \
    }                                                                                            \
    FERRY_TRANSPORT_EXPORT const char* ferry_transport_build_tag() noexcept {                    \
        return ::ferry::transport::kBuildTag;                                                    \
    }                                                                                            \
    FERRY_TRANSPORT_EXPORT ::ferry::transport::Transport* ferry_transport_create(                \
        const ::ferry::transport::Host* host) noexcept {                                         \
        try {                                                                                    \
            return new TransportClass(*host);                                                    \
        } catch (...) {                                                                          \
            return nullptr;                                                                      \
        }                                                                                        \
    }                                                                                            \
    FERRY_TRANSPORT_EXPORT void ferry_transport_destroy(::ferry::transport::Transport* t) noexcept { \
        delete t;                                                                                \
    }
