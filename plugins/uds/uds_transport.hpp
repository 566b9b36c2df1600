// The Unix-domain-socket transport: each reader listens on a SOCK_STREAM socket
// ferry.<domain>.<reader id>.sock in the runtime directory; each writer opens one connection
// per reader. A connection carries exactly one writer's frames, so frames never interleave.
//
// Wire format on a connection (host byte order, both ends are on one host):
//   Hello  {magic "FRYH", version, writer endpoint id}       once, right after connect
//   Frame  {magic "FRY1", dropped_before, size} + size bytes  per message
// `dropped_before` counts messages the writer dropped for this reader (drop_oldest, socket
// full) just before this one; the reader adds it to lost().
// The reader sends nothing back, except once before it refuses or drops a connection:
//   Refusal {magic "FRYX", reason, 0}                        so the writer learns why
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ferry/transport/framed_stream.hpp>
#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::uds {

using transport::Clock;
using transport::Errc;
using transport::Host;
using transport::LoanBuffer;
using transport::PeerInfo;
using transport::SampleBuffer;
using transport::Status;
using transport::TopicParams;
using transport::UniqueFd;

inline constexpr std::uint32_t kHelloMagic = 0x48595246u;  // "FRYH" in memory
inline constexpr std::uint32_t kFrameMagic = 0x31595246u;  // "FRY1" in memory
inline constexpr std::uint32_t kWireVersion = 1;

struct Hello {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint64_t writer_id;
};

// Why a reader turned a connection away (Refusal::reason).
enum class Refusal : std::uint32_t {
    too_many = 1,        // connection cap reached: an idle connection went, or the new one
    foreign_user = 2,    // the peer's uid is not the reader's and the topic's mode is 0600
    over_budget = 3,     // its incomplete frame was the largest when the reader was over budget
    no_descriptors = 4,  // the reader's process ran out of file descriptors
};
inline constexpr std::uint32_t kRefusalMagic = 0x58595246u;  // "FRYX" in memory
struct RefusalRecord {
    std::uint32_t magic;
    std::uint32_t reason;
    std::uint64_t reserved;
};

using transport::FrameHeader;
inline constexpr std::size_t kHeaderSize = transport::kFrameHeaderSize;
static_assert(sizeof(Hello) == kHeaderSize, "hello and frame header share one size");

// The socket path of a reader endpoint.
std::string socket_path(const TopicParams& params, std::uint64_t reader_id);

// A sockaddr_un for `path`. Paths longer than sun_path are reached through
// /proc/self/fd/<directory fd>/<name>, so a deep runtime directory still works.
class UnixAddress {
public:
    Status init(const std::string& path);
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&addr_); }
    socklen_t size() const noexcept { return len_; }

private:
    sockaddr_un addr_{};
    socklen_t len_ = 0;
    UniqueFd dir_;  // keeps the /proc/self/fd/<n> alias valid
};

// The framing and the overflow policy are the SDK's FramedWriter; this is the mechanism: one
// connection per reader, greeted with Hello; a dead reader shows as a send error.
class UdsWriter final : public transport::FramedWriter {
public:
    UdsWriter(const Host& host, const TopicParams& params);
    ~UdsWriter() override;

private:
    struct Conn : Channel {
        std::size_t sndbuf = 212992;  // SO_SNDBUF of the connection (net.core.wmem_default)
    };
    std::shared_ptr<Channel> open_channel(const PeerInfo& reader, std::string& error, Errc& refusal) override;
    ssize_t put(Channel& ch, const std::byte* data, std::size_t size) noexcept override;
    bool refuse(const Channel& ch, std::size_t total) noexcept override;
    bool refused(Channel& ch, std::string& why, Errc& code) noexcept override;
};

// The receiving, the budget and per-writer order are the SDK's FramedStreamReader; this is
// the mechanism: a listening socket whose connections greet with Hello, a cap on connections
// (per reader and per process, with idle ones given up first), other users kept out unless
// the mode lets them in, and a Refusal sent to a peer that is turned away.
class UdsReader final : public transport::FramedStreamReader {
public:
    // Creates the listening socket (and, for drop_oldest, the drain thread).
    static Status create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out);
    ~UdsReader() override;

    void sync_writers(const std::vector<PeerInfo>& writers) noexcept override;

private:
    struct Conn : Stream {
        std::uint64_t frames = 0;  // received: a connection that never sent one goes first
        Clock::time_point active;  // accepted, or its last frame
    };

    UdsReader(const Host& host, const TopicParams& params);

    void on_events(std::uint32_t fired) override;
    bool greet(Stream& stream, std::string& why) override;
    void on_frame(Stream& stream) override;
    void on_shed(Stream& stream) override { refuse(stream.fd.get(), Refusal::over_budget); }
    bool shed_before(const Stream& a, const Stream& b) const noexcept override {
        return static_cast<const Conn&>(a).active < static_cast<const Conn&>(b).active;
    }
    void on_closed(Stream&, bool) override;
    Clock::time_point wake_by(Clock::time_point deadline) override;

    void accept_all();
    void drop_conn(Conn* conn, Refusal why);
    void refuse(int fd, Refusal why);
    Conn* idle_victim();
    bool refuse_with_spare();
    void pause_listening(int err);
    void resume_listening();

    std::string path_;
    UniqueFd listen_fd_;
    uid_t uid_ = 0;           // ours: other uids only when the mode lets group or others in
    UniqueFd spare_fd_;       // given up to accept (and refuse) one connection at EMFILE
    bool listen_paused_ = false;  // out of descriptors: the listening socket is not watched
    Clock::time_point listen_resume_{};
    transport::LogThrottle refuse_log_;
    transport::LogThrottle fd_log_;
};

class UdsTransport final : public transport::Transport {
public:
    explicit UdsTransport(const Host& host) : host_(&host) {}

    const char* name() const noexcept override { return "uds"; }
    transport::Capabilities capabilities() const noexcept override;
    Status validate(const TopicParams& params) const noexcept override;
    Status create_writer(const TopicParams& params, std::unique_ptr<transport::Writer>& out) noexcept override;
    Status create_reader(const TopicParams& params, std::unique_ptr<transport::Reader>& out) noexcept override;
    // Its objects: each reader's listening socket, ferry.<domain>.<reader>.sock in the runtime dir.
    std::vector<transport::OsObject> list_objects(const std::string& domain,
                                                  const std::string& runtime_dir) const noexcept override {
        return transport::list_objects_in(runtime_dir, domain, "sock");
    }
    bool remove_object(const std::string& path) const noexcept override { return ::unlink(path.c_str()) == 0; }

private:
    const Host* host_;
};

}  // namespace ferry::uds
