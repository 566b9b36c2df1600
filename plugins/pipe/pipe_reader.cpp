#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <poll.h>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include <ferry/transport/naming.hpp>

#include "pipe_transport.hpp"

namespace ferry::pipe {

namespace {

constexpr std::size_t kMaxConnections = 1024;
constexpr std::size_t kMaxStale = 64;
// epoll tags of the fixed descriptors; FIFOs are tagged with their Conn*.
constexpr std::uint64_t kWakeTag = 1;
constexpr std::uint64_t kSyncTag = 2;

using transport::epoll_watch;

bool same_file(const std::string& path, dev_t dev, ino_t ino) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

PipeReader::PipeReader(const Host& host, const TopicParams& params)
    : host_(&host),
      params_(params),
      prefix_("ferry." + params.domain + "."),
      suffix_("." + fifo_suffix(params.endpoint_id)),
      budget_(transport::reader_budget(params)) {}

Status PipeReader::create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out) {
    std::unique_ptr<PipeReader> r(new PipeReader(host, params));
    auto fail = [&](const std::string& action) {
        const int err = errno;
        return transport::os_error(transport::errc_from_errno(err), "pipe: " + action, err);
    };
    r->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    r->sync_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!r->wake_fd_.valid() || !r->sync_fd_.valid()) return fail("cannot create eventfd");
    r->epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!r->epoll_fd_.valid() || !epoll_watch(r->epoll_fd_.get(), r->wake_fd_.get(), kWakeTag) ||
        !epoll_watch(r->epoll_fd_.get(), r->sync_fd_.get(), kSyncTag)) {
        return fail("cannot create epoll set");
    }
    if (params.overflow == transport::Overflow::drop_oldest) {
        r->threaded_ = true;
        r->pool_.set_shared(true);
        r->ring_.init(params.depth);
    }
    std::string error;
    r->watcher_ = DirWatcher::get(params.runtime_dir, error);
    if (!r->watcher_) return Status(Errc::no_resources, "pipe: " + error);
    r->watcher_->add(r.get());
    r->scan_directory();  // nothing is addressed to a new id, unless left over
    if (r->threaded_) r->drain_ = std::thread([raw = r.get()] { raw->drain_loop(); });
    out = std::move(r);
    return Status::ok();
}

PipeReader::~PipeReader() {
    if (watcher_) watcher_->remove(this);
    if (drain_.joinable()) {
        transport::signal_eventfd(wake_fd_.get());
        drain_.join();
    }
    // FIFOs belong to their writers; those of dead writers are removed here.
    for (auto& conn : conns_) {
        if (!transport::process_alive(transport::endpoint_pid(conn->writer_id)) &&
            same_file(conn->path, conn->dev, conn->ino)) {
            ::unlink(conn->path.c_str());
        }
    }
    for (Incoming& in : incoming_) {
        if (!transport::process_alive(transport::endpoint_pid(in.writer_id)) && same_file(in.path, in.dev, in.ino)) {
            ::unlink(in.path.c_str());
        }
    }
    forget_stale(true);
    conns_.clear();
}

void PipeReader::interrupt() noexcept {
    interrupted_.store(true);
    if (drain_.joinable()) {
        ring_.close();
    } else {
        transport::signal_eventfd(wake_fd_.get());
    }
}

// Writers create FIFOs for us and the watcher thread opens them at once; the list is a
// fallback (a missed event), and a sync is when FIFOs of dead writers are looked at.
void PipeReader::sync_writers(const std::vector<PeerInfo>& writers) noexcept {
    try {
        std::vector<std::uint64_t> unknown;
        {
            std::lock_guard<std::mutex> lock(sync_mu_);
            writers_ = writers;
            for (const PeerInfo& w : writers) {
                if (attached_ids_.count(w.endpoint_id) == 0) unknown.push_back(w.endpoint_id);
            }
        }
        // Listed writers whose FIFO we do not hold yet (an inotify event may have been missed).
        for (std::uint64_t id : unknown) {
            open_and_queue(transport::object_name(params_.domain, id, fifo_suffix(params_.endpoint_id).c_str()));
        }
        transport::signal_eventfd(sync_fd_.get());
    } catch (...) {
        transport::log(*host_, transport::LogLevel::error, "pipe: sync_writers failed for topic " + params_.topic);
    }
}

