#include <dirent.h>
#include <fcntl.h>
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
// epoll tag of sync_fd_.
constexpr std::uint64_t kSyncTag = 2;

constexpr transport::FramedReaderOptions kOptions{"pipe", kFrameMagic, "FIFO", true};

bool same_file(const std::string& path, dev_t dev, ino_t ino) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

PipeReader::PipeReader(const Host& host, const TopicParams& params)
    : FramedStreamReader(host, params, kOptions, "reader of " + params.topic),
      prefix_("ferry." + params.domain + "."),
      suffix_("." + fifo_suffix(params.endpoint_id)) {}

Status PipeReader::create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out) {
    std::unique_ptr<PipeReader> r(new PipeReader(host, params));
    if (auto st = r->init(); !st) return st;
    r->sync_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!r->sync_fd_.valid() || !r->watch(r->sync_fd_.get(), kSyncTag)) {
        const int err = errno;
        return transport::os_error(transport::errc_from_errno(err), "pipe: cannot create eventfd", err);
    }
    std::string error;
    r->watcher_ = DirWatcher::get(params.runtime_dir, error);
    if (!r->watcher_) return Status(Errc::no_resources, "pipe: " + error);
    r->watcher_->add(r.get());
    r->scan_directory();  // nothing is addressed to a new id, unless left over
    r->start();
    out = std::move(r);
    return Status::ok();
}

PipeReader::~PipeReader() {
    if (watcher_) watcher_->remove(this);
    stop();
    // FIFOs belong to their writers; those of dead writers are removed here.
    for (const auto& stream : streams()) {
        const Conn& conn = static_cast<const Conn&>(*stream);
        if (!transport::process_alive(transport::endpoint_pid(conn.writer_id)) &&
            same_file(conn.path, conn.dev, conn.ino)) {
            ::unlink(conn.path.c_str());
        }
    }
    for (Incoming& in : incoming_) {
        if (!transport::process_alive(transport::endpoint_pid(in.writer_id)) && same_file(in.path, in.dev, in.ino)) {
            ::unlink(in.path.c_str());
        }
    }
    forget_stale(true);
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

void PipeReader::on_events(std::uint32_t fired) {
    if ((fired & (std::uint32_t{1} << kSyncTag)) != 0) handle_sync();
}

// Nothing before the deadline: make sure a FIFO created just before is not still announced only.
bool PipeReader::on_idle() {
    watcher_->pump();
    bool more = false;
    {
        std::lock_guard<std::mutex> lock(sync_mu_);
        more = !incoming_.empty();
    }
    if (more) handle_sync();
    return more;
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
    for (const auto& s : streams()) {
        const Conn& c = static_cast<const Conn&>(*s);
        if (c.dev == in.dev && c.ino == in.ino) return;  // already watched
    }
    if (streams().size() >= kMaxConnections) {
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
    const std::uint64_t writer_id = conn->writer_id;
    Stream* raw = add_stream(std::move(conn));
    if (raw == nullptr) {
        transport::log(*host_, transport::LogLevel::warn,
                       "pipe: reader of " + params_.topic + " cannot watch a FIFO: " + std::strerror(errno));
        return;
    }
    {
        std::lock_guard<std::mutex> lock(sync_mu_);
        attached_ids_.insert(writer_id);
    }
    // Opened after its writer died: what is in it is all there will be; an empty one goes.
    // (Read now only if no older FIFO of the writer is open, which must be read first.)
    if (!transport::process_alive(transport::endpoint_pid(writer_id)) &&
        std::none_of(streams().begin(), streams().end(),
                     [&](const auto& s) { return s.get() != raw && s->writer_id == writer_id; })) {
        if (read_stream(*raw) == Read::eof) mark_ended(*raw);
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
    for (std::size_t i = streams().size(); i-- > 0;) {
        Stream* conn = streams()[i].get();
        if (conn->blocked || conn->ended || transport::process_alive(transport::endpoint_pid(conn->writer_id))) continue;
        if (read_stream(*conn) == Read::eof) mark_ended(*conn);
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

void PipeReader::on_closed(Stream& stream, bool garbage) {
    const Conn& conn = static_cast<const Conn&>(stream);
    const pid_t pid = transport::endpoint_pid(conn.writer_id);
    if (same_file(conn.path, conn.dev, conn.ino)) {
        if (garbage || !transport::process_alive(pid)) {
            ::unlink(conn.path.c_str());
        } else if (stale_.size() < kMaxStale) {
            stale_.push_back(Stale{conn.path, conn.dev, conn.ino, pid});  // its writer may be dying
        }
    }
    if (std::none_of(streams().begin(), streams().end(), [&](const auto& s) { return s->writer_id == conn.writer_id; })) {
        std::lock_guard<std::mutex> lock(sync_mu_);
        attached_ids_.erase(conn.writer_id);
    }
}

}  // namespace ferry::pipe
