#include <ferry/transport/fragment.hpp>

#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>

namespace ferry::transport {

std::uint32_t unit_check(const UnitHeader& h) noexcept {
    std::uint64_t x = h.magic ^ (static_cast<std::uint64_t>(h.sequence) << 32);
    x ^= h.writer_id * 0x9E3779B97F4A7C15ull;
    x ^= (static_cast<std::uint64_t>(h.total_size) << 17) ^ (static_cast<std::uint64_t>(h.index) << 41);
    x ^= h.payload_size * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return static_cast<std::uint32_t>(x);
}

UnitHeader make_unit_header(std::uint64_t writer_id,
                            std::uint32_t sequence,
                            std::uint32_t total_size,
                            std::uint32_t index,
                            std::uint32_t payload_size) noexcept {
    UnitHeader h{kUnitMagic, sequence, writer_id, total_size, index, payload_size, 0};
    h.check = unit_check(h);
    return h;
}

bool unit_header_valid(const UnitHeader& h, std::size_t max_unit_size) noexcept {
    return h.magic == kUnitMagic && h.check == unit_check(h) &&
           h.payload_size <= max_unit_size - kUnitHeaderSize;
}

// ---------------------------------------------------------------------------------------

namespace {

int send_one_unit(std::byte* message, std::size_t size, UnitTarget& t, std::uint64_t writer_id, SendUnitFn send) noexcept {
    const std::size_t cap = t.unit_size - kUnitHeaderSize;
    const std::size_t offset = static_cast<std::size_t>(t.next_unit_) * cap;
    const std::size_t len = std::min(cap, size - offset);
    std::byte* at = message + offset - kUnitHeaderSize;
    std::byte saved[kUnitHeaderSize];
    // The header of unit i > 0 overwrites the tail of unit i-1's payload: put it back after.
    if (offset != 0) std::memcpy(saved, at, kUnitHeaderSize);
    const UnitHeader h = make_unit_header(writer_id, t.next_sequence, static_cast<std::uint32_t>(size),
                                          t.next_unit_, static_cast<std::uint32_t>(len));
    std::memcpy(at, &h, kUnitHeaderSize);
    int err;
    do {
        err = send(t.fd, at, kUnitHeaderSize + len);
    } while (err == EINTR);
    if (offset != 0) std::memcpy(at, saved, kUnitHeaderSize);
    return err;
}

bool receiver_gone(int err) noexcept {
    return err == EPIPE || err == ENXIO || err == EBADF || err == ENOENT || err == ECONNREFUSED;
}

}  // namespace

Status deliver_units(std::byte* message,
                     std::size_t size,
                     std::uint64_t writer_id,
                     Overflow overflow,
                     Clock::time_point deadline,
                     std::vector<UnitTarget*>& targets,
                     SendUnitFn send,
                     const char* what) noexcept {
    constexpr std::size_t kInlinePoll = 16;
    std::size_t active = 0;
    for (UnitTarget* t : targets) {
        t->next_unit_ = 0;
        t->units_ = unit_count(size, t->unit_size);
        t->outcome_ = Errc::ok;
        t->waiting_ = !t->broken;
        t->grace_until_ = Clock::time_point{};
        t->room_made_ = false;
        if (!t->broken) ++active;
    }
    int last_err = 0;
    auto finish = [&](UnitTarget* t, Errc outcome, bool sequence_used) {
        if (sequence_used) ++t->next_sequence;
        t->outcome_ = outcome;
        t->waiting_ = false;
        --active;
    };
    while (active > 0) {
        std::size_t waiting = 0;
        for (UnitTarget* t : targets) {
            if (!t->waiting_) continue;
            // Where nothing may be waited for (fail, a stalled reader under block), a message
            // of several units starts only if all of them fit: a started one must be finished.
            const bool no_wait = overflow == Overflow::fail || (overflow == Overflow::block && t->stalled_);
            if (no_wait && t->next_unit_ == 0 && t->units_ > 1 && t->hooks.free_units != nullptr &&
                t->hooks.free_units(t->fd) < t->units_) {
                finish(t, overflow == Overflow::fail ? Errc::would_block : Errc::timeout, false);
                continue;
            }
            int err = 0;
            while (t->next_unit_ < t->units_) {
                err = send_one_unit(message, size, *t, writer_id, send);
                if (err == EAGAIN && t->next_unit_ == 0 && overflow == Overflow::drop_oldest &&
                    t->hooks.make_room != nullptr && !t->room_made_) {
                    // Never wait under drop_oldest: discard the reader's oldest units, room for
                    // the whole message at once so that it never waits half-way.
                    t->room_made_ = true;
                    // Try again even if it removed nothing: the reader may have made the room.
                    (void)t->hooks.make_room(t->fd, t->units_);
                    continue;
                }
                if (err != 0) break;
                if (t->next_unit_ == 0) t->stalled_ = false;
                ++t->next_unit_;
            }
            if (t->next_unit_ == t->units_) {
                finish(t, Errc::ok, true);
            } else if (err == EAGAIN && t->next_unit_ == 0 && overflow == Overflow::drop_oldest) {
                finish(t, Errc::ok, true);  // skipped: the reader sees the gap and counts it lost
            } else if (err == EAGAIN && t->next_unit_ == 0 && t->stalled_ &&
                       ((t->pid > 0 && !process_alive(ProcessId{t->pid, t->start_time})) ||
                        (t->hooks.still_there != nullptr && t->object != nullptr && !t->hooks.still_there(t->object)))) {
                t->broken = true;  // it stopped taking because it is gone
                finish(t, Errc::ok, false);
            } else if (err == EAGAIN && t->next_unit_ == 0 && no_wait) {
                finish(t, overflow == Overflow::fail ? Errc::would_block : Errc::timeout, false);
            } else if (err == EAGAIN) {
                ++waiting;
            } else {
                if (!receiver_gone(err)) last_err = err;
                t->broken = true;
                finish(t, Errc::ok, false);
            }
        }
        if (waiting == 0) break;
        // A receiver whose process died or whose reader removed it will never make room:
        // stop waiting for it now.
        const auto now = Clock::now();
        Clock::time_point earliest = Clock::time_point::max();
        for (UnitTarget* t : targets) {
            if (!t->waiting_) continue;
            if ((t->pid > 0 && !process_alive(ProcessId{t->pid, t->start_time})) ||
                (t->hooks.still_there != nullptr && t->object != nullptr && !t->hooks.still_there(t->object))) {
                t->broken = true;
                finish(t, Errc::ok, false);
                --waiting;
                continue;
            }
            // Under drop_oldest and fail only the rest of a started message is waited for.
            const Clock::time_point until =
                overflow == Overflow::block ? deadline : std::min(deadline, now + kDropOldestGrace);
            if (t->grace_until_ == Clock::time_point{}) t->grace_until_ = until;
            if (now >= t->grace_until_) {
                // A reader that stayed full for block_timeout is skipped at once from now on,
                // until a unit goes in again: it costs the others one timeout, not one each.
                if (overflow == Overflow::block && t->next_unit_ == 0) t->stalled_ = true;
                finish(t, Errc::timeout, t->next_unit_ > 0);  // a started message: the reader drops the partial
                --waiting;
                continue;
            }
            earliest = std::min(earliest, t->grace_until_);
        }
        if (waiting == 0) break;
        pollfd inline_fds[kInlinePoll];
        std::vector<pollfd> heap_fds;
        pollfd* fds = inline_fds;
        if (waiting > kInlinePoll) {
            try {
                heap_fds.resize(waiting);
            } catch (...) {
                return Status(Errc::no_resources, std::string(what) + ": out of memory");
            }
            fds = heap_fds.data();
        }
        std::size_t n = 0;
        for (UnitTarget* t : targets) {
            if (t->waiting_) fds[n++] = pollfd{t->fd, POLLOUT, 0};
        }
        ::poll(fds, static_cast<nfds_t>(n), poll_timeout_ms(earliest));
    }
    Errc worst = Errc::ok;
    for (UnitTarget* t : targets) {
        if (t->outcome_ == Errc::timeout) worst = Errc::timeout;
        else if (t->outcome_ == Errc::would_block && worst == Errc::ok) worst = Errc::would_block;
    }
    if (worst == Errc::timeout) {
        return Status(Errc::timeout, std::string(what) + ": a reader's queue stayed full for block_timeout");
    }
    if (worst == Errc::would_block) {
        return Status(Errc::would_block, std::string(what) + ": a reader's queue is full");
    }
    if (last_err != 0) return os_error(errc_from_errno(last_err), std::string(what) + ": cannot send", last_err);
    return Status::ok();
}

// ---------------------------------------------------------------------------------------

Reassembler::Reassembler(const Limits& limits) : limits_(limits) {
    if (limits_.partial_bytes == 0) {
        limits_.partial_bytes = std::max<std::size_t>(64u << 20, 2 * limits_.max_message_size);
    }
    if (limits_.max_partials == 0) limits_.max_partials = 1;
    if (limits_.max_writers == 0) limits_.max_writers = 1;
}

Reassembler::WriterState* Reassembler::state_for(std::uint64_t writer_id) {
    const auto it = writers_.find(writer_id);
    if (it != writers_.end()) {
        it->second.touched = ++clock_;
        return &it->second;
    }
    if (writers_.size() >= limits_.max_writers) {
        // Only reachable with spoofed ids: forget the least recently heard unlisted one.
        auto victim = writers_.end();
        for (auto i = writers_.begin(); i != writers_.end(); ++i) {
            if (victim == writers_.end() || (victim->second.listed && !i->second.listed) ||
                (victim->second.listed == i->second.listed && i->second.touched < victim->second.touched)) {
                victim = i;
            }
        }
        drop_partial(victim->second);
        writers_.erase(victim);
    }
    WriterState& s = writers_[writer_id];
    s.touched = ++clock_;
    s.listed = listed_.count(writer_id) != 0;
    return &s;
}

void Reassembler::drop_partial(WriterState& s) noexcept {
    Partial& p = s.partial;
    if (!p.active) return;
    pool_.recycle(std::move(p.buffer));
    p.buffer = ByteBuffer{};
    p.active = false;
    --partials_;
    partial_bytes_ -= p.total;
    if (s.gone) --gone_partials_;
}

bool Reassembler::make_room_for(std::size_t bytes, const WriterState* keep) {
    if (bytes > limits_.partial_bytes) return false;
    // Rank of a partial for eviction: a gone writer's first, then one the registry never
    // listed (possibly spoofed), then a listed writer's. An unlisted writer never evicts a
    // listed one, so a flood of spoofed ids cannot starve the real writers.
    auto rank = [](const WriterState& s) { return s.gone ? 0 : (s.listed ? 2 : 1); };
    const int max_rank = keep != nullptr && keep->listed ? 2 : 1;
    while (partials_ >= limits_.max_partials || partial_bytes_ + bytes > limits_.partial_bytes) {
        WriterState* victim = nullptr;
        for (auto& [id, s] : writers_) {
            if (&s == keep || !s.partial.active || rank(s) > max_rank) continue;
            if (victim == nullptr || rank(s) < rank(*victim) ||
                (rank(s) == rank(*victim) && s.partial.touched < victim->partial.touched)) {
                victim = &s;
            }
        }
        if (victim == nullptr) return false;
        drop_partial(*victim);
    }
    return true;
}

void Reassembler::abandon_partial(WriterState& s) noexcept {
    if (!s.partial.active) return;
    // A later message started: this one can never complete. Make the sequence gap count it,
    // even when it was the first message heard from this writer.
    if (!s.has_last) {
        if (s.partial.sequence < 0x80000000u) add_lost(s.partial.sequence);
        s.last_sequence = s.partial.sequence - 1;
        s.has_last = true;
    }
    drop_partial(s);
}

bool Reassembler::accept_sequence(WriterState& s, std::uint32_t sequence) noexcept {
    // Writers number each reader's messages from 0 when they connect to it, so what came
    // before the first message heard was lost too (e.g. discarded from a full queue).
    if (!s.has_last) {
        if (sequence < 0x80000000u) add_lost(sequence);
    } else if (sequence != 0) {  // 0: the writer connected again, a new count starts
        const std::uint32_t step = sequence - s.last_sequence;
        if (step == 0 || step >= 0x80000000u) return false;  // duplicate or replayed
        if (step > 1) add_lost(step - 1);
    }
    s.last_sequence = sequence;
    s.has_last = true;
    return true;
}

Reassembler::Result Reassembler::push(const std::byte* unit, std::size_t len, Message& out, const char** why) {
    const char* reason = nullptr;
    UnitHeader h;
    if (len < kUnitHeaderSize) {
        reason = "unit shorter than its header";
    } else {
        std::memcpy(&h, unit, kUnitHeaderSize);
        if (h.magic != kUnitMagic) reason = "bad magic";
        else if (h.check != unit_check(h)) reason = "bad header check";
        else if (h.payload_size != len - kUnitHeaderSize) reason = "payload length does not match the unit";
        else if (h.total_size > limits_.max_message_size) reason = "message larger than max_message_size";
        else if (h.payload_size > h.total_size) reason = "fragment larger than its message";
        else if (h.index != 0 && h.payload_size == 0) reason = "empty fragment";
    }
    if (reason != nullptr) {
        add_lost(1);
        if (why != nullptr) *why = reason;
        return Result::garbage;
    }

    WriterState& s = *state_for(h.writer_id);
    Partial& p = s.partial;
    const std::byte* payload = unit + kUnitHeaderSize;

    if (h.index == 0 && h.payload_size == h.total_size) {
        // One unit: deliver a view, no copy.
        abandon_partial(s);
        if (!accept_sequence(s, h.sequence)) return Result::pending;
        out.buffer = ByteBuffer{};
        out.data = payload;
        out.size = h.payload_size;
        return Result::message;
    }

    if (h.index == 0) {
        abandon_partial(s);
        if (s.has_last && h.sequence != 0) {
            const std::uint32_t step = h.sequence - s.last_sequence;
            if (step == 0 || step >= 0x80000000u) return Result::pending;
        }
        // Checked against max_message_size above and against the partial budget here,
        // before a single byte is allocated.
        if (!make_room_for(h.total_size, &s)) return Result::pending;
        p.buffer = pool_.acquire(h.total_size);
        p.active = true;
        p.sequence = h.sequence;
        p.total = h.total_size;
        p.received = 0;
        p.next_index = 0;
        ++partials_;
        partial_bytes_ += p.total;
        if (s.gone) ++gone_partials_;
    } else if (!p.active || p.sequence != h.sequence || p.next_index != h.index || p.total != h.total_size) {
        // A fragment of a message whose start we never saw (or a later message began):
        // the sequence gap counts it when the writer's next message arrives.
        if (p.active && p.sequence != h.sequence) abandon_partial(s);
        return Result::pending;
    }
    if (static_cast<std::size_t>(p.received) + h.payload_size > p.total) {
        drop_partial(s);
        add_lost(1);
        if (why != nullptr) *why = "fragments exceed the message size";
        return Result::garbage;
    }
    std::memcpy(p.buffer.data.get() + p.received, payload, h.payload_size);
    p.received += h.payload_size;
    ++p.next_index;
    p.touched = ++clock_;
    if (p.received < p.total) return Result::pending;

    const bool fresh = accept_sequence(s, p.sequence);
    out.buffer = std::move(p.buffer);
    out.data = out.buffer.data.get();
    out.size = p.total;
    p.buffer = ByteBuffer{};
    p.active = false;
    --partials_;
    partial_bytes_ -= p.total;
    if (s.gone) --gone_partials_;
    if (!fresh) {
        recycle(out);
        return Result::pending;
    }
    return Result::message;
}

void Reassembler::set_writers(const std::vector<PeerInfo>& writers) {
    std::unordered_set<std::uint64_t> listed;
    for (const PeerInfo& w : writers) listed.insert(w.endpoint_id);
    gone_partials_ = 0;
    for (auto& [id, s] : writers_) {
        if (listed.count(id) != 0) {
            s.listed = true;
            s.gone = false;
        } else if (s.listed || !process_alive(endpoint_pid(id))) {
            s.gone = true;
        }
        if (s.gone && s.partial.active) ++gone_partials_;
    }
    listed_ = std::move(listed);
}

void Reassembler::on_idle() {
    for (auto it = writers_.begin(); it != writers_.end();) {
        // A writer the registry never listed (it died before discovery saw it) is gone when
        // its process is.
        if (!it->second.gone && !it->second.listed && it->second.partial.active &&
            !process_alive(endpoint_pid(it->first))) {
            it->second.gone = true;
        }
        if (it->second.gone) {
            if (it->second.partial.active) add_lost(1);
            drop_partial(it->second);
            it = writers_.erase(it);
        } else {
            ++it;
        }
    }
    gone_partials_ = 0;
}

void Reassembler::own(Message& m) {
    if (m.buffer.data) return;
    ByteBuffer b = pool_.acquire(m.size == 0 ? 1 : m.size);
    if (m.size != 0) std::memcpy(b.data.get(), m.data, m.size);
    m.buffer = std::move(b);
    m.data = m.buffer.data.get();
}

void Reassembler::recycle(Message& m) noexcept {
    pool_.recycle(std::move(m.buffer));
    m.buffer = ByteBuffer{};
    m.data = nullptr;
    m.size = 0;
}

// ---------------------------------------------------------------------------------------

FragmentingWriter::FragmentingWriter(const Host& host, TopicParams params, SendUnitFn send, const char* what)
    : host_(host),
      params_(std::move(params)),
      send_(send),
      what_(what),
      loans_(kUnitHeaderSize, params_.max_message_size),
      receivers_(std::make_shared<const ReceiverList>()) {
    targets_.reserve(16);
}

FragmentingWriter::~FragmentingWriter() = default;

Status FragmentingWriter::loan(std::size_t size, LoanBuffer& out) noexcept {
    if (size > params_.max_message_size) {
        return Status(Errc::too_large, std::string(what_) + ": loan of " + std::to_string(size) +
                                           " bytes exceeds max_message_size " +
                                           std::to_string(params_.max_message_size));
    }
    try {
        loans_.lend(size, out);
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, std::string(what_) + ": cannot allocate a loan of " +
                                              std::to_string(size) + " bytes");
    }
}

