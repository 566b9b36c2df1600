#include <ferry/transport/framed_stream.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

namespace ferry::transport {

namespace {

constexpr std::size_t kMaxFreeSmall = 16;
constexpr std::size_t kMaxFreeLarge = 2;

std::string hex_id(std::uint64_t id) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(id));
    return buf;
}

bool is_retry(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

}  // namespace

// ---- FramedWriter ----

FramedWriter::FramedWriter(const Host& host, const TopicParams& params, const FramedWriterOptions& options)
    : host_(&host), params_(params), options_(options), loans_(kFrameHeaderSize, params.max_message_size) {}

FramedWriter::~FramedWriter() = default;

void FramedWriter::forget_all() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, ch] : conns_) forget_locked(*ch);
    conns_.clear();
}

Status FramedWriter::loan(std::size_t size, LoanBuffer& out) noexcept {
    if (size > params_.max_message_size) {
        return Status(Errc::too_large, std::string(options_.name) + ": loan of " + std::to_string(size) + " bytes exceeds max_message_size " +
                                           std::to_string(params_.max_message_size) + " of topic " + params_.topic);
    }
    try {
        loans_.lend(size, out);
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources,
                      std::string(options_.name) + ": cannot allocate a loan of " + std::to_string(size) + " bytes");
    }
}

void FramedWriter::release(LoanBuffer& buf) noexcept { loans_.give_back(buf); }

Status FramedWriter::commit(LoanBuffer& buf, std::size_t size) noexcept {
    std::byte* frame = loans_.open_loan(buf);
    if (frame == nullptr) {
        return Status(Errc::invalid_argument, std::string(options_.name) + ": commit of a buffer that is not an open loan");
    }
    Status result;
    try {
        if (size > params_.max_message_size) {
            result = Status(Errc::too_large, std::string(options_.name) + ": message of " + std::to_string(size) +
                                                 " bytes exceeds max_message_size " +
                                                 std::to_string(params_.max_message_size) + " of topic " + params_.topic);
        } else if (size > buf.capacity) {
            result = Status(Errc::invalid_argument, std::string(options_.name) + ": commit size larger than the loan");
        } else {
            result = deliver(frame, kFrameHeaderSize + size);
        }
    } catch (...) {
        result = Status(Errc::internal, std::string(options_.name) + ": commit failed");
    }
    loans_.give_back(buf);
    return result;
}

void FramedWriter::refresh_snapshot() {
    const std::uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == snapshot_generation_) return;
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_.clear();
    for (auto& [id, ch] : conns_) snapshot_.push_back(ch);
    snapshot_generation_ = generation_.load(std::memory_order_relaxed);
}

// Closing the stream is what keeps a reader from ever delivering a half-written frame: the
// reader sees end-of-file and discards the partial. The next sync opens a new stream.
void FramedWriter::drop(Channel& ch, const char* why) {
    log(*host_, LogLevel::debug,
        std::string(options_.name) + ": writer of " + params_.topic + " drops reader " + hex_id(ch.reader_id) + ": " +
            why);
    // Under mu_: sync_readers reads the descriptors of listed channels (refusals) under it.
    std::lock_guard<std::mutex> lock(mu_);
    ch.dead = true;
    ch.fd.reset();
    auto it = conns_.find(ch.reader_id);
    if (it != conns_.end() && it->second.get() == &ch) {
        forget_locked(ch);
        conns_.erase(it);
        update_count_locked();
        generation_.fetch_add(1, std::memory_order_release);
    }
}

void FramedWriter::update_count_locked() {
    std::size_t n = 0;
    for (const auto& entry : conns_) n += refused_.count(entry.first) == 0 ? 1 : 0;
    count_.store(n, std::memory_order_relaxed);
    refused_count_.store(refused_.size(), std::memory_order_relaxed);
}

void FramedWriter::note_refused_locked(std::uint64_t reader_id, Errc code, std::string why) {
    // Not at once again: a reader that turned us away is retried after a while.
    constexpr auto kRetry = std::chrono::seconds(1);
    if (refused_.count(reader_id) == 0) {
        log(*host_, LogLevel::warn,
            std::string(options_.name) + ": writer of " + params_.topic + ": reader " + hex_id(reader_id) + " " + why);
    }
    refused_[reader_id] = Refused{code, std::move(why), Clock::now() + kRetry};
}

