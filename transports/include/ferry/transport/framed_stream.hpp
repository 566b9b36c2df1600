// Building blocks of the byte-stream transports (uds, pipe): one stream per writer-reader pair
// carrying framed messages. What is shared is the framing and the policy; a plugin keeps only
// its mechanism (how a per-pair stream is created, opened or discovered, and how a dead peer
// is detected).
//
//   FrameHeader    {magic, dropped_before, size} before every message on a stream
//   FramedWriter   loans with room for the header (a LoanPool), and one framed message delivered to many
//                  streams with the overflow policy (non-blocking put, then one poll on all
//                  full streams until the deadline; a stream timed out mid-frame is dropped)
//   FramedStreamReader  its counterpart: many incoming streams in one epoll set, read within a
//                  budget, parsed in turn, per-writer order kept, drop_oldest by a drain thread;
//                  a plugin adds only how streams arrive (accept, open) and what ends them
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
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <poll.h>
#include <sys/types.h>

#include <ferry/transport/buffers.hpp>
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
    LoanPool loans_;
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

// Chunks of received bytes; a sample's handle is its Chunk*. Locked always: samples are released
// on whatever thread drops them (Reader::release), concurrently with the thread that takes and
// receives into the same chunks (and the drop_oldest drain thread).
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

    std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mu_); }
    std::mutex& mutex() noexcept { return mu_; }

    // lock() held.
    Chunk* get_locked(std::size_t need);
    void detach_locked(Chunk* chunk);
    void release_locked(Chunk* chunk);

    // A sample handed out by parse_frame.
    void release(SampleBuffer& sample) noexcept;

private:
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

// ---- the reader of framed streams ----

// How a plugin's FramedStreamReader words its messages and reads.
struct FramedReaderOptions {
    const char* name;    // "uds": prefix of every message
    std::uint32_t magic;  // of FrameHeader
    const char* stream;  // "connection": what one writer's stream is called in messages
    // After a frame with more bytes behind it, the next receive reads that stream once before
    // it asks epoll_wait (a writer that is ahead of the reader costs no wake-up).
    bool read_ahead = false;
};

// The reader counterpart of FramedWriter. It owns the incoming streams (one per writer and
// reader pair, each a non-blocking descriptor that read() takes bytes from), one epoll set
// with a wake-up eventfd, the receive chunks and, for drop_oldest, a drain thread that keeps
// the newest `depth` frames. It reads within reader_budget() (the stream holding the largest
// incomplete frame is shed when over it), parses the streams round-robin, keeps per-writer
// order (a newer stream of a writer waits while an older one is open) and delivers the whole
// frames of a stream that ended before it closes it; a torn frame counts as lost.
//
// A plugin supplies the mechanism: it creates its descriptors and adds them with watch()
// (tags 2..kMaxMechanismTag) and its streams with add_stream(); on_events() is called with
// the tags that fired; the hooks below say what its streams need beyond that.
//
// Threads: take() on one thread at a time (block/fail), or any thread in drop_oldest mode,
// where the drain thread receives; interrupt() from any thread. Everything protected runs
// on the receiving thread (the taking thread or the drain thread) unless it says otherwise.
class FramedStreamReader : public Reader {
public:
    ~FramedStreamReader() override;  // a derived destructor calls stop() first

    Status take(SampleBuffer& out, Clock::time_point deadline) noexcept final;
    void release(SampleBuffer& sample) noexcept final;
    std::uint64_t lost() const noexcept final { return lost_.load(std::memory_order_relaxed); }
    void interrupt() noexcept final;

protected:
    // One writer's stream; a plugin derives its own with what its mechanism needs.
    struct Stream {
        virtual ~Stream() = default;
        UniqueFd fd;  // non-blocking
        std::uint64_t writer_id = 0;
        bool greeted = true;      // writer_id is known: false until greet() for a mechanism with a greeting
        bool blocked = false;     // an older stream of the same writer is still open
        bool ended = false;       // end of file, or shed: closed once no whole frame is left
        bool registered = false;  // in the epoll set
        RecvStream in;            // received bytes, in chunks of pool_
    };
    enum class Read { data, again, eof };

    static constexpr std::uint64_t kWakeTag = 1;
    static constexpr std::uint64_t kMaxMechanismTag = 31;

    // `label` names the reader in messages after the plugin's name ("reader of topic t").
    FramedStreamReader(const Host& host, const TopicParams& params, const FramedReaderOptions& options,
                       std::string label);