void FragmentingWriter::release(LoanBuffer& buf) noexcept { loans_.give_back(buf); }

Status FragmentingWriter::commit(LoanBuffer& buf, std::size_t size) noexcept {
    std::byte* loan = loans_.open_loan(buf);
    if (loan == nullptr) {
        return Status(Errc::invalid_argument, std::string(what_) + ": commit of a buffer that is not a live loan");
    }
    if (size > params_.max_message_size || size > buf.capacity) {
        loans_.give_back(buf);
        return Status(Errc::too_large, std::string(what_) + ": message of " + std::to_string(size) +
                                           " bytes exceeds max_message_size " +
                                           std::to_string(params_.max_message_size));
    }
    std::shared_ptr<const ReceiverList> receivers;
    {
        std::lock_guard<std::mutex> lock(list_mutex_);
        receivers = receivers_;
    }
    messages_.fetch_add(1, std::memory_order_relaxed);
    targets_.clear();
    for (const auto& r : *receivers) targets_.push_back(&r->target);

    Status st;
    if (!targets_.empty()) {
        std::size_t broken_before = 0;
        for (const UnitTarget* t : targets_) broken_before += t->broken ? 1 : 0;
        st = deliver_units(loan + kUnitHeaderSize, size, params_.endpoint_id, params_.overflow,
                           Clock::now() + params_.block_timeout, targets_, send_, what_);
        std::size_t broken_after = 0;
        std::uint64_t missed = 0;
        for (const UnitTarget* t : targets_) {
            broken_after += t->broken ? 1 : 0;
            missed += t->outcome_ == Errc::timeout || t->outcome_ == Errc::would_block ? 1 : 0;
        }
        if (missed) undelivered_.fetch_add(missed, std::memory_order_relaxed);
        if (broken_after != broken_before) {
            log(host_, LogLevel::debug, std::string(what_) + ": a reader of " + params_.topic + " is gone");
        }
    }
    loans_.give_back(buf);
    return st;
}

