#include "shm_reader.hpp"

#include <sched.h>
#include <sys/mman.h>

#include <algorithm>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>

namespace ferry::shm {

using transport::Clock;
using transport::Errc;
using transport::SampleBuffer;
using transport::Status;

namespace {

// Far above any valid segment (kMaxDepth * 2 + 2 chunks of kMaxChunkPayload), far below what
// would make mmap's size arithmetic overflow.
constexpr std::size_t kMaxSegmentSize = std::size_t{1} << 47;

std::uint64_t bit(int s) noexcept { return std::uint64_t{1} << s; }

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

}  // namespace

ShmReader::ShmReader(const transport::Host& host,
                     transport::TopicParams params,
                     std::string name,
                     Mapping doorbell)
    : host_(host),
      params_(std::move(params)),
      name_(std::move(name)),
      doorbell_map_(std::move(doorbell)),
      doorbell_(reinterpret_cast<Doorbell*>(doorbell_map_.data())),
      map_budget_(std::uint64_t{chunk_count_for_depth(std::min(params_.depth, kMaxDepth))} *
                  chunk_capacity_for(params_.max_message_size, params_.max_message_size)) {}

ShmReader::~ShmReader() {
    std::lock_guard<std::mutex> lock(mu_);
    // Hand back everything we hold so the writers need not wait for the registry to notice.
    for (auto& a : attachments_) {
        if (a->slot < 0 || !slot_is_ours(*a)) continue;
        Slot* slot = a->view.slot(static_cast<std::uint32_t>(a->slot));
        slot->reader_closed.store(1, std::memory_order_release);
        SampleBuffer s;
        while (pop(*a, s)) give_back(*a, static_cast<std::uint32_t>(s.handle));
        for (std::uint32_t c = 0; c < a->view.layout.chunk_count; ++c) {
            if ((a->held_bits[c / 64] >> (c % 64)) & 1u) give_back(*a, c);
        }
        wake_if_waiting(a->view.header()->wake_seq, a->view.header()->writer_waiting);
    }
    attachments_.clear();
    ::shm_unlink(("/" + name_).c_str());
}

std::unique_ptr<ShmReader::Attachment> ShmReader::attach(std::uint64_t writer_id, bool& refused) noexcept {
    refused = false;
    const std::string name = transport::object_name(params_.domain, writer_id, "shm");
    try {
        Mapping map;
        if (auto st = open_segment(name, kMaxSegmentSize, map); !st) {
            if (st.code() != Errc::closed && st.code() != Errc::would_block) {
                transport::log(host_, transport::LogLevel::warn, st.message());
                refused = st.code() == Errc::invalid_argument;
            }
            return nullptr;
        }
        auto refuse = [&](const std::string& why) -> std::unique_ptr<Attachment> {
            transport::log(host_, transport::LogLevel::warn,
                           "shm: refusing writer segment " + name + " of topic " + params_.topic + ": " + why);
            refused = true;
            return nullptr;
        };
        if (map.size() < sizeof(SegmentHeader)) return refuse("smaller than its header");
        auto* h = reinterpret_cast<SegmentHeader*>(map.data());
        const std::uint64_t magic = h->magic.load(std::memory_order_acquire);
        if (magic == 0) return nullptr;  // still being initialised: retry on the next sync
        if (magic != kSegmentMagic) return refuse("bad magic number");
        if (h->version != kLayoutVersion) return refuse("layout version " + std::to_string(h->version));
        Layout l;
        if (h->slot_count != kSlotCount || !compute_layout(h->depth, h->max_message_size, l) ||
            l.chunk_count != h->chunk_count || l.slots_offset != h->slots_offset ||
            l.rings_offset != h->rings_offset || l.chunks_offset != h->chunks_offset || l.total_size != h->total_size ||
            l.total_size != map.size()) {
            return refuse("header sizes disagree with each other or with the file size");
        }
        auto a = std::make_unique<Attachment>();
        a->writer_id = writer_id;
        a->name = name;
        a->view = SegmentView{map.data(), l};
        a->map = std::move(map);
        a->held_bits.assign((l.chunk_count + 63) / 64, 0);
        a->chunk_maps.resize(l.chunk_count);
        return a;
    } catch (...) {
        return nullptr;
    }
}

bool ShmReader::find_slot(Attachment& a) noexcept {
    for (std::uint32_t s = 0; s < kSlotCount; ++s) {
        Slot* slot = a.view.slot(s);
        if (slot->reader_id.load(std::memory_order_acquire) == params_.endpoint_id &&
            slot->state.load(std::memory_order_acquire) == kSlotActive) {
            a.slot = static_cast<int>(s);
            return true;
        }
    }
    return false;
}

bool ShmReader::slot_is_ours(const Attachment& a) const noexcept {
    const Slot* slot = a.view.slot(static_cast<std::uint32_t>(a.slot));
    return slot->state.load(std::memory_order_acquire) == kSlotActive &&
           slot->reader_id.load(std::memory_order_acquire) == params_.endpoint_id;
}

bool ShmReader::ring_empty(const Attachment& a) const noexcept {
    if (a.slot < 0 || !slot_is_ours(a)) return true;
    const Slot* slot = a.view.slot(static_cast<std::uint32_t>(a.slot));
    return slot->tail.load(std::memory_order_acquire) == slot->head.load(std::memory_order_acquire);
}

void ShmReader::drop_corrupt(Attachment& a, const std::string& what) noexcept {
    lost_corrupt_.fetch_add(1, std::memory_order_relaxed);
    if (!a.warned) {
        a.warned = true;
        transport::log(host_, transport::LogLevel::warn,
                       "shm: dropping garbage from writer " + transport::object_name(params_.domain, a.writer_id, "shm") +
                           " of topic " + params_.topic + ": " + what);
    }
}

void ShmReader::give_back(Attachment& a, std::uint32_t idx) noexcept {
    if (idx >= a.view.layout.chunk_count) return;
    std::uint64_t& word = a.held_bits[idx / 64];
    if ((word >> (idx % 64)) & 1u) {
        word &= ~(std::uint64_t{1} << (idx % 64));
        --a.held;
    }
    if (a.slot < 0 || !slot_is_ours(a)) return;  // the writer already took back all of this slot
    const std::uint64_t mine = bit(a.slot);
    const std::uint64_t prev = a.view.chunk(idx)->mask.fetch_and(~mine, std::memory_order_seq_cst);
    if ((prev & ~mine) == 0) {
        wake_if_waiting_after_rmw(a.view.header()->wake_seq, a.view.header()->writer_waiting, kWaitChunk);
    }
}

const std::byte* ShmReader::chunk_data(Attachment& a, std::uint32_t idx, std::uint64_t size, std::string& bad) noexcept {
    const ChunkHeader* ch = a.view.chunk(idx);
    const std::uint64_t segment = ch->segment.load(std::memory_order_acquire);
    const std::uint64_t capacity = ch->capacity.load(std::memory_order_relaxed);
    ChunkMap& m = a.chunk_maps[idx];
    if (m.segment == segment && m.map && m.map.size() == capacity && size <= capacity) return m.map.data();
    try {
        // It is queued for us, so we hold no sample in it: the old mapping can go.
        a.mapped -= m.map.size();
        m.map.reset();
        m.segment = 0;
        if (segment == 0 || capacity == 0 || capacity > a.view.layout.max_capacity || size > capacity) {
            bad = "chunk " + std::to_string(idx) + " names data segment " + std::to_string(segment) + " of " +
                  std::to_string(capacity) + " bytes for a message of " + std::to_string(size);
            return nullptr;
        }
        // What a writer of our own topic could make us map at most: a rogue one (a header with a
        // huge depth, sparse files) cannot make us map more.
        if (a.mapped + capacity > map_budget_) unmap_replaced(a);
        if (a.mapped + capacity > map_budget_) {
            bad = "its data segments would take more than " + std::to_string(map_budget_) + " bytes of address space";
            return nullptr;
        }
        Mapping map;
        const std::string name = a.name + "." + std::to_string(segment);
        if (auto st = open_segment(name, static_cast<std::size_t>(capacity), map, false); !st || map.size() != capacity) {
            bad = st ? "data segment " + name + " is not " + std::to_string(capacity) + " bytes" : st.message();
            return nullptr;
        }
        m.map = std::move(map);
        m.segment = segment;
        a.mapped += capacity;
        return m.map.data();
    } catch (...) {
        return nullptr;
    }
}

void ShmReader::unmap_replaced(Attachment& a) noexcept {
    for (std::uint32_t c = 0; c < a.view.layout.chunk_count; ++c) {
        ChunkMap& m = a.chunk_maps[c];
        if (!m.map || ((a.held_bits[c / 64] >> (c % 64)) & 1u)) continue;
        if (a.view.chunk(c)->segment.load(std::memory_order_relaxed) != m.segment) {
            a.mapped -= m.map.size();
            m.map.reset();
            m.segment = 0;
        }
    }
}

bool ShmReader::pop(Attachment& a, SampleBuffer& out) noexcept {
    if (!slot_is_ours(a)) {
        a.slot = -1;  // retired or reassigned by the writer
        return false;
    }
    const Layout& l = a.view.layout;
    if (const std::uint64_t epoch = a.view.header()->rebind_epoch.load(std::memory_order_relaxed);
        epoch != a.rebind_epoch) {
        a.rebind_epoch = epoch;
        unmap_replaced(a);
    }
    Slot* slot = a.view.slot(static_cast<std::uint32_t>(a.slot));
    std::atomic<std::uint64_t>* ring = a.view.ring(static_cast<std::uint32_t>(a.slot));
    for (std::uint32_t attempt = 0; attempt < 4 * l.depth + 16; ++attempt) {
        std::uint64_t tail = slot->tail.load(std::memory_order_acquire);
        // The entry the writer fills next, fetched while head is read rather than after: when
        // a poll sees the new head, the entry has come with it.
        __builtin_prefetch(&ring[tail % l.depth]);
        const std::uint64_t head = slot->head.load(std::memory_order_acquire);
        if (tail == head) return false;
        if (tail > head || head - tail > l.depth) {
            // Under drop_oldest the writer may have moved the tail since we read it.
            if (slot->tail.load(std::memory_order_acquire) != tail) continue;
            drop_corrupt(a, "ring positions out of range");
            slot->tail.compare_exchange_strong(tail, head, std::memory_order_acq_rel);
            continue;
        }
        const std::uint64_t entry = ring[tail % l.depth].load(std::memory_order_relaxed);
        const std::uint32_t idx = entry_chunk(entry);
        // Read and map the chunk while the entry is still queued: until our tail moves the
        // writer keeps the chunk (and its data segment) as it is, even if it is closing and
        // waits only for our ring to be empty. A failed CAS means the writer dropped the entry
        // (drop_oldest): nothing of it is ours then, and a mapping made meanwhile just waits.
        std::string bad;
        std::uint64_t size = 0;
        const std::byte* data = nullptr;
        const bool held = idx < l.chunk_count && ((a.held_bits[idx / 64] >> (idx % 64)) & 1u);
        if (idx >= l.chunk_count) {
            bad = "chunk index " + std::to_string(idx) + " out of range";
        } else if (held) {
            bad = "chunk " + std::to_string(idx) + " queued again while still held";
        } else {
            // Its mask is cleared at release: fetch the line for that now, alongside the data.
            prefetch_for_write(&a.view.chunk(idx)->mask);
            size = entry_size(entry);
            if (size > l.max_message_size || size > params_.max_message_size) {
                bad = "message size " + std::to_string(size) + " above max_message_size";
            } else {
                data = chunk_data(a, idx, size, bad);
            }
        }
        if (!slot->tail.compare_exchange_strong(tail, tail + 1, std::memory_order_seq_cst)) continue;
        wake_writer_for_room(a.view.header()->wake_seq, a.view.header()->writer_waiting, l.depth - (head - tail - 1),
                             slot->wake_room);
        if (idx >= l.chunk_count || held) {
            drop_corrupt(a, bad);
            continue;
        }
        a.held_bits[idx / 64] |= std::uint64_t{1} << (idx % 64);
        ++a.held;
        if (data == nullptr) {
            drop_corrupt(a, bad);
            give_back(a, idx);
            continue;
        }
        out.data = data;
        out.size = static_cast<std::size_t>(size);
        out.handle = (std::uint64_t{a.serial} << 32) | idx;
        return true;
    }
    return false;
}

void ShmReader::remove_finished_locked() noexcept {
    for (std::size_t i = 0; i < attachments_.size();) {
        Attachment& a = *attachments_[i];
        if (a.gone && a.held == 0 && ring_empty(a)) {
            if (a.slot >= 0 && slot_is_ours(a)) {
                lost_retired_ += a.view.slot(static_cast<std::uint32_t>(a.slot))->dropped.load(std::memory_order_relaxed);
            }
            attachments_.erase(attachments_.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
            ++i;
        }
    }
}

bool ShmReader::try_take_locked(SampleBuffer& out) noexcept {
    const std::size_t n = attachments_.size();
    bool finished = false;
    for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = next_attachment_ + k;
        if (i >= n) i -= n;
        Attachment& a = *attachments_[i];
        if ((a.slot >= 0 || find_slot(a)) && pop(a, out)) {
            next_attachment_ = i + 1 == n ? 0 : i + 1;
            return true;
        }
        finished = finished || (a.gone && a.held == 0);
    }
    if (finished) {
        remove_finished_locked();
        next_attachment_ = 0;
    }
    return false;
}

bool ShmReader::poll(SampleBuffer& out, Clock::time_point until) noexcept {
    // adaptive yields the CPU between polls: with the writer on the same CPU, a poll that only
    // spun would keep it from running until the time slice ends. spin never yields.
    const bool yield = params_.wait != transport::TopicParams::Wait::spin;
    for (std::uint32_t i = 1;; ++i) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (try_take_locked(out)) return true;
        }
        if (closed_.load(std::memory_order_relaxed)) return false;
        if (yield) {
            ::sched_yield();
        } else {
            cpu_relax();
        }
        if (i % 16 == 0 && Clock::now() >= until) return false;
    }
}

