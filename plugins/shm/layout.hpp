// The shared-memory layout of the shm transport. Private to the plugin (and its tests).
//
// Writer segment "/ferry.<domain>.<writer id>.shm", created and owned by one Writer:
//
//   SegmentHeader                        (magic, version, sizes, writer pid, writer futex)
//   Slot[kSlotCount]                     (one per connected reader: ring head/tail, counters)
//   rings: kSlotCount * depth * uint64   (slot s owns entries [s*depth, (s+1)*depth);
//                                         an entry is a chunk index and the message size)
//   chunks: chunk_count * ChunkHeader    (mask, and where the chunk's bytes live)
//
// Chunk data segments "/ferry.<domain>.<writer id>.shm.<serial>", one per chunk, made by the
// writer when a chunk is first needed or needed larger (sized for the message, not for
// max_message_size) and removed when the chunk moves to a larger one. The ChunkHeader names
// the segment (serial) and its size; readers map it when they first meet a sample in it.
// The writer changes a chunk's segment only while no reader has the chunk queued or held.
//
// Reader segment "/ferry.<domain>.<reader id>.sig": one Doorbell, the futex word every
// writer bumps after queueing a message for that reader.
//
// Everything here is read by processes that do not trust each other: a reader recomputes the
// layout from (depth, max_message_size) and refuses a header that disagrees with it, and every
// index or size read from shared memory is checked against that local copy before use; a data
// segment is mapped only if its size is what the chunk header says and at most
// chunk_capacity_for(max_message_size).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ferry::shm {

inline constexpr std::uint64_t kSegmentMagic = 0x314d48532d595246ull;   // "FRY-SHM1"
inline constexpr std::uint64_t kDoorbellMagic = 0x3147494d2d595246ull;  // "FRY-MIG1"
inline constexpr std::uint32_t kLayoutVersion = 3;
inline constexpr std::uint32_t kSlotCount = 64;  // readers per writer: one bit each in a chunk mask
inline constexpr std::uint32_t kMaxDepth = 65536;
inline constexpr std::uint64_t kMaxChunkPayload = std::uint64_t{1} << 30;
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kPage = 4096;

// Samples one reader is expected to hold at once (the core's default max_held_samples).
inline constexpr std::uint32_t kHeldReserve = 4;

// Enough chunks that a reader that stopped taking (a full ring of `depth` plus kHeldReserve
// samples held) leaves the others a full ring, their held samples and the writer's loan.
constexpr std::uint32_t chunk_count_for_depth(std::uint32_t depth) noexcept {
    return depth * 2 + 2 * kHeldReserve + 2;
}

// Bytes of the data segment made for a message of `size` bytes: a power of two (at least a
// page) up to 1 MiB, above that 1/16 of headroom rounded up to 64 KiB, so that sizes that
// wander a little do not make a new segment each time; never more than max_message_size needs.
constexpr std::uint64_t chunk_capacity_for(std::uint64_t size, std::uint64_t max_message_size) noexcept {
    constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
    constexpr std::uint64_t kGrain = std::uint64_t{64} << 10;
    std::uint64_t cap = kPage;
    if (size <= kMiB) {
        while (cap < size) cap *= 2;
    } else {
        cap = (size + size / 16 + kGrain - 1) / kGrain * kGrain;
    }
    const std::uint64_t limit = (std::max(size, max_message_size) + kPage - 1) / kPage * kPage;
    return std::max<std::uint64_t>(kPage, std::min(cap, limit));
}

enum SlotState : std::uint32_t {
    kSlotFree = 0,
    kSlotActive = 1,   // reader_id is being served
    kSlotRetired = 2,  // reader dead or closed; kept until the registry forgets it
};

struct alignas(kCacheLine) SegmentHeader {
    std::atomic<std::uint64_t> magic;  // stored last, with release, once the rest is valid
    std::uint32_t version;
    std::uint32_t slot_count;
    std::uint32_t depth;
    std::uint32_t chunk_count;
    std::uint64_t max_message_size;
    std::uint64_t slots_offset;
    std::uint64_t rings_offset;
    std::uint64_t chunks_offset;
    std::uint64_t total_size;
    std::uint64_t writer_id;
    std::int32_t writer_pid;
    std::atomic<std::uint32_t> writer_closed;
    // Bumped each time a chunk moves to a new data segment: readers then unmap the old ones.
    std::atomic<std::uint64_t> rebind_epoch;
    // The writer sleeps on wake_seq while waiting for ring room or a free chunk; readers bump
    // and wake it after a pop or a release, but only while writer_waiting is set.
    alignas(kCacheLine) std::atomic<std::uint32_t> wake_seq;
    std::atomic<std::uint32_t> writer_waiting;
};