void FragmentingWriter::sync_readers(const std::vector<PeerInfo>& readers) noexcept {
    try {
        std::lock_guard<std::mutex> sync_lock(sync_mutex_);
        std::shared_ptr<const ReceiverList> current;
        {
            std::lock_guard<std::mutex> lock(list_mutex_);
            current = receivers_;
        }
        auto next = std::make_shared<ReceiverList>();
        next->reserve(readers.size());
        for (const PeerInfo& peer : readers) {
            const pid_t pid = peer.pid > 0 ? peer.pid : endpoint_pid(peer.endpoint_id);
            std::shared_ptr<Receiver> keep;
            for (const auto& r : *current) {
                if (r->peer.endpoint_id == peer.endpoint_id && !r->target.broken.load(std::memory_order_relaxed)) {
                    keep = r;
                }
            }
            if (keep) {
                next->push_back(std::move(keep));
                continue;
            }
            UniqueFd fd;
            std::size_t unit_size = 0;
            std::string object;
            const Status st = open_receiver(peer, fd, unit_size, object);
            if (st) {
                auto r = std::make_shared<Receiver>();
                r->peer = peer;
                r->object = std::move(object);
                r->fd = std::move(fd);
                r->target.fd = r->fd.get();
                r->target.hooks = hooks();
                r->target.object = r->object.c_str();
                r->target.unit_size = unit_size;
                r->target.pid = pid;
                r->target.start_time = peer.pid > 0 ? peer.start_time : 0;
                next->push_back(std::move(r));
            } else if (st.code() == Errc::closed) {
                if (!process_alive(ProcessId{pid, peer.pid > 0 ? peer.start_time : 0})) reclaim_receiver(peer);
            } else {
                log(host_, LogLevel::warn, st.message());
            }
        }
        for (const auto& r : *current) {
            const bool listed = std::find(readers.begin(), readers.end(), r->peer) != readers.end();
            const pid_t pid = r->peer.pid > 0 ? r->peer.pid : endpoint_pid(r->peer.endpoint_id);
            if (!listed && !process_alive(ProcessId{pid, r->peer.pid > 0 ? r->peer.start_time : 0})) reclaim_receiver(r->peer);
        }
        const std::size_t n = next->size();
        {
            std::lock_guard<std::mutex> lock(list_mutex_);
            receivers_ = std::move(next);
        }
        count_.store(n, std::memory_order_relaxed);
    } catch (...) {
        log(host_, LogLevel::error, std::string(what_) + ": sync_readers failed: out of memory");
    }
}

