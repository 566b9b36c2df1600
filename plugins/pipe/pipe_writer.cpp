#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include <ferry/transport/naming.hpp>

#include "pipe_transport.hpp"

namespace ferry::pipe {

namespace {

std::string hex_id(std::uint64_t id) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(id));
    return buf;
}

bool is_retry(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

// drop_oldest: how long a writer waits for a reader's drain thread before skipping it.
constexpr auto kDrainGrace = std::chrono::milliseconds(50);

}  // namespace

PipeWriter::PipeWriter(const Host& host, const TopicParams& params) : host_(&host), params_(params) {}

PipeWriter::~PipeWriter() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, conn] : conns_) unlink_locked(*conn);
    conns_.clear();
}

Status PipeWriter::loan(std::size_t size, LoanBuffer& out) noexcept {
    if (size > params_.max_message_size) {
        return Status(Errc::too_large, "pipe: loan of " + std::to_string(size) + " bytes exceeds max_message_size " +
                                           std::to_string(params_.max_message_size) + " of topic " + params_.topic);
    }
    try {
        std::size_t index = 0;
        while (index < slots_.size() && slots_[index].in_use) ++index;
        if (index == slots_.size()) slots_.emplace_back();
        Slot& slot = slots_[index];
        const std::size_t needed = kHeaderSize + size;
        if (slot.cap < needed) {
            // Grow geometrically but never past what the topic allows; not zeroed, so untouched
            // pages of a big buffer cost nothing.
            std::size_t cap = std::max<std::size_t>({needed, slot.cap * 2, 4096});
            cap = std::min(cap, kHeaderSize + params_.max_message_size);
            slot.mem.reset(new std::byte[cap]);
            slot.cap = cap;
        }
        slot.in_use = true;
        out.data = slot.mem.get() + kHeaderSize;
        out.capacity = slot.cap - kHeaderSize;
        out.handle = index + 1;
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "pipe: cannot allocate a loan of " + std::to_string(size) + " bytes");
    }
}

PipeWriter::Slot* PipeWriter::slot_of(const LoanBuffer& buf) noexcept {
    if (buf.handle == 0 || buf.handle > slots_.size()) return nullptr;
    Slot& slot = slots_[buf.handle - 1];
    if (!slot.in_use || buf.data != slot.mem.get() + kHeaderSize) return nullptr;
    return &slot;
}

void PipeWriter::release(LoanBuffer& buf) noexcept {
    if (Slot* slot = slot_of(buf)) slot->in_use = false;
    buf = LoanBuffer{};
}

Status PipeWriter::commit(LoanBuffer& buf, std::size_t size) noexcept {
    Slot* slot = slot_of(buf);
    if (slot == nullptr) return Status(Errc::invalid_argument, "pipe: commit of a buffer that is not an open loan");
    Status result;
    try {
        if (size > params_.max_message_size) {
            result = Status(Errc::too_large, "pipe: message of " + std::to_string(size) +
                                                 " bytes exceeds max_message_size " +
                                                 std::to_string(params_.max_message_size) + " of topic " + params_.topic);
        } else if (size > buf.capacity) {
            result = Status(Errc::invalid_argument, "pipe: commit size larger than the loan");
        } else {
            result = deliver(slot->mem.get(), kHeaderSize + size);
        }
    } catch (...) {
        result = Status(Errc::internal, "pipe: commit failed");
    }
    slot->in_use = false;
    buf = LoanBuffer{};
    return result;
}

void PipeWriter::refresh_snapshot() {
    const std::uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == snapshot_generation_) return;
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_.clear();
    for (auto& [id, conn] : conns_) snapshot_.push_back(conn);
    snapshot_generation_ = generation_.load(std::memory_order_relaxed);
}

// Removes the FIFO's name if it is still the one this connection created.
void PipeWriter::unlink_locked(const Conn& conn) noexcept {
    struct stat st {};
    if (::lstat(conn.path.c_str(), &st) == 0 && st.st_dev == conn.dev && st.st_ino == conn.ino) {
        ::unlink(conn.path.c_str());
    }
}

