// The named-pipe transport: one FIFO per (writer, reader) pair. The writer creates
//   <runtime_dir>/ferry.<domain>.<writer id>.to-<reader id, 16 hex>.fifo
// for every reader it is told about, and is the only process writing into it, so a message is
// one framed write() (header + bytes), never fragmented and never interleaved with another
// writer's. The reader finds the FIFOs addressed to it through inotify on the runtime
// directory (and sync_writers as a fallback) and watches them all in one epoll set.
//
// Wire format on a FIFO (host byte order, both ends are on one host):
//   Frame {magic "FRYP", dropped_before, size} + size bytes   per message
// `dropped_before` counts messages the writer skipped for this reader (drop_oldest, FIFO
// full) just before this one; the reader adds it to lost().
#pragma once

#include <sys/types.h>

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

#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::pipe {

using transport::Clock;
using transport::Errc;
using transport::Host;
using transport::LoanBuffer;
using transport::PeerInfo;
using transport::SampleBuffer;
using transport::Status;
using transport::TopicParams;
using transport::UniqueFd;

inline constexpr std::uint32_t kFrameMagic = 0x50595246u;  // "FRYP" in memory
inline constexpr std::size_t kMaxMessage = 0xFFFFFFFFu;    // what validate() allows

struct FrameHeader {
    std::uint32_t magic;
    std::uint32_t dropped_before;
    std::uint64_t size;
};

inline constexpr std::size_t kHeaderSize = sizeof(FrameHeader);

// "to-<reader id, 16 hex>.fifo": the suffix of the FIFO a writer creates for `reader_id`.
std::string fifo_suffix(std::uint64_t reader_id);
// The FIFO `writer_id` creates for `reader_id`.
std::string fifo_path(const TopicParams& params, std::uint64_t writer_id, std::uint64_t reader_id);
// Pipe capacity asked for with F_SETPIPE_SZ (see README: depth).
std::size_t wanted_pipe_size(const TopicParams& params);

class DirWatcher;

class PipeWriter final : public transport::Writer {
public:
    PipeWriter(const Host& host, const TopicParams& params);
    ~PipeWriter() override;

    Status loan(std::size_t size, LoanBuffer& out) noexcept override;
    Status commit(LoanBuffer& buf, std::size_t size) noexcept override;
    void release(LoanBuffer& buf) noexcept override;
    void sync_readers(const std::vector<PeerInfo>& readers) noexcept override;
    std::size_t reader_count() const noexcept override { return count_.load(std::memory_order_relaxed); }

private:
    struct Conn {
        UniqueFd fd;
        std::uint64_t reader_id = 0;
        pid_t reader_pid = 0;
        std::string path;
        dev_t dev = 0;
        ino_t ino = 0;
        std::size_t capacity = 0;   // of the pipe, in bytes
        std::uint32_t dropped = 0;  // drop_oldest: frames skipped since the last one sent
        bool stalled = false;       // drop_oldest: the reader stopped draining; skip at once
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

    std::shared_ptr<Conn> create_fifo(const PeerInfo& reader, std::string& error) const;
    bool reader_there(const Conn& conn) const noexcept;
    static bool has_room(const Conn& conn, std::size_t total) noexcept;
    void refresh_snapshot();
    void drop(Conn& conn, const char* why);
    void unlink_locked(const Conn& conn) noexcept;
    Status deliver(std::byte* frame, std::size_t total);
    Slot* slot_of(const LoanBuffer& buf) noexcept;

    const Host* host_;
    TopicParams params_;

    mutable std::mutex mu_;  // guards conns_ and the FIFO names; taken briefly by commit and sync
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

class PipeReader final : public transport::Reader {
public:
    friend class DirWatcher;
    // Creates the inotify watch, the epoll set (and, for drop_oldest, the drain thread).
    static Status create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out);
    ~PipeReader() override;

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
        bool attached = false;   // a FIFO still receives into it
    };
    struct Conn {
        UniqueFd fd;
        std::uint64_t writer_id = 0;
        std::string path;
        dev_t dev = 0;
        ino_t ino = 0;
        bool blocked = false;     // an older FIFO of the same writer is still open
        bool registered = false;  // in the epoll set
        bool eof = false;         // its writer is gone: closed once no whole frame is left
        Chunk* chunk = nullptr;
        std::size_t pos = 0;   // first unparsed byte in chunk
        std::size_t fill = 0;  // end of received bytes in chunk
        std::size_t need = kHeaderSize;  // bytes the frame at pos needs, once its header is known
    };
    // A FIFO opened by the watcher thread (or sync_writers), for the receiving thread to adopt.
    struct Incoming {
        UniqueFd fd;
        std::uint64_t writer_id = 0;
        std::string path;
        dev_t dev = 0;
        ino_t ino = 0;
    };
    struct Stale {
        std::string path;
        dev_t dev;
        ino_t ino;
        pid_t pid;
    };
    enum class Parse { frame, incomplete, bad };
    enum class Recv { frame, timeout, would_block, closed, error };
    enum class Read { data, again, eof };

