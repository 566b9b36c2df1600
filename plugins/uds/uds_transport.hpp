// The Unix-domain-socket transport: each reader listens on a SOCK_STREAM socket
// ferry.<domain>.<reader id>.sock in the runtime directory; each writer opens one connection
// per reader. A connection carries exactly one writer's frames, so frames never interleave.
//
// Wire format on a connection (host byte order, both ends are on one host):
//   Hello  {magic "FRYH", version, writer endpoint id}       once, right after connect
//   Frame  {magic "FRY1", dropped_before, size} + size bytes  per message
// `dropped_before` counts messages the writer dropped for this reader (drop_oldest, socket
// full) just before this one; the reader adds it to lost().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

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

struct FrameHeader {
    std::uint32_t magic;
    std::uint32_t dropped_before;
    std::uint64_t size;
};

inline constexpr std::size_t kHeaderSize = sizeof(FrameHeader);
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

class UdsWriter final : public transport::Writer {
public:
    UdsWriter(const Host& host, const TopicParams& params);
    ~UdsWriter() override;

    Status loan(std::size_t size, LoanBuffer& out) noexcept override;
    Status commit(LoanBuffer& buf, std::size_t size) noexcept override;
    void release(LoanBuffer& buf) noexcept override;
    void sync_readers(const std::vector<PeerInfo>& readers) noexcept override;
    std::size_t reader_count() const noexcept override { return count_.load(std::memory_order_relaxed); }

private:
    struct Conn {
        UniqueFd fd;
        std::uint64_t reader_id = 0;
        std::uint32_t dropped = 0;  // drop_oldest: frames skipped since the last one sent
        bool dead = false;
    };
    struct Slot {
        std::unique_ptr<std::byte[]> mem;
        std::size_t cap = 0;
        bool in_use = false;
    };
    struct Pending {
        Conn* conn;
        std::size_t sent;
    };

    UniqueFd connect_to(std::uint64_t reader_id, std::string& error) const;
    void refresh_snapshot();
    void drop(Conn& conn, const char* why);
    Status deliver(std::byte* frame, std::size_t total);
    Slot* slot_of(const LoanBuffer& buf) noexcept;

    const Host* host_;
    TopicParams params_;

    mutable std::mutex mu_;  // guards conns_; taken briefly by commit and sync_readers
    std::unordered_map<std::uint64_t, std::shared_ptr<Conn>> conns_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<std::size_t> count_{0};
    std::mutex sync_mu_;  // one sync_readers at a time

    // Owned by the thread using the writer.
    std::vector<std::shared_ptr<Conn>> snapshot_;
    std::uint64_t snapshot_generation_ = ~std::uint64_t{0};
    std::vector<Slot> slots_;
    std::vector<Pending> pending_;
    std::vector<pollfd> pfds_;
};

class UdsReader final : public transport::Reader {
public:
    // Creates the listening socket (and, for drop_oldest, the drain thread).
    static Status create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out);
    ~UdsReader() override;

    Status take(SampleBuffer& out, Clock::time_point deadline) noexcept override;
    void release(SampleBuffer& sample) noexcept override;
    void sync_writers(const std::vector<PeerInfo>& writers) noexcept override;
    std::uint64_t lost() const noexcept override { return lost_.load(std::memory_order_relaxed); }
    void interrupt() noexcept override;

private:
    struct Chunk {
        std::unique_ptr<std::byte[]> mem;
        std::size_t cap = 0;
        std::uint32_t refs = 0;  // samples handed out and not yet released
        bool attached = false;   // a connection still receives into it
    };
    struct Conn {
        UniqueFd fd;
        std::uint64_t writer_id = 0;
        bool hello = false;
        bool blocked = false;     // an older connection of the same writer is still open
        bool registered = false;  // in the epoll set
        Chunk* chunk = nullptr;
        std::size_t pos = 0;   // first unparsed byte in chunk
        std::size_t fill = 0;  // end of received bytes in chunk
        std::size_t need = kHeaderSize;  // bytes the frame at pos needs, once its header is known
    };
    enum class Parse { frame, incomplete, hello, bad };
    enum class Recv { frame, timeout, closed, error };

    UdsReader(const Host& host, const TopicParams& params);

    Recv receive(SampleBuffer& out, Clock::time_point deadline);
    bool try_parse_any(SampleBuffer& out);
    Parse try_parse(Conn& conn, SampleBuffer& out, std::string& why);
    bool read_conn(Conn& conn);
    void prepare_space(Conn& conn);
    void accept_all();
    void close_conn(std::size_t index, bool torn);
    void update_interest();
    // Locks pool_mu_ only when a drain thread shares the chunks with the taking thread.
    std::unique_lock<std::mutex> pool_lock() {
        return threaded_ ? std::unique_lock<std::mutex>(pool_mu_) : std::unique_lock<std::mutex>();
    }

    Chunk* get_chunk_locked(std::size_t need);
    void detach_locked(Chunk* chunk);
    void release_locked(Chunk* chunk);

    Status take_queued(SampleBuffer& out, Clock::time_point deadline, bool nonblocking);
    void drain_loop();

    const Host* host_;
    TopicParams params_;
    std::string path_;
    UniqueFd listen_fd_;
    UniqueFd wake_fd_;  // eventfd: interrupt() in direct mode, shutdown of the drain thread
    UniqueFd epoll_fd_;  // wake_fd_, listen_fd_ and every connection not blocked
    bool threaded_ = false;  // drop_oldest: a drain thread receives
    std::atomic<bool> interrupted_{false};
    std::atomic<std::uint64_t> lost_{0};

    // Receive state: used by the thread in take() (direct mode) or by the drain thread.
    std::vector<std::unique_ptr<Conn>> conns_;
    std::vector<Conn*> ready_;
    std::unordered_set<std::uint64_t> first_of_writer_;  // scratch of update_interest()
    bool interest_dirty_ = false;
    std::size_t rr_ = 0;

    // Chunks of received bytes; samples point into them.
    std::mutex pool_mu_;
    std::unordered_set<Chunk*> all_chunks_;
    std::vector<Chunk*> free_small_;
    std::vector<Chunk*> free_large_;

    // drop_oldest only: the newest `depth` frames, filled by the drain thread.
    std::mutex queue_mu_;
    std::condition_variable queue_cv_;
    std::vector<SampleBuffer> ring_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    std::thread drain_;
};

class UdsTransport final : public transport::Transport {
public:
    explicit UdsTransport(const Host& host) : host_(&host) {}

    const char* name() const noexcept override { return "uds"; }
    transport::Capabilities capabilities() const noexcept override;
    Status validate(const TopicParams& params) const noexcept override;
    Status create_writer(const TopicParams& params, std::unique_ptr<transport::Writer>& out) noexcept override;
    Status create_reader(const TopicParams& params, std::unique_ptr<transport::Reader>& out) noexcept override;

private:
    const Host* host_;
};

}  // namespace ferry::uds
