#include "shm_writer.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>

namespace ferry::shm {

using transport::Clock;
using transport::Errc;
using transport::LoanBuffer;
using transport::Status;

namespace {

constexpr std::uint64_t kLoanTag = 0x4c4f414eull;  // "LOAN", in the high half of a loan handle
constexpr auto kAliveCheckPeriod = std::chrono::milliseconds(10);

std::uint64_t bit(std::uint32_t s) noexcept { return std::uint64_t{1} << s; }

}  // namespace

ShmWriter::ShmWriter(const transport::Host& host,
                     transport::TopicParams params,
                     std::string name,
                     Mapping segment,
                     const Layout& layout)
    : host_(host),
      params_(std::move(params)),
      name_(std::move(name)),
      segment_(std::move(segment)),
      view_{segment_.data(), layout},
      header_(view_.header()),
      chunks_(layout.chunk_count) {}

ShmWriter::~ShmWriter() {
    std::lock_guard<std::mutex> lock(mu_);
    header_->writer_closed.store(1, std::memory_order_release);
    ::shm_unlink(("/" + name_).c_str());
    for (const ChunkLocal& c : chunks_) {
        if (c.map) ::shm_unlink(("/" + data_name(c.serial)).c_str());
    }
}

void ShmWriter::warn(const std::string& msg) const noexcept { transport::log(host_, transport::LogLevel::warn, msg); }

std::size_t ShmWriter::reader_count() const noexcept { return reader_count_.load(std::memory_order_relaxed); }

std::string ShmWriter::data_name(std::uint64_t serial) const {
    return name_ + "." + std::to_string(serial);
}

Status ShmWriter::bind_chunk(std::uint32_t c, std::size_t size) noexcept {
    try {
        ChunkHeader* ch = view_.chunk(c);
        ChunkLocal& local = chunks_[c];
        if (local.map) {
            // Too small now. No reader has it queued or holds it (mask 0): readers unmap their
            // copy when they see the epoch move or meet the chunk again.
            local.map.reset();
            ::shm_unlink(("/" + data_name(local.serial)).c_str());
            ch->segment.store(0, std::memory_order_relaxed);
            ch->capacity.store(0, std::memory_order_relaxed);
            local.serial = 0;
            header_->rebind_epoch.fetch_add(1, std::memory_order_release);
        }
        const std::uint64_t cap = chunk_capacity_for(size, params_.max_message_size);
        const std::uint64_t serial = ++next_serial_;
        Mapping map;
        const std::string advice = "a message of " + std::to_string(size) + " bytes on topic " + params_.topic +
                                   " needs it; enlarge /dev/shm (docker run --shm-size) or send smaller messages";
        if (auto st = create_segment(data_name(serial), static_cast<std::size_t>(cap), params_.mode, map, advice); !st) {
            return st;
        }
        local.map = std::move(map);
        local.serial = serial;
        ch->capacity.store(cap, std::memory_order_relaxed);
        ch->segment.store(serial, std::memory_order_release);
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "shm: out of memory making a chunk for topic " + params_.topic);
    }
}

void ShmWriter::mark_loaned(std::uint32_t c) noexcept {
    // The chunk is free (mask 0), and only this writer sets bits: a plain store marks it for
    // the readers it will most likely be queued for, so that commit needs no atomic
    // read-modify-write (a full barrier on x86) in the common case. Commit corrects the bits if
    // the readers changed meanwhile.
    ChunkLocal& local = chunks_[c];
    local.loan_bits = active_bits_.load(std::memory_order_acquire);
    local.loan_reclaims = reclaims_.load(std::memory_order_acquire);
    view_.chunk(c)->mask.store(local.loan_bits, std::memory_order_relaxed);
    local.loaned = true;
}

void ShmWriter::unloan(std::uint32_t c) noexcept {
    // Queued nowhere: no reader has a bit of its own on it.
    view_.chunk(c)->mask.store(0, std::memory_order_release);
    chunks_[c].loaned = false;
    hot_chunk_ = c;
}