    // Creates the wake-up eventfd and the epoll set: the start of the plugin's create().
    Status init();
    // drop_oldest: starts the drain thread. The end of the plugin's create().
    void start();
    // Joins the drain thread: the start of the derived destructor.
    void stop() noexcept;

    // A descriptor of the mechanism in the epoll set, for EPOLLIN, with tag 2..kMaxMechanismTag.
    bool watch(int fd, std::uint64_t tag) noexcept;
    void unwatch(int fd) noexcept;
    // Takes a new stream and watches it; nullptr (errno set) when it cannot be watched.
    Stream* add_stream(std::unique_ptr<Stream> stream);
    // Closes `stream` now; `torn`: it held part of a frame, counted lost; `garbage`: it sent
    // something that is not a frame (passed on to on_closed).
    void close_stream(Stream* stream, bool torn, bool garbage = false);
    // The stream has ended: no more reads; its whole frames are still delivered.
    void mark_ended(Stream& stream) noexcept;
    // Reads once from `stream` (at most `limit` bytes), within the budget.
    Read read_stream(Stream& stream, std::size_t limit = SIZE_MAX);
    // `n` bytes at the front of the stream's unparsed bytes are used up (a greeting).
    void consume(Stream& stream, std::size_t n) noexcept;
    const std::vector<std::unique_ptr<Stream>>& streams() const noexcept { return streams_; }
    const std::string& label() const noexcept { return label_; }
    std::size_t budget() const noexcept { return budget_; }

    // ---- the mechanism ----
    // Bit t of `fired` is set when the descriptor watched with tag t was readable. Streams may
    // be added and closed here.
    virtual void on_events(std::uint32_t fired) = 0;
    // A stream that is not greeted has kFrameHeaderSize bytes or more: read its greeting,
    // consume() it and set writer_id; false (and `why`) when it is not one.
    virtual bool greet(Stream&, std::string& why) {
        why = "unexpected greeting";
        return false;
    }
    // A frame was taken from `stream`.
    virtual void on_frame(Stream&) {}
    // `stream` is shed to stay within the budget (its bytes are dropped already).
    virtual void on_shed(Stream&) {}
    // Of two streams holding equally many bytes, should `a` be shed before `b`? Default: the
    // older stream goes.
    virtual bool shed_before(const Stream&, const Stream&) const noexcept { return false; }
    // `stream` left the set (its descriptor closes when this returns).
    virtual void on_closed(Stream&, bool /*garbage*/) {}
    // When receive() must wake up at the latest, for a deadline of the mechanism's own.
    virtual Clock::time_point wake_by(Clock::time_point deadline) { return deadline; }
    // Nothing arrived before the deadline: a last look (once per take); true when there may
    // be something now.
    virtual bool on_idle() { return false; }
    // The stream in a message: "a connection", "FIFO <path>".
    virtual std::string describe(const Stream&) const { return std::string("a ") + options_.stream; }

    const Host* host_;
    TopicParams params_;

private:
    enum class Recv { frame, timeout, would_block, closed, error };

    Recv receive(SampleBuffer& out, Clock::time_point deadline);
    bool try_parse_any(SampleBuffer& out);
    void close_finished();
    void shed_over_budget();
    void update_interest();
    void drain_loop();
    void drop_bad(Stream* stream, const std::string& why);

    FramedReaderOptions options_;
    std::string label_;
    UniqueFd wake_fd_;   // eventfd: interrupt() in direct mode, shutdown of the drain thread
    UniqueFd epoll_fd_;  // wake_fd_, the mechanism's descriptors and every stream not blocked
    std::atomic<bool> interrupted_{false};
    std::atomic<std::uint64_t> lost_{0};

    // Receive state: used by the thread in take() (direct mode) or by the drain thread.
    std::vector<std::unique_ptr<Stream>> streams_;
    std::vector<Stream*> ready_;
    std::size_t budget_ = 0;  // bytes all streams together may hold unparsed
    std::size_t held_ = 0;    // bytes they hold now
    LogThrottle budget_log_;
    std::unordered_set<std::uint64_t> first_of_writer_;  // scratch of update_interest()
    bool interest_dirty_ = false;
    std::size_t rr_ = 0;
    Stream* last_ = nullptr;  // read_ahead: the stream that delivered last
    bool ahead_ = false;      // read_ahead: its writer is ahead, read it before epoll_wait

    // Chunks of received bytes; samples point into them. Shared with the drain thread.
    ChunkPool pool_;
    // drop_oldest only: the newest `depth` frames, filled by the drain thread.
    DropOldestRing ring_;
    std::thread drain_;
};

}  // namespace ferry::transport
