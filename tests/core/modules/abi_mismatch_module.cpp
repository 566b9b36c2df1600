// A module that looks like a ferry transport but was built for another ABI version.
#include <ferry/transport/transport.hpp>

extern "C" __attribute__((visibility("default"))) std::uint32_t ferry_transport_abi_version() noexcept {
    return ferry::transport::kAbiVersion + 100;
}
extern "C" __attribute__((visibility("default"))) ferry::transport::Transport* ferry_transport_create(
    const ferry::transport::Host*) noexcept {
    return nullptr;
}
extern "C" __attribute__((visibility("default"))) void ferry_transport_destroy(ferry::transport::Transport*) noexcept {}