ShmWriter::Claim ShmWriter::claim_chunk(std::size_t size, bool may_bind, std::uint32_t& idx, Status& err) noexcept {
    const std::uint32_t n = view_.layout.chunk_count;
    auto is_free = [&](std::uint32_t c) {
        return !chunks_[c].loaned && view_.chunk(c)->mask.load(std::memory_order_acquire) == 0;
    };
    auto fits = [&](std::uint32_t c) { return chunks_[c].map && chunks_[c].map.size() >= size; };
    auto take = [&](std::uint32_t c) {
        mark_loaned(c);
        idx = c;
        return Claim::ok;
    };
    // The chunk commit warmed (see warm_next): its lines are already in this core's cache.
    if (const std::uint32_t w = std::exchange(warm_, UINT32_MAX); w < n && fits(w) && is_free(w)) return take(w);
    // The chunk sent last is still in this core's cache (and mapped in every reader): when the
    // readers are done with it, as in request/reply, reuse it rather than touch a cold one,
    // unless warm_next asked for a second small chunk to alternate with. The readers cleared its
    // mask last: fetch the line ready for mark_loaned's write, where a load alone would fetch it
    // shared and the store fetch it a second time.
    const std::uint32_t avoid = std::exchange(avoid_, UINT32_MAX);
    if (hot_chunk_ < n && hot_chunk_ != avoid && !chunks_[hot_chunk_].loaned && fits(hot_chunk_)) {
        prefetch_for_write(&view_.chunk(hot_chunk_)->mask);
        if (is_free(hot_chunk_)) return take(hot_chunk_);
    }
    std::uint32_t spare = n;  // a free chunk with no data segment yet, else one with too small a one
    for (std::uint32_t i = 0; i < n; ++i) {
        std::uint32_t c = next_chunk_ + i;
        if (c >= n) c -= n;
        if (c == avoid || !is_free(c)) continue;
        if (fits(c)) {
            next_chunk_ = c + 1 == n ? 0 : c + 1;
            return take(c);
        }
        if (spare == n || (chunks_[spare].map && !chunks_[c].map)) spare = c;
    }
    if (spare < n && may_bind) {
        err = bind_chunk(spare, size);
        if (err) {
            next_chunk_ = spare + 1 == n ? 0 : spare + 1;
            return take(spare);
        }
        if (err.code() != Errc::no_resources) return Claim::error;
        if (avoid < n) alternate_ = false;  // /dev/shm is short: no second chunk just for speed
    }
    if (avoid < n && fits(avoid) && is_free(avoid)) return take(avoid);
    if (spare == n) return Claim::dry;
    return Claim::no_space;
}

void ShmWriter::warm_next(std::uint32_t sent, std::size_t size) noexcept {
    // Request/reply sends a message, waits for the answer, sends the next. The readers let go
    // of a message's chunk before they answer, so by the next send it is free; but the line of
    // its mask (cleared by a reader) and its first data lines (read by them) are in the
    // readers' caches, and fetching them back is one more cross-CPU transfer on every hop.
    // So small messages alternate between two chunks, and after each send this thread, which
    // would only wait now, fetches the other chunk's lines for the next loan.
    const std::uint32_t prev = std::exchange(prev_sent_, sent);
    if (!alternate_ || chunks_[sent].map.size() > kAlternateLimit) return;
    if (prev == sent) {
        avoid_ = sent;  // the next loan takes (or makes) another chunk
        return;
    }
    if (prev >= view_.layout.chunk_count || chunks_[prev].loaned || !chunks_[prev].map ||
        chunks_[prev].map.size() < size) {
        return;
    }
    ChunkHeader* ch = view_.chunk(prev);
    if (ch->mask.load(std::memory_order_relaxed) != 0) return;  // a stream: readers still have it
    prefetch_for_write(&ch->mask);
    prefetch_for_write(chunks_[prev].map.data());
    if (size > kCacheLine) prefetch_for_write(chunks_[prev].map.data() + kCacheLine);
    warm_ = prev;
}

bool ShmWriter::busy_chunk_fits(std::size_t size) const noexcept {
    for (std::uint32_t c = 0; c < view_.layout.chunk_count; ++c) {
        if (!chunks_[c].loaned && chunks_[c].map && chunks_[c].map.size() >= size) return true;
    }
    return false;
}