// Closing the FIFO is what keeps a reader from ever delivering a half-written frame: the
// reader sees end-of-file and discards the partial. The next sync creates a new FIFO.
void PipeWriter::drop(Conn& conn, const char* why) {
    transport::log(*host_, transport::LogLevel::debug,
                   "pipe: writer of " + params_.topic + " drops reader " + hex_id(conn.reader_id) + ": " + why);
    conn.dead = true;
    conn.fd.reset();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conns_.find(conn.reader_id);
    if (it != conns_.end() && it->second.get() == &conn) {
        unlink_locked(conn);
        conns_.erase(it);
        count_.store(conns_.size(), std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
}

// A full FIFO: is anyone still going to read it? (Writers hold O_RDWR, so a dead reader shows
// only as a FIFO that stays full: its pid is gone, or it removed our FIFO as garbage.)
bool PipeWriter::reader_there(const Conn& conn) const noexcept {
    if (!transport::process_alive(conn.reader_pid)) return false;
    struct stat st {};
    return ::lstat(conn.path.c_str(), &st) == 0 && st.st_dev == conn.dev && st.st_ino == conn.ino;
}

// fail: a frame above PIPE_BUF may be written in part, and a part must never stay behind, so
// such a frame is only written when the FIFO has room for all of it (a page per partly used
// page is counted as lost to packing).
bool PipeWriter::has_room(const Conn& conn, std::size_t total) noexcept {
    int queued = 0;
    if (::ioctl(conn.fd.get(), FIONREAD, &queued) != 0) return true;
    const std::size_t pages_used = (static_cast<std::size_t>(queued) + 4095) / 4096 + 1;
    const std::size_t pages_free = conn.capacity / 4096 > pages_used ? conn.capacity / 4096 - pages_used : 0;
    return pages_free * 4096 >= total;
}

// Writes one frame to every reader's FIFO. Each write is non-blocking; readers whose FIFO is
// full are then waited for together, so one commit blocks for at most block_timeout in total.
Status PipeWriter::deliver(std::byte* frame, std::size_t total) {
    refresh_snapshot();
    FrameHeader header{kFrameMagic, 0, total - kHeaderSize};
    const auto overflow = params_.overflow;
    const bool drop_oldest = overflow == transport::Overflow::drop_oldest;
    Errc worst = Errc::ok;
    std::size_t full = 0;
    std::size_t torn = 0;

    pending_.clear();
    for (auto& sp : snapshot_) {
        Conn& conn = *sp;
        if (conn.dead) continue;
        header.dropped_before = conn.dropped;
        std::memcpy(frame, &header, kHeaderSize);
        if (overflow == transport::Overflow::fail && total > PIPE_BUF && !has_room(conn, total)) {
            worst = Errc::would_block;
            ++full;
            continue;
        }
        const ssize_t n = ::write(conn.fd.get(), frame, total);
        if (n == static_cast<ssize_t>(total)) {
            conn.dropped = 0;
            conn.stalled = false;
        } else if (n > 0) {
            pending_.push_back({&conn, static_cast<std::size_t>(n)});
        } else if (n < 0 && is_retry(errno)) {
            if (!reader_there(conn)) {
                drop(conn, "reader gone");
            } else if (overflow == transport::Overflow::fail) {
                worst = Errc::would_block;
                ++full;
            } else if (drop_oldest && conn.stalled) {
                ++conn.dropped;  // reported in the next frame's header
            } else {
                pending_.push_back({&conn, 0});
            }
        } else {
            drop(conn, n < 0 ? std::strerror(errno) : "short write");
        }
    }

    if (!pending_.empty()) {
        // drop_oldest: the reader's drain thread empties its FIFO all the time, so a full FIFO
        // is a moment's wait; a reader that stopped draining costs one grace period, then is
        // skipped (stalled) until its FIFO has room again.
        const auto wait = drop_oldest ? std::min<Clock::duration>(params_.block_timeout, kDrainGrace)
                                      : Clock::duration(params_.block_timeout);
        const auto deadline = Clock::now() + wait;
        while (!pending_.empty()) {
            pfds_.resize(pending_.size());
            for (std::size_t i = 0; i < pending_.size(); ++i) {
                pfds_[i] = pollfd{pending_[i].conn->fd.get(), POLLOUT, 0};
            }
            const int r = ::poll(pfds_.data(), pfds_.size(), transport::poll_timeout_ms(deadline));
            if (r < 0 && errno != EINTR) break;
            if (r <= 0) {
                if (transport::expired(deadline)) break;
                continue;
            }
            for (std::size_t i = pending_.size(); i-- > 0;) {
                if (pfds_[i].revents == 0) continue;
                Pending& p = pending_[i];
                if (p.sent == 0) {
                    header.dropped_before = p.conn->dropped;
                    std::memcpy(frame, &header, kHeaderSize);
                }
                const ssize_t n = ::write(p.conn->fd.get(), frame + p.sent, total - p.sent);
                if (n > 0) {
                    p.sent += static_cast<std::size_t>(n);
                    if (p.sent < total) continue;
                    p.conn->dropped = 0;
                    p.conn->stalled = false;
                } else if (n < 0 && is_retry(errno)) {
                    continue;
                } else {
                    drop(*p.conn, n < 0 ? std::strerror(errno) : "short write");
                }
                pending_[i] = pending_.back();
                pending_.pop_back();
            }
        }
        for (Pending& p : pending_) {
            if (p.sent == 0) {
                ++full;
                if (drop_oldest) {
                    ++p.conn->dropped;
                    p.conn->stalled = true;
                }
            } else {
                drop(*p.conn, "timed out in the middle of a frame");
                ++torn;
            }
            if (!drop_oldest) worst = Errc::timeout;
        }
    }

    if (worst == Errc::ok) return Status::ok();
    std::string msg = "pipe: topic " + params_.topic + ": ";
    if (worst == Errc::would_block) {
        msg += std::to_string(full) + " reader(s) had a full FIFO (overflow fail)";
    } else {
        msg += std::to_string(full + torn) + " reader(s) stayed full for block_timeout";
        if (torn) msg += " (" + std::to_string(torn) + " FIFO(s) closed mid-frame)";
    }
    return Status(worst, std::move(msg));
}

std::shared_ptr<PipeWriter::Conn> PipeWriter::create_fifo(const PeerInfo& reader, std::string& error) const {
    const pid_t pid = reader.pid > 0 ? reader.pid : transport::endpoint_pid(reader.endpoint_id);
    const std::string path = fifo_path(params_, params_.endpoint_id, reader.endpoint_id);
    if (!transport::process_alive(pid)) {
        error = "reader of " + path + " is gone";
        return nullptr;
    }
    if (::mkfifo(path.c_str(), params_.mode & 07777) != 0) {
        // The name carries our id: an entry of that name is ours, or left over by a dead
        // process that had our pid.
        if (errno != EEXIST || ::unlink(path.c_str()) != 0 || ::mkfifo(path.c_str(), params_.mode & 07777) != 0) {
            error = "cannot create FIFO " + path + ": " + std::strerror(errno);
            return nullptr;
        }
    }
    // O_RDWR (Linux): never fails for want of a reader, and a write never raises SIGPIPE when
    // the reader dies. Data waits in the FIFO until the reader opens it.
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fchmod(fd.get(), params_.mode & 07777) != 0 || ::fstat(fd.get(), &st) != 0) {
        error = "cannot open FIFO " + path + ": " + std::strerror(errno);
        ::unlink(path.c_str());
        return nullptr;
    }
    const std::size_t size = wanted_pipe_size(params_);
    if (::fcntl(fd.get(), F_SETPIPE_SZ, static_cast<int>(size)) < 0) {
        transport::log(*host_, transport::LogLevel::warn,
                       "pipe: cannot size FIFO " + path + " to " + std::to_string(size) + " bytes (" +
                           std::strerror(errno) + "); keeping the kernel default");
    }
    auto conn = std::make_shared<Conn>();
    const int capacity = ::fcntl(fd.get(), F_GETPIPE_SZ);
    conn->capacity = capacity > 0 ? static_cast<std::size_t>(capacity) : 65536;
    conn->fd = std::move(fd);
    conn->reader_id = reader.endpoint_id;
    conn->reader_pid = pid;
    conn->path = path;
    conn->dev = st.st_dev;
    conn->ino = st.st_ino;
    return conn;
}

void PipeWriter::sync_readers(const std::vector<PeerInfo>& readers) noexcept {
    try {
        std::lock_guard<std::mutex> sync_lock(sync_mu_);
        std::vector<PeerInfo> to_add;
        bool changed = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (auto it = conns_.begin(); it != conns_.end();) {
                const bool listed = std::any_of(readers.begin(), readers.end(),
                                                [&](const PeerInfo& p) { return p.endpoint_id == it->first; });
                if (listed) {
                    ++it;
                } else {
                    unlink_locked(*it->second);
                    it = conns_.erase(it);  // the writer thread closes it with its snapshot
                    changed = true;
                }
            }
            for (const PeerInfo& p : readers) {
                if (p.endpoint_id != 0 && conns_.count(p.endpoint_id) == 0) to_add.push_back(p);
            }
        }
        for (const PeerInfo& p : to_add) {
            std::string error;
            auto conn = create_fifo(p, error);
            if (!conn) {
                transport::log(*host_, transport::LogLevel::debug, "pipe: writer of " + params_.topic + ": " + error);
                continue;
            }
            std::lock_guard<std::mutex> lock(mu_);
            conns_.emplace(p.endpoint_id, std::move(conn));
            changed = true;
        }
        if (changed) {
            std::lock_guard<std::mutex> lock(mu_);
            count_.store(conns_.size(), std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
    } catch (...) {
        transport::log(*host_, transport::LogLevel::error, "pipe: sync_readers failed for topic " + params_.topic);
    }
}

}  // namespace ferry::pipe