// The stream failed: if its reader said why (refused or dropped us), remember it.
void FramedWriter::check_refused(Channel& ch) {
    std::string why;
    Errc code = Errc::no_resources;
    if (!refused(ch, why, code)) return;
    std::lock_guard<std::mutex> lock(mu_);
    note_refused_locked(ch.reader_id, code, std::move(why));
    update_count_locked();
}

// Sends one frame to every reader. Each put is non-blocking; under block, readers whose
// stream is full are then waited for together, so one commit blocks for at most block_timeout
// in total, and a reader that stayed full that long is "stalled": skipped at once, without
// waiting, until its stream has room for a whole frame again. drop_oldest and fail never wait
// for room; only the rest of a frame larger than the free room (a partial put) is waited for.
Status FramedWriter::deliver(std::byte* frame, std::size_t total) {
    refresh_snapshot();
    FrameHeader header{options_.magic, 0, total - kFrameHeaderSize};
    const auto overflow = params_.overflow;
    const bool drop_oldest = overflow == Overflow::drop_oldest;
    Errc worst = Errc::ok;
    std::size_t full = 0;
    std::size_t torn = 0;
    std::size_t stalled = 0;

    pending_.clear();
    for (auto& sp : snapshot_) {
        Channel& ch = *sp;
        if (ch.dead) continue;
        header.dropped_before = ch.dropped;
        std::memcpy(frame, &header, kFrameHeaderSize);
        const bool no_wait = overflow != Overflow::block || ch.stalled;
        if (no_wait && refuse(ch, total)) {
            // Putting part of it would commit us to wait for the rest.
            if (ch.stalled && !peer_alive(ch)) {
                drop(ch, "reader gone");
            } else if (drop_oldest) {
                ++ch.dropped;  // reported in the next frame's header
            } else {
                worst = overflow == Overflow::fail ? Errc::would_block : Errc::timeout;
                ++full;
                stalled += ch.stalled ? 1 : 0;
            }
            continue;
        }
        const ssize_t n = put(ch, frame, total);
        if (n == static_cast<ssize_t>(total)) {
            ch.dropped = 0;
            ch.stalled = false;
        } else if (n > 0) {
            pending_.push_back({&ch, static_cast<std::size_t>(n)});
        } else if (n < 0 && is_retry(errno)) {
            if (!peer_alive(ch)) {
                drop(ch, "reader gone");
            } else if (drop_oldest) {
                ++ch.dropped;
            } else if (no_wait) {
                worst = overflow == Overflow::fail ? Errc::would_block : Errc::timeout;
                ++full;
                stalled += ch.stalled ? 1 : 0;
            } else {
                pending_.push_back({&ch, 0});
            }
        } else {
            const int err = errno;
            check_refused(ch);
            drop(ch, n < 0 ? std::strerror(err) : options_.closed);
        }
    }

    if (!pending_.empty()) {
        // Under drop_oldest and fail only the rest of a frame is waited for (briefly).
        const auto wait = overflow != Overflow::block
                              ? std::min<Clock::duration>(params_.block_timeout, kPartialFrameGrace)
                              : Clock::duration(params_.block_timeout);
        const auto deadline = Clock::now() + wait;
        while (!pending_.empty()) {
            pfds_.resize(pending_.size());
            for (std::size_t i = 0; i < pending_.size(); ++i) {
                pfds_[i] = pollfd{pending_[i].ch->fd.get(), POLLOUT, 0};
            }
            // A reader that dies while we wait never makes room: look every kAliveCheck.
            constexpr auto kAliveCheck = std::chrono::milliseconds(10);
            const int r = ::poll(pfds_.data(), pfds_.size(),
                                 poll_timeout_ms(std::min<Clock::time_point>(deadline, Clock::now() + kAliveCheck)));
            if (r < 0 && errno != EINTR) break;
            if (r <= 0) {
                if (expired(deadline)) break;
                for (std::size_t i = pending_.size(); i-- > 0;) {
                    if (peer_alive(*pending_[i].ch)) continue;
                    drop(*pending_[i].ch, "reader gone");
                    pending_[i] = pending_.back();
                    pending_.pop_back();
                }
                continue;
            }
            for (std::size_t i = pending_.size(); i-- > 0;) {
                if (pfds_[i].revents == 0) continue;
                Pending& p = pending_[i];
                // This stream's own header: another stream's may have been written meanwhile.
                header.dropped_before = p.ch->dropped;
                std::memcpy(frame, &header, kFrameHeaderSize);
                const ssize_t n = put(*p.ch, frame + p.sent, total - p.sent);
                if (n > 0) {
                    p.sent += static_cast<std::size_t>(n);
                    if (p.sent < total) continue;
                    p.ch->dropped = 0;
                    p.ch->stalled = false;
                } else if (n < 0 && is_retry(errno)) {
                    continue;
                } else {
                    const int err = errno;
                    check_refused(*p.ch);
                    drop(*p.ch, n < 0 ? std::strerror(err) : options_.closed);
                }
                pending_[i] = pending_.back();
                pending_.pop_back();
            }
        }
        for (Pending& p : pending_) {
            if (p.sent == 0) {
                // Only under block: it stayed full for block_timeout.
                ++full;
                p.ch->stalled = true;
                worst = Errc::timeout;
            } else {
                // Half a frame is in the stream: closing it is the only way to keep the reader
                // from ever seeing a torn message.
                drop(*p.ch, "timed out in the middle of a frame");
                ++torn;
                if (drop_oldest) continue;
                worst = Errc::timeout;
            }
        }
    }

    if (worst == Errc::ok && refused_count_.load(std::memory_order_relaxed) != 0) {
        // Listed readers that turned this writer away get nothing: say so, not success.
        std::lock_guard<std::mutex> lock(mu_);
        if (!refused_.empty()) {
            const Refused& first = refused_.begin()->second;
            return Status(first.code, std::string(options_.name) + ": topic " + params_.topic + ": " +
                                          std::to_string(refused_.size()) + " reader(s) refused this writer (reader " +
                                          hex_id(refused_.begin()->first) + " " + first.why + ")");
        }
    }
    if (worst == Errc::ok) return Status::ok();
    undelivered_.fetch_add(full + torn, std::memory_order_relaxed);
    std::string msg = std::string(options_.name) + ": topic " + params_.topic + ": ";
    if (worst == Errc::would_block) {
        msg += std::to_string(full) + " reader(s) had a full " + options_.queue + " (overflow fail)";
    } else {
        msg += std::to_string(full + torn) + " reader(s) stayed full for block_timeout";
        if (stalled) msg += " (" + std::to_string(stalled) + " stalled: skipped until they drain)";
        if (torn) msg += " (" + std::to_string(torn) + " " + options_.torn + ")";
    }
    return Status(worst, std::move(msg));
}