Status PipeReader::take(SampleBuffer& out, Clock::time_point deadline) noexcept {
    if (interrupted_.load(std::memory_order_relaxed)) return Status(Errc::closed, "pipe: reader interrupted");
    try {
        if (drain_.joinable()) return ring_.take(out, deadline, "pipe");
        switch (receive(out, deadline)) {
            case Recv::frame: return Status::ok();
            case Recv::closed: return Status(Errc::closed, "pipe: reader interrupted");
            case Recv::would_block: return Status(Errc::would_block, "pipe: no message");
            case Recv::timeout: return Status(Errc::timeout, "pipe: no message before the deadline");
            case Recv::error: break;
        }
        return transport::os_error(Errc::io_error, "pipe: epoll_wait failed for topic " + params_.topic, errno);
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("pipe: take failed: ") + e.what());
    }
}

void PipeReader::release(SampleBuffer& sample) noexcept { pool_.release(sample); }

// ---- drop_oldest: a drain thread keeps the newest `depth` frames ----

void PipeReader::drain_loop() {
    SampleBuffer s;
    for (;;) {
        Recv r;
        try {
            r = receive(s, Clock::now() + std::chrono::hours(24));
        } catch (const std::exception& e) {
            transport::log(*host_, transport::LogLevel::error, std::string("pipe: drain thread: ") + e.what());
            continue;
        }
        if (r == Recv::closed) return;
        if (r == Recv::error) {
            transport::log(*host_, transport::LogLevel::error,
                           "pipe: drain thread of " + params_.topic + ": epoll_wait failed: " + std::strerror(errno));
            return;
        }
        if (r == Recv::frame) ring_.push(s, pool_, lost_);
    }
}

// ---- receiving frames from the FIFOs ----

// With data at hand no clock is read: the deadline only matters once there is nothing to take.
PipeReader::Recv PipeReader::receive(SampleBuffer& out, Clock::time_point deadline) {
    epoll_event events[16];
    bool first_wait = true;
    bool nonblocking = false;
    bool pumped = false;
    for (;;) {
        if (try_parse_any(out)) return Recv::frame;
        if (last_ != nullptr && fast_) {
            // The FIFO that delivered last is the likeliest to have more: one read, no epoll.
            Conn* conn = last_;
            last_ = nullptr;
            const Read rd = read_conn(*conn);
            if (rd == Read::data) {
                last_ = conn;
                continue;
            }
            fast_ = false;  // the writer is not ahead of us: wait in epoll_wait
            if (rd == Read::eof) {
                mark_eof(*conn);
                continue;
            }
        }
        const int timeout = transport::poll_timeout_ms(deadline);
        if (first_wait) nonblocking = timeout == 0;
        first_wait = false;
        const int r = ::epoll_wait(epoll_fd_.get(), events, 16, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            return Recv::error;
        }
        if (r == 0) {
            if (timeout == 0 || transport::expired(deadline)) {
                if (!pumped) {
                    // Nothing: make sure a FIFO created just before is not still announced only.
                    pumped = true;
                    watcher_->pump();
                    bool more = false;
                    {
                        std::lock_guard<std::mutex> lock(sync_mu_);
                        more = !incoming_.empty();
                    }
                    if (more) {
                        handle_sync();
                        continue;
                    }
                }
                return nonblocking ? Recv::would_block : Recv::timeout;
            }
            continue;
        }
        bool sync = false;
        ready_.clear();
        for (int i = 0; i < r; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            if (tag == kWakeTag) return Recv::closed;
            if (tag == kSyncTag) {
                sync = true;
            } else {
                ready_.push_back(reinterpret_cast<Conn*>(tag));
            }
        }
        for (Conn* conn : ready_) {
            const Read rd = read_conn(*conn);
            if (rd == Read::data) last_ = conn;
            if (rd == Read::eof) mark_eof(*conn);
        }
        if (sync) handle_sync();
    }
}

