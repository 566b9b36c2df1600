// What a publisher hands out (loans) and what a subscriber gets (samples), untyped and typed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include <ferry/error.hpp>
#include <ferry/export.hpp>

namespace ferry {

namespace detail {
class PublisherCore;
class SubscriberCore;
struct ReaderBox;
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
// Move-only; dropped unpublished, it is given back. Use from the publisher's thread.
class FERRY_API RawLoan {
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

    // Sends the buffer to every subscriber. Consumes the loan. Same results as publish().
    Status publish() { return publish(size_); }
    // Sends only the first `used` bytes (used <= size()).
    Status publish(std::size_t used);

private:
    friend class detail::PublisherCore;
    std::shared_ptr<detail::PublisherCore> core_;
    std::byte* payload_ = nullptr;
    std::size_t size_ = 0;
    std::byte* buffer_ = nullptr;
    std::size_t capacity_ = 0;
    std::uint64_t handle_ = 0;
};

// A trivially copyable T constructed in place inside a loan.
template <class T>
class Loan {
    static_assert(std::is_trivially_copyable_v<T>, "loan<T>() needs a trivially copyable T");

public:
    // Default-initialised, not zeroed: a 4 MiB frame is not cleared before you fill it.
    explicit Loan(RawLoan raw) : raw_(std::move(raw)) {
        if (raw_.valid()) new (raw_.data()) T;
    }
    bool valid() const noexcept { return raw_.valid(); }
    T* get() const noexcept { return std::launder(reinterpret_cast<T*>(raw_.data())); }
    T* operator->() const noexcept { return get(); }
    T& operator*() const noexcept { return *get(); }
    Status publish() { return raw_.publish(); }

private:
    RawLoan raw_;
};

// A received message: a read-only view of its bytes (on shared memory, straight into the
// segment) and its header. The bytes are released when the sample is dropped. Move-only.
class FERRY_API RawSample {
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

private:
    friend class detail::SubscriberCore;
    std::shared_ptr<detail::ReaderBox> box_;
    const std::byte* payload_ = nullptr;
    MessageInfo info_;
    const std::byte* buffer_ = nullptr;
    std::size_t buffer_size_ = 0;
    std::uint64_t handle_ = 0;
};

// A sample of a trivially copyable T read in place (no copy).
template <class T>
class Sample {
    static_assert(std::is_trivially_copyable_v<T>, "Sample<T> needs a trivially copyable T");

public:
    explicit Sample(RawSample raw) : raw_(std::move(raw)) {}
    const T& operator*() const noexcept { return *get(); }
    const T* operator->() const noexcept { return get(); }
    const T* get() const noexcept { return reinterpret_cast<const T*>(raw_.data()); }
    const MessageInfo& info() const noexcept { return raw_.info(); }
    const RawSample& raw() const noexcept { return raw_; }

private:
    RawSample raw_;
};

}  // namespace ferry