std::size_t FragmentingWriter::reader_count() const noexcept { return count_.load(std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------

FragmentingReader::FragmentingReader(const Host& host, TopicParams params, const char* what)
    : host_(host),
      params_(std::move(params)),
      what_(what),
      reassembler_(Reassembler::Limits{
          params_.max_message_size, 32,
          // The configured budget (never below two whole messages), else the Reassembler's.
          params_.reader_buffer_budget != 0 ? std::max(params_.reader_buffer_budget, 2 * params_.max_message_size)
                                            : 0}) {
    held_.reserve(4);
    returned_.reserve(params_.depth + 8);
    if (params_.overflow == Overflow::drop_oldest) latest_ = std::make_unique<NewestQueue<Message>>(params_.depth);
}

FragmentingReader::~FragmentingReader() {
    // The derived destructor stopped the drain thread; this only guards against misuse.
    if (drain_thread_.joinable()) drain_thread_.join();
}

void FragmentingReader::start() {
    if (latest_) drain_thread_ = std::thread([this] { drain(); });
}

void FragmentingReader::stop() noexcept {
    interrupt();
    if (drain_thread_.joinable()) drain_thread_.join();
}

void FragmentingReader::interrupt() noexcept {
    interrupted_.store(true, std::memory_order_release);
    if (latest_) latest_->close();
    wake();
}

void FragmentingReader::sync_writers(const std::vector<PeerInfo>& writers) noexcept {
    try {
        std::lock_guard<std::mutex> lock(writers_mutex_);
        pending_writers_ = writers;
        writers_changed_.store(true, std::memory_order_release);
    } catch (...) {
        log(host_, LogLevel::error, std::string(what_) + ": sync_writers failed: out of memory");
    }
}

void FragmentingReader::apply_writers() noexcept {
    if (!writers_changed_.load(std::memory_order_acquire)) return;
    try {
        std::lock_guard<std::mutex> lock(writers_mutex_);
        writers_changed_.store(false, std::memory_order_relaxed);
        reassembler_.set_writers(pending_writers_);
    } catch (...) {
    }
}

void FragmentingReader::idle() noexcept {
    apply_writers();
    reassembler_.on_idle();
}

void FragmentingReader::report_garbage(const char* why) noexcept {
    // Rate-limited: a rogue writer must not flood the log.
    ++garbage_logged_;
    const auto now = Clock::now();
    if (garbage_logged_ <= 10 || now - garbage_log_time_ >= std::chrono::seconds(1)) {
        garbage_log_time_ = now;
        log(host_, LogLevel::warn,
            std::string(what_) + ": dropped a malformed unit on topic " + params_.topic + " (" + why + "); " +
                std::to_string(garbage_logged_) + " so far");
    }
}

Status FragmentingReader::take(SampleBuffer& out, Clock::time_point deadline) noexcept {
    if (interrupted()) return Status(Errc::closed, "interrupted");
    Message m;
    std::uint64_t pin = 0;
    if (latest_) {
        const Errc e = latest_->pop(m, deadline);
        if (e != Errc::ok) return Status(e, errc_name(e));
    } else {
        // receive() runs on one thread at a time (several may take from one reader).
        std::unique_lock<std::timed_mutex> lock(receive_mutex_, std::defer_lock);
        const bool try_only = expired(deadline);
        if (!(try_only ? lock.try_lock() : lock.try_lock_until(deadline)))
            return try_only ? Status(Errc::would_block, "no message") : Status(Errc::timeout, "timed out");
        recycle_returned();
        apply_writers();
        Status st = receive(m, pin, deadline);
        if (!st) return st;
    }
    std::lock_guard<std::mutex> held_lock(held_mutex_);  // several threads may take and release
    std::size_t slot = held_.size();
    for (std::size_t i = 0; i < held_.size(); ++i) {
        if (!held_[i].in_use) {
            slot = i;
            break;
        }
    }
    try {
        if (slot == held_.size()) held_.emplace_back();
    } catch (...) {
        if (pin != 0) unpin(pin);
        reassembler_.add_lost(1);
        return Status(Errc::no_resources, std::string(what_) + ": out of memory");
    }
    Held& h = held_[slot];
    h.message = std::move(m);
    h.pin = pin;
    h.in_use = true;
    out.data = h.message.data;
    out.size = h.message.size;
    out.handle = slot + 1;
    return Status::ok();
}

void FragmentingReader::release(SampleBuffer& sample) noexcept {
    std::lock_guard<std::mutex> held_lock(held_mutex_);
    if (sample.handle >= 1 && sample.handle <= held_.size() && held_[sample.handle - 1].in_use) {
        Held& h = held_[sample.handle - 1];
        if (h.pin != 0) unpin(h.pin);
        h.pin = 0;
        // The reassembler's pool is recycled into by the thread that receives (drain thread, or
        // a taker holding receive_mutex_), never here: another thread may be receiving.
        {
            std::lock_guard<std::mutex> lock(returned_mutex_);
            if (returned_.size() < returned_.capacity()) returned_.push_back(std::move(h.message.buffer));
            h.message = Message{};
        }
        h.in_use = false;
    }
    sample = SampleBuffer{};
}

void FragmentingReader::recycle_returned() noexcept {
    std::lock_guard<std::mutex> lock(returned_mutex_);
    for (ByteBuffer& b : returned_) reassembler_.pool().recycle(std::move(b));
    returned_.clear();
}

void FragmentingReader::drain() noexcept {
    while (!interrupted()) {
        apply_writers();
        Message m;
        std::uint64_t pin = 0;
        // A bounded wait so that writer-list changes are applied even when nothing arrives.
        const Status st = receive(m, pin, Clock::now() + std::chrono::milliseconds(200));
        if (st.code() == Errc::timeout || st.code() == Errc::would_block) continue;
        if (st.code() == Errc::closed) break;
        if (!st) {
            log(host_, LogLevel::error, st.message());
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            continue;
        }
        recycle_returned();
        try {
            reassembler_.own(m);
        } catch (...) {
            m = Message{};
            reassembler_.add_lost(1);
        }
        if (pin != 0) unpin(pin);
        if (m.data == nullptr) continue;
        Message dropped;
        if (latest_->push(std::move(m), dropped)) {
            reassembler_.add_lost(1);
            reassembler_.recycle(dropped);
        }
    }
}

}  // namespace ferry::transport