Status FramedWriter::flush(Clock::time_point deadline) noexcept {
    try {
        for (;;) {
            refresh_snapshot();
            std::size_t queued = 0;
            std::size_t readers = 0;
            for (auto& sp : snapshot_) {
                if (sp->dead) continue;
                const std::size_t n = undrained(*sp);
                if (n == 0) continue;
                if (!peer_alive(*sp)) {
                    drop(*sp, "reader gone");
                    continue;
                }
                queued += n;
                ++readers;
            }
            if (queued == 0) return Status::ok();
            if (expired(deadline)) {
                return Status(Errc::timeout, std::string(options_.name) + ": topic " + params_.topic + ": " +
                                                 std::to_string(queued) + " byte(s) not taken by " +
                                                 std::to_string(readers) + " reader(s) when the writer closed");
            }
            // Nothing to wait on for "the reader read": poll gently.
            const auto step = std::chrono::milliseconds(2);
            const auto until = std::min<Clock::time_point>(deadline, Clock::now() + step);
            ::poll(nullptr, 0, poll_timeout_ms(until));
        }
    } catch (...) {
        return Status(Errc::internal, std::string(options_.name) + ": flush failed");
    }
}

void FramedWriter::sync_readers(const std::vector<PeerInfo>& readers) noexcept {
    try {
        std::lock_guard<std::mutex> sync_lock(sync_mu_);
        std::vector<PeerInfo> to_add;
        bool changed = false;
        const auto now = Clock::now();
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto listed = [&](std::uint64_t id) {
                return std::any_of(readers.begin(), readers.end(), [&](const PeerInfo& p) { return p.endpoint_id == id; });
            };
            for (auto it = refused_.begin(); it != refused_.end();) {
                it = listed(it->first) ? std::next(it) : refused_.erase(it);
            }
            for (auto it = conns_.begin(); it != conns_.end();) {
                Channel& ch = *it->second;
                std::string why;
                Errc code = Errc::no_resources;
                if (!listed(it->first)) {
                    forget_locked(ch);
                    it = conns_.erase(it);  // the writer thread closes it with its snapshot
                    changed = true;
                } else if (!ch.dead && refused(ch, why, code)) {
                    note_refused_locked(it->first, code, std::move(why));
                    forget_locked(ch);
                    it = conns_.erase(it);
                    changed = true;
                } else {
                    // A stream opened by an earlier sync and not turned away: the reader took us.
                    if (!ch.dead && refused_.erase(it->first) != 0) changed = true;
                    ++it;
                }
            }
            for (const PeerInfo& p : readers) {
                if (p.endpoint_id == 0 || conns_.count(p.endpoint_id) != 0) continue;
                const auto r = refused_.find(p.endpoint_id);
                if (r == refused_.end() || r->second.retry_at <= now) to_add.push_back(p);
            }
        }
        for (const PeerInfo& p : to_add) {
            std::string error;
            Errc refusal = Errc::ok;
            auto ch = open_channel(p, error, refusal);
            if (!ch) {
                log(*host_, LogLevel::debug, std::string(options_.name) + ": writer of " + params_.topic + ": " + error);
                if (refusal != Errc::ok) {
                    std::lock_guard<std::mutex> lock(mu_);
                    note_refused_locked(p.endpoint_id, refusal, error);
                    changed = true;
                }
                continue;
            }
            ch->reader_id = p.endpoint_id;
            std::lock_guard<std::mutex> lock(mu_);
            conns_.emplace(p.endpoint_id, std::move(ch));
            changed = true;
        }
        if (changed) {
            std::lock_guard<std::mutex> lock(mu_);
            update_count_locked();
            generation_.fetch_add(1, std::memory_order_release);
        }
    } catch (...) {
        log(*host_, LogLevel::error, std::string(options_.name) + ": sync_readers failed for topic " + params_.topic);
    }
}

