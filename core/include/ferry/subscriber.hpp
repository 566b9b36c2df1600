// Subscribers, pull form (take with a deadline, try_take never blocks) or push form (a callback
// run on a thread of the subscriber's own). Cheap handles; the endpoint leaves the registry when
// the last copy is dropped (for a callback subscriber: after the running callback returns).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <ferry/codec.hpp>
#include <ferry/error.hpp>
#include <ferry/export.hpp>
#include <ferry/message.hpp>
#include <ferry/qos.hpp>

namespace ferry {

class FERRY_API RawSubscriber {
public:
    RawSubscriber() = default;
    explicit RawSubscriber(std::shared_ptr<detail::SubscriberCore> core) : core_(std::move(core)) {}

    // Blocks (no spinning) until a message arrives or `timeout` passes (empty optional).
    // Several threads may take at once: each message goes to one of them. The sample is a view
    // held until it is dropped; holding more than the topic's max_held_samples at once throws
    // ferry::Error (no_resources), so that a hoarder cannot starve the other subscribers. In a
    // child process after fork(), a subscriber made by the parent throws ferry::Error.
    std::optional<RawSample> take(std::chrono::nanoseconds timeout);
    // Never blocks.
    std::optional<RawSample> try_take();

    // Messages lost to drop_oldest, plus corrupt or foreign frames dropped on arrival.
    std::uint64_t lost() const;
    // Frames that failed validation (bad header, wrong type, undecodable payload).
    std::uint64_t corrupt() const;
    // Publishers of this topic in the registry right now.
    std::size_t publisher_count() const;

    const std::string& topic() const;
    const std::string& type_name() const;  // the topic's type (as registered)
    const Qos& qos() const;
    explicit operator bool() const noexcept { return static_cast<bool>(core_); }

    // Counts a message the typed layer could not decode.
    void note_corrupt();

protected:
    std::shared_ptr<detail::SubscriberCore> core_;
};

template <class T>
class Subscriber : public RawSubscriber {
public:
    Subscriber() = default;
    explicit Subscriber(RawSubscriber raw) : RawSubscriber(std::move(raw)) {}

    // The next message decoded as T (a message that does not decode is skipped and counted
    // in corrupt()).
    std::optional<T> take(std::chrono::nanoseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            auto s = RawSubscriber::take(deadline - std::chrono::steady_clock::now());
            if (!s) return std::nullopt;
            if (auto v = decode(*s, this)) return v;
        }
    }
    std::optional<T> try_take() {
        while (auto s = RawSubscriber::try_take()) {
            if (auto v = decode(*s, this)) return v;
        }
        return std::nullopt;
    }

    // Zero-copy: the message read in place (trivially copyable T only).
    std::optional<Sample<T>> take_sample(std::chrono::nanoseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (auto s = RawSubscriber::take(deadline - std::chrono::steady_clock::now())) {
            if (s->size() == sizeof(T)) return Sample<T>(std::move(*s));
            note_corrupt();
        }
        return std::nullopt;
    }

    static std::optional<T> decode(const RawSample& s, RawSubscriber* counter = nullptr) {
        T v{};
        if (Codec<T>::decode(s.data(), s.size(), v)) return v;
        if (counter) counter->note_corrupt();
        return std::nullopt;
    }
};

}  // namespace ferry
