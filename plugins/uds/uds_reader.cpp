#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "uds_transport.hpp"

namespace ferry::uds {

namespace {

// One recv usually brings a whole frame (core header + payload up to ~256 KiB) or a burst.
constexpr std::size_t kChunkSize = 256 * 1024;
constexpr std::size_t kMaxFreeSmall = 16;
constexpr std::size_t kMaxFreeLarge = 2;
constexpr std::size_t kMaxConnections = 1024;
constexpr int kAcceptBatch = 64;  // per wake-up, so a connection storm cannot starve the frames
// epoll tags of the two fixed descriptors; connections are tagged with their Conn*.
constexpr std::uint64_t kWakeTag = 1;
constexpr std::uint64_t kListenTag = 2;

bool epoll_add(int epfd, int fd, std::uint64_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    return ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

}  // namespace

UdsReader::UdsReader(const Host& host, const TopicParams& params)
    : host_(&host), params_(params), path_(socket_path(params, params.endpoint_id)) {}

Status UdsReader::create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out) {
    std::unique_ptr<UdsReader> r(new UdsReader(host, params));
    r->listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!r->listen_fd_.valid()) {
        return transport::os_error(transport::errc_from_errno(errno), "uds: cannot create socket for " + r->path_, errno);
    }
    UnixAddress addr;
    if (auto st = addr.init(r->path_); !st) return st;
    if (::bind(r->listen_fd_.get(), addr.get(), addr.size()) != 0) {
        // Our endpoint id carries our pid, so an existing file is left over by a dead process
        // that had the same pid: it is stale.
        if (errno != EADDRINUSE || ::unlink(r->path_.c_str()) != 0 ||
            ::bind(r->listen_fd_.get(), addr.get(), addr.size()) != 0) {
            return transport::os_error(transport::errc_from_errno(errno), "uds: cannot bind " + r->path_, errno);
        }
    }
    // bind() honours the umask; fix the mode before listen() so nobody can connect meanwhile.
    if (::chmod(r->path_.c_str(), params.mode & 07777) != 0 || ::listen(r->listen_fd_.get(), SOMAXCONN) != 0) {
        const int err = errno;
        ::unlink(r->path_.c_str());
        return transport::os_error(transport::errc_from_errno(err), "uds: cannot listen on " + r->path_, err);
    }
    r->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!r->wake_fd_.valid()) {
        const int err = errno;
        ::unlink(r->path_.c_str());
        return transport::os_error(transport::errc_from_errno(err), "uds: cannot create eventfd", err);
    }
    r->epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!r->epoll_fd_.valid() || !epoll_add(r->epoll_fd_.get(), r->wake_fd_.get(), kWakeTag) ||
        !epoll_add(r->epoll_fd_.get(), r->listen_fd_.get(), kListenTag)) {
        const int err = errno;
        ::unlink(r->path_.c_str());
        return transport::os_error(transport::errc_from_errno(err), "uds: cannot create epoll set", err);
    }
    if (params.overflow == transport::Overflow::drop_oldest) {
        r->threaded_ = true;
        r->ring_.resize(params.depth);
        r->drain_ = std::thread([raw = r.get()] { raw->drain_loop(); });
    }
    out = std::move(r);
    return Status::ok();
}

UdsReader::~UdsReader() {
    if (drain_.joinable()) {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
        drain_.join();
    }
    listen_fd_.reset();
    ::unlink(path_.c_str());
    conns_.clear();
    for (Chunk* c : all_chunks_) delete c;
}

void UdsReader::interrupt() noexcept {
    interrupted_.store(true);
    if (drain_.joinable()) {
        { std::lock_guard<std::mutex> lock(queue_mu_); }
        queue_cv_.notify_all();
    } else {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
    }
}

void UdsReader::sync_writers(const std::vector<PeerInfo>&) noexcept {
    // Nothing to attach to: writers connect to us. A writer that dies closes its connection
    // (the kernel does it on SIGKILL) and its partial frame is discarded at EOF.
}