// ---- ChunkPool ----

void ChunkMemory::operator()(std::byte* p) const noexcept {
    if (size > ChunkPool::kChunkSize) {
        ::munmap(p, size);
    } else {
        delete[] p;
    }
}

ChunkPool::~ChunkPool() {
    for (Chunk* c : all_) delete c;
}

ChunkPool::Chunk* ChunkPool::get_locked(std::size_t need) {
    Chunk* chunk = nullptr;
    if (need <= kChunkSize && !free_small_.empty()) {
        chunk = free_small_.back();
        free_small_.pop_back();
    } else if (need > kChunkSize) {
        auto it = std::find_if(free_large_.begin(), free_large_.end(), [&](Chunk* c) { return c->cap >= need; });
        if (it != free_large_.end()) {
            chunk = *it;
            free_large_.erase(it);
        }
    }
    if (chunk == nullptr) {
        // need <= kFrameHeaderSize + max_message_size: checked before any frame asks for room.
        // Not zeroed: pages the peer never fills are never touched.
        auto fresh = std::make_unique<Chunk>();
        fresh->cap = std::max(need, kChunkSize);
        if (fresh->cap > kChunkSize) {
            void* p = ::mmap(nullptr, fresh->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) throw std::bad_alloc();
            fresh->mem = std::unique_ptr<std::byte[], ChunkMemory>(static_cast<std::byte*>(p), ChunkMemory{fresh->cap});
        } else {
            fresh->mem = std::unique_ptr<std::byte[], ChunkMemory>(new std::byte[fresh->cap], ChunkMemory{fresh->cap});
        }
        all_.insert(fresh.get());
        chunk = fresh.release();
    }
    chunk->attached = true;
    chunk->refs = 0;
    return chunk;
}

void ChunkPool::detach_locked(Chunk* chunk) {
    chunk->attached = false;
    if (chunk->refs == 0) {
        ++chunk->refs;
        release_locked(chunk);
    }
}

void ChunkPool::release_locked(Chunk* chunk) {
    if (--chunk->refs != 0 || chunk->attached) return;
    auto& list = chunk->cap == kChunkSize ? free_small_ : free_large_;
    const std::size_t keep = chunk->cap == kChunkSize ? kMaxFreeSmall : kMaxFreeLarge;
    if (list.size() < keep) {
        list.push_back(chunk);
        return;
    }
    all_.erase(chunk);
    delete chunk;
}

void ChunkPool::release(SampleBuffer& sample) noexcept {
    if (sample.handle != 0) {
        auto guard = lock();
        release_locked(reinterpret_cast<Chunk*>(sample.handle));
    }
    sample = SampleBuffer{};
}

