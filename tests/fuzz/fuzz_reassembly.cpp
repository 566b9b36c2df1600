// Fuzz target: fragment reassembly (mq, pipe) fed units a rogue writer made up.
// Input: a sequence of [u16 length][length bytes] units.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <ferry/transport/fragment.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ferry::transport::Reassembler::Limits limits;
    limits.max_message_size = 1 << 20;
    limits.max_partials = 8;
    ferry::transport::Reassembler r(limits);
    std::size_t at = 0;
    while (at + 2 <= size) {
        std::uint16_t len;
        std::memcpy(&len, data + at, 2);
        at += 2;
        if (len > size - at) len = static_cast<std::uint16_t>(size - at);
        ferry::transport::Message m;
        const auto result = r.push(reinterpret_cast<const std::byte*>(data + at), len, m);
        if (result == ferry::transport::Reassembler::Result::message) {
            if (m.size > limits.max_message_size) __builtin_trap();
            volatile std::byte sink{};
            for (std::size_t i = 0; i < m.size; ++i) sink = m.data[i];
            (void)sink;
            r.recycle(m);
        }
        if (r.partial_count() > limits.max_partials) __builtin_trap();
        at += len;
    }
    r.on_idle();
    return 0;
}