Status UdsReader::take(SampleBuffer& out, Clock::time_point deadline) noexcept {
    if (interrupted_.load(std::memory_order_relaxed)) return Status(Errc::closed, "uds: reader interrupted");
    const bool nonblocking = deadline <= Clock::now();
    try {
        if (drain_.joinable()) return take_queued(out, deadline, nonblocking);
        switch (receive(out, deadline)) {
            case Recv::frame: return Status::ok();
            case Recv::closed: return Status(Errc::closed, "uds: reader interrupted");
            case Recv::timeout:
                if (nonblocking) return Status(Errc::would_block, "uds: no message");
                return Status(Errc::timeout, "uds: no message before the deadline");
            case Recv::error: break;
        }
        return transport::os_error(Errc::io_error, "uds: epoll_wait on " + path_ + " failed", errno);
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("uds: take failed: ") + e.what());
    }
}

void UdsReader::release(SampleBuffer& sample) noexcept {
    if (sample.handle != 0) {
        auto lock = pool_lock();
        release_locked(reinterpret_cast<Chunk*>(sample.handle));
    }
    sample = SampleBuffer{};
}

// ---- drop_oldest: a drain thread keeps the newest `depth` frames ----

void UdsReader::drain_loop() {
    SampleBuffer s;
    for (;;) {
        const Recv r = receive(s, Clock::now() + std::chrono::hours(24));
        if (r == Recv::closed) return;
        if (r == Recv::error) {
            transport::log(*host_, transport::LogLevel::error,
                           "uds: drain thread of " + path_ + ": epoll_wait failed: " + std::strerror(errno));
            return;
        }
        if (r != Recv::frame) continue;
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            const std::size_t depth = ring_.size();
            if (count_ == depth) {
                SampleBuffer oldest = ring_[head_];
                head_ = (head_ + 1) % depth;
                --count_;
                lost_.fetch_add(1, std::memory_order_relaxed);
                std::lock_guard<std::mutex> chunks_lock(pool_mu_);
                release_locked(reinterpret_cast<Chunk*>(oldest.handle));
            }
            ring_[(head_ + count_) % depth] = s;
            ++count_;
        }
        queue_cv_.notify_one();
    }
}

Status UdsReader::take_queued(SampleBuffer& out, Clock::time_point deadline, bool nonblocking) {
    std::unique_lock<std::mutex> lock(queue_mu_);
    // Bound the wait so that a far-away deadline cannot overflow inside the condition variable.
    const auto limit = Clock::now() + std::chrono::hours(24 * 365);
    const auto until = deadline < limit ? deadline : limit;
    while (count_ == 0 && !interrupted_.load() && Clock::now() < until) queue_cv_.wait_until(lock, until);
    if (interrupted_.load()) return Status(Errc::closed, "uds: reader interrupted");
    if (count_ == 0) {
        if (nonblocking) return Status(Errc::would_block, "uds: no message");
        return Status(Errc::timeout, "uds: no message before the deadline");
    }
    out = ring_[head_];
    head_ = (head_ + 1) % ring_.size();
    --count_;
    return Status::ok();
}

// ---- receiving frames from the connections ----

UdsReader::Recv UdsReader::receive(SampleBuffer& out, Clock::time_point deadline) {
    epoll_event events[16];
    for (;;) {
        if (try_parse_any(out)) return Recv::frame;
        const int r = ::epoll_wait(epoll_fd_.get(), events, 16, transport::poll_timeout_ms(deadline));
        if (r < 0) {
            if (errno == EINTR) continue;
            return Recv::error;
        }
        if (r == 0) {
            if (transport::expired(deadline)) return Recv::timeout;
            continue;
        }
        bool pending_accept = false;
        ready_.clear();
        for (int i = 0; i < r; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            if (tag == kWakeTag) return Recv::closed;
            if (tag == kListenTag) {
                pending_accept = true;
            } else {
                ready_.push_back(reinterpret_cast<Conn*>(tag));
            }
        }
        for (Conn* conn : ready_) {
            if (read_conn(*conn)) continue;
            const auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& c) { return c.get() == conn; });
            close_conn(static_cast<std::size_t>(it - conns_.begin()), conn->pos != conn->fill);
        }
        if (pending_accept) accept_all();
    }
}

