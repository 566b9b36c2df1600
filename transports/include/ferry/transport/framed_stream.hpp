// Building blocks of the byte-stream transports (uds, pipe): one stream per writer-reader pair
// carrying framed messages. What is shared is the framing and the policy; a plugin keeps only
// its mechanism (how a per-pair stream is created, opened or discovered, and how a dead peer
// is detected).
//
//   FrameHeader    {magic, dropped_before, size} before every message on a stream
//   FramedWriter   loans with room for the header, and one framed message delivered to many
//                  streams with the overflow policy (non-blocking put, then one poll on all
//                  full streams until the deadline; a stream timed out mid-frame is dropped)
//   ChunkPool      pooled receive chunks; samples are views into them
//   RecvStream     receive state of one stream, and parse_frame(): header validated (magic,
//                  size <= max_message_size) before any room is asked for
//   DropOldestRing the newest `depth` samples, filled by a reader's drain thread
//   reader_budget  the bytes a reader may hold in incomplete frames, all streams together
//   LogThrottle    a recurring condition logged once per second, with its count
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <poll.h>
#include <sys/types.h>

#include <ferry/transport/newest_queue.hpp>
#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::transport {

struct FrameHeader {
    std::uint32_t magic;
    std::uint32_t dropped_before;  // messages the writer skipped for this reader just before
    std::uint64_t size;
};

inline constexpr std::size_t kFrameHeaderSize = sizeof(FrameHeader);

// ---- writer side ----

// How a plugin's FramedWriter words its outcomes and applies drop_oldest.
struct FramedWriterOptions {
    const char* name;         // "uds": prefix of every message
    std::uint32_t magic;      // of FrameHeader
    const char* queue;        // "queue": what was full, in "reader(s) had a full <queue>"
    const char* torn;         // "disconnected mid-frame": what a timeout mid-frame did
    const char* closed;       // why a put that wrote 0 bytes drops the stream
};

// drop_oldest and fail: how long the rest of a frame bigger than a stream's free room (a put
// that went in only partly) is waited for before the stream is closed.
inline constexpr std::chrono::milliseconds kPartialFrameGrace{50};

class FramedWriter : public Writer {
public:
    ~FramedWriter() override;

    Status loan(std::size_t size, LoanBuffer& out) noexcept override;
    Status commit(LoanBuffer& buf, std::size_t size) noexcept override;
    void release(LoanBuffer& buf) noexcept override;
    void sync_readers(const std::vector<PeerInfo>& readers) noexcept override;
    std::size_t reader_count() const noexcept override { return count_.load(std::memory_order_relaxed); }
    Status flush(Clock::time_point deadline) noexcept override;
    std::uint64_t undelivered() const noexcept override { return undelivered_.load(std::memory_order_relaxed); }

protected:
    // One reader's stream; a plugin derives its own with what its mechanism needs.
    struct Channel {
        virtual ~Channel() = default;
        UniqueFd fd;
        std::uint64_t reader_id = 0;
        std::uint32_t dropped = 0;  // drop_oldest: frames skipped since the last one sent
        bool stalled = false;       // block: stayed full for block_timeout; skipped until it has room
        bool dead = false;
    };

    FramedWriter(const Host& host, const TopicParams& params, const FramedWriterOptions& options);

    // The mechanism. open_channel: a new stream to `reader` (nullptr and `error` when not now;
    // `refusal` set when the reader is there but turns writers away, e.g. a full backlog).
    virtual std::shared_ptr<Channel> open_channel(const PeerInfo& reader, std::string& error, Errc& refusal) = 0;
    // One non-blocking write of `size` bytes (errno set when it returns < 0).
    virtual ssize_t put(Channel& ch, const std::byte* data, std::size_t size) noexcept = 0;
    // True when the whole frame cannot go in now (nothing is put then): used where a partial
    // put must not happen (fail, drop_oldest, a stalled reader).
    virtual bool refuse(const Channel&, std::size_t /*total*/) noexcept { return false; }
    // Bytes put into the stream that its reader has not taken and would lose if the writer
    // closed now (0 where the OS object keeps them for the reader, e.g. a connected socket).
    virtual std::size_t undrained(const Channel&) noexcept { return 0; }
    // A put found the stream full: is its reader still there to drain it?
    virtual bool peer_alive(const Channel&) noexcept { return true; }
    // Did the reader refuse or drop this stream, and why (a mechanism with a back channel
    // only)? `code` says how the refusal is reported: no_resources, permission_denied.
    virtual bool refused(Channel&, std::string& /*why*/, Errc& /*code*/) noexcept { return false; }
    // A channel leaves the set (mu_ held): reclaim what it named.
    virtual void forget_locked(Channel&) noexcept {}
    // For a derived destructor: forget every channel.
    void forget_all() noexcept;

    const Host* host_;
    TopicParams params_;

private:
    struct Slot {
        std::unique_ptr<std::byte[]> mem;
        std::size_t cap = 0;
        bool in_use = false;
    };
    struct Pending {
        Channel* ch;
        std::size_t sent;
    };
    // A listed reader that refused this writer: reported by every commit and left out of
    // reader_count() until a new stream to it is not refused.
    struct Refused {
        Errc code;
        std::string why;
        Clock::time_point retry_at;
    };

    void refresh_snapshot();
    void drop(Channel& ch, const char* why);
    void note_refused_locked(std::uint64_t reader_id, Errc code, std::string why);
    void check_refused(Channel& ch);
    void update_count_locked();
    Status deliver(std::byte* frame, std::size_t total);
    Slot* slot_of(const LoanBuffer& buf) noexcept;

    FramedWriterOptions options_;