Status ShmWriter::loan(std::size_t size, LoanBuffer& out) noexcept {
    if (size > params_.max_message_size) {
        return Status(Errc::too_large, "shm: loan of " + std::to_string(size) + " bytes on topic " + params_.topic +
                                           " exceeds max_message_size " + std::to_string(params_.max_message_size));
    }
    std::uint32_t idx = 0;
    Status space;  // why no chunk of this size could be made, if that was the trouble
    const Claim first = claim_chunk(size, true, idx, space);
    if (first == Claim::error) return space;
    // /dev/shm cannot hold a new chunk of this size, and none that readers hold now could
    // carry it once they let it go: waiting cannot help.
    if (first == Claim::no_space && !busy_chunk_fits(size)) return space;
    const bool short_of_space = first == Claim::no_space;
    bool claimed = first == Claim::ok;
    // Retries: after a failed attempt to make a segment, only chunks that already fit, but a
    // blocked loan tries again to make one every kAliveCheckPeriod (space may have come back).
    auto retry = [&](bool may_bind) {
        Status st;
        return claim_chunk(size, may_bind, idx, st) == Claim::ok;
    };
    if (!claimed && params_.overflow == transport::Overflow::drop_oldest) {
        std::lock_guard<std::mutex> lock(mu_);
        for (std::uint64_t i = 0; !claimed && i <= std::uint64_t{kSlotCount} * view_.layout.depth; ++i) {
            if (!drop_oldest_anywhere() && !retire_dead_readers()) break;
            claimed = retry(!short_of_space);
        }
        if (!claimed) {
            if (short_of_space) return space;
            return Status(Errc::no_resources, "shm: every chunk of segment " + name_ +
                                                  " is held as a sample by a reader; release samples sooner or raise depth");
        }
    } else if (!claimed && params_.overflow == transport::Overflow::block) {
        const auto deadline = Clock::now() + params_.block_timeout;
        auto next_alive_check = Clock::now() + kAliveCheckPeriod;
        while (!claimed) {
            const std::uint32_t w = prepare_wait(header_->wake_seq, header_->writer_waiting, kWaitChunk);
            const auto now = Clock::now();
            if ((claimed = retry(!short_of_space || now >= next_alive_check))) break;
            if (now >= next_alive_check) {
                next_alive_check = now + kAliveCheckPeriod;
                std::lock_guard<std::mutex> lock(mu_);
                if (retire_dead_readers()) continue;
            }
            if (now >= deadline) break;
            transport::futex_wait(header_->wake_seq, w, std::min(deadline, now + kAliveCheckPeriod));
        }
        header_->writer_waiting.store(0, std::memory_order_relaxed);
        if (!claimed) {
            std::string why = "shm: no free chunk in segment " + name_ + " within block_timeout (readers hold " +
                              std::to_string(view_.layout.chunk_count) + " chunks)";
            if (short_of_space) why += "; no new one either: " + space.message();
            return Status(Errc::timeout, why);
        }
    } else if (!claimed) {
        std::string why = "shm: every chunk of segment " + name_ + " is in use by readers";
        if (short_of_space) why += "; no new one either: " + space.message();
        return Status(Errc::would_block, why);
    }
    out.data = chunks_[idx].map.data();
    out.capacity = chunks_[idx].map.size();
    // The reader read these lines last. Fetching them for writing now, while the caller fills
    // the loan, keeps commit's barriers (its locks and atomics wait for pending stores) from
    // waiting for each line in turn: the core's frame header and the first payload line.
    prefetch_for_write(out.data);
    if (size > kCacheLine) prefetch_for_write(out.data + kCacheLine);
    out.handle = (kLoanTag << 32) | idx;
    return Status::ok();
}

bool ShmWriter::loan_handle_ok(const LoanBuffer& buf, std::uint32_t& idx) const noexcept {
    if ((buf.handle >> 32) != kLoanTag) return false;
    idx = static_cast<std::uint32_t>(buf.handle);
    return idx < view_.layout.chunk_count && chunks_[idx].loaned && buf.data == chunks_[idx].map.data();
}

void ShmWriter::release(LoanBuffer& buf) noexcept {
    std::uint32_t idx = 0;
    if (loan_handle_ok(buf, idx)) unloan(idx);
    buf = LoanBuffer{};
}

