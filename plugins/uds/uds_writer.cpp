#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "uds_transport.hpp"

namespace ferry::uds {

namespace {

constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT;

constexpr transport::FramedWriterOptions kOptions{
    "uds", kFrameMagic, "queue", "disconnected mid-frame", "connection closed", {}, false};

}  // namespace

UdsWriter::UdsWriter(const Host& host, const TopicParams& params) : FramedWriter(host, params, kOptions) {}

UdsWriter::~UdsWriter() = default;

ssize_t UdsWriter::put(Channel& ch, const std::byte* data, std::size_t size) noexcept {
    return ::send(ch.fd.get(), data, size, kSendFlags);
}

std::shared_ptr<UdsWriter::Channel> UdsWriter::open_channel(const PeerInfo& reader, std::string& error) {
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
        // EAGAIN: the reader's backlog is full; the next sync tries again.
        error = "cannot connect to " + path + ": " + std::strerror(errno);
        return {};
    }
    const Hello hello{kHelloMagic, kWireVersion, params_.endpoint_id};
    if (::send(fd.get(), &hello, sizeof hello, kSendFlags) != static_cast<ssize_t>(sizeof hello)) {
        error = "cannot greet " + path + ": " + std::strerror(errno);
        return {};
    }
    auto conn = std::make_shared<Channel>();
    conn->fd = std::move(fd);
    return conn;
}

}  // namespace ferry::uds