    mutable std::mutex mu_;  // guards conns_; taken briefly by commit and sync_readers
    std::unordered_map<std::uint64_t, std::shared_ptr<Channel>> conns_;
    std::unordered_map<std::uint64_t, Refused> refused_;  // guarded by mu_
    std::atomic<std::size_t> refused_count_{0};
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<std::size_t> count_{0};
    std::atomic<std::uint64_t> undelivered_{0};
    std::mutex sync_mu_;  // one sync_readers at a time

    // Owned by the thread using the writer.
    std::vector<std::shared_ptr<Channel>> snapshot_;
    std::uint64_t snapshot_generation_ = ~std::uint64_t{0};
    std::vector<Slot> slots_;
    std::vector<Pending> pending_;
    std::vector<pollfd> pfds_;
};

// ---- reader side ----

// Frees a receive chunk's bytes. Chunks above ChunkPool::kChunkSize are mapped, not taken from
// the heap: freed, they go back to the system at once, so a reader's memory follows what it
// holds (see reader_budget).
struct ChunkMemory {
    std::size_t size;
    void operator()(std::byte* p) const noexcept;
};

// Chunks of received bytes; a sample's handle is its Chunk*. Locked only when shared between
// a drain thread and the taking thread (set_shared).
class ChunkPool {
public:
    // One read usually brings a whole frame (core header + payload up to ~256 KiB) or a burst.
    static constexpr std::size_t kChunkSize = 256 * 1024;

    struct Chunk {
        std::unique_ptr<std::byte[], ChunkMemory> mem;
        std::size_t cap = 0;
        std::uint32_t refs = 0;  // samples handed out and not yet released
        bool attached = false;   // a stream still receives into it
    };

    ChunkPool() = default;
    ChunkPool(const ChunkPool&) = delete;
    ChunkPool& operator=(const ChunkPool&) = delete;
    ~ChunkPool();

    void set_shared(bool shared) noexcept { shared_ = shared; }
    std::unique_lock<std::mutex> lock() {
        return shared_ ? std::unique_lock<std::mutex>(mu_) : std::unique_lock<std::mutex>();
    }
    std::mutex& mutex() noexcept { return mu_; }

    // lock() held.
    Chunk* get_locked(std::size_t need);
    void detach_locked(Chunk* chunk);
    void release_locked(Chunk* chunk);

    // A sample handed out by parse_frame.
    void release(SampleBuffer& sample) noexcept;

private:
    bool shared_ = false;
    std::mutex mu_;
    std::unordered_set<Chunk*> all_;
    std::vector<Chunk*> free_small_;
    std::vector<Chunk*> free_large_;
};

// The receive state of one stream.
struct RecvStream {
    ChunkPool::Chunk* chunk = nullptr;
    std::size_t pos = 0;                 // first unparsed byte in chunk
    std::size_t fill = 0;                // end of received bytes in chunk
    std::size_t need = kFrameHeaderSize;  // bytes the frame at pos needs, once its header is known

    std::size_t avail() const noexcept { return fill - pos; }
    // Makes room after fill for the rest of the frame at pos (need bytes in all).
    void prepare_space(ChunkPool& pool);
    // Gives its chunk back (the stream is closed).
    void detach(ChunkPool& pool);
};

enum class FrameParse { frame, incomplete, bad };

// Parses the frame at s.pos (at least kFrameHeaderSize bytes available) into `out`, a view
// into the chunk; adds its dropped_before to `lost`. bad: `why` says what was wrong.
FrameParse parse_frame(RecvStream& s, ChunkPool& pool, std::uint32_t magic, std::uint64_t max_message_size,
                       SampleBuffer& out, std::string& why, std::atomic<std::uint64_t>& lost);

// drop_oldest: the newest `depth` samples (views into a ChunkPool's chunks), pushed by a drain
// thread, taken by the user's. The SDK's one drop-oldest queue (NewestQueue) underneath.
class DropOldestRing {
public:
    void init(std::size_t depth) { q_.init(depth); }
    // Queues `s`; when full, the oldest is released into `pool` and counted in `lost`.
    void push(const SampleBuffer& s, ChunkPool& pool, std::atomic<std::uint64_t>& lost);
    // Waits until a sample, close() or `deadline`. `name` prefixes the messages.
    Status take(SampleBuffer& out, Clock::time_point deadline, const char* name);
    // take() returns Errc::closed from now on (the reader was interrupted).
    void close() noexcept { q_.close(); }

private:
    NewestQueue<SampleBuffer> q_;
};

// The bytes one reader may hold in incomplete frames, all its streams together:
// params.reader_buffer_budget, or 4 x max_message_size and at least 8 MiB by default; never
// less than two whole frames (one frame and the start of the next always fit).
std::size_t reader_budget(const TopicParams& params) noexcept;

// A recurring condition (a flood, descriptors exhausted) logged at most once per second.
class LogThrottle {
public:
    // Counts one occurrence; true when it is time to log, with `count` occurrences since the
    // last log.
    bool due(std::uint64_t& count) noexcept;

private:
    std::uint64_t pending_ = 0;
    Clock::time_point next_{};
};

// ---- the readers' epoll set and wake-up eventfd ----

// Adds `fd` to the epoll set `epfd` for EPOLLIN, tagged with `tag`.
bool epoll_watch(int epfd, int fd, std::uint64_t tag) noexcept;
// Adds or removes `fd` as `watch` says, unless `registered` (kept up to date) says it already is.
void epoll_set_watched(int epfd, int fd, std::uint64_t tag, bool watch, bool& registered) noexcept;
// Adds one to an eventfd: wakes whoever polls it.
void signal_eventfd(int fd) noexcept;

}  // namespace ferry::transport