// ---- RecvStream ----

void RecvStream::prepare_space(ChunkPool& pool) {
    auto guard = pool.lock();
    if (chunk != nullptr && pos == fill) {
        if (chunk->refs == 0 && chunk->cap >= need) {
            pos = fill = 0;
            return;
        }
        pool.detach_locked(chunk);
        chunk = nullptr;
    }
    if (chunk == nullptr) {
        chunk = pool.get_locked(need);
        pos = fill = 0;
        return;
    }
    if (pos + need <= chunk->cap) return;
    const std::size_t partial = fill - pos;
    if (chunk->refs == 0 && need <= chunk->cap) {
        std::memmove(chunk->mem.get(), chunk->mem.get() + pos, partial);
    } else {
        ChunkPool::Chunk* bigger = pool.get_locked(need);
        std::memcpy(bigger->mem.get(), chunk->mem.get() + pos, partial);
        pool.detach_locked(chunk);
        chunk = bigger;
    }
    pos = 0;
    fill = partial;
}

void RecvStream::detach(ChunkPool& pool) {
    if (chunk == nullptr) return;
    auto guard = pool.lock();
    pool.detach_locked(chunk);
}

FrameParse parse_frame(RecvStream& s, ChunkPool& pool, std::uint32_t magic, std::uint64_t max_message_size,
                       SampleBuffer& out, std::string& why, std::atomic<std::uint64_t>& lost) {
    const std::size_t avail = s.fill - s.pos;
    const std::byte* p = s.chunk->mem.get() + s.pos;
    FrameHeader header;
    std::memcpy(&header, p, sizeof header);
    if (header.magic != magic) {
        why = "corrupt frame header";
        return FrameParse::bad;
    }
    if (header.size > max_message_size) {
        why = "frame of " + std::to_string(header.size) + " bytes exceeds max_message_size " +
              std::to_string(max_message_size);
        return FrameParse::bad;
    }
    const std::size_t total = kFrameHeaderSize + static_cast<std::size_t>(header.size);
    if (avail < total) {
        s.need = total;
        return FrameParse::incomplete;
    }
    out.data = p + kFrameHeaderSize;
    out.size = static_cast<std::size_t>(header.size);
    out.handle = reinterpret_cast<std::uint64_t>(s.chunk);
    {
        auto guard = pool.lock();
        ++s.chunk->refs;
    }
    s.pos += total;
    s.need = kFrameHeaderSize;
    if (header.dropped_before != 0) lost.fetch_add(header.dropped_before, std::memory_order_relaxed);
    return FrameParse::frame;
}

// ---- DropOldestRing ----

void DropOldestRing::push(const SampleBuffer& s, ChunkPool& pool, std::atomic<std::uint64_t>& lost) {
    SampleBuffer oldest;
    if (!q_.push(s, oldest)) return;
    lost.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> chunks_lock(pool.mutex());
    pool.release_locked(reinterpret_cast<ChunkPool::Chunk*>(oldest.handle));
}

Status DropOldestRing::take(SampleBuffer& out, Clock::time_point deadline, const char* name) {
    switch (q_.pop(out, deadline)) {
        case Errc::ok: return Status::ok();
        case Errc::closed: return Status(Errc::closed, std::string(name) + ": reader interrupted");
        case Errc::would_block: return Status(Errc::would_block, std::string(name) + ": no message");
        default: return Status(Errc::timeout, std::string(name) + ": no message before the deadline");
    }
}

// ---- budget and throttled logging ----

std::size_t reader_budget(const TopicParams& params) noexcept {
    const std::size_t frame = kFrameHeaderSize + params.max_message_size;
    const std::size_t budget = params.reader_buffer_budget != 0
                                   ? params.reader_buffer_budget
                                   : std::max<std::size_t>(4 * params.max_message_size, std::size_t{8} << 20);
    return std::max(budget, 2 * frame);
}

bool LogThrottle::due(std::uint64_t& count) noexcept {
    ++pending_;
    const auto now = Clock::now();
    if (now < next_) return false;
    next_ = now + std::chrono::seconds(1);
    count = pending_;
    pending_ = 0;
    return true;
}

// ---- epoll and eventfd ----

