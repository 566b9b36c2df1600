#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "uds_transport.hpp"

namespace ferry::uds {

namespace {

constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT;

constexpr transport::FramedWriterOptions kOptions{
    "uds", kFrameMagic, "queue", "disconnected mid-frame", "connection closed"};

}  // namespace

// A stream socket takes a new buffer while its bytes in flight (SIOCOUTQ: sent and not yet
// read by the peer, with kernel overhead) are below SO_SNDBUF, each buffer holding up to about
// half of SO_SNDBUF: a frame goes in whole if every buffer it needs finds the room.
bool UdsWriter::refuse(const Channel& ch, std::size_t total) noexcept {
    const auto& conn = static_cast<const Conn&>(ch);
    int outq = 0;
    // An empty socket takes a frame bigger than its buffer as the reader reads it.
    if (::ioctl(conn.fd.get(), SIOCOUTQ, &outq) != 0 || outq <= 0) return false;
    const std::size_t sndbuf = conn.sndbuf;
    const std::size_t per_buffer = sndbuf / 2 > 1024 ? sndbuf / 2 - 1024 : 1;
    const std::size_t used = static_cast<std::size_t>(outq);
    if (used >= sndbuf) return true;
    if (total <= per_buffer) return false;
    return used + (total - per_buffer) + 2048 * (total / per_buffer + 1) >= sndbuf;
}

UdsWriter::UdsWriter(const Host& host, const TopicParams& params) : FramedWriter(host, params, kOptions) {}

UdsWriter::~UdsWriter() = default;

ssize_t UdsWriter::put(Channel& ch, const std::byte* data, std::size_t size) noexcept {
    return ::send(ch.fd.get(), data, size, kSendFlags);
}

// The reader writes to a connection only to say why it turns it away, just before closing it.
bool UdsWriter::refused(Channel& ch, std::string& why, Errc& code) noexcept {
    if (!ch.fd.valid()) return false;
    RefusalRecord rec{};
    const ssize_t n = ::recv(ch.fd.get(), &rec, sizeof rec, MSG_DONTWAIT);
    if (n != static_cast<ssize_t>(sizeof rec) || rec.magic != kRefusalMagic) return false;
    code = Errc::no_resources;
    switch (static_cast<Refusal>(rec.reason)) {
        case Refusal::too_many: why = "dropped this writer's connection: too many connections"; break;
        case Refusal::foreign_user:
            why = "refused this writer: another user's connection, and the topic's mode lets no one else in";
            code = Errc::permission_denied;
            break;
        case Refusal::over_budget: why = "dropped this writer's connection: over its buffer budget"; break;
        case Refusal::no_descriptors: why = "dropped this writer's connection: out of file descriptors"; break;
        default: why = "refused this writer (reason " + std::to_string(rec.reason) + ")"; break;
    }
    return true;
}

std::shared_ptr<UdsWriter::Channel> UdsWriter::open_channel(const PeerInfo& reader, std::string& error,
                                                            Errc& refusal) {
    const std::string path = socket_path(params_, reader.endpoint_id);
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
        // EAGAIN: the reader's backlog is full (it is flooded or stopped); it is there but does
        // not take us: reported, and tried again later.
        if (errno == EAGAIN) refusal = Errc::no_resources;
        error = "cannot connect to " + path + ": " + std::strerror(errno);
        return {};
    }
    const Hello hello{kHelloMagic, kWireVersion, params_.endpoint_id};
    if (::send(fd.get(), &hello, sizeof hello, kSendFlags) != static_cast<ssize_t>(sizeof hello)) {
        error = "cannot greet " + path + ": " + std::strerror(errno);
        return {};
    }
    auto conn = std::make_shared<Conn>();
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0 && sndbuf > 0)
        conn->sndbuf = static_cast<std::size_t>(sndbuf);
    conn->fd = std::move(fd);
    return conn;
}

}  // namespace ferry::uds
