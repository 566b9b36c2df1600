// POSIX shared-memory segments (shm_open + ftruncate + mmap) and the wake-up protocol on
// futex words that live in them. Private to the shm plugin.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::shm {

// Owns one mapping; unmaps it when destroyed.
class Mapping {
public:
    Mapping() noexcept = default;
    Mapping(void* addr, std::size_t size) noexcept : addr_(addr), size_(size) {}
    Mapping(Mapping&& o) noexcept : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Mapping& operator=(Mapping&& o) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() { reset(); }

    std::byte* data() const noexcept { return static_cast<std::byte*>(addr_); }
    std::size_t size() const noexcept { return size_; }
    explicit operator bool() const noexcept { return addr_ != nullptr; }
    void reset() noexcept;

private:
    void* addr_ = nullptr;
    std::size_t size_ = 0;
};

// Creates "/<name>" exclusively with `mode` (fchmod, so the umask does not matter), sizes it,
// reserves every page (posix_fallocate) and maps it read-write. tmpfs allocates pages on first
// touch, and a touch that finds the file system full is a SIGBUS, not an error code: with the
// pages reserved, a full /dev/shm is Errc::no_resources here, naming /dev/shm, its size and
// free space and what was needed, then `advice`. On failure nothing is left behind. `name`
// must embed the caller's own endpoint id (pid + serial): an existing object of that name can
// only be a dead process's leftover, and is replaced.
transport::Status create_segment(const std::string& name,
                                 std::size_t size,
                                 std::uint32_t mode,
                                 Mapping& out,
                                 const std::string& advice = "enlarge /dev/shm") noexcept;

// Opens an existing "/<name>" and maps all of it (at most `max_size` bytes, else
// Errc::invalid_argument), read-write or read-only. Errc::closed if it does not exist (yet,
// or any more), Errc::would_block if it exists but is not sized yet.
transport::Status open_segment(const std::string& name, std::size_t max_size, Mapping& out,
                               bool writable = true) noexcept;

// Bytes free for an unprivileged user in /dev/shm, or SIZE_MAX if unknown.
std::size_t shm_free_bytes() noexcept;

// The waker's half of the sleep protocol: after publishing a change (with release), call this.
// The sleeper sets `waiting`, fences, reads `seq`, re-checks its condition, then futex-waits on
// `seq`; either it sees the change or this sees `waiting` and wakes it. No syscall when
// nobody sleeps, and only one per sleep: the first waker clears `waiting` (the sleeper sets it
// again before it re-checks), so a burst of messages to a waking reader costs one wake-up.
inline void wake_if_waiting(std::atomic<std::uint32_t>& seq, std::atomic<std::uint32_t>& waiting) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiting.load(std::memory_order_relaxed) != 0 && waiting.exchange(0, std::memory_order_seq_cst) != 0) {
        seq.fetch_add(1, std::memory_order_seq_cst);
        transport::futex_wake_all(seq);
    }
}

// What a writer sleeps for, in SegmentHeader::writer_waiting: a reader wakes it only for what
// it waits for, so a writer waiting for ring room is not woken by every sample released (on one
// CPU that made writer and reader take turns message by message instead of half a ring).
inline constexpr std::uint32_t kWaitRoom = 1;   // ring room (or an empty ring: flush)
inline constexpr std::uint32_t kWaitChunk = 2;  // a free chunk

// wake_if_waiting for a caller whose change was a seq_cst read-modify-write (a CAS or
// fetch_and), and only if the sleeper waits for one of `reasons`: a seq_cst RMW and a seq_cst
// load of `waiting` order against the sleeper's fence as the waker's own fence would, and on
// x86 the RMW is already the one full barrier, so the hand-over pays no second one (mfence).
inline void wake_if_waiting_after_rmw(std::atomic<std::uint32_t>& seq,
                                      std::atomic<std::uint32_t>& waiting,
                                      std::uint32_t reasons = ~0u) noexcept {
    if ((waiting.load(std::memory_order_seq_cst) & reasons) != 0 && waiting.exchange(0, std::memory_order_seq_cst) != 0) {
        seq.fetch_add(1, std::memory_order_seq_cst);
        transport::futex_wake_all(seq);
    }
}

// wake_if_waiting_after_rmw for a writer blocked on a full ring: it asked to be woken once
// `room` entries are free, so a reader draining the ring wakes it once per half ring, not once
// per message. (The writer re-checks every few milliseconds, so a reader that stops early
// delays it a little but never strands it.) The caller's pop was a seq_cst CAS.
inline void wake_writer_for_room(std::atomic<std::uint32_t>& seq,
                                 std::atomic<std::uint32_t>& waiting,
                                 std::uint64_t room,
                                 const std::atomic<std::uint32_t>& wanted) noexcept {
    if ((waiting.load(std::memory_order_seq_cst) & kWaitRoom) != 0 && room >= wanted.load(std::memory_order_relaxed) &&
        waiting.exchange(0, std::memory_order_seq_cst) != 0) {
        seq.fetch_add(1, std::memory_order_seq_cst);
        transport::futex_wake_all(seq);
    }
}

// The sleeper's half: returns the value of `seq` to wait on; re-check the condition after it.
// `reason`: what it waits for (a writer: kWaitRoom or kWaitChunk).
inline std::uint32_t prepare_wait(std::atomic<std::uint32_t>& seq,
                                  std::atomic<std::uint32_t>& waiting,
                                  std::uint32_t reason = 1) noexcept {
    waiting.store(reason, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return seq.load(std::memory_order_seq_cst);
}

}  // namespace ferry::shm
