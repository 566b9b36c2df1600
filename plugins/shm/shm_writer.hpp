// The writer side of the shm transport: owns one segment with a chunk pool and a table of
// reader slots; loans are chunks, commit queues the chunk index into every reader's ring.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <ferry/transport/transport.hpp>

#include "layout.hpp"
#include "segment.hpp"

namespace ferry::shm {

class ShmWriter final : public transport::Writer {
public:
    // `segment` is a freshly created, initialised segment named `name` (no leading slash).
    ShmWriter(const transport::Host& host, transport::TopicParams params, std::string name, Mapping segment, const Layout& layout);
    ~ShmWriter() override;

    transport::Status loan(std::size_t size, transport::LoanBuffer& out) noexcept override;
    transport::Status commit(transport::LoanBuffer& buf, std::size_t size) noexcept override;
    void release(transport::LoanBuffer& buf) noexcept override;
    void sync_readers(const std::vector<transport::PeerInfo>& readers) noexcept override;
    std::size_t reader_count() const noexcept override;
    transport::Status flush(transport::Clock::time_point deadline) noexcept override;
    std::uint64_t undelivered() const noexcept override { return undelivered_.load(std::memory_order_relaxed); }

private:
    struct SlotLocal {
        SlotState state = kSlotFree;
        std::uint64_t reader_id = 0;
        pid_t pid = 0;
        std::uint64_t head = 0;       // authoritative copy of the slot's head
        std::uint64_t tail_seen = 0;  // the slot's tail when last read: never ahead of it
        bool stalled = false;    // block: stayed full for block_timeout; skipped until it has room
        transport::Clock::time_point next_alive_check{};  // while stalled
        Mapping doorbell_map;
        Doorbell* doorbell = nullptr;
    };
    enum class Room { ok, full, gone };
    // The writer's side of a chunk: its data segment, and its loan.
    struct ChunkLocal {
        Mapping map;                     // empty: no data segment yet
        std::uint64_t serial = 0;        // names it: data_name(serial)
        bool loaned = false;
        std::uint64_t seq = 0;            // seq_ at its last commit: drop_oldest's age
        std::uint64_t loan_bits = 0;      // reader bits mark_loaned set on it
        std::uint64_t loan_reclaims = 0;  // reclaims_ when it did
    };
    enum class Claim { ok, dry, no_space, error };

    // Loans a free chunk that holds `size` bytes; failing that, gives a free chunk a data
    // segment of that size (if `may_bind`). dry: no chunk is free; no_space / error: making
    // the segment failed (`err`: no_resources for a full /dev/shm).
    Claim claim_chunk(std::size_t size, bool may_bind, std::uint32_t& idx, transport::Status& err) noexcept;
    // After chunk `sent` went out with `size` bytes: picks and warms the chunk the next loan
    // takes (warm_), or asks it to take another one than `sent` (avoid_).
    void warm_next(std::uint32_t sent, std::size_t size) noexcept;
    // Replaces chunk c's data segment (c is free) by a new one sized for `size`.
    transport::Status bind_chunk(std::uint32_t c, std::size_t size) noexcept;
    // True if a chunk readers still hold could carry `size` bytes once they let it go.
    bool busy_chunk_fits(std::size_t size) const noexcept;
    std::string data_name(std::uint64_t serial) const;
    // Marks free chunk c loaned, with the bits of the readers active now in its mask.
    void mark_loaned(std::uint32_t c) noexcept;
    // Hands back loaned chunk c unsent.
    void unloan(std::uint32_t c) noexcept;
    bool loan_handle_ok(const transport::LoanBuffer& buf, std::uint32_t& idx) const noexcept;
    // Pops the oldest entry of slot s's ring and clears s's bit on that chunk. Needs mu_.
    bool drop_oldest_entry(std::uint32_t s) noexcept;
    // drop_oldest on the pool: drops the globally oldest queued entry. Needs mu_.
    bool drop_oldest_anywhere() noexcept;
    // Waits (mu_ released meanwhile) until slot s has room, its reader dies or `deadline`.
    Room wait_for_room(std::unique_lock<std::mutex>& lock, std::uint32_t s, std::uint64_t reader_id,
                       transport::Clock::time_point deadline) noexcept;
    // Retires the slots of readers whose process died. Needs mu_. True if any was retired.
    bool retire_dead_readers() noexcept;
    // Takes back everything slot s holds (ring entries and mask bits). Needs mu_.
    void reclaim_slot(std::uint32_t s, SlotState new_state) noexcept;
    void rebuild_active() noexcept;
    void warn(const std::string& msg) const noexcept;

    const transport::Host& host_;
    const transport::TopicParams params_;
    const std::string name_;
    Mapping segment_;
    SegmentView view_;
    SegmentHeader* header_;

    // Used by the writing thread only.
    std::vector<ChunkLocal> chunks_;
    std::uint64_t next_serial_ = 0;
    std::uint32_t next_chunk_ = 0;
    std::uint32_t hot_chunk_ = UINT32_MAX;
    // Small messages alternate between two chunks (warm_next): up to this chunk size, so that
    // the second chunk costs little /dev/shm.
    static constexpr std::size_t kAlternateLimit = std::size_t{64} << 10;
    std::uint32_t prev_sent_ = UINT32_MAX;  // the chunk of the last commit
    std::uint32_t warm_ = UINT32_MAX;       // warmed for the next loan
    std::uint32_t avoid_ = UINT32_MAX;      // the next loan should take another chunk than this
    bool alternate_ = true;                 // false once /dev/shm had no room for the second chunk
    std::uint64_t seq_ = 0;

    // Slot table, shared with the discovery thread.
    mutable std::mutex mu_;
    std::array<SlotLocal, kSlotCount> slots_;
    std::array<std::uint8_t, kSlotCount> active_{};
    std::uint32_t active_count_ = 0;
    std::atomic<std::size_t> reader_count_{0};
    std::atomic<std::uint64_t> active_bits_{0};  // a bit per active slot, for mark_loaned
    std::atomic<std::uint64_t> reclaims_{0};     // slots reclaimed so far
    std::atomic<std::uint64_t> undelivered_{0};
    bool warned_full_table_ = false;
};

}  // namespace ferry::shm
