// Quality of service of a topic, as resolved from the config (or taken from the registry when
// the topic already exists: the first endpoint of a topic fixes its transport and QoS).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <ferry/export.hpp>

namespace ferry {

// What a publisher does when a subscriber's queue is full. Spelled as in the config.
enum class Overflow : std::uint8_t {
    block,        // wait up to block_timeout for room, then publish() fails with Errc::timeout
    drop_oldest,  // make room by discarding the oldest queued message (the subscriber's lost())
    fail,         // publish() fails with Errc::would_block at once
};

// "block", "drop_oldest" or "fail".
FERRY_API const char* overflow_name(Overflow overflow) noexcept;

struct Qos {
    std::string transport = "uds";
    std::uint32_t depth = 16;                  // per-subscriber queue, in messages
    Overflow overflow = Overflow::block;       // what a publisher does when a queue is full
    std::size_t max_message_size = 16u << 20;  // largest payload, in bytes
    std::chrono::milliseconds block_timeout{1000};  // how long `block` waits
    std::uint32_t mode = 0600;                 // permission bits of the topic's OS objects
    // Per endpoint, not per topic (never taken from the registry):
    // how long closing a publisher waits for its subscribers to take what it published.
    std::chrono::milliseconds linger{2000};
    // samples (take_sample views) one subscriber may hold at once.
    std::uint32_t max_held_samples = 4;
    // Bytes one subscriber may hold in incomplete messages from all its publishers together
    // (stream and fragmenting transports); 0: 4 x max_message_size, at least 8 MiB. A local
    // setting: not part of the topic's record.
    std::size_t reader_buffer_budget = 0;
    // How a subscriber waits for messages where the transport can poll (shm), a local setting:
    // "adaptive" polls up to spin_us (yielding the CPU) and then sleeps, "sleep" sleeps at once,
    // "spin" polls until a message or the deadline (a core per subscriber).
    std::string wait = "adaptive";
    std::uint32_t spin_us = 50;
};

}  // namespace ferry
