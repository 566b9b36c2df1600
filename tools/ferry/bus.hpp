// The only place `ferry record` and `ferry play` touch the user API (Node, raw publishers and
// subscribers): a change of that API changes this file and bus.cpp, not the recorder.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <ferry/message.hpp>

namespace ferry::cli::bus {

// What ferry's frame header says about a message.
struct Meta {
    std::uint64_t sequence = 0;
    std::uint64_t publisher_id = 0;
    std::int64_t timestamp_ns = 0;  // CLOCK_REALTIME at publish
};

using OnMessage = std::function<void(const Meta&, const std::byte* data, std::size_t size)>;

// A message kept where the transport delivered it (on shm: in the shared segment, no copy) until
// it is dropped or reset, on any thread. Counts against the subscription's max_held_samples.
class Held {
public:
    Held() = default;
    explicit operator bool() const noexcept { return static_cast<bool>(sample_); }
    const std::byte* data() const noexcept { return sample_.data(); }
    std::size_t size() const noexcept { return sample_.size(); }
    Meta meta() const noexcept {
        const auto& i = sample_.info();
        return Meta{i.sequence, i.publisher_id, i.timestamp_ns};
    }
    void reset() noexcept { sample_ = RawSample(); }

private:
    friend class Tap;
    RawSample sample_;
};

// A subscription to one topic, of whatever type it carries. One thread takes from it.
class Tap {
public:
    ~Tap();
    Tap(Tap&&) noexcept;
    // Waits up to `timeout` for one message and hands it to `f` (the bytes are valid during the
    // call only; on shm they are the shared segment itself). False if none came.
    bool take(std::chrono::nanoseconds timeout, const OnMessage& f);
    // Waits up to `timeout` for one message and keeps it; empty if none came or max_held()
    // messages are already held.
    Held take_held(std::chrono::nanoseconds timeout);
    // How many messages this subscription may hold at once (the topic's max_held_samples).
    std::size_t max_held() const;
    // Messages the transport dropped before this subscriber saw them (drop_oldest, bad frames).
    std::uint64_t lost() const;
    const std::string& type() const;

private:
    friend class Bus;
    struct Impl;
    explicit Tap(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// A publisher of raw bytes on one topic, on the transport the current config gives it.
class Outlet {
public:
    ~Outlet();
    Outlet(Outlet&&) noexcept;
    // Publishes a copy of the bytes; false and `error` set on failure.
    bool publish(const void* data, std::size_t size, std::string& error);
    // Waits (bounded) until `n` subscribers are connected.
    bool wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout);
    std::uint64_t id() const;

private:
    friend class Bus;
    struct Impl;
    explicit Outlet(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// One node in `domain`; thread-safe for creating taps and outlets.
class Bus {
public:
    Bus(const std::string& node_name, const std::string& domain);
    ~Bus();
    Tap tap(const std::string& topic);
    Outlet outlet(const std::string& topic, const std::string& type);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::cli::bus