bool UdsReader::try_parse_any(SampleBuffer& out) {
    for (;;) {
        // Greetings first and in accept order: every connection knows its writer, and so
        // whether it must wait behind an older one, before any frame is taken.
        bool rescan = false;
        for (std::size_t i = 0; i < conns_.size() && !rescan; ++i) {
            Conn& conn = *conns_[i];
            if (conn.hello || conn.chunk == nullptr || conn.fill - conn.pos < kHeaderSize) continue;
            std::string why;
            if (try_parse(conn, out, why) == Parse::bad) {
                transport::log(*host_, transport::LogLevel::warn, "uds: reader " + path_ + " drops a connection: " + why);
                close_conn(i, true);
                rescan = true;
            }
        }
        if (rescan) continue;
        if (interest_dirty_) update_interest();
        const std::size_t n = conns_.size();
        for (std::size_t k = 0; k < n && !rescan; ++k) {
            const std::size_t i = (rr_ + k) % n;
            Conn& conn = *conns_[i];
            if (!conn.hello || conn.blocked || conn.fill - conn.pos < kHeaderSize) continue;
            std::string why;
            switch (try_parse(conn, out, why)) {
                case Parse::frame:
                    rr_ = i + 1;
                    return true;
                case Parse::incomplete:
                case Parse::hello: break;
                case Parse::bad:
                    transport::log(*host_, transport::LogLevel::warn,
                                   "uds: reader " + path_ + " drops a connection: " + why);
                    close_conn(i, true);
                    rescan = true;
                    break;
            }
        }
        if (!rescan) return false;
    }
}

UdsReader::Parse UdsReader::try_parse(Conn& conn, SampleBuffer& out, std::string& why) {
    const std::size_t avail = conn.fill - conn.pos;
    const std::byte* p = conn.chunk->mem.get() + conn.pos;
    if (!conn.hello) {
        Hello hello;
        std::memcpy(&hello, p, sizeof hello);
        if (hello.magic != kHelloMagic || hello.version != kWireVersion) {
            why = "not a ferry uds writer (bad greeting)";
            return Parse::bad;
        }
        conn.hello = true;
        conn.writer_id = hello.writer_id;
        conn.pos += sizeof hello;
        interest_dirty_ = true;  // may now be blocked behind an older connection of the same writer
        return Parse::hello;
    }
    FrameHeader header;
    std::memcpy(&header, p, sizeof header);
    if (header.magic != kFrameMagic) {
        why = "corrupt frame header";
        return Parse::bad;
    }
    if (header.size > params_.max_message_size) {
        why = "frame of " + std::to_string(header.size) + " bytes exceeds max_message_size " +
              std::to_string(params_.max_message_size);
        return Parse::bad;
    }
    const std::size_t total = kHeaderSize + static_cast<std::size_t>(header.size);
    if (avail < total) {
        conn.need = total;
        return Parse::incomplete;
    }
    out.data = p + kHeaderSize;
    out.size = static_cast<std::size_t>(header.size);
    out.handle = reinterpret_cast<std::uint64_t>(conn.chunk);
    {
        auto lock = pool_lock();
        ++conn.chunk->refs;
    }
    conn.pos += total;
    conn.need = kHeaderSize;
    if (header.dropped_before != 0) lost_.fetch_add(header.dropped_before, std::memory_order_relaxed);
    return Parse::frame;
}

// Makes room after conn.fill for the rest of the frame at conn.pos (conn.need bytes in all).
void UdsReader::prepare_space(Conn& conn) {
    auto lock = pool_lock();
    Chunk* chunk = conn.chunk;
    if (chunk != nullptr && conn.pos == conn.fill) {
        if (chunk->refs == 0 && chunk->cap >= conn.need) {
            conn.pos = conn.fill = 0;
            return;
        }
        detach_locked(chunk);
        chunk = conn.chunk = nullptr;
    }
    if (chunk == nullptr) {
        conn.chunk = get_chunk_locked(conn.need);
        conn.pos = conn.fill = 0;
        return;
    }
    if (conn.pos + conn.need <= chunk->cap) return;
    const std::size_t partial = conn.fill - conn.pos;
    if (chunk->refs == 0 && conn.need <= chunk->cap) {
        std::memmove(chunk->mem.get(), chunk->mem.get() + conn.pos, partial);
    } else {
        Chunk* bigger = get_chunk_locked(conn.need);
        std::memcpy(bigger->mem.get(), chunk->mem.get() + conn.pos, partial);
        detach_locked(chunk);
        conn.chunk = bigger;
    }
    conn.pos = 0;
    conn.fill = partial;
}

