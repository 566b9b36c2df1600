#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

// epoll tag of the listening socket.
constexpr std::uint64_t kListenTag = 2;

constexpr transport::FramedReaderOptions kOptions{"uds", kFrameMagic, "connection"};

}  // namespace

UdsReader::UdsReader(const Host& host, const TopicParams& params)
    : FramedStreamReader(host, params, kOptions, "reader " + socket_path(params, params.endpoint_id)),
      path_(socket_path(params, params.endpoint_id)),
      uid_(::geteuid()),
      spare_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

Status UdsReader::create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out) {
    std::unique_ptr<UdsReader> r(new UdsReader(host, params));
    if (auto st = r->init(); !st) return st;
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
    if (!r->watch(r->listen_fd_.get(), kListenTag)) {
        const int err = errno;
        ::unlink(r->path_.c_str());
        return transport::os_error(transport::errc_from_errno(err), "uds: cannot watch " + r->path_, err);
    }
    r->start();
    out = std::move(r);
    return Status::ok();
}

UdsReader::~UdsReader() {
    stop();
    listen_fd_.reset();
    ::unlink(path_.c_str());
    g_process_conns.fetch_sub(streams().size(), std::memory_order_relaxed);
}

void UdsReader::sync_writers(const std::vector<PeerInfo>&) noexcept {
    // Nothing to attach to: writers connect to us. A writer that dies closes its connection
    // (the kernel does it on SIGKILL) and its partial frame is discarded at EOF.
}

void UdsReader::on_events(std::uint32_t fired) {
    if ((fired & (std::uint32_t{1} << kListenTag)) != 0) accept_all();
}

Clock::time_point UdsReader::wake_by(Clock::time_point deadline) {
    if (listen_paused_ && transport::expired(listen_resume_)) resume_listening();
    return listen_paused_ && listen_resume_ < deadline ? listen_resume_ : deadline;
}

bool UdsReader::greet(Stream& stream, std::string& why) {
    Hello hello;
    std::memcpy(&hello, stream.in.chunk->mem.get() + stream.in.pos, sizeof hello);
    if (hello.magic != kHelloMagic || hello.version != kWireVersion) {
        why = "not a ferry uds writer (bad greeting)";
        return false;
    }
    stream.writer_id = hello.writer_id;
    consume(stream, sizeof hello);
    return true;
}

void UdsReader::on_frame(Stream& stream) {
    Conn& conn = static_cast<Conn&>(stream);
    ++conn.frames;
    conn.active = Clock::now();
}

void UdsReader::on_closed(Stream&, bool) { g_process_conns.fetch_sub(1, std::memory_order_relaxed); }

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
        if (streams().size() >= kMaxConnections ||
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
        conn->greeted = false;
        conn->active = Clock::now();
        if (add_stream(std::move(conn)) == nullptr) {
            transport::log(*host_, transport::LogLevel::warn,
                           "uds: reader " + path_ + " cannot watch a connection: " + std::strerror(errno));
            continue;
        }
        g_process_conns.fetch_add(1, std::memory_order_relaxed);
    }
    // A writer greets right after connect(), so an older connection's greeting is already in
    // its socket when a newer one is accepted: reading greetings now (of every connection that
    // has none yet) gives connections their writer id in accept order.
    for (const auto& conn : streams()) {
        if (conn->greeted || conn->ended || conn->in.avail() >= kHeaderSize) continue;
        read_stream(*conn, kHeaderSize - conn->in.avail());  // end of file: seen by the next epoll_wait
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
    refuse(conn->fd.get(), why);
    close_stream(conn, conn->in.avail() != 0 && conn->greeted);
}

// The connection to give up for a new one: first one that never sent a greeting, then one
// that never sent a frame, then one idle for kIdleEvictable; oldest first. nullptr when all
// are busy writers.
UdsReader::Conn* UdsReader::idle_victim() {
    const auto idle_since = Clock::now() - kIdleEvictable;
    Conn* best = nullptr;
    int best_rank = 3;
    for (const auto& c : streams()) {
        Conn& conn = static_cast<Conn&>(*c);
        if (conn.ended) continue;
        const int rank = !conn.greeted ? 0 : conn.frames == 0 ? 1 : conn.active < idle_since ? 2 : 3;
        if (rank < best_rank || (rank == best_rank && best != nullptr && conn.active < best->active)) {
            best = &conn;
            best_rank = rank;
        }
    }
    return best_rank < 3 ? best : nullptr;
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
    if (!listen_paused_) unwatch(listen_fd_.get());
    listen_paused_ = true;
    listen_resume_ = Clock::now() + kListenPause;
}

void UdsReader::resume_listening() {
    if (watch(listen_fd_.get(), kListenTag)) listen_paused_ = false;
    else listen_resume_ = Clock::now() + kListenPause;
}

}  // namespace ferry::uds
