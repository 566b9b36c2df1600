// Subscribers. Three siblings over one internal endpoint, none derived from another, and only a
// Node makes them:
//   * Subscriber<T>: pull T. take() waits up to a timeout, try_take() never blocks; both return
//     a Result<T> (the decoded value). take_sample() / try_take_sample() return a Sample<T>,
//     a read-only view of the message where it lies (in shared memory on shm), decoded only
//     when you ask.
//   * RawSubscriber: pull bytes (RawSample views), for tools that handle any type.
//   * Subscription: push. Node::subscribe(topic, callback) runs the callback on a thread of its
//     own; a Subscription has no take(), since that thread owns the reader.
//
//   auto sub = node.subscribe<std::string>("chatter");
//   if (auto msg = sub.take(std::chrono::seconds(1))) std::cout << *msg << '\n';
//   else if (msg.code() != ferry::Errc::timeout) std::cerr << msg.status().message() << '\n';
//
// Every handle is move-only. The endpoint leaves the registry when the handle is dropped;
// dropping a Subscription first stops its thread (after the running callback returns), except
// when dropped from inside its own callback, where the thread ends as that callback returns.
//
// Why a take gives nothing (the Result's or Sample's status()): Errc::timeout (nothing before
// the deadline), Errc::would_block (try_: nothing queued), Errc::closed (the endpoint was shut
// down), Errc::io_error (the transport broke: not a timeout; the message says what failed),
// Errc::no_resources (max_held_samples samples are held: drop one first), Errc::invalid_argument
// (a subscriber made before fork() used in the child).
//
// Counters, which do not overlap:
//   lost()    messages that never arrived: dropped by the overflow policy (drop_oldest) or lost
//             in the transport (e.g. a damaged fragment).
//   corrupt() messages that arrived but were thrown away: a bad frame header, another type, or
//             bytes that do not decode as T. take() skips them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include <ferry/codec.hpp>
#include <ferry/export.hpp>
#include <ferry/message.hpp>
#include <ferry/qos.hpp>
#include <ferry/status.hpp>

namespace ferry {

class FERRY_API RawSubscriber {
public:
    RawSubscriber() noexcept = default;  // empty (false); assign one from Node::subscribe_raw
    RawSubscriber(RawSubscriber&&) noexcept = default;
    RawSubscriber& operator=(RawSubscriber&&) noexcept = default;
    RawSubscriber(const RawSubscriber&) = delete;
    RawSubscriber& operator=(const RawSubscriber&) = delete;
    ~RawSubscriber() = default;

    // The next message, as a view held until it is dropped. Blocks (no spinning) until a
    // message arrives or `timeout` passes. Several threads may take at once: each message goes
    // to one of them. An empty sample's status() says why (see the top of this file).
    RawSample take_sample(std::chrono::nanoseconds timeout);
    // Never blocks.
    RawSample try_take_sample();

    std::uint64_t lost() const;
    std::uint64_t corrupt() const;
    // Publishers of this topic in the registry right now.
    std::size_t publisher_count() const;

    const std::string& topic() const;
    const std::string& type_name() const;  // the topic's type (as registered)
    const Qos& qos() const;
    explicit operator bool() const noexcept { return static_cast<bool>(core_); }

    [[deprecated("use take_sample(): an empty sample's status() says why")]] std::optional<RawSample> take(
        std::chrono::nanoseconds timeout) {
        return optional_of(take_sample(timeout));
    }
    [[deprecated("use try_take_sample(): an empty sample's status() says why")]] std::optional<RawSample> try_take() {
        return optional_of(try_take_sample());
    }

private:
    friend class Node;
    template <class>
    friend class Subscriber;
    explicit RawSubscriber(std::shared_ptr<detail::SubscriberCore> core) noexcept : core_(std::move(core)) {}
    static std::optional<RawSample> optional_of(RawSample s) {
        if (!s) return std::nullopt;
        return std::optional<RawSample>(std::move(s));
    }
    std::shared_ptr<detail::SubscriberCore> core_;
};

template <class T>
class Subscriber {
public:
    Subscriber() noexcept = default;  // empty (false); assign one from Node::subscribe<T>
    Subscriber(Subscriber&&) noexcept = default;
    Subscriber& operator=(Subscriber&&) noexcept = default;
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;
    ~Subscriber() = default;

    // The next message decoded as T, waiting up to `timeout`. A message that does not decode is
    // skipped and counted in corrupt().
    Result<T> take(std::chrono::nanoseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            RawSample s = raw_.take_sample(deadline - std::chrono::steady_clock::now());
            if (!s) return s.status();
            if (auto v = detail::decode_sample<T>(s)) return v;
        }
    }
    // Never blocks.
    Result<T> try_take() {
        while (true) {
            RawSample s = raw_.try_take_sample();
            if (!s) return s.status();
            if (auto v = detail::decode_sample<T>(s)) return v;
        }
    }

    // Zero copy: the next message as a view (see Sample<T>), held until dropped; at most the
    // topic's max_held_samples at once. For a trivially copyable T, a message of another size is
    // skipped and counted in corrupt(); other types are checked when you decode().
    Sample<T> take_sample(std::chrono::nanoseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            RawSample s = raw_.take_sample(deadline - std::chrono::steady_clock::now());
            if (fits(s)) return Sample<T>(std::move(s));
        }
    }
    Sample<T> try_take_sample() {
        while (true) {
            RawSample s = raw_.try_take_sample();
            if (fits(s)) return Sample<T>(std::move(s));
        }
    }

    std::uint64_t lost() const { return raw_.lost(); }
    std::uint64_t corrupt() const { return raw_.corrupt(); }
    std::size_t publisher_count() const { return raw_.publisher_count(); }
    const std::string& topic() const { return raw_.topic(); }
    const std::string& type_name() const { return raw_.type_name(); }
    const Qos& qos() const { return raw_.qos(); }
    explicit operator bool() const noexcept { return static_cast<bool>(raw_); }

private:
    friend class Node;
    explicit Subscriber(RawSubscriber raw) noexcept : raw_(std::move(raw)) {}
    // An empty sample (its status is the answer) or one that can be viewed as a T.
    static bool fits(const RawSample& s) noexcept {
        if constexpr (std::is_trivially_copyable_v<T>) {
            if (s && s.size() != sizeof(T)) {
                detail::SampleAccess::count_corrupt(s);
                return false;
            }
        }
        return true;
    }
    RawSubscriber raw_;
};

// A callback subscription (Node::subscribe(topic, callback)): the handle of the thread that runs
// the callback. It has no take(). Dropping it stops the thread (see the top of this file).
class FERRY_API Subscription {
public:
    Subscription() noexcept = default;  // empty (false)
    Subscription(Subscription&&) noexcept = default;
    Subscription& operator=(Subscription&&) noexcept;  // stops the callback it replaces first
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    ~Subscription();

    // Stops the callback thread now (after a running callback returns) and leaves the topic.
    void stop() noexcept;

    std::uint64_t lost() const;
    std::uint64_t corrupt() const;
    std::size_t publisher_count() const;
    const std::string& topic() const;
    const std::string& type_name() const;
    const Qos& qos() const;
    explicit operator bool() const noexcept { return static_cast<bool>(core_); }

private:
    friend class Node;
    explicit Subscription(std::shared_ptr<detail::SubscriberCore> core) noexcept : core_(std::move(core)) {}
    std::shared_ptr<detail::SubscriberCore> core_;
};

}  // namespace ferry
