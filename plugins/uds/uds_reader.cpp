#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "uds_transport.hpp"

namespace ferry::uds {

namespace {

constexpr std::size_t kMaxConnections = 1024;
constexpr int kAcceptBatch = 64;  // per wake-up, so a connection storm cannot starve the frames
// Out of descriptors with nothing to give up: the listening socket rests this long.
constexpr auto kListenPause = std::chrono::milliseconds(100);
// A connection that sent frames but none for this long may make room for a new one.
constexpr auto kIdleEvictable = std::chrono::seconds(10);
// Connections held by all uds readers of this process: together at most half of what
// RLIMIT_NOFILE allows, so that a flood never takes the descriptors the rest of the process
// needs (its other topics, discovery reading /proc).
std::atomic<std::size_t> g_process_conns{0};

std::size_t process_conn_cap() noexcept {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
    return static_cast<std::size_t>(rl.rlim_cur / 2);
}

// epoll tags of the two fixed descriptors; connections are tagged with their Conn*.
constexpr std::uint64_t kWakeTag = 1;
constexpr std::uint64_t kListenTag = 2;

using transport::epoll_watch;

}  // namespace

UdsReader::UdsReader(const Host& host, const TopicParams& params)
    : host_(&host),
      params_(params),
      path_(socket_path(params, params.endpoint_id)),
      budget_(transport::reader_budget(params)),
      uid_(::geteuid()),
      spare_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

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
    if (!r->epoll_fd_.valid() || !epoll_watch(r->epoll_fd_.get(), r->wake_fd_.get(), kWakeTag) ||
        !epoll_watch(r->epoll_fd_.get(), r->listen_fd_.get(), kListenTag)) {
        const int err = errno;
        ::unlink(r->path_.c_str());
        return transport::os_error(transport::errc_from_errno(err), "uds: cannot create epoll set", err);
    }
    if (params.overflow == transport::Overflow::drop_oldest) {
        r->threaded_ = true;
        r->pool_.set_shared(true);
        r->ring_.init(params.depth);
        r->drain_ = std::thread([raw = r.get()] { raw->drain_loop(); });
    }
    out = std::move(r);
    return Status::ok();
}

UdsReader::~UdsReader() {
    if (drain_.joinable()) {
        transport::signal_eventfd(wake_fd_.get());
        drain_.join();
    }
    listen_fd_.reset();
    ::unlink(path_.c_str());
    g_process_conns.fetch_sub(conns_.size(), std::memory_order_relaxed);
    conns_.clear();
}

void UdsReader::interrupt() noexcept {
    interrupted_.store(true);
    if (drain_.joinable()) {
        ring_.close();
    } else {
        transport::signal_eventfd(wake_fd_.get());
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
        if (drain_.joinable()) return ring_.take(out, deadline, "uds");
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

void UdsReader::release(SampleBuffer& sample) noexcept { pool_.release(sample); }

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
        if (r == Recv::frame) ring_.push(s, pool_, lost_);
    }
}

// ---- receiving frames from the connections ----

UdsReader::Recv UdsReader::receive(SampleBuffer& out, Clock::time_point deadline) {
    epoll_event events[16];
    for (;;) {
        if (try_parse_any(out)) return Recv::frame;
        if (listen_paused_ && transport::expired(listen_resume_)) resume_listening();
        const auto until = listen_paused_ && listen_resume_ < deadline ? listen_resume_ : deadline;
        const int r = ::epoll_wait(epoll_fd_.get(), events, 16, transport::poll_timeout_ms(until));
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
            if (conn->doomed || read_conn(*conn)) continue;
            const auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& c) { return c.get() == conn; });
            close_conn(static_cast<std::size_t>(it - conns_.begin()), conn->in.pos != conn->in.fill);
        }
        // Connections shed to stay within the budget (not while ready_ pointed at them).
        for (std::size_t i = conns_.size(); i-- > 0;) {
            if (conns_[i]->doomed) close_conn(i, true);
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
            if (conn.hello || conn.in.chunk == nullptr || conn.in.avail() < kHeaderSize) continue;
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
            if (!conn.hello || conn.blocked || conn.in.avail() < kHeaderSize) continue;
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
    if (!conn.hello) {
        Hello hello;
        std::memcpy(&hello, conn.in.chunk->mem.get() + conn.in.pos, sizeof hello);
        if (hello.magic != kHelloMagic || hello.version != kWireVersion) {
            why = "not a ferry uds writer (bad greeting)";
            return Parse::bad;
        }
        conn.hello = true;
        conn.writer_id = hello.writer_id;
        conn.in.pos += sizeof hello;
        held_ -= sizeof hello;
        interest_dirty_ = true;  // may now be blocked behind an older connection of the same writer
        return Parse::hello;
    }
    const std::size_t before = conn.in.avail();
    switch (transport::parse_frame(conn.in, pool_, kFrameMagic, params_.max_message_size, out, why, lost_)) {
        case transport::FrameParse::frame:
            consumed(conn, before);
            ++conn.frames;
            conn.active = Clock::now();
            return Parse::frame;
        case transport::FrameParse::incomplete: return Parse::incomplete;
        case transport::FrameParse::bad: break;
    }
    return Parse::bad;
}