Status ShmReader::take(SampleBuffer& out, Clock::time_point deadline) noexcept {
    auto closed = [] { return Status(Errc::closed, "shm: reader interrupted"); };
    if (closed_.load(std::memory_order_acquire)) return closed();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (try_take_locked(out)) return Status::ok();
    }
    if (deadline == Clock::time_point::min()) return Status(Errc::would_block, "shm: no message");
    auto now = Clock::now();
    if (deadline <= now) return Status(Errc::would_block, "shm: no message");
    if (params_.wait == transport::TopicParams::Wait::spin) {
        if (poll(out, deadline)) return Status::ok();
    } else if (params_.wait == transport::TopicParams::Wait::adaptive && params_.spin.count() > 0) {
        if (poll(out, std::min(deadline, now + params_.spin))) return Status::ok();
    }
    for (;;) {
        const std::uint32_t seen = prepare_wait(doorbell_->seq, doorbell_->waiting);
        Status result;
        bool done = true;
        if (closed_.load(std::memory_order_acquire)) {
            result = closed();
        } else {
            std::unique_lock<std::mutex> lock(mu_);
            if (try_take_locked(out)) {
                result = Status::ok();
            } else if (transport::expired(deadline)) {
                result = Status(Errc::timeout, "shm: no message before the deadline");
            } else {
                done = false;
            }
        }
        if (done) {
            doorbell_->waiting.store(0, std::memory_order_relaxed);
            return result;
        }
        transport::futex_wait(doorbell_->seq, seen, deadline);
    }
}

