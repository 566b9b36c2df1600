// Fuzz target: the core's frame decoder on bytes from another process.
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ferry::detail::FrameHeader h;
    std::string why;
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    if (ferry::detail::decode_frame(bytes, size, 0, h, why)) {
        // A frame that passes must describe exactly the bytes it came in.
        if (h.payload_size + ferry::detail::kFrameHeaderSize != size) __builtin_trap();
    }
    ferry::detail::decode_frame(bytes, size, 0x1234, h, why);
    return 0;
}