struct alignas(kCacheLine) Slot {
    // Written by the writer only.
    std::atomic<std::uint64_t> reader_id;
    std::atomic<std::uint32_t> state;
    std::atomic<std::uint32_t> wake_room;  // a writer blocked on this ring wants this much room
    std::atomic<std::uint64_t> dropped;  // messages this reader lost to drop_oldest
    std::atomic<std::uint64_t> head;     // next ring position the writer fills
    // Advanced by the reader (pop) and by the writer when it drops the oldest entry (CAS).
    // The writer reads it only when its last reading says the ring is full.
    alignas(kCacheLine) std::atomic<std::uint64_t> tail;
    // Set once by a reader that is going away. Read by the writer on every commit, so not on
    // the tail's line, which the reader writes on every pop.
    alignas(kCacheLine) std::atomic<std::uint32_t> reader_closed;
};

// A ring entry: the chunk index in the low half, the message size in the high half, so that a
// reader learns both from the one line the writer wrote for it (sizes stay below 2^32:
// kMaxChunkPayload).
constexpr std::uint64_t ring_entry(std::uint32_t chunk, std::uint64_t size) noexcept {
    return (size << 32) | chunk;
}
constexpr std::uint32_t entry_chunk(std::uint64_t entry) noexcept { return static_cast<std::uint32_t>(entry); }
constexpr std::uint64_t entry_size(std::uint64_t entry) noexcept { return entry >> 32; }

struct alignas(kCacheLine) ChunkHeader {
    // Written on every hand-over (the writer sets bits, readers clear theirs): a line of its own.
    std::atomic<std::uint64_t> mask;  // bit s: slot s has it queued or holds it as a sample
    // The data segment holding this chunk's bytes: "<writer segment name>.<segment>" (0: none
    // yet), `capacity` bytes long. Written by the writer while the mask is 0, before the chunk
    // is queued (published by the release store of a ring head). It rarely changes, so on its
    // own line it stays in every reader's cache.
    alignas(kCacheLine) std::atomic<std::uint64_t> segment;
    std::atomic<std::uint64_t> capacity;
};

struct alignas(kCacheLine) Doorbell {
    std::atomic<std::uint64_t> magic;
    std::atomic<std::uint32_t> seq;      // futex word: writers bump it and wake the reader
    std::atomic<std::uint32_t> waiting;  // reader is (about to be) asleep on seq
};

static_assert(kMaxChunkPayload < (std::uint64_t{1} << 32), "a ring entry holds the size in 32 bits");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shm needs lock-free 64-bit atomics");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "shm needs lock-free 32-bit atomics");
static_assert(sizeof(std::atomic<std::uint32_t>) == 4, "futex words must be 32 bits");

inline constexpr std::size_t kDoorbellSegmentSize = kPage;

// Asks for the cache line at `p` in a writable state ahead of an atomic read-modify-write on it,
// so that the line moves between CPUs once instead of once to read and again to write.
inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__) || defined(__i386__)
    // PREFETCHW: a no-op on the few x86 CPUs that lack it.
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

struct Layout {
    std::uint32_t depth = 0;
    std::uint32_t chunk_count = 0;
    std::uint64_t max_message_size = 0;
    std::uint64_t max_capacity = 0;  // largest data segment a chunk may have
    std::uint64_t slots_offset = 0;
    std::uint64_t rings_offset = 0;
    std::uint64_t chunks_offset = 0;
    std::uint64_t total_size = 0;
};

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t a) noexcept { return (v + a - 1) / a * a; }

// The one way to derive a layout; false if the parameters are out of range.
constexpr bool compute_layout(std::uint32_t depth, std::uint64_t max_message_size, Layout& out) noexcept {
    if (depth < 1 || depth > kMaxDepth || max_message_size > kMaxChunkPayload) return false;
    Layout l;
    l.depth = depth;
    l.chunk_count = chunk_count_for_depth(depth);
    l.max_message_size = max_message_size;
    l.max_capacity = chunk_capacity_for(max_message_size, max_message_size);
    l.slots_offset = round_up(sizeof(SegmentHeader), kCacheLine);
    l.rings_offset = l.slots_offset + std::uint64_t{kSlotCount} * sizeof(Slot);
    l.chunks_offset = round_up(l.rings_offset + std::uint64_t{kSlotCount} * depth * sizeof(std::uint64_t), kCacheLine);
    l.total_size = round_up(l.chunks_offset + std::uint64_t{l.chunk_count} * sizeof(ChunkHeader), kPage);
    out = l;
    return true;
}

// Typed access to a mapped writer segment whose layout has been computed (writer) or
// validated (reader). Indices must already be range-checked by the caller.
struct SegmentView {
    std::byte* base = nullptr;
    Layout layout;

    SegmentHeader* header() const noexcept { return reinterpret_cast<SegmentHeader*>(base); }
    Slot* slot(std::uint32_t s) const noexcept {
        return reinterpret_cast<Slot*>(base + layout.slots_offset) + s;
    }
    std::atomic<std::uint64_t>* ring(std::uint32_t s) const noexcept {
        return reinterpret_cast<std::atomic<std::uint64_t>*>(base + layout.rings_offset) +
               std::uint64_t{s} * layout.depth;
    }
    ChunkHeader* chunk(std::uint32_t c) const noexcept {
        return reinterpret_cast<ChunkHeader*>(base + layout.chunks_offset) + c;
    }
};

}  // namespace ferry::shm