Status ShmWriter::commit(LoanBuffer& buf, std::size_t size) noexcept {
    std::uint32_t idx = 0;
    if (!loan_handle_ok(buf, idx)) {
        return Status(Errc::invalid_argument, "shm: commit of a buffer that is not a live loan of this writer");
    }
    buf = LoanBuffer{};
    if (size > params_.max_message_size) {
        unloan(idx);
        return Status(Errc::too_large, "shm: message of " + std::to_string(size) + " bytes on topic " + params_.topic +
                                           " exceeds max_message_size " + std::to_string(params_.max_message_size));
    }
    if (size > chunks_[idx].map.size()) {
        unloan(idx);
        return Status(Errc::invalid_argument, "shm: commit of " + std::to_string(size) + " bytes from a loan of " +
                                                  std::to_string(chunks_[idx].map.size()));
    }
    ChunkHeader* chunk = view_.chunk(idx);
    chunks_[idx].seq = ++seq_;
    const std::uint64_t entry = ring_entry(idx, size);

    const std::uint32_t depth = view_.layout.depth;
    Errc worst = Errc::ok;
    std::uint32_t not_served = 0;
    std::uint32_t stalled = 0;
    Clock::time_point deadline{};
    bool have_deadline = false;

    std::unique_lock<std::mutex> lock(mu_);
    // The bits mark_loaned set stand only if no slot was reclaimed since (a reclaim clears its
    // bit on every chunk, and the slot may serve a new reader now).
    const ChunkLocal& loan = chunks_[idx];
    const std::uint64_t marked = reclaims_.load(std::memory_order_relaxed) == loan.loan_reclaims ? loan.loan_bits : 0;
    std::uint64_t served_bits = 0;
    const auto targets = active_;
    const std::uint32_t n_targets = active_count_;
    for (std::uint32_t i = 0; i < n_targets; ++i) {
        const std::uint32_t s = targets[i];
        SlotLocal& local = slots_[s];
        if (local.state != kSlotActive) continue;
        const std::uint64_t reader_id = local.reader_id;
        Slot* slot = view_.slot(s);
        if (slot->reader_closed.load(std::memory_order_relaxed) != 0) continue;

        bool served = true;
        // The tail only moves forward: while the last tail read leaves room, the reader's line
        // need not be fetched again (and the reader keeps it for its next pop).
        for (; local.head - local.tail_seen >= depth;) {
            const std::uint64_t tail = slot->tail.load(std::memory_order_acquire);
            if (tail > local.head || local.head - tail > depth) {
                // Only a rogue reader writes such a tail: forget its queue rather than trust it.
                slot->tail.store(local.head, std::memory_order_release);
                continue;
            }
            local.tail_seen = tail;
            if (local.head - tail < depth) break;
            if (params_.overflow == transport::Overflow::drop_oldest) {
                drop_oldest_entry(s);
                continue;
            }
            if (params_.overflow == transport::Overflow::fail) {
                worst = Errc::would_block;
                ++not_served;
                served = false;
                break;
            }
            if (local.stalled) {
                // It already cost one block_timeout: the other readers keep their pace.
                const auto now = Clock::now();
                if (now >= local.next_alive_check) {
                    local.next_alive_check = now + kAliveCheckPeriod;
                    if (!transport::process_alive(local.pid)) {
                        reclaim_slot(s, kSlotRetired);
                        rebuild_active();
                        served = false;
                        break;
                    }
                }
                worst = Errc::timeout;
                ++not_served;
                ++stalled;
                served = false;
                break;
            }
            if (!have_deadline) {
                deadline = Clock::now() + params_.block_timeout;
                have_deadline = true;
            }
            const Room room = wait_for_room(lock, s, reader_id, deadline);
            if (room == Room::ok) break;
            if (room == Room::full) {
                worst = Errc::timeout;
                ++not_served;
                slots_[s].stalled = true;
            }
            served = false;
            break;
        }
        if (!served) continue;
        local.stalled = false;
        served_bits |= bit(s);
        if ((marked & bit(s)) == 0) chunk->mask.fetch_or(bit(s), std::memory_order_release);
        view_.ring(s)[local.head % depth].store(entry, std::memory_order_relaxed);
        ++local.head;
        slot->head.store(local.head, std::memory_order_release);
        wake_if_waiting(local.doorbell->seq, local.doorbell->waiting);
    }
    // Marked at the loan but not queued (full, gone or closed): the bit is not theirs to clear.
    if (const std::uint64_t stray = loan.loan_bits & ~served_bits; stray != 0) {
        chunk->mask.fetch_and(~stray, std::memory_order_acq_rel);
    }
    lock.unlock();
    chunks_[idx].loaned = false;
    hot_chunk_ = idx;
    warm_next(idx, size);

    if (worst == Errc::ok) return Status::ok();
    undelivered_.fetch_add(not_served, std::memory_order_relaxed);
    std::string what = worst == Errc::timeout ? " stayed full for block_timeout" : " is full";
    if (stalled != 0) what += " (" + std::to_string(stalled) + " stalled: skipped until they drain)";
    return Status(worst, "shm: the queue of " + std::to_string(not_served) + " reader(s) of topic " + params_.topic +
                             what + "; they did not get this message");
}

