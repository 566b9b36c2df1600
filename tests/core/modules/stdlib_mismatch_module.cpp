// A module of the right ABI version built with another standard-library ABI: this file is
// compiled with the opposite _GLIBCXX_USE_CXX11_ABI of the rest of the build (std::string has
// another layout there), so its build tag names that mode.
#include <ferry/transport/transport.hpp>

extern "C" __attribute__((visibility("default"))) std::uint32_t ferry_transport_abi_version() noexcept {
    return ferry::transport::kAbiVersion;
}
extern "C" __attribute__((visibility("default"))) const char* ferry_transport_build_tag() noexcept {
    return ferry::transport::kBuildTag;
}
extern "C" __attribute__((visibility("default"))) ferry::transport::Transport* ferry_transport_create(
    const ferry::transport::Host*) noexcept {
    return nullptr;
}
extern "C" __attribute__((visibility("default"))) void ferry_transport_destroy(ferry::transport::Transport*) noexcept {}
