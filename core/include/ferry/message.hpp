// What a publisher hands out (loans) and what a subscriber gets (samples), untyped and typed.
//
// Loans and samples are move-only views that may be empty: test one like a bool; when it is
// empty, status() says why (see <ferry/status.hpp>).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include <ferry/codec.hpp>
#include <ferry/export.hpp>
#include <ferry/status.hpp>

namespace ferry {

class Node;
class RawPublisher;
class RawSubscriber;
template <class T>
class Publisher;
template <class T>
class Subscriber;

namespace detail {
class PublisherCore;
class SubscriberCore;
struct ReaderBox;
struct SampleAccess;
}  // namespace detail

// Carried in every message's frame header.
struct MessageInfo {
    std::uint64_t sequence = 0;      // per publisher, from 1, no gaps unless messages were dropped
    std::uint64_t publisher_id = 0;  // the publisher's endpoint id (unique in the domain)
    std::int64_t timestamp_ns = 0;   // CLOCK_REALTIME at publish (ns since 1970): comparable across processes, containers' time namespaces and hosts
    std::size_t size = 0;            // payload bytes
};

// A writable buffer of `size()` bytes; on shared memory it lies inside the segment every
// subscriber maps (zero copy), elsewhere it is a heap buffer copied once on publish.
// Empty (false) when the transport could not lend one: status() says why (too_large,
// no_resources, ...). Move-only; dropped unpublished, it is given back. Use from one thread.
class [[nodiscard]] FERRY_API RawLoan {
public:
    RawLoan() noexcept = default;
    RawLoan(RawLoan&& o) noexcept;
    RawLoan& operator=(RawLoan&& o) noexcept;
    RawLoan(const RawLoan&) = delete;
    RawLoan& operator=(const RawLoan&) = delete;
    ~RawLoan();

    std::byte* data() const noexcept { return payload_; }
    std::size_t size() const noexcept { return size_; }
    bool valid() const noexcept { return payload_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }
    // Why the loan is empty; ok() for a valid loan.
    const Status& status() const noexcept { return status_; }

    // Sends the buffer to every subscriber. Consumes the loan. Same results as publish().
    Status publish() { return publish(size_); }
    // Sends only the first `used` bytes (used <= size()).
    Status publish(std::size_t used);

private:
    friend class detail::PublisherCore;
    friend class RawPublisher;
    std::shared_ptr<detail::PublisherCore> core_;
    std::byte* payload_ = nullptr;
    std::size_t size_ = 0;
    std::byte* buffer_ = nullptr;
    std::size_t capacity_ = 0;
    std::uint64_t handle_ = 0;
    Status status_;
};

// A trivially copyable T constructed in place inside a loan (see RawLoan).
template <class T>
class [[nodiscard]] Loan {
    static_assert(std::is_trivially_copyable_v<T>, "loan<T>() needs a trivially copyable T");

public:
    Loan() noexcept = default;
    bool valid() const noexcept { return raw_.valid(); }
    explicit operator bool() const noexcept { return valid(); }
    const Status& status() const noexcept { return raw_.status(); }
    T* get() const noexcept { return std::launder(reinterpret_cast<T*>(raw_.data())); }
    T* operator->() const noexcept { return get(); }
    T& operator*() const noexcept { return *get(); }
    Status publish() { return raw_.publish(); }

private:
    friend class Publisher<T>;
    // Default-initialised, not zeroed: a 4 MiB frame is not cleared before you fill it.
    explicit Loan(RawLoan raw) : raw_(std::move(raw)) {
        if (raw_.valid()) new (raw_.data()) T;
    }
    RawLoan raw_;
};

// A received message: a read-only view of its bytes (on shared memory, straight into the
// segment) and its header, released when the sample is dropped. Empty (false) when nothing was
// taken: status() says why (timeout, would_block, closed, io_error, no_resources). Move-only;
// may be dropped on any thread.
class [[nodiscard]] FERRY_API RawSample {
public:
    RawSample() noexcept = default;
    RawSample(RawSample&& o) noexcept;
    RawSample& operator=(RawSample&& o) noexcept;
    RawSample(const RawSample&) = delete;
    RawSample& operator=(const RawSample&) = delete;
    ~RawSample();