Status ShmWriter::flush(Clock::time_point deadline) noexcept {
    auto next_alive_check = Clock::now();
    for (;;) {
        std::uint64_t queued = 0;
        std::uint32_t readers = 0;
        std::uint32_t w = 0;
        {
            std::lock_guard<std::mutex> lock(mu_);
            const auto now = Clock::now();
            if (now >= next_alive_check) {
                next_alive_check = now + kAliveCheckPeriod;
                retire_dead_readers();
            }
            w = prepare_wait(header_->wake_seq, header_->writer_waiting, kWaitRoom);
            for (std::uint32_t i = 0; i < active_count_; ++i) {
                const std::uint32_t s = active_[i];
                Slot* slot = view_.slot(s);
                if (slot->reader_closed.load(std::memory_order_acquire) != 0) continue;
                const std::uint64_t tail = slot->tail.load(std::memory_order_acquire);
                const std::uint64_t head = slots_[s].head;
                if (tail >= head || head - tail > view_.layout.depth) continue;  // empty (or rogue)
                // Wake me when this ring is empty.
                slot->wake_room.store(view_.layout.depth, std::memory_order_relaxed);
                queued += head - tail;
                ++readers;
            }
        }
        if (queued == 0) break;
        if (transport::expired(deadline)) {
            header_->writer_waiting.store(0, std::memory_order_relaxed);
            return Status(Errc::timeout, "shm: topic " + params_.topic + ": " + std::to_string(queued) +
                                             " message(s) not taken by " + std::to_string(readers) +
                                             " reader(s) when the writer closed");
        }
        transport::futex_wait(header_->wake_seq, w, std::min(deadline, Clock::now() + kAliveCheckPeriod));
    }
    header_->writer_waiting.store(0, std::memory_order_relaxed);
    return Status::ok();
}

ShmWriter::Room ShmWriter::wait_for_room(std::unique_lock<std::mutex>& lock,
                                         std::uint32_t s,
                                         std::uint64_t reader_id,
                                         Clock::time_point deadline) noexcept {
    auto next_alive_check = Clock::now() + kAliveCheckPeriod;
    Room result = Room::full;
    for (;;) {
        SlotLocal& local = slots_[s];
        Slot* slot = view_.slot(s);
        if (local.state != kSlotActive || local.reader_id != reader_id ||
            slot->reader_closed.load(std::memory_order_relaxed) != 0) {
            result = Room::gone;
            break;
        }
        slot->wake_room.store(std::max<std::uint32_t>(1, view_.layout.depth / 2), std::memory_order_relaxed);
        const std::uint32_t w = prepare_wait(header_->wake_seq, header_->writer_waiting, kWaitRoom);
        const std::uint64_t tail = slot->tail.load(std::memory_order_acquire);
        if (tail > local.head || local.head - tail < view_.layout.depth) {
            result = Room::ok;  // a corrupt tail is repaired by the caller
            break;
        }
        const auto now = Clock::now();
        if (now >= next_alive_check) {
            next_alive_check = now + kAliveCheckPeriod;
            if (!transport::process_alive(local.pid)) {
                reclaim_slot(s, kSlotRetired);
                rebuild_active();
                result = Room::gone;
                break;
            }
        }
        if (now >= deadline) break;
        lock.unlock();
        transport::futex_wait(header_->wake_seq, w, std::min(deadline, now + kAliveCheckPeriod));
        lock.lock();
    }
    header_->writer_waiting.store(0, std::memory_order_relaxed);
    return result;
}