bool epoll_watch(int epfd, int fd, std::uint64_t tag) noexcept {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    return ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void epoll_set_watched(int epfd, int fd, std::uint64_t tag, bool watch, bool& registered) noexcept {
    if (watch == registered) return;
    if (!watch) {
        ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
        registered = false;
    } else if (epoll_watch(epfd, fd, tag)) {
        registered = true;
    }
}

void signal_eventfd(int fd) noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

// ---- FramedStreamReader ----

FramedStreamReader::FramedStreamReader(const Host& host, const TopicParams& params, const FramedReaderOptions& options,
                                       std::string label)
    : host_(&host), params_(params), options_(options), label_(std::move(label)), budget_(reader_budget(params)) {}

FramedStreamReader::~FramedStreamReader() { streams_.clear(); }

Status FramedStreamReader::init() {
    wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_.valid()) {
        const int err = errno;
        return os_error(errc_from_errno(err), std::string(options_.name) + ": cannot create eventfd", err);
    }
    epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_fd_.valid() || !epoll_watch(epoll_fd_.get(), wake_fd_.get(), kWakeTag)) {
        const int err = errno;
        return os_error(errc_from_errno(err), std::string(options_.name) + ": cannot create epoll set", err);
    }
    return Status::ok();
}

void FramedStreamReader::start() {
    if (params_.overflow != Overflow::drop_oldest) return;
    ring_.init(params_.depth);
    drain_ = std::thread([this] { drain_loop(); });
}

void FramedStreamReader::stop() noexcept {
    if (!drain_.joinable()) return;
    signal_eventfd(wake_fd_.get());
    drain_.join();
}

bool FramedStreamReader::watch(int fd, std::uint64_t tag) noexcept { return epoll_watch(epoll_fd_.get(), fd, tag); }

void FramedStreamReader::unwatch(int fd) noexcept { ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void FramedStreamReader::interrupt() noexcept {
    interrupted_.store(true);
    if (drain_.joinable()) {
        ring_.close();
    } else {
        signal_eventfd(wake_fd_.get());
    }
}

Status FramedStreamReader::take(SampleBuffer& out, Clock::time_point deadline) noexcept {
    if (interrupted_.load(std::memory_order_relaxed)) {
        return Status(Errc::closed, std::string(options_.name) + ": reader interrupted");
    }
    try {
        if (drain_.joinable()) return ring_.take(out, deadline, options_.name);
        switch (receive(out, deadline)) {
            case Recv::frame: return Status::ok();
            case Recv::closed: return Status(Errc::closed, std::string(options_.name) + ": reader interrupted");
            case Recv::would_block: return Status(Errc::would_block, std::string(options_.name) + ": no message");
            case Recv::timeout:
                return Status(Errc::timeout, std::string(options_.name) + ": no message before the deadline");
            case Recv::error: break;
        }
        return os_error(Errc::io_error, std::string(options_.name) + ": epoll_wait failed for " + label_, errno);
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string(options_.name) + ": take failed: " + e.what());
    }
}

void FramedStreamReader::release(SampleBuffer& sample) noexcept { pool_.release(sample); }

void FramedStreamReader::drain_loop() {
    SampleBuffer s;
    for (;;) {
        Recv r;
        try {
            r = receive(s, Clock::now() + std::chrono::hours(24));
        } catch (const std::exception& e) {
            log(*host_, LogLevel::error, std::string(options_.name) + ": drain thread of " + label_ + ": " + e.what());
            continue;
        }
        if (r == Recv::closed) return;
        if (r == Recv::error) {
            log(*host_, LogLevel::error,
                std::string(options_.name) + ": drain thread of " + label_ + ": epoll_wait failed: " + std::strerror(errno));
            return;
        }
        if (r == Recv::frame) ring_.push(s, pool_, lost_);
    }
}