    const std::byte* data() const noexcept { return payload_; }
    std::size_t size() const noexcept { return info_.size; }
    const MessageInfo& info() const noexcept { return info_; }
    bool valid() const noexcept { return box_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }
    // Why the sample is empty; ok() for a valid sample.
    const Status& status() const noexcept { return status_; }

private:
    friend class detail::SubscriberCore;
    friend struct detail::SampleAccess;
    // Counts this message in its subscriber's corrupt() (once).
    void count_corrupt() const noexcept;

    std::shared_ptr<detail::ReaderBox> box_;
    const std::byte* payload_ = nullptr;
    MessageInfo info_;
    const std::byte* buffer_ = nullptr;
    std::size_t buffer_size_ = 0;
    std::uint64_t handle_ = 0;
    Status status_;
    mutable bool counted_corrupt_ = false;
};

namespace detail {
struct SampleAccess {
    static void count_corrupt(const RawSample& s) noexcept { s.count_corrupt(); }
};

// `s` decoded as T; a message that does not decode is counted in its subscriber's corrupt().
template <class T>
Result<T> decode_sample(const RawSample& s) {
    T v{};
    if (Codec<T>::decode(s.data(), s.size(), v)) return Result<T>(std::move(v));
    SampleAccess::count_corrupt(s);
    return Status(Errc::corrupt, "a message of " + std::to_string(s.size()) + " bytes is not a valid '" +
                                     type_name<T>() + "'");
}
}  // namespace detail

// A received message of type T, read in place: no copy and no decoding until you ask.
//   * every T: data() and size() are the message's bytes (a std::string's characters, a
//     Bytes' bytes, the serialized form of a cereal type); decode() copies it out as a T.
//   * trivially copyable T: *sample and sample-> read the T in place.
// Empty (false) when nothing was taken: status() says why. Move-only.
template <class T>
class [[nodiscard]] Sample {
public:
    Sample() noexcept = default;

    bool valid() const noexcept { return raw_.valid(); }
    explicit operator bool() const noexcept { return valid(); }
    const Status& status() const noexcept { return raw_.status(); }
    const MessageInfo& info() const noexcept { return raw_.info(); }
    const std::byte* data() const noexcept { return raw_.data(); }
    std::size_t size() const noexcept { return raw_.size(); }

    // The T in place (trivially copyable T; the subscriber checked its size).
    template <class U = T, std::enable_if_t<std::is_trivially_copyable_v<U>, int> = 0>
    const U* get() const noexcept {
        return reinterpret_cast<const U*>(raw_.data());
    }
    template <class U = T, std::enable_if_t<std::is_trivially_copyable_v<U>, int> = 0>
    const U& operator*() const noexcept {
        return *get();
    }
    template <class U = T, std::enable_if_t<std::is_trivially_copyable_v<U>, int> = 0>
    const U* operator->() const noexcept {
        return get();
    }

    // A copy of the message as a T. Errc::corrupt (and counted in the subscriber's corrupt())
    // when the bytes are not a T; the status of the sample when it is empty.
    Result<T> decode() const {
        if (!raw_.valid()) return raw_.status().is_ok() ? Status(Errc::invalid_argument, "decode of an empty sample") : raw_.status();
        return detail::decode_sample<T>(raw_);
    }

    [[deprecated("read data()/size()/info() of the sample itself")]] const RawSample& raw() const noexcept {
        return raw_;
    }

private:
    friend class Subscriber<T>;
    explicit Sample(RawSample raw) noexcept : raw_(std::move(raw)) {}
    RawSample raw_;
};

}  // namespace ferry