bool ShmWriter::drop_oldest_entry(std::uint32_t s) noexcept {
    SlotLocal& local = slots_[s];
    Slot* slot = view_.slot(s);
    std::uint64_t tail = slot->tail.load(std::memory_order_acquire);
    if (tail > local.head || local.head - tail > view_.layout.depth) {
        slot->tail.store(local.head, std::memory_order_release);
        return true;
    }
    if (tail == local.head) return false;
    const std::uint32_t idx = entry_chunk(view_.ring(s)[tail % view_.layout.depth].load(std::memory_order_relaxed));
    // Losing the race means the reader popped it: there is room either way.
    if (!slot->tail.compare_exchange_strong(tail, tail + 1, std::memory_order_acq_rel)) return true;
    if (idx < view_.layout.chunk_count) view_.chunk(idx)->mask.fetch_and(~bit(s), std::memory_order_acq_rel);
    slot->dropped.fetch_add(1, std::memory_order_relaxed);
    return true;
}

bool ShmWriter::drop_oldest_anywhere() noexcept {
    std::uint32_t best = kSlotCount;
    std::uint64_t best_seq = std::numeric_limits<std::uint64_t>::max();
    for (std::uint32_t i = 0; i < active_count_; ++i) {
        const std::uint32_t s = active_[i];
        const std::uint64_t tail = view_.slot(s)->tail.load(std::memory_order_acquire);
        if (tail >= slots_[s].head || slots_[s].head - tail > view_.layout.depth) continue;
        const std::uint32_t idx = entry_chunk(view_.ring(s)[tail % view_.layout.depth].load(std::memory_order_relaxed));
        const std::uint64_t seq = idx < view_.layout.chunk_count ? chunks_[idx].seq : 0;
        if (seq < best_seq) {
            best_seq = seq;
            best = s;
        }
    }
    return best < kSlotCount && drop_oldest_entry(best);
}

bool ShmWriter::retire_dead_readers() noexcept {
    bool any = false;
    for (std::uint32_t s = 0; s < kSlotCount; ++s) {
        if (slots_[s].state == kSlotActive && !transport::process_alive(slots_[s].pid)) {
            reclaim_slot(s, kSlotRetired);
            any = true;
        }
    }
    if (any) rebuild_active();
    return any;
}

void ShmWriter::reclaim_slot(std::uint32_t s, SlotState new_state) noexcept {
    SlotLocal& local = slots_[s];
    Slot* slot = view_.slot(s);
    const std::uint32_t depth = view_.layout.depth;
    for (;;) {
        std::uint64_t tail = slot->tail.load(std::memory_order_acquire);
        if (tail >= local.head || local.head - tail > depth) break;
        const std::uint32_t idx = entry_chunk(view_.ring(s)[tail % depth].load(std::memory_order_relaxed));
        if (slot->tail.compare_exchange_strong(tail, tail + 1, std::memory_order_acq_rel) &&
            idx < view_.layout.chunk_count) {
            view_.chunk(idx)->mask.fetch_and(~bit(s), std::memory_order_acq_rel);
        }
    }
    slot->tail.store(local.head, std::memory_order_release);
    // Samples the reader took and never released.
    for (std::uint32_t c = 0; c < view_.layout.chunk_count; ++c) {
        view_.chunk(c)->mask.fetch_and(~bit(s), std::memory_order_acq_rel);
    }
    // After the clearing: a loan that reads the old count may have had its bit cleared (or
    // overwritten the clearing), and commit then sets the bits again; one that reads the new
    // count was marked after the clearing.
    reclaims_.fetch_add(1, std::memory_order_release);
    local.doorbell = nullptr;
    local.doorbell_map.reset();
    if (new_state == kSlotFree) {
        slot->state.store(kSlotFree, std::memory_order_release);
        slot->reader_id.store(0, std::memory_order_relaxed);
        local = SlotLocal{};
    } else {
        slot->state.store(new_state, std::memory_order_release);
        local.state = new_state;
    }
}