bool PipeReader::try_parse_any(SampleBuffer& out) {
    for (;;) {
        if (interest_dirty_) update_interest();
        const std::size_t n = conns_.size();
        bool rescan = false;
        for (std::size_t k = 0; k < n && !rescan; ++k) {
            const std::size_t i = (rr_ + k) % n;
            Conn& conn = *conns_[i];
            if (conn.blocked) continue;
            if (conn.in.avail() < kHeaderSize) {
                if (conn.eof) {
                    close_conn(&conn, conn.in.pos != conn.in.fill, false);
                    rescan = true;
                }
                continue;
            }
            std::string why;
            const std::size_t before = conn.in.avail();
            switch (transport::parse_frame(conn.in, pool_, kFrameMagic, params_.max_message_size, out, why, lost_)) {
                case transport::FrameParse::frame:
                    held_ -= before - conn.in.avail();
                    rr_ = i + 1;
                    // More bytes already behind this frame: the writer is ahead of us, so the
                    // next take tries a plain read of this FIFO before epoll_wait.
                    if (conn.in.fill != conn.in.pos) fast_ = true;
                    return true;
                case transport::FrameParse::incomplete:
                    if (conn.eof) {
                        close_conn(&conn, true, false);  // a killed writer's partial frame
                        rescan = true;
                    }
                    break;
                case transport::FrameParse::bad:
                    transport::log(*host_, transport::LogLevel::warn,
                                   "pipe: reader of " + params_.topic + " drops FIFO " + conn.path + ": " + why);
                    close_conn(&conn, true, true);
                    rescan = true;
                    break;
            }
        }
        if (!rescan) return false;
    }
}

PipeReader::Read PipeReader::read_conn(Conn& conn) {
    transport::RecvStream& in = conn.in;
    if (held_ >= budget_) shed_over_budget();
    if (conn.eof) return Read::again;  // shed just now
    // Never more than the budget has room for: what all FIFOs hold unparsed stays bounded.
    const std::size_t room = budget_ > held_ ? budget_ - held_ : 0;
    if (room == 0) return Read::data;  // only whole frames are held: taking them makes room
    in.prepare_space(pool_);
    if (in.fill == in.chunk->cap) return Read::data;  // a whole frame is waiting to be parsed
    for (;;) {
        const ssize_t n = ::read(conn.fd.get(), in.chunk->mem.get() + in.fill, std::min(in.chunk->cap - in.fill, room));
        if (n > 0) {
            in.fill += static_cast<std::size_t>(n);
            held_ += static_cast<std::size_t>(n);
            return Read::data;
        }
        if (n == 0) return Read::eof;  // no writer left: the writer closed it or died
        if (errno == EINTR) continue;
        return errno == EAGAIN ? Read::again : Read::eof;
    }
}

bool PipeReader::matches(const char* name) const {
    const std::size_t len = std::strlen(name);
    return len > prefix_.size() + suffix_.size() && std::strncmp(name, prefix_.c_str(), prefix_.size()) == 0 &&
           std::strcmp(name + len - suffix_.size(), suffix_.c_str()) == 0;
}

void PipeReader::open_and_queue(const std::string& name) {
    Incoming in;
    in.writer_id = transport::parse_object_name(name, params_.domain);
    if (in.writer_id == 0) return;
    {
        // Not one descriptor more than the receiving thread may adopt.
        std::lock_guard<std::mutex> lock(sync_mu_);
        if (incoming_.size() >= kMaxConnections) return;
    }
    in.path = params_.runtime_dir + "/" + name;
    in.fd.reset(::open(in.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!in.fd.valid()) return;  // gone again (a writer that dropped us), or not ours to open
    struct stat st {};
    if (::fstat(in.fd.get(), &st) != 0 || !S_ISFIFO(st.st_mode)) return;
    in.dev = st.st_dev;
    in.ino = st.st_ino;
    {
        std::lock_guard<std::mutex> lock(sync_mu_);
        incoming_.push_back(std::move(in));
    }
    transport::signal_eventfd(sync_fd_.get());
}

void PipeReader::scan_directory() {
    DIR* dir = ::opendir(params_.runtime_dir.c_str());
    if (dir == nullptr) return;
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(dir)) {
        if (matches(e->d_name)) names.emplace_back(e->d_name);
    }
    ::closedir(dir);
    for (const std::string& n : names) open_and_queue(n);
}

// ---- the watcher: a writer's FIFO is opened the moment it is created, so that what the
// writer puts in it survives the writer (a FIFO nobody holds open forgets its contents) ----