    PipeReader(const Host& host, const TopicParams& params);

    Recv receive(SampleBuffer& out, Clock::time_point deadline);
    bool try_parse_any(SampleBuffer& out);
    Parse try_parse(Conn& conn, SampleBuffer& out, std::string& why);
    Read read_conn(Conn& conn);
    void prepare_space(Conn& conn);
    bool matches(const char* name) const;
    // Any thread: opens a FIFO addressed to us (holding it open keeps what its writer wrote,
    // even if the writer dies) and hands it to the receiving thread.
    void open_and_queue(const std::string& name);
    void scan_directory();
    void adopt(Incoming&& in);
    void handle_sync();
    void close_conn(Conn* conn, bool torn, bool garbage);
    void mark_eof(Conn& conn);
    void update_interest();
    void forget_stale(bool all);
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
    std::string prefix_;  // "ferry.<domain>."
    std::string suffix_;  // ".to-<our id>.fifo"
    UniqueFd wake_fd_;    // eventfd: interrupt() in direct mode, shutdown of the drain thread
    UniqueFd sync_fd_;    // eventfd: sync_writers() has a new list
    UniqueFd epoll_fd_;   // the two above and every FIFO not blocked
    bool threaded_ = false;  // drop_oldest: a drain thread receives
    std::atomic<bool> interrupted_{false};
    std::atomic<std::uint64_t> lost_{0};

    std::shared_ptr<DirWatcher> watcher_;

    std::mutex sync_mu_;
    std::vector<PeerInfo> writers_;  // the last list from sync_writers
    std::vector<Incoming> incoming_;  // opened, not yet adopted
    std::unordered_set<std::uint64_t> attached_ids_;  // writers with an adopted FIFO

    // Receive state: used by the thread in take() (direct mode) or by the drain thread.
    std::vector<std::unique_ptr<Conn>> conns_;
    std::vector<Conn*> ready_;
    std::vector<Stale> stale_;  // FIFOs seen at EOF whose creator may still be dying
    std::unordered_set<std::uint64_t> first_of_writer_;  // scratch of update_interest()
    bool interest_dirty_ = false;
    std::size_t rr_ = 0;
    Conn* last_ = nullptr;  // the FIFO that delivered last
    bool fast_ = false;     // its writer is ahead: read it first, before epoll_wait

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

class PipeReader;

// One inotify instance and one thread per process and runtime directory, shared by every
// reader there (inotify instances are few: fs.inotify.max_user_instances is 128 per user).
// It opens each FIFO the moment it is created, for the reader it is addressed to.
class DirWatcher {
public:
    static std::shared_ptr<DirWatcher> get(const std::string& dir, std::string& error);
    ~DirWatcher();

    void add(PipeReader* reader);
    void remove(PipeReader* reader);
    // Reads pending events and hands what they name to the readers (mu_): after it returns, no
    // FIFO announced before is left unopened.
    void pump();

private:
    DirWatcher() = default;
    void loop();

    UniqueFd fd_;
    UniqueFd stop_;
    std::thread* thread_ = nullptr;  // not joined in a forked child, where it does not run
    pid_t pid_ = 0;
    std::mutex mu_;
    std::vector<PipeReader*> readers_;
};

class PipeTransport final : public transport::Transport {
public:
    explicit PipeTransport(const Host& host) : host_(&host) {}

    const char* name() const noexcept override { return "pipe"; }
    transport::Capabilities capabilities() const noexcept override;
    Status validate(const TopicParams& params) const noexcept override;
    Status create_writer(const TopicParams& params, std::unique_ptr<transport::Writer>& out) noexcept override;
    Status create_reader(const TopicParams& params, std::unique_ptr<transport::Reader>& out) noexcept override;

private:
    const Host* host_;
};

}  // namespace ferry::pipe