void ShmWriter::rebuild_active() noexcept {
    active_count_ = 0;
    std::uint64_t bits = 0;
    for (std::uint32_t s = 0; s < kSlotCount; ++s) {
        if (slots_[s].state == kSlotActive) {
            active_[active_count_++] = static_cast<std::uint8_t>(s);
            bits |= bit(s);
        }
    }
    active_bits_.store(bits, std::memory_order_release);
    reader_count_.store(active_count_, std::memory_order_relaxed);
}

void ShmWriter::sync_readers(const std::vector<transport::PeerInfo>& readers) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        auto listed = [&](std::uint64_t id) {
            return std::any_of(readers.begin(), readers.end(), [&](const auto& r) { return r.endpoint_id == id; });
        };
        bool reclaimed = false;
        for (std::uint32_t s = 0; s < kSlotCount; ++s) {
            SlotLocal& local = slots_[s];
            if (local.state == kSlotFree) continue;
            if (!listed(local.reader_id)) {
                reclaim_slot(s, kSlotFree);
                reclaimed = true;
            } else if (local.state == kSlotActive && view_.slot(s)->reader_closed.load(std::memory_order_relaxed) != 0) {
                reclaim_slot(s, kSlotRetired);
                reclaimed = true;
            }
        }
        if (reclaimed) {
            // A loan or commit of the writing thread may be waiting on the slot just dropped.
            header_->wake_seq.fetch_add(1, std::memory_order_seq_cst);
            transport::futex_wake_all(header_->wake_seq);
        }
        for (const auto& r : readers) {
            if (r.endpoint_id == 0) continue;
            if (std::any_of(slots_.begin(), slots_.end(), [&](const SlotLocal& l) {
                    return l.state != kSlotFree && l.reader_id == r.endpoint_id;
                })) {
                continue;
            }
            auto free_slot = std::find_if(slots_.begin(), slots_.end(),
                                          [](const SlotLocal& l) { return l.state == kSlotFree; });
            if (free_slot == slots_.end()) {
                if (!warned_full_table_) {
                    warn("shm: segment " + name_ + " serves at most " + std::to_string(kSlotCount) +
                         " readers; reader " + transport::object_name(params_.domain, r.endpoint_id, "sig") +
                         " of topic " + params_.topic + " gets nothing");
                    warned_full_table_ = true;
                }
                continue;
            }
            const std::string bell_name = transport::object_name(params_.domain, r.endpoint_id, "sig");
            Mapping bell_map;
            if (auto st = open_segment(bell_name, kDoorbellSegmentSize, bell_map); !st) {
                // The reader may have just gone; the next sync tries again.
                transport::log(host_, transport::LogLevel::debug, st.message());
                continue;
            }
            auto* bell = reinterpret_cast<Doorbell*>(bell_map.data());
            if (bell_map.size() >= sizeof(Doorbell) && bell->magic.load(std::memory_order_acquire) == 0) {
                continue;  // still being initialised
            }
            if (bell_map.size() < sizeof(Doorbell) || bell->magic.load(std::memory_order_acquire) != kDoorbellMagic) {
                warn("shm: ignoring reader " + bell_name + ": its doorbell segment is not a ferry shm doorbell");
                continue;
            }
            const auto s = static_cast<std::uint32_t>(free_slot - slots_.begin());
            Slot* slot = view_.slot(s);
            slot->state.store(kSlotFree, std::memory_order_relaxed);
            slot->head.store(0, std::memory_order_relaxed);
            slot->tail.store(0, std::memory_order_relaxed);
            slot->dropped.store(0, std::memory_order_relaxed);
            slot->reader_closed.store(0, std::memory_order_relaxed);
            slot->reader_id.store(r.endpoint_id, std::memory_order_relaxed);
            slot->state.store(kSlotActive, std::memory_order_release);
            free_slot->state = kSlotActive;
            free_slot->reader_id = r.endpoint_id;
            free_slot->pid = r.pid > 0 ? r.pid : transport::endpoint_pid(r.endpoint_id);
            free_slot->head = 0;
            free_slot->tail_seen = 0;
            free_slot->doorbell_map = std::move(bell_map);
            free_slot->doorbell = bell;
            // A reader may already sleep on its doorbell, waiting for this very writer.
            wake_if_waiting(bell->seq, bell->waiting);
        }
        rebuild_active();
    } catch (...) {
        warn("shm: out of memory while syncing the readers of topic " + params_.topic);
    }
}

}  // namespace ferry::shm
