// The camera example's message: a fixed-size frame (header, then 4 MiB of RGBA pixels), trivially
// copyable so that it travels by loan: the publisher fills it in place in the transport's buffer
// (shared memory on shm) and subscribers read it in place. No copy, no serialization.
#pragma once

#include <chrono>
#include <cstdint>

#include <ferry/codec.hpp>

namespace camera {

inline constexpr std::uint32_t kWidth = 1024;
inline constexpr std::uint32_t kHeight = 1024;
inline constexpr std::uint32_t kBytesPerPixel = 4;  // RGBA

struct FrameHeader {
    std::uint64_t frame = 0;        // 0, 1, 2, ... per publisher run
    std::int64_t timestamp_ns = 0;  // steady_clock (CLOCK_MONOTONIC) when the frame was published
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t bytes_per_pixel = 0;
    std::uint32_t reserved = 0;
};

struct Frame {
    FrameHeader header;
    std::uint8_t pixels[kWidth * kHeight * kBytesPerPixel];
};

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The first byte of row y in frame n, so a subscriber can tell a whole frame from a torn one.
inline std::uint8_t row_marker(std::uint64_t n, std::uint32_t y) { return static_cast<std::uint8_t>(n + y); }

}  // namespace camera

FERRY_TYPE_NAME(camera::Frame, "camera/Frame")