void ShmReader::release(SampleBuffer& sample) noexcept {
    const auto serial = static_cast<std::uint32_t>(sample.handle >> 32);
    const auto idx = static_cast<std::uint32_t>(sample.handle);
    sample = SampleBuffer{};
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& a : attachments_) {
        if (a->serial != serial) continue;
        if (idx < a->view.layout.chunk_count && ((a->held_bits[idx / 64] >> (idx % 64)) & 1u)) {
            give_back(*a, idx);
            if (a->gone && a->held == 0) remove_finished_locked();
        }
        return;
    }
}

void ShmReader::sync_writers(const std::vector<transport::PeerInfo>& writers) noexcept {
    try {
        std::vector<std::uint64_t> known;
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (const auto& a : attachments_) known.push_back(a->writer_id);
            known.insert(known.end(), refused_.begin(), refused_.end());
        }
        std::vector<std::unique_ptr<Attachment>> fresh;
        std::vector<std::uint64_t> newly_refused;
        for (const auto& w : writers) {
            if (w.endpoint_id == 0 || std::find(known.begin(), known.end(), w.endpoint_id) != known.end()) continue;
            bool refused = false;
            if (auto a = attach(w.endpoint_id, refused)) {
                fresh.push_back(std::move(a));
            } else if (refused) {
                newly_refused.push_back(w.endpoint_id);
            }
        }
        auto listed = [&](std::uint64_t id) {
            return std::any_of(writers.begin(), writers.end(), [&](const auto& w) { return w.endpoint_id == id; });
        };
        std::unique_lock<std::mutex> lock(mu_);
        refused_.erase(std::remove_if(refused_.begin(), refused_.end(), [&](std::uint64_t id) { return !listed(id); }),
                       refused_.end());
        refused_.insert(refused_.end(), newly_refused.begin(), newly_refused.end());
        for (auto& a : fresh) {
            a->serial = next_serial_++;
            if (next_serial_ == 0) next_serial_ = 1;
            find_slot(*a);
            attachments_.push_back(std::move(a));
        }
        bool news = !fresh.empty();
        for (auto& a : attachments_) {
            a->gone = !listed(a->writer_id);
            if (a->slot < 0) news = find_slot(*a) || news;
        }
        remove_finished_locked();
        next_attachment_ = 0;
        lock.unlock();
        if (news) {
            // A take asleep on the doorbell may have been rung for a writer it could not see
            // yet: make it scan again.
            doorbell_->seq.fetch_add(1, std::memory_order_seq_cst);
            transport::futex_wake_all(doorbell_->seq);
        }
    } catch (...) {
        transport::log(host_, transport::LogLevel::warn,
                       "shm: out of memory while syncing the writers of topic " + params_.topic);
    }
}

std::uint64_t ShmReader::lost() const noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    std::uint64_t sum = lost_retired_ + lost_corrupt_.load(std::memory_order_relaxed);
    for (const auto& a : attachments_) {
        if (a->slot >= 0 && slot_is_ours(*a)) {
            sum += a->view.slot(static_cast<std::uint32_t>(a->slot))->dropped.load(std::memory_order_relaxed);
        }
    }
    return sum;
}

void ShmReader::interrupt() noexcept {
    closed_.store(true, std::memory_order_release);
    doorbell_->seq.fetch_add(1, std::memory_order_seq_cst);
    transport::futex_wake_all(doorbell_->seq);
}

}  // namespace ferry::shm
