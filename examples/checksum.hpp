// The payload the talker sends and the listener checks: an index, a checksum, and filler.
//   bytes 0..7   message index (from 0)
//   bytes 8..11  FNV-1a of bytes 12..end
//   bytes 12..   a pattern derived from the index
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace example {

inline constexpr std::size_t kMinPayload = 12;

inline std::uint32_t fnv1a(const std::byte* p, std::size_t n) {
    std::uint32_t h = 2166136261u;
    for (std::size_t i = 0; i < n; ++i) {
        h ^= static_cast<std::uint8_t>(p[i]);
        h *= 16777619u;
    }
    return h;
}

// Fills `size` (>= kMinPayload) bytes at `p` for message `index`.
inline void fill_payload(std::byte* p, std::size_t size, std::uint64_t index) {
    std::memcpy(p, &index, 8);
    for (std::size_t i = kMinPayload; i < size; ++i) p[i] = static_cast<std::byte>((index + i) * 131u);
    const std::uint32_t sum = fnv1a(p + kMinPayload, size - kMinPayload);
    std::memcpy(p + 8, &sum, 4);
}

// True and the index if the payload is intact.
inline bool check_payload(const std::byte* p, std::size_t size, std::uint64_t& index) {
    if (size < kMinPayload) return false;
    std::uint32_t sum;
    std::memcpy(&index, p, 8);
    std::memcpy(&sum, p + 8, 4);
    return sum == fnv1a(p + kMinPayload, size - kMinPayload);
}

}  // namespace example
