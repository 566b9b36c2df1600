#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "uds_transport.hpp"

namespace ferry::uds {

namespace {

constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT;

std::string hex_id(std::uint64_t id) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(id));
    return buf;
}

bool is_retry(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

}  // namespace

UdsWriter::UdsWriter(const Host& host, const TopicParams& params) : host_(&host), params_(params) {}

UdsWriter::~UdsWriter() = default;

Status UdsWriter::loan(std::size_t size, LoanBuffer& out) noexcept {
    if (size > params_.max_message_size) {
        return Status(Errc::too_large, "uds: loan of " + std::to_string(size) + " bytes exceeds max_message_size " +
                                           std::to_string(params_.max_message_size) + " of topic " + params_.topic);
    }
    try {
        std::size_t index = 0;
        while (index < slots_.size() && slots_[index].in_use) ++index;
        if (index == slots_.size()) slots_.emplace_back();
        Slot& slot = slots_[index];
        const std::size_t needed = kHeaderSize + size;
        if (slot.cap < needed) {
            // Grow geometrically but never past what the topic allows; default-initialised
            // (not zeroed) so untouched pages of a big buffer cost nothing.
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
        return Status(Errc::no_resources, "uds: cannot allocate a loan of " + std::to_string(size) + " bytes");
    }
}

UdsWriter::Slot* UdsWriter::slot_of(const LoanBuffer& buf) noexcept {
    if (buf.handle == 0 || buf.handle > slots_.size()) return nullptr;
    Slot& slot = slots_[buf.handle - 1];
    if (!slot.in_use || buf.data != slot.mem.get() + kHeaderSize) return nullptr;
    return &slot;
}

void UdsWriter::release(LoanBuffer& buf) noexcept {
    if (Slot* slot = slot_of(buf)) slot->in_use = false;
    buf = LoanBuffer{};
}

Status UdsWriter::commit(LoanBuffer& buf, std::size_t size) noexcept {
    Slot* slot = slot_of(buf);
    if (slot == nullptr) return Status(Errc::invalid_argument, "uds: commit of a buffer that is not an open loan");
    Status result;
    try {
        if (size > params_.max_message_size) {
            result = Status(Errc::too_large, "uds: message of " + std::to_string(size) +
                                                 " bytes exceeds max_message_size " +
                                                 std::to_string(params_.max_message_size) + " of topic " + params_.topic);
        } else if (size > buf.capacity) {
            result = Status(Errc::invalid_argument, "uds: commit size larger than the loan");
        } else {
            result = deliver(slot->mem.get(), kHeaderSize + size);
        }
    } catch (...) {
        result = Status(Errc::internal, "uds: commit failed");
    }
    slot->in_use = false;
    buf = LoanBuffer{};
    return result;
}

void UdsWriter::refresh_snapshot() {
    const std::uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == snapshot_generation_) return;
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_.clear();
    for (auto& [id, conn] : conns_) snapshot_.push_back(conn);
    snapshot_generation_ = generation_.load(std::memory_order_relaxed);
}