// With data at hand no clock is read: the deadline only matters once there is nothing to take.
FramedStreamReader::Recv FramedStreamReader::receive(SampleBuffer& out, Clock::time_point deadline) {
    epoll_event events[16];
    bool first_wait = true;
    bool nonblocking = false;
    bool idled = false;
    for (;;) {
        if (try_parse_any(out)) return Recv::frame;
        if (options_.read_ahead && last_ != nullptr && ahead_) {
            // The stream that delivered last is the likeliest to have more: one read, no epoll.
            Stream* stream = last_;
            last_ = nullptr;
            const Read rd = read_stream(*stream);
            if (rd == Read::data) {
                last_ = stream;
                continue;
            }
            ahead_ = false;  // the writer is not ahead of us: wait in epoll_wait
            if (rd == Read::eof) {
                mark_ended(*stream);
                continue;
            }
        }
        const auto until = wake_by(deadline);
        const int timeout = poll_timeout_ms(deadline);
        if (first_wait) nonblocking = timeout == 0;
        first_wait = false;
        const int r = ::epoll_wait(epoll_fd_.get(), events, 16, until < deadline ? poll_timeout_ms(until) : timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            return Recv::error;
        }
        if (r == 0) {
            if (timeout == 0 || expired(deadline)) {
                if (!idled) {
                    idled = true;
                    if (on_idle()) continue;
                }
                return nonblocking ? Recv::would_block : Recv::timeout;
            }
            continue;
        }
        std::uint32_t fired = 0;
        ready_.clear();
        for (int i = 0; i < r; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            if (tag == kWakeTag) return Recv::closed;
            if (tag <= kMaxMechanismTag) {
                fired |= std::uint32_t{1} << tag;
            } else {
                ready_.push_back(reinterpret_cast<Stream*>(tag));
            }
        }
        for (Stream* stream : ready_) {
            if (stream->ended) continue;
            const Read rd = read_stream(*stream);
            if (rd == Read::data) last_ = stream;
            if (rd == Read::eof) mark_ended(*stream);
        }
        close_finished();
        if (fired != 0) on_events(fired);
    }
}

// Ended streams that hold no whole frame go now (not while ready_ pointed at them), so that
// what they held is free before the mechanism takes new streams.
void FramedStreamReader::close_finished() {
    for (std::size_t i = streams_.size(); i-- > 0;) {
        Stream* stream = streams_[i].get();
        const std::size_t avail = stream->in.avail();
        if (stream->ended && (avail < kFrameHeaderSize || avail < stream->in.need)) close_stream(stream, avail != 0);
    }
}

bool FramedStreamReader::try_parse_any(SampleBuffer& out) {
    for (;;) {
        // Greetings first and in arrival order: every stream knows its writer, and so whether
        // it must wait behind an older one, before any frame is taken.
        bool rescan = false;
        for (std::size_t i = 0; i < streams_.size() && !rescan; ++i) {
            Stream& stream = *streams_[i];
            if (stream.greeted || stream.in.avail() < kFrameHeaderSize) continue;
            std::string why;
            if (greet(stream, why)) {
                stream.greeted = true;
                interest_dirty_ = true;  // may now be blocked behind an older stream of the same writer
            } else {
                drop_bad(&stream, why);
                rescan = true;
            }
        }
        if (rescan) continue;
        if (interest_dirty_) update_interest();
        const std::size_t n = streams_.size();
        for (std::size_t k = 0; k < n && !rescan; ++k) {
            const std::size_t i = (rr_ + k) % n;
            Stream& stream = *streams_[i];
            if (!stream.greeted || stream.blocked) continue;
            if (stream.in.avail() < kFrameHeaderSize) {
                if (stream.ended) {
                    close_stream(&stream, stream.in.avail() != 0);
                    rescan = true;
                }
                continue;
            }
            std::string why;
            const std::size_t before = stream.in.avail();
            switch (parse_frame(stream.in, pool_, options_.magic, params_.max_message_size, out, why, lost_)) {
                case FrameParse::frame:
                    held_ -= before - stream.in.avail();
                    rr_ = i + 1;
                    // More bytes already behind this frame: the writer is ahead of us.
                    if (stream.in.fill != stream.in.pos) ahead_ = true;
                    on_frame(stream);
                    return true;
                case FrameParse::incomplete:
                    if (stream.ended) {
                        close_stream(&stream, true);  // a killed writer's partial frame
                        rescan = true;
                    }
                    break;
                case FrameParse::bad:
                    drop_bad(&stream, why);
                    rescan = true;
                    break;
            }
        }
        if (!rescan) return false;
    }
}

void FramedStreamReader::drop_bad(Stream* stream, const std::string& why) {
    log(*host_, LogLevel::warn,
        std::string(options_.name) + ": " + label_ + " drops " + describe(*stream) + ": " + why);
    close_stream(stream, true, true);
}