// Returns false once the connection is finished (EOF or error).
bool UdsReader::read_conn(Conn& conn) {
    transport::RecvStream& in = conn.in;
    if (held_ >= budget_) shed_over_budget();
    if (conn.doomed) return true;
    // Never more than the budget has room for: what is held unparsed stays bounded whatever
    // the writers send, and a reader's memory with it.
    const std::size_t room = budget_ > held_ ? budget_ - held_ : 0;
    if (room == 0) return true;
    in.prepare_space(pool_);
    const std::size_t len = std::min(in.chunk->cap - in.fill, room);
    const ssize_t n = ::recv(conn.fd.get(), in.chunk->mem.get() + in.fill, len, MSG_DONTWAIT);
    if (n > 0) {
        in.fill += static_cast<std::size_t>(n);
        held_ += static_cast<std::size_t>(n);
        return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

void UdsReader::accept_all() {
    for (int accepted = 0; accepted < kAcceptBatch; ++accepted) {
        UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd.valid()) {
            const int err = errno;
            if (err == EINTR || err == ECONNABORTED) continue;
            if (err == EAGAIN || err == EWOULDBLOCK) break;
            if (err == EMFILE || err == ENFILE) {
                // Never a busy loop on a connection we cannot take: give up an idle one, or
                // take the new one with the spare descriptor and turn it away, or rest.
                if (Conn* victim = idle_victim()) {
                    drop_conn(victim, Refusal::no_descriptors);
                    continue;
                }
                if (refuse_with_spare()) continue;
            }
            pause_listening(err);
            break;
        }
        ucred cred{};
        socklen_t cred_len = sizeof cred;
        if ((params_.mode & 0066) == 0 &&
            (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0 || cred.uid != uid_)) {
            refuse(fd.get(), Refusal::foreign_user);
            continue;
        }
        if (conns_.size() >= kMaxConnections ||
            g_process_conns.load(std::memory_order_relaxed) >= process_conn_cap()) {
            Conn* victim = idle_victim();
            if (victim == nullptr) {
                refuse(fd.get(), Refusal::too_many);
                continue;
            }
            drop_conn(victim, Refusal::too_many);
        }
        auto conn = std::make_unique<Conn>();
        conn->fd = std::move(fd);
        conn->active = Clock::now();
        if (!epoll_watch(epoll_fd_.get(), conn->fd.get(), reinterpret_cast<std::uint64_t>(conn.get()))) {
            transport::log(*host_, transport::LogLevel::warn,
                           "uds: reader " + path_ + " cannot watch a connection: " + std::strerror(errno));
            continue;
        }
        conn->registered = true;
        conns_.push_back(std::move(conn));
        g_process_conns.fetch_add(1, std::memory_order_relaxed);
    }
    // A writer greets right after connect(), so an older connection's greeting is already in
    // its socket when a newer one is accepted: reading greetings now (of every connection that
    // has none yet) gives connections their writer id in accept order.
    for (auto& conn : conns_) {
        if (conn->hello) continue;
        transport::RecvStream& in = conn->in;
        in.prepare_space(pool_);
        const std::size_t have = in.avail();
        if (have >= kHeaderSize) continue;
        const ssize_t n = ::recv(conn->fd.get(), in.chunk->mem.get() + in.fill, kHeaderSize - have, MSG_DONTWAIT);
        if (n > 0) {
            in.fill += static_cast<std::size_t>(n);
            held_ += static_cast<std::size_t>(n);
        }
    }
}

// Tells the peer why (it may be a writer that must report it), then closes.
void UdsReader::refuse(int fd, Refusal why) {
    const RefusalRecord rec{kRefusalMagic, static_cast<std::uint32_t>(why), 0};
    [[maybe_unused]] const ssize_t n = ::send(fd, &rec, sizeof rec, MSG_DONTWAIT | MSG_NOSIGNAL);
    std::uint64_t count = 0;
    if (refuse_log_.due(count)) {
        const char* text = why == Refusal::foreign_user ? "another user's connection (mode 0600)"
                           : why == Refusal::too_many   ? "too many connections"
                           : why == Refusal::over_budget ? "over the buffer budget"
                                                         : "out of file descriptors";
        transport::log(*host_, transport::LogLevel::warn,
                       "uds: reader " + path_ + " refused or dropped " + std::to_string(count) +
                           " connection(s) since the last report: " + text);
    }
}

void UdsReader::drop_conn(Conn* conn, Refusal why) {
    const auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& c) { return c.get() == conn; });
    refuse(conn->fd.get(), why);
    close_conn(static_cast<std::size_t>(it - conns_.begin()), conn->in.avail() != 0 && conn->hello);
}

