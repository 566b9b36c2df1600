// The frame header the core puts in front of every payload, inside the transport's buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace ferry::detail {

struct FrameHeader {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint64_t payload_size;
    std::uint64_t sequence;
    std::uint64_t publisher_id;
    std::int64_t timestamp_ns;  // CLOCK_REALTIME at publish
    std::uint64_t type_hash;
    std::uint8_t reserved[16];
};
static_assert(sizeof(FrameHeader) == 64, "the frame header keeps payloads 64-byte aligned");

inline constexpr std::uint32_t kFrameMagic = 0x31595246;  // "FRY1"
inline constexpr std::uint32_t kFrameVersion = 1;
inline constexpr std::size_t kFrameHeaderSize = sizeof(FrameHeader);

// Checks a received frame. `expected_type_hash` 0 accepts any type. On failure `why` says what
// was wrong; nothing is trusted before it is checked against `size`.
inline bool decode_frame(const std::byte* data,
                         std::size_t size,
                         std::uint64_t expected_type_hash,
                         FrameHeader& out,
                         std::string& why) {
    if (size < kFrameHeaderSize) {
        why = "frame of " + std::to_string(size) + " bytes is shorter than its header";
        return false;
    }
    std::memcpy(&out, data, kFrameHeaderSize);
    if (out.magic != kFrameMagic || out.version != kFrameVersion) {
        why = "frame has a bad magic or version";
        return false;
    }
    if (out.payload_size != size - kFrameHeaderSize) {
        why = "frame says " + std::to_string(out.payload_size) + " payload bytes but carries " +
              std::to_string(size - kFrameHeaderSize);
        return false;
    }
    if (expected_type_hash != 0 && out.type_hash != expected_type_hash) {
        why = "frame carries another message type";
        return false;
    }
    return true;
}

}  // namespace ferry::detail
