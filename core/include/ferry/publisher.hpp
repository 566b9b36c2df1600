// Publishers: RawPublisher sends bytes, Publisher<T> sends T (serialized straight into a
// buffer loaned from the topic's transport). Both are cheap handles; copies share one endpoint,
// which leaves the registry when the last copy is dropped. publish(), loan() and a loan's
// publish() may be called from several threads at once on one publisher: they take turns, and
// each publisher's sequence numbers follow the order of the commits. After fork() a publisher
// made by the parent is inert in the child (its calls fail, dropping it touches nothing).
//
// Dropping the last copy first waits, up to the topic's linger_ms, until every subscriber took
// what was published (flush()), so a publisher that exits right after publish() loses nothing.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include <ferry/codec.hpp>
#include <ferry/error.hpp>
#include <ferry/export.hpp>
#include <ferry/message.hpp>
#include <ferry/qos.hpp>

namespace ferry {

class FERRY_API RawPublisher {
public:
    RawPublisher() = default;
    explicit RawPublisher(std::shared_ptr<detail::PublisherCore> core) : core_(std::move(core)) {}

    // Sends `size` bytes to every subscriber. Errc::too_large (nothing sent) above the topic's
    // max_message_size; per the topic's overflow policy, Errc::timeout (block) or
    // Errc::would_block (fail) when a subscriber's queue stayed full: subscribers with room
    // still got the message.
    Status publish(const void* data, std::size_t size);

    // A buffer of `size` bytes to fill and publish (see RawLoan). An invalid loan and the
    // reason in `status` when the transport cannot lend one (too large, pool exhausted).
    RawLoan loan(std::size_t size, Status* status = nullptr);

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

protected:
    std::shared_ptr<detail::PublisherCore> core_;
};

template <class T>
class Publisher : public RawPublisher {
public:
    Publisher() = default;
    explicit Publisher(RawPublisher raw) : RawPublisher(std::move(raw)) {}

    // Serializes and sends `msg`; results as RawPublisher::publish.
    Status publish(const T& msg) {
        if constexpr (Codec<T>::kDirect) {
            Status st;
            RawLoan l = RawPublisher::loan(Codec<T>::size(msg), &st);
            if (!l.valid()) return st;
            Codec<T>::write(msg, l.data());
            return l.publish();
        } else {
            thread_local std::string scratch;
            Codec<T>::encode(msg, scratch);
            return RawPublisher::publish(scratch.data(), scratch.size());
        }
    }

    // Zero-copy: a T default-initialised (not zeroed) in place in the transport's buffer (shared
    // memory on shm). Fill it, then loan.publish().
    Loan<T> loan(Status* status = nullptr) { return Loan<T>(RawPublisher::loan(sizeof(T), status)); }
    // Zero-copy of `size` raw bytes (for Bytes-like topics).
    RawLoan loan(std::size_t size, Status* status = nullptr) { return RawPublisher::loan(size, status); }
};

}  // namespace ferry
