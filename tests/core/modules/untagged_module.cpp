// A module of the right ABI version that does not export its build tag (what an SDK before
// ABI 4 produced, or a hand-written module): the loader cannot tell its standard library.
#include <ferry/transport/transport.hpp>

extern "C" __attribute__((visibility("default"))) std::uint32_t ferry_transport_abi_version() noexcept {
    return ferry::transport::kAbiVersion;
}
extern "C" __attribute__((visibility("default"))) ferry::transport::Transport* ferry_transport_create(
    const ferry::transport::Host*) noexcept {
    return nullptr;
}
extern "C" __attribute__((visibility("default"))) void ferry_transport_destroy(ferry::transport::Transport*) noexcept {}