// Returns false once the connection is finished (EOF or error).
bool UdsReader::read_conn(Conn& conn) {
    prepare_space(conn);
    Chunk* chunk = conn.chunk;
    const ssize_t n = ::recv(conn.fd.get(), chunk->mem.get() + conn.fill, chunk->cap - conn.fill, MSG_DONTWAIT);
    if (n > 0) {
        conn.fill += static_cast<std::size_t>(n);
        return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

void UdsReader::accept_all() {
    for (int accepted = 0; accepted < kAcceptBatch; ++accepted) {
        UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd.valid()) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                transport::log(*host_, transport::LogLevel::warn,
                               "uds: reader " + path_ + " cannot accept: " + std::strerror(errno));
            }
            break;
        }
        if (conns_.size() >= kMaxConnections) {
            transport::log(*host_, transport::LogLevel::warn,
                           "uds: reader " + path_ + " refuses a connection: too many writers");
            continue;
        }
        auto conn = std::make_unique<Conn>();
        conn->fd = std::move(fd);
        if (!epoll_add(epoll_fd_.get(), conn->fd.get(), reinterpret_cast<std::uint64_t>(conn.get()))) {
            transport::log(*host_, transport::LogLevel::warn,
                           "uds: reader " + path_ + " cannot watch a connection: " + std::strerror(errno));
            continue;
        }
        conn->registered = true;
        conns_.push_back(std::move(conn));
    }
    // A writer greets right after connect(), so an older connection's greeting is already in
    // its socket when a newer one is accepted: reading greetings now (of every connection that
    // has none yet) gives connections their writer id in accept order.
    for (auto& conn : conns_) {
        if (conn->hello) continue;
        prepare_space(*conn);
        const std::size_t have = conn->fill - conn->pos;
        if (have >= kHeaderSize) continue;
        const ssize_t n = ::recv(conn->fd.get(), conn->chunk->mem.get() + conn->fill, kHeaderSize - have, MSG_DONTWAIT);
        if (n > 0) conn->fill += static_cast<std::size_t>(n);
    }
}

void UdsReader::close_conn(std::size_t index, bool torn) {
    if (torn) lost_.fetch_add(1, std::memory_order_relaxed);
    Conn& conn = *conns_[index];
    // Explicitly: a forked child may share the descriptor, and then close() would not
    // remove it from the epoll set.
    if (conn.registered) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, conn.fd.get(), nullptr);
    if (conn.chunk != nullptr) {
        auto lock = pool_lock();
        detach_locked(conn.chunk);
    }
    conns_.erase(conns_.begin() + static_cast<std::ptrdiff_t>(index));
    interest_dirty_ = true;
}

// A connection waits (is not watched nor parsed) while an older connection of the same writer
// is open: that keeps per-writer order when a writer reconnected while its previous
// connection still held frames.
void UdsReader::update_interest() {
    first_of_writer_.clear();
    for (auto& c : conns_) {
        Conn& conn = *c;
        conn.blocked = conn.hello && !first_of_writer_.insert(conn.writer_id).second;
        if (conn.blocked == !conn.registered) continue;
        if (conn.blocked) {
            ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, conn.fd.get(), nullptr);
            conn.registered = false;
        } else if (epoll_add(epoll_fd_.get(), conn.fd.get(), reinterpret_cast<std::uint64_t>(&conn))) {
            conn.registered = true;
        }
    }
    interest_dirty_ = false;
}

// ---- chunk pool (pool_mu_ held) ----

UdsReader::Chunk* UdsReader::get_chunk_locked(std::size_t need) {
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
        // need <= kHeaderSize + max_message_size: checked before any frame asks for room.
        // Not zeroed: pages the peer never fills are never touched.
        auto fresh = std::make_unique<Chunk>();
        fresh->cap = std::max(need, kChunkSize);
        fresh->mem.reset(new std::byte[fresh->cap]);
        all_chunks_.insert(fresh.get());
        chunk = fresh.release();
    }
    chunk->attached = true;
    chunk->refs = 0;
    return chunk;
}

void UdsReader::detach_locked(Chunk* chunk) {
    chunk->attached = false;
    if (chunk->refs == 0) {
        ++chunk->refs;
        release_locked(chunk);
    }
}

void UdsReader::release_locked(Chunk* chunk) {
    if (--chunk->refs != 0 || chunk->attached) return;
    auto& list = chunk->cap == kChunkSize ? free_small_ : free_large_;
    const std::size_t keep = chunk->cap == kChunkSize ? kMaxFreeSmall : kMaxFreeLarge;
    if (list.size() < keep) {
        list.push_back(chunk);
        return;
    }
    all_chunks_.erase(chunk);
    delete chunk;
}

}  // namespace ferry::uds
