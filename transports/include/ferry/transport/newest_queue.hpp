// drop_oldest on the reader side, for every plugin that drains its mechanism on a thread of its
// own (uds, pipe, mq, anything built on framed_stream or fragment): the newest `depth` items,
// pushed by the drain thread, taken by the user's threads. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

#include <ferry/transport/transport.hpp>

namespace ferry::transport {

template <class T>
class NewestQueue {
public:
    explicit NewestQueue(std::size_t depth = 1) { init(depth); }
    NewestQueue(const NewestQueue&) = delete;
    NewestQueue& operator=(const NewestQueue&) = delete;

    // Sets the depth (at least 1) and empties the queue: before use.
    void init(std::size_t depth) {
        std::lock_guard<std::mutex> lock(mu_);
        ring_.clear();
        ring_.resize(depth == 0 ? 1 : depth);  // allocated once
        head_ = count_ = 0;
    }

    // Queues `v`. When full, the oldest item is moved into `evicted` and true is returned: the
    // caller frees it and counts it as lost.
    bool push(T v, T& evicted) {
        bool full;
        {
            std::lock_guard<std::mutex> lock(mu_);
            full = count_ == ring_.size();
            if (full) {
                evicted = std::move(ring_[head_]);
                head_ = (head_ + 1) % ring_.size();
                --count_;
            }
            ring_[(head_ + count_) % ring_.size()] = std::move(v);
            ++count_;
        }
        cv_.notify_one();
        return full;
    }

    // Errc::ok with the oldest item; Errc::closed once close() was called; when empty,
    // Errc::would_block if `deadline` had passed on entry, else Errc::timeout at `deadline`.
    Errc pop(T& out, Clock::time_point deadline) {
        std::unique_lock<std::mutex> lock(mu_);
        const bool try_only = Clock::now() >= deadline;
        // Bounded, so that a far-away deadline cannot overflow inside the condition variable.
        const auto limit = Clock::now() + std::chrono::hours(24 * 365);
        const auto until = deadline < limit ? deadline : limit;
        while (count_ == 0 && !closed_ && !try_only && Clock::now() < until) cv_.wait_until(lock, until);
        if (closed_) return Errc::closed;
        if (count_ == 0) return try_only ? Errc::would_block : Errc::timeout;
        out = std::move(ring_[head_]);
        head_ = (head_ + 1) % ring_.size();
        --count_;
        return Errc::ok;
    }

    // pop() returns Errc::closed from now on; wakes every waiter.
    void close() noexcept {
        {
            std::lock_guard<std::mutex> lock(mu_);
            closed_ = true;
        }
        cv_.notify_all();
    }

    std::size_t size() const {
        std::lock_guard<std::mutex> lock(mu_);
        return count_;
    }

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<T> ring_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    bool closed_ = false;
};

}  // namespace ferry::transport