std::shared_ptr<DirWatcher> DirWatcher::get(const std::string& dir, std::string& error) {
    // Static objects, destroyed with the module: the core unloads the plugin (dlclose) at exit,
    // and memory that only an unloaded module pointed to is leaked (LeakSanitizer said so for
    // the never-freed map this was). Destroying the map is safe: it only holds weak references.
    static std::mutex registry_mu;
    static std::unordered_map<std::string, std::weak_ptr<DirWatcher>> registry;
    std::lock_guard<std::mutex> lock(registry_mu);
    auto& slot = registry[dir];
    if (auto existing = slot.lock(); existing && existing->pid_ == ::getpid()) return existing;
    std::shared_ptr<DirWatcher> w(new DirWatcher());
    w->pid_ = ::getpid();
    w->fd_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    w->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!w->fd_.valid() || !w->stop_.valid()) {
        error = std::string("cannot create an inotify instance: ") + std::strerror(errno) +
                " (see fs.inotify.max_user_instances)";
        return nullptr;
    }
    if (::inotify_add_watch(w->fd_.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
        error = "cannot watch runtime directory " + dir + ": " + std::strerror(errno);
        return nullptr;
    }
    w->thread_ = new std::thread([raw = w.get()] { raw->loop(); });
    slot = w;
    return w;
}

DirWatcher::~DirWatcher() {
    if (thread_ == nullptr || pid_ != ::getpid()) return;  // a forked child's copy: no thread here
    transport::signal_eventfd(stop_.get());
    thread_->join();
    delete thread_;
}

void DirWatcher::add(PipeReader* reader) {
    std::lock_guard<std::mutex> lock(mu_);
    readers_.push_back(reader);
}

void DirWatcher::remove(PipeReader* reader) {
    std::lock_guard<std::mutex> lock(mu_);
    readers_.erase(std::remove(readers_.begin(), readers_.end(), reader), readers_.end());
}

void DirWatcher::loop() {
    for (;;) {
        pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[1].revents != 0) return;
        pump();
    }
}

