// dgram: a ferry transport on Unix datagram sockets, written against the installed SDK as any
// third-party transport would be. Each reader binds a SOCK_DGRAM socket in the runtime
// directory; each writer connects one socket to it and sends the message in datagrams of at
// most kUnit bytes. The SDK's FragmentingWriter/FragmentingReader do everything else: loans,
// fragmentation and reassembly, the overflow policies, lost counting, drop_oldest draining,
// dead readers, interrupts. What is left here is the mechanism: how to open a receiver, send a
// unit, receive a unit and wake a blocked receive.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <ferry/transport/fragment.hpp>
#include <ferry/transport/naming.hpp>
#include <ferry/transport/plugin.hpp>
#include <ferry/transport/posix.hpp>

namespace dgram {

using namespace ferry::transport;

// A datagram is charged to the sender's socket buffer (net.core.wmem_default, about 208 KiB)
// until the reader takes it: 64 KiB units keep three in flight per writer.
constexpr std::size_t kUnit = 64 * 1024;
constexpr std::uint32_t kWake = 0x454B4157u;  // "WAKE": a unit of 4 bytes that ends a blocked receive

std::string socket_path(const TopicParams& p, std::uint64_t endpoint_id) {
    return runtime_path(p.runtime_dir, p.domain, endpoint_id, "dgram");
}

bool fill_address(const std::string& path, sockaddr_un& addr) {
    addr = sockaddr_un{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return false;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

int send_unit(int fd, const std::byte* unit, std::size_t len) noexcept {
    // EAGAIN: the reader's queue (net.unix.max_dgram_qlen) or our send buffer is full;
    // ECONNREFUSED: the reader closed its socket (the SDK marks it gone).
    return ::send(fd, unit, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? errno : 0;
}

bool socket_exists(const char* path) noexcept {
    struct stat st {};
    return ::stat(path, &st) == 0;
}

class Writer final : public FragmentingWriter {
public:
    Writer(const Host& host, const TopicParams& params) : FragmentingWriter(host, params, &send_unit, "dgram", false) {}

protected:
    Status open_receiver(const PeerInfo& reader, UniqueFd& fd, std::size_t& unit_size, std::string& object) noexcept override {
        try {
            const std::string path = socket_path(params_, reader.endpoint_id);
            sockaddr_un addr;
            if (!fill_address(path, addr)) return Status(Errc::invalid_argument, "dgram: socket path too long: " + path);
            UniqueFd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (s.get() < 0) return os_error(errc_from_errno(errno), "dgram: cannot create a socket", errno);
            if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
                const int err = errno;
                return os_error(err == ENOENT || err == ECONNREFUSED ? Errc::closed : errc_from_errno(err),
                                "dgram: cannot connect to " + path, err);
            }
            fd = std::move(s);
            unit_size = kUnit;
            object = path;
            return Status::ok();
        } catch (...) {
            return Status(Errc::no_resources, "dgram: out of memory");
        }
    }
    ReceiverHooks hooks() const noexcept override {
        ReceiverHooks h;
        h.still_there = &socket_exists;
        return h;
    }
    void reclaim_receiver(const PeerInfo& reader) noexcept override {
        try {
            ::unlink(socket_path(params_, reader.endpoint_id).c_str());
        } catch (...) {
        }
    }
};

class Reader final : public FragmentingReader {
public:
    Reader(const Host& host, const TopicParams& params, std::string path, UniqueFd sock, UniqueFd waker)
        : FragmentingReader(host, params, "dgram"), path_(std::move(path)), sock_(std::move(sock)), waker_(std::move(waker)) {
        start();
    }
    ~Reader() override {
        stop();
        ::unlink(path_.c_str());
    }

protected:
    Status receive(Message& out, std::uint64_t& pin, Clock::time_point deadline) noexcept override {
        pin = 0;
        const bool try_only = expired(deadline);
        while (true) {
            if (interrupted()) return Status(Errc::closed, "interrupted");
            if (!unit_.data) {
                try {
                    unit_ = reassembler().pool().acquire(kUnit);
                } catch (...) {
                    return Status(Errc::no_resources, "dgram: out of memory");
                }
            }
            // MSG_TRUNC: the real length of a datagram larger than the buffer, which is garbage.
            const ssize_t n = ::recv(sock_.get(), unit_.data.get(), unit_.capacity, MSG_DONTWAIT | MSG_TRUNC);
            if (n >= 0) {
                const auto len = static_cast<std::size_t>(n);
                std::uint32_t magic = 0;
                if (len >= sizeof magic) std::memcpy(&magic, unit_.data.get(), sizeof magic);
                if (len == sizeof magic && magic == kWake) continue;
                const char* why = len > unit_.capacity ? "datagram larger than a unit" : nullptr;
                if (why == nullptr) {
                    try {
                        if (reassembler().push(unit_.data.get(), len, out, &why) == Reassembler::Result::message) {
                            if (!out.buffer.data) out.buffer = std::move(unit_);  // a one-unit message is a view
                            unit_ = ByteBuffer{};
                            return Status::ok();
                        }
                    } catch (...) {
                        return Status(Errc::no_resources, "dgram: out of memory while reassembling");
                    }
                } else {
                    reassembler().add_lost(1);
                }
                if (why != nullptr) report_garbage(why);
                continue;
            }
            const int err = errno;
            if (err == EINTR) continue;
            if (err != EAGAIN) return os_error(errc_from_errno(err), "dgram: cannot receive on " + path_, err);
            idle();
            if (try_only) return Status(Errc::would_block, "no message");
            if (expired(deadline)) return Status(Errc::timeout, "timed out");
            pollfd p{sock_.get(), POLLIN, 0};
            ::poll(&p, 1, poll_timeout_ms(deadline));
        }
    }
    void unpin(std::uint64_t) noexcept override {}
    void wake() noexcept override {
        const std::uint32_t w = kWake;
        (void)::send(waker_.get(), &w, sizeof w, MSG_DONTWAIT | MSG_NOSIGNAL);
    }

private:
    std::string path_;
    UniqueFd sock_;
    UniqueFd waker_;  // connected to our own socket, for wake()
    ByteBuffer unit_;
};

class Transport final : public ferry::transport::Transport {
public:
    explicit Transport(const Host& host) : host_(host) {}

    const char* name() const noexcept override { return "dgram"; }
    Capabilities capabilities() const noexcept override {
        return Capabilities{false, kMaxFragmentedMessage,
                            "Unix datagram sockets, one per reader, 64 KiB datagrams (the SDK's example plugin)", 0};
    }
    Status validate(const TopicParams& params) const noexcept override {
        if (params.depth == 0) return Status(Errc::invalid_argument, "dgram: depth must be at least 1");
        if (params.max_message_size > kMaxFragmentedMessage)
            return Status(Errc::invalid_argument, "dgram: max_message_size exceeds the 4 GiB a unit header describes");
        return Status::ok();
    }
    Status create_writer(const TopicParams& params, std::unique_ptr<ferry::transport::Writer>& out) noexcept override {
        if (Status st = validate(params); !st) return st;
        try {
            out = std::make_unique<Writer>(host_, params);
            return Status::ok();
        } catch (...) {
            return Status(Errc::no_resources, "dgram: out of memory");
        }
    }
    Status create_reader(const TopicParams& params, std::unique_ptr<ferry::transport::Reader>& out) noexcept override {
        if (Status st = validate(params); !st) return st;
        try {
            const std::string path = socket_path(params, params.endpoint_id);
            sockaddr_un addr;
            if (!fill_address(path, addr)) return Status(Errc::invalid_argument, "dgram: socket path too long: " + path);
            UniqueFd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (s.get() < 0) return os_error(errc_from_errno(errno), "dgram: cannot create a socket", errno);
            ::unlink(path.c_str());  // the id is ours: a file of that name is a dead process's leftover
            if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
                return os_error(errc_from_errno(errno), "dgram: cannot bind " + path, errno);
            if (::chmod(path.c_str(), static_cast<mode_t>(params.mode)) != 0) {
                const int err = errno;
                ::unlink(path.c_str());
                return os_error(errc_from_errno(err), "dgram: cannot set the mode of " + path, err);
            }
            UniqueFd waker(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (waker.get() < 0 || ::connect(waker.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
                const int err = errno;
                ::unlink(path.c_str());
                return os_error(errc_from_errno(err), "dgram: cannot connect to " + path, err);
            }
            out = std::make_unique<Reader>(host_, params, path, std::move(s), std::move(waker));
            return Status::ok();
        } catch (...) {
            return Status(Errc::no_resources, "dgram: out of memory");
        }
    }

private:
    const Host& host_;
};

}  // namespace dgram

FERRY_TRANSPORT_PLUGIN(dgram::Transport)