void UdsWriter::drop(Conn& conn, const char* why) {
    transport::log(*host_, transport::LogLevel::debug,
                   "uds: writer of " + params_.topic + " drops reader " + hex_id(conn.reader_id) + ": " + why);
    conn.dead = true;
    conn.fd.reset();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conns_.find(conn.reader_id);
    if (it != conns_.end() && it->second.get() == &conn) {
        conns_.erase(it);
        count_.store(conns_.size(), std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
}

// Sends one frame to every reader. Each send is non-blocking; readers whose socket is full
// are then waited for together, so one commit blocks for at most block_timeout in total.
Status UdsWriter::deliver(std::byte* frame, std::size_t total) {
    refresh_snapshot();
    FrameHeader header{kFrameMagic, 0, total - kHeaderSize};
    const bool drop_oldest = params_.overflow == transport::Overflow::drop_oldest;
    Errc worst = Errc::ok;
    std::size_t full = 0;
    std::size_t torn = 0;

    pending_.clear();
    for (auto& sp : snapshot_) {
        Conn& conn = *sp;
        if (conn.dead) continue;
        header.dropped_before = conn.dropped;
        std::memcpy(frame, &header, kHeaderSize);
        const ssize_t n = ::send(conn.fd.get(), frame, total, kSendFlags);
        if (n == static_cast<ssize_t>(total)) {
            conn.dropped = 0;
        } else if (n > 0) {
            pending_.push_back({&conn, static_cast<std::size_t>(n)});
        } else if (n < 0 && is_retry(errno)) {
            // drop_oldest: the reader's drain thread empties its socket all the time and drops
            // the oldest itself, so a full socket is a moment's wait, and skipping this frame
            // would drop the newest. Only a reader that stopped draining costs block_timeout.
            if (params_.overflow == transport::Overflow::fail) {
                worst = Errc::would_block;
                ++full;
            } else {
                pending_.push_back({&conn, 0});
            }
        } else {
            drop(conn, n < 0 ? std::strerror(errno) : "connection closed");
        }
    }

    if (!pending_.empty()) {
        const auto deadline = Clock::now() + params_.block_timeout;
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
                header.dropped_before = p.conn->dropped;
                std::memcpy(frame, &header, kHeaderSize);
                const ssize_t n = ::send(p.conn->fd.get(), frame + p.sent, total - p.sent, kSendFlags);
                if (n > 0) {
                    p.sent += static_cast<std::size_t>(n);
                    if (p.sent < total) continue;
                    p.conn->dropped = 0;
                } else if (n < 0 && is_retry(errno)) {
                    continue;
                } else {
                    drop(*p.conn, n < 0 ? std::strerror(errno) : "connection closed");
                }
                pending_[i] = pending_.back();
                pending_.pop_back();
            }
        }
        for (Pending& p : pending_) {
            if (p.sent == 0) {
                ++full;
                if (drop_oldest) ++p.conn->dropped;  // reported in the next frame's header
            } else {
                // Half a frame is in the socket: closing the connection is the only way to keep
                // the reader from ever seeing a torn message. The next sync reconnects.
                drop(*p.conn, "timed out in the middle of a frame");
                ++torn;
            }
            if (!drop_oldest) worst = Errc::timeout;
        }
    }

    if (worst == Errc::ok) return Status::ok();
    std::string msg = "uds: topic " + params_.topic + ": ";
    if (worst == Errc::would_block) {
        msg += std::to_string(full) + " reader(s) had a full queue (overflow fail)";
    } else {
        msg += std::to_string(full + torn) + " reader(s) stayed full for block_timeout";
        if (torn) msg += " (" + std::to_string(torn) + " disconnected mid-frame)";
    }
    return Status(worst, std::move(msg));
}

UniqueFd UdsWriter::connect_to(std::uint64_t reader_id, std::string& error) const {
    const std::string path = socket_path(params_, reader_id);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        error = "cannot create socket: " + std::string(std::strerror(errno));
        return {};
    }
    UnixAddress addr;
    if (auto st = addr.init(path); !st) {
        error = st.message();
        return {};
    }
    if (::connect(fd.get(), addr.get(), addr.size()) != 0) {
        // EAGAIN: the reader's backlog is full; the next sync tries again.
        error = "cannot connect to " + path + ": " + std::strerror(errno);
        return {};
    }
    const Hello hello{kHelloMagic, kWireVersion, params_.endpoint_id};
    if (::send(fd.get(), &hello, sizeof hello, kSendFlags) != static_cast<ssize_t>(sizeof hello)) {
        error = "cannot greet " + path + ": " + std::strerror(errno);
        return {};
    }
    return fd;
}

void UdsWriter::sync_readers(const std::vector<PeerInfo>& readers) noexcept {
    try {
        std::lock_guard<std::mutex> sync_lock(sync_mu_);
        std::vector<std::uint64_t> to_add;
        bool changed = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (auto it = conns_.begin(); it != conns_.end();) {
                const bool listed = std::any_of(readers.begin(), readers.end(),
                                                [&](const PeerInfo& p) { return p.endpoint_id == it->first; });
                if (listed) {
                    ++it;
                } else {
                    it = conns_.erase(it);  // the writer thread closes it with its snapshot
                    changed = true;
                }
            }
            for (const PeerInfo& p : readers) {
                if (p.endpoint_id != 0 && conns_.count(p.endpoint_id) == 0) to_add.push_back(p.endpoint_id);
            }
        }
        for (std::uint64_t id : to_add) {
            std::string error;
            UniqueFd fd = connect_to(id, error);
            if (!fd.valid()) {
                transport::log(*host_, transport::LogLevel::debug, "uds: writer of " + params_.topic + ": " + error);
                continue;
            }
            auto conn = std::make_shared<Conn>();
            conn->fd = std::move(fd);
            conn->reader_id = id;
            std::lock_guard<std::mutex> lock(mu_);
            conns_.emplace(id, std::move(conn));
            changed = true;
        }
        if (changed) {
            std::lock_guard<std::mutex> lock(mu_);
            count_.store(conns_.size(), std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
    } catch (...) {
        transport::log(*host_, transport::LogLevel::error, "uds: sync_readers failed for topic " + params_.topic);
    }
}

}  // namespace ferry::uds