// The connection to give up for a new one: first one that never sent a greeting, then one
// that never sent a frame, then one idle for kIdleEvictable; oldest first. nullptr when all
// are busy writers.
UdsReader::Conn* UdsReader::idle_victim() {
    const auto idle_since = Clock::now() - kIdleEvictable;
    Conn* best = nullptr;
    int best_rank = 3;
    for (auto& c : conns_) {
        Conn& conn = *c;
        if (conn.doomed) continue;
        const int rank = !conn.hello ? 0 : conn.frames == 0 ? 1 : conn.active < idle_since ? 2 : 3;
        if (rank < best_rank || (rank == best_rank && best != nullptr && conn.active < best->active)) {
            best = &conn;
            best_rank = rank;
        }
    }
    return best_rank < 3 ? best : nullptr;
}

// Over budget: the connection holding the most unparsed bytes of an incomplete frame goes
// (the oldest of equals), counted lost. Closed by receive() once no pointer to it is in use.
void UdsReader::shed_over_budget() {
    while (held_ >= budget_) {
        Conn* victim = nullptr;
        for (auto& c : conns_) {
            Conn& conn = *c;
            if (conn.doomed || conn.in.avail() == 0) continue;
            const bool incomplete = conn.in.avail() < conn.in.need || conn.in.avail() < kHeaderSize;
            if (!incomplete) continue;
            if (victim == nullptr || conn.in.avail() > victim->in.avail() ||
                (conn.in.avail() == victim->in.avail() && conn.active < victim->active)) {
                victim = &conn;
            }
        }
        if (victim == nullptr) return;  // only whole frames are held: taking them makes room
        held_ -= victim->in.avail();
        victim->in.pos = victim->in.fill;  // its bytes no longer count; close_conn counts the loss
        victim->doomed = true;
        refuse(victim->fd.get(), Refusal::over_budget);
        std::uint64_t count = 0;
        if (budget_log_.due(count)) {
            transport::log(*host_, transport::LogLevel::warn,
                           "uds: reader " + path_ + " over its buffer budget of " + std::to_string(budget_) +
                               " bytes: dropped " + std::to_string(count) +
                               " connection(s) holding the largest incomplete frame");
        }
    }
}

// The classic way out of EMFILE: free the spare descriptor, accept and refuse the connection
// that waits, take the spare back.
bool UdsReader::refuse_with_spare() {
    if (!spare_fd_.valid()) return false;
    spare_fd_.reset();
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    const bool took = fd.valid();
    if (took) refuse(fd.get(), Refusal::no_descriptors);
    fd.reset();
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return took;
}

// Out of descriptors (or kernel memory) and nothing to give up: stop watching the listening
// socket for a moment instead of waking up for it again and again.
void UdsReader::pause_listening(int err) {
    std::uint64_t count = 0;
    if (fd_log_.due(count)) {
        transport::log(*host_, transport::LogLevel::warn,
                       "uds: reader " + path_ + " cannot accept (" + std::to_string(count) +
                           " time(s) since the last report): " + std::strerror(err) + "; retrying in 100 ms");
    }
    if (!spare_fd_.valid()) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!listen_paused_) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, listen_fd_.get(), nullptr);
    listen_paused_ = true;
    listen_resume_ = Clock::now() + kListenPause;
}

void UdsReader::resume_listening() {
    if (epoll_watch(epoll_fd_.get(), listen_fd_.get(), kListenTag)) listen_paused_ = false;
    else listen_resume_ = Clock::now() + kListenPause;
}

void UdsReader::close_conn(std::size_t index, bool torn) {
    if (torn) lost_.fetch_add(1, std::memory_order_relaxed);
    Conn& conn = *conns_[index];
    // Explicitly: a forked child may share the descriptor, and then close() would not
    // remove it from the epoll set.
    if (conn.registered) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, conn.fd.get(), nullptr);
    held_ -= conn.in.avail();
    conn.in.detach(pool_);
    conns_.erase(conns_.begin() + static_cast<std::ptrdiff_t>(index));
    g_process_conns.fetch_sub(1, std::memory_order_relaxed);
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
        transport::epoll_set_watched(epoll_fd_.get(), conn.fd.get(), reinterpret_cast<std::uint64_t>(&conn),
                                     !conn.blocked, conn.registered);
    }
    interest_dirty_ = false;
}

}  // namespace ferry::uds