void DirWatcher::pump() {
    alignas(inotify_event) char buf[8192];
    std::lock_guard<std::mutex> lock(mu_);
    bool overflow = false;
    for (;;) {
        const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        for (ssize_t off = 0; off < n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
            if (ev->mask & IN_Q_OVERFLOW) overflow = true;
            if (ev->len > 0) {
                for (PipeReader* r : readers_) {
                    try {
                        if (r->matches(ev->name)) r->open_and_queue(ev->name);
                    } catch (...) {
                    }
                }
            }
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
    }
    if (overflow) {
        for (PipeReader* r : readers_) {
            try {
                r->scan_directory();
            } catch (...) {
            }
        }
    }
}

// Receiving thread: watches an opened FIFO.
void PipeReader::adopt(Incoming&& in) {
    for (const auto& c : conns_) {
        if (c->dev == in.dev && c->ino == in.ino) return;  // already watched
    }
    if (conns_.size() >= kMaxConnections) {
        transport::log(*host_, transport::LogLevel::warn,
                       "pipe: reader of " + params_.topic + " ignores FIFO " + in.path + ": too many writers");
        return;
    }
    auto conn = std::make_unique<Conn>();
    conn->fd = std::move(in.fd);
    conn->writer_id = in.writer_id;
    conn->path = std::move(in.path);
    conn->dev = in.dev;
    conn->ino = in.ino;
    Conn* raw = conn.get();
    conns_.push_back(std::move(conn));
    {
        std::lock_guard<std::mutex> lock(sync_mu_);
        attached_ids_.insert(raw->writer_id);
    }
    interest_dirty_ = true;
    update_interest();
    // Opened after its writer died: what is in it is all there will be; an empty one goes.
    if (!transport::process_alive(transport::endpoint_pid(raw->writer_id)) && !raw->blocked) {
        if (read_conn(*raw) == Read::eof) mark_eof(*raw);
    }
}

void PipeReader::handle_sync() {
    std::uint64_t v = 0;
    [[maybe_unused]] ssize_t n = ::read(sync_fd_.get(), &v, sizeof v);
    std::vector<Incoming> incoming;
    {
        std::lock_guard<std::mutex> lock(sync_mu_);
        incoming.swap(incoming_);
    }
    for (Incoming& in : incoming) adopt(std::move(in));
    // A FIFO of a dead writer that never showed end-of-file (opened before its writer did):
    // read it now; end-of-file closes it.
    for (std::size_t i = conns_.size(); i-- > 0;) {
        Conn* conn = conns_[i].get();
        if (conn->blocked || conn->eof || transport::process_alive(transport::endpoint_pid(conn->writer_id))) continue;
        if (read_conn(*conn) == Read::eof) mark_eof(*conn);
    }
    forget_stale(false);
}

// FIFOs are their writer's to remove; one whose writer died (or sent garbage) is removed here.
void PipeReader::forget_stale(bool all) {
    for (std::size_t i = stale_.size(); i-- > 0;) {
        Stale& s = stale_[i];
        const bool dead = !transport::process_alive(s.pid);
        if (dead && same_file(s.path, s.dev, s.ino)) ::unlink(s.path.c_str());
        if (dead || all || !same_file(s.path, s.dev, s.ino)) {
            stale_[i] = std::move(stale_.back());
            stale_.pop_back();
        }
    }
}

// Over budget: the FIFO holding the most unparsed bytes of an incomplete frame (the oldest of
// equals) is treated as ended: its bytes are dropped and counted as one lost message.
void PipeReader::shed_over_budget() {
    while (held_ >= budget_) {
        Conn* victim = nullptr;
        for (auto& c : conns_) {
            Conn& conn = *c;
            const std::size_t avail = conn.in.avail();
            if (conn.eof || avail == 0 || (avail >= kHeaderSize && avail >= conn.in.need)) continue;
            if (victim == nullptr || avail > victim->in.avail()) victim = &conn;
        }
        if (victim == nullptr) return;
        held_ -= victim->in.avail();
        victim->in.pos = victim->in.fill;
        lost_.fetch_add(1, std::memory_order_relaxed);
        mark_eof(*victim);  // closed by try_parse_any; its writer sees EPIPE and starts anew
        std::uint64_t count = 0;
        if (budget_log_.due(count)) {
            transport::log(*host_, transport::LogLevel::warn,
                           "pipe: reader of " + params_.topic + " over its buffer budget of " + std::to_string(budget_) +
                               " bytes: dropped " + std::to_string(count) + " FIFO(s) holding the largest incomplete frame");
        }
    }
}

// End of file: the writer closed the FIFO or died. The frames already read are still
// delivered; try_parse_any closes it when no whole frame is left.
void PipeReader::mark_eof(Conn& conn) {
    conn.eof = true;
    if (last_ == &conn) last_ = nullptr;
    interest_dirty_ = true;
}

void PipeReader::close_conn(Conn* conn, bool torn, bool garbage) {
    if (torn) lost_.fetch_add(1, std::memory_order_relaxed);
    if (last_ == conn) last_ = nullptr;
    const auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& c) { return c.get() == conn; });
    if (it == conns_.end()) return;
    // Explicitly: a forked child may share the descriptor, and then close() would not
    // remove it from the epoll set.
    if (conn->registered) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, conn->fd.get(), nullptr);
    held_ -= conn->in.avail();
    conn->in.detach(pool_);
    const pid_t pid = transport::endpoint_pid(conn->writer_id);
    if (same_file(conn->path, conn->dev, conn->ino)) {
        if (garbage || !transport::process_alive(pid)) {
            ::unlink(conn->path.c_str());
        } else if (stale_.size() < kMaxStale) {
            stale_.push_back(Stale{conn->path, conn->dev, conn->ino, pid});  // its writer may be dying
        }
    }
    const std::uint64_t writer_id = conn->writer_id;
    conns_.erase(it);
    interest_dirty_ = true;
    if (std::none_of(conns_.begin(), conns_.end(), [&](const auto& c) { return c->writer_id == writer_id; })) {
        std::lock_guard<std::mutex> lock(sync_mu_);
        attached_ids_.erase(writer_id);
    }
}

// A FIFO waits (is not watched nor parsed) while an older FIFO of the same writer is open:
// that keeps per-writer order when a writer re-created its FIFO while the old one still held
// frames.
void PipeReader::update_interest() {
    first_of_writer_.clear();
    for (auto& c : conns_) {
        Conn& conn = *c;
        conn.blocked = !first_of_writer_.insert(conn.writer_id).second;
        transport::epoll_set_watched(epoll_fd_.get(), conn.fd.get(), reinterpret_cast<std::uint64_t>(&conn),
                                     !conn.blocked && !conn.eof, conn.registered);
    }
    interest_dirty_ = false;
}

}  // namespace ferry::pipe
