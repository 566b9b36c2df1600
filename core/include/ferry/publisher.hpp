// Publishers: Publisher<T> sends T (serialized straight into a buffer loaned from the topic's
// transport), RawPublisher sends bytes. Siblings over one internal endpoint: neither derives
// from the other, and only a Node makes them.
//
//   auto pub = node.advertise<Pose>("pose");
//   if (auto st = pub.publish(pose); !st) std::cerr << st.message() << '\n';
//   if (auto loan = pub.loan()) { loan->x = 1; (void)loan.publish(); }   // zero copy
//
// Handles are move-only; the endpoint leaves the registry when the handle is dropped, after
// waiting up to the topic's linger_ms until every subscriber took what was published (flush()),
// so a publisher that exits right after publish() loses nothing. publish(), loan() and a loan's
// publish() may be called from several threads at once on one publisher: they take turns, and
// the sequence numbers follow the order of the commits. After fork() a publisher made by the
// parent is inert in the child (its calls fail with Errc::invalid_argument).
//
// Results (a Status, or an empty loan whose status() says why): Errc::too_large (nothing sent)
// above the topic's max_message_size; per the topic's overflow policy, Errc::timeout (block) or
// Errc::would_block (fail) when a subscriber's queue stayed full (subscribers with room still
// got the message); Errc::no_resources when no buffer could be loaned; Errc::io_error when the
// transport failed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include <ferry/codec.hpp>
#include <ferry/export.hpp>
#include <ferry/message.hpp>
#include <ferry/qos.hpp>
#include <ferry/status.hpp>

namespace ferry {

class FERRY_API RawPublisher {
public:
    RawPublisher() noexcept = default;  // empty (false); assign one from Node::advertise_raw
    RawPublisher(RawPublisher&&) noexcept = default;
    RawPublisher& operator=(RawPublisher&&) noexcept = default;
    RawPublisher(const RawPublisher&) = delete;
    RawPublisher& operator=(const RawPublisher&) = delete;
    ~RawPublisher() = default;

    // Sends `size` bytes to every subscriber (blocking per the overflow policy).
    Status publish(const void* data, std::size_t size);

    // A buffer of `size` bytes (0 is fine) to fill and publish; empty, with status(), when the
    // transport cannot lend one. Does not block.
    RawLoan loan(std::size_t size);

    // Waits, without spinning, until every subscriber took what was published so far, or left
    // or died. Errc::timeout, saying how much stayed undelivered, when `timeout` passes.
    Status flush(std::chrono::milliseconds timeout);

    // Subscribers the transport currently delivers to.
    std::size_t subscriber_count() const;
    // Blocks (no spinning) until at least `n` subscribers are connected or `timeout` passes.
    bool wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) const;

    const std::string& topic() const;
    const std::string& type_name() const;
    const Qos& qos() const;
    std::uint64_t id() const;  // endpoint id, as in MessageInfo::publisher_id
    explicit operator bool() const noexcept { return static_cast<bool>(core_); }

    template <class S, class = std::enable_if_t<std::is_same_v<S, Status>>>
    [[deprecated("use loan(size): an empty loan's status() says why")]] RawLoan loan(std::size_t size, S* status) {
        RawLoan l = loan(size);
        if (status) *status = l.status();
        return l;
    }

private:
    friend class Node;
    template <class>
    friend class Publisher;
    explicit RawPublisher(std::shared_ptr<detail::PublisherCore> core) noexcept : core_(std::move(core)) {}
    std::shared_ptr<detail::PublisherCore> core_;
};

template <class T>
class Publisher {
public:
    Publisher() noexcept = default;  // empty (false); assign one from Node::advertise<T>
    Publisher(Publisher&&) noexcept = default;
    Publisher& operator=(Publisher&&) noexcept = default;
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;
    ~Publisher() = default;

    // Serializes `msg` (trivially copyable T, std::string and Bytes straight into the loaned
    // buffer) and sends it. Results as described at the top of this file.
    Status publish(const T& msg) {
        if constexpr (Codec<T>::kDirect) {
            RawLoan l = raw_.loan(Codec<T>::size(msg));
            if (!l) return l.status();
            Codec<T>::write(msg, l.data());
            return l.publish();
        } else {
            thread_local std::string scratch;
            Codec<T>::encode(msg, scratch);
            return raw_.publish(scratch.data(), scratch.size());
        }
    }

    // Zero copy: a T default-initialised (not zeroed) in place in the transport's buffer (shared
    // memory on shm). Fill it, then loan.publish(). Trivially copyable T only.
    Loan<T> loan() { return Loan<T>(raw_.loan(sizeof(T))); }
    // Zero copy of `size` raw bytes, for topics of bytes (Bytes, std::string): what a
    // subscriber's take_sample() sees as data()/size().
    RawLoan loan(std::size_t size) { return raw_.loan(size); }

    // As RawPublisher.
    Status flush(std::chrono::milliseconds timeout) { return raw_.flush(timeout); }
    std::size_t subscriber_count() const { return raw_.subscriber_count(); }
    bool wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) const {
        return raw_.wait_for_subscribers(n, timeout);
    }
    const std::string& topic() const { return raw_.topic(); }
    const std::string& type_name() const { return raw_.type_name(); }
    const Qos& qos() const { return raw_.qos(); }
    std::uint64_t id() const { return raw_.id(); }
    explicit operator bool() const noexcept { return static_cast<bool>(raw_); }

    template <class S, class = std::enable_if_t<std::is_same_v<S, Status>>>
    [[deprecated("use loan(): an empty loan's status() says why")]] Loan<T> loan(S* status) {
        Loan<T> l = loan();
        if (status) *status = l.status();
        return l;
    }
    template <class S, class = std::enable_if_t<std::is_same_v<S, Status>>>
    [[deprecated("use loan(size): an empty loan's status() says why")]] RawLoan loan(std::size_t size, S* status) {
        RawLoan l = loan(size);
        if (status) *status = l.status();
        return l;
    }

private:
    friend class Node;
    explicit Publisher(RawPublisher raw) noexcept : raw_(std::move(raw)) {}
    RawPublisher raw_;
};

}  // namespace ferry