FramedStreamReader::Read FramedStreamReader::read_stream(Stream& stream, std::size_t limit) {
    RecvStream& in = stream.in;
    if (held_ >= budget_) shed_over_budget();
    if (stream.ended) return Read::again;  // shed just now
    // Never more than the budget has room for: what all streams hold unparsed stays bounded
    // whatever the writers send, and a reader's memory with it.
    const std::size_t room = budget_ > held_ ? budget_ - held_ : 0;
    if (room == 0) return Read::data;  // only whole frames are held: taking them makes room
    in.prepare_space(pool_);
    if (in.fill == in.chunk->cap) return Read::data;  // a whole frame is waiting to be parsed
    const std::size_t len = std::min({in.chunk->cap - in.fill, room, limit});
    for (;;) {
        const ssize_t n = ::read(stream.fd.get(), in.chunk->mem.get() + in.fill, len);
        if (n > 0) {
            in.fill += static_cast<std::size_t>(n);
            held_ += static_cast<std::size_t>(n);
            return Read::data;
        }
        if (n == 0) return Read::eof;  // the writer closed its end or died
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? Read::again : Read::eof;
    }
}

void FramedStreamReader::consume(Stream& stream, std::size_t n) noexcept {
    stream.in.pos += n;
    held_ -= n;
}

FramedStreamReader::Stream* FramedStreamReader::add_stream(std::unique_ptr<Stream> stream) {
    if (!epoll_watch(epoll_fd_.get(), stream->fd.get(), reinterpret_cast<std::uint64_t>(stream.get()))) {
        const int err = errno;
        stream.reset();
        errno = err;
        return nullptr;
    }
    stream->registered = true;
    streams_.push_back(std::move(stream));
    interest_dirty_ = true;
    return streams_.back().get();
}

void FramedStreamReader::mark_ended(Stream& stream) noexcept {
    stream.ended = true;
    if (last_ == &stream) last_ = nullptr;
    interest_dirty_ = true;
}

void FramedStreamReader::close_stream(Stream* stream, bool torn, bool garbage) {
    if (torn) lost_.fetch_add(1, std::memory_order_relaxed);
    if (last_ == stream) last_ = nullptr;
    const auto it =
        std::find_if(streams_.begin(), streams_.end(), [&](const auto& s) { return s.get() == stream; });
    if (it == streams_.end()) return;
    // Explicitly: a forked child may share the descriptor, and then close() would not
    // remove it from the epoll set.
    if (stream->registered) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, stream->fd.get(), nullptr);
    held_ -= stream->in.avail();
    stream->in.detach(pool_);
    std::unique_ptr<Stream> gone = std::move(*it);
    streams_.erase(it);
    interest_dirty_ = true;
    on_closed(*gone, garbage);
}

// Over budget: the stream holding the most unparsed bytes of an incomplete frame goes (see
// shed_before for equals): its bytes are dropped and counted as one lost message.
void FramedStreamReader::shed_over_budget() {
    while (held_ >= budget_) {
        Stream* victim = nullptr;
        for (auto& s : streams_) {
            Stream& stream = *s;
            const std::size_t avail = stream.in.avail();
            if (stream.ended || avail == 0 || (avail >= kFrameHeaderSize && avail >= stream.in.need)) continue;
            if (victim == nullptr || avail > victim->in.avail() ||
                (avail == victim->in.avail() && shed_before(stream, *victim))) {
                victim = &stream;
            }
        }
        if (victim == nullptr) return;  // only whole frames are held: taking them makes room
        held_ -= victim->in.avail();
        victim->in.pos = victim->in.fill;
        lost_.fetch_add(1, std::memory_order_relaxed);
        mark_ended(*victim);
        on_shed(*victim);
        std::uint64_t count = 0;
        if (budget_log_.due(count)) {
            log(*host_, LogLevel::warn,
                std::string(options_.name) + ": " + label_ + " over its buffer budget of " + std::to_string(budget_) +
                    " bytes: dropped " + std::to_string(count) + " " + options_.stream +
                    "(s) holding the largest incomplete frame");
        }
    }
}

// A stream waits (is not watched nor parsed) while an older stream of the same writer is
// open: that keeps per-writer order when a writer opened a new stream while its previous one
// still held frames.
void FramedStreamReader::update_interest() {
    first_of_writer_.clear();
    for (auto& s : streams_) {
        Stream& stream = *s;
        stream.blocked = stream.greeted && !first_of_writer_.insert(stream.writer_id).second;
        epoll_set_watched(epoll_fd_.get(), stream.fd.get(), reinterpret_cast<std::uint64_t>(&stream),
                          !stream.blocked && !stream.ended, stream.registered);
    }
    interest_dirty_ = false;
}

}  // namespace ferry::transport
