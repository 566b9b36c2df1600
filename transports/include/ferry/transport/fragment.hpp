// Fragmentation for transports whose OS unit is smaller than a message: a POSIX queue message
// holds at most mq_msgsize bytes, a datagram at most the socket's buffer.
//
// Writer side: a message lives in a buffer with kUnitHeaderSize writable bytes in front of it
// (the loan's headroom). `deliver_units` cuts it into units of at most `unit_size` bytes,
// writing each unit's header into the bytes just before that unit's payload (and putting them
// back afterwards), so no unit is ever copied; it sends every unit to every target with one
// non-blocking send each and applies the overflow policy per target.
//
// Reader side: `Reassembler` rebuilds messages from units of many writers, keyed by writer
// id. A single-unit message comes back as a view into the caller's unit (no copy). Every
// length is checked against max_message_size before anything is allocated; garbage is
// dropped and counted; memory held by partial messages is capped.
//
//   Reassembler r({max_message_size});
//   Message m;
//   if (r.push(unit, n, m) == Reassembler::Result::message) use(m.data, m.size);
//   r.recycle(m);
//
// None of these types is thread-safe unless stated; a plugin calls them from one thread.
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

#include <ferry/transport/buffers.hpp>
#include <ferry/transport/newest_queue.hpp>
#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::transport {

// Header at the front of every unit. Same host, so native byte order.
struct UnitHeader {
    std::uint32_t magic;
    std::uint32_t sequence;      // per (writer, reader) message number from 0; gaps count as lost
    std::uint64_t writer_id;     // the writer's endpoint id
    std::uint32_t total_size;    // size of the whole message
    std::uint32_t index;         // fragment index, 0-based
    std::uint32_t payload_size;  // bytes following this header in this unit
    std::uint32_t check;         // unit_check() of the fields above
};
static_assert(sizeof(UnitHeader) == 32, "UnitHeader must stay 32 bytes");

inline constexpr std::size_t kUnitHeaderSize = sizeof(UnitHeader);
inline constexpr std::uint32_t kUnitMagic = 0x31595246u;  // "FRY1" in memory
// Largest message the 32-bit total_size can describe.
inline constexpr std::size_t kMaxFragmentedMessage = 0xFFFFFFFFu;

std::uint32_t unit_check(const UnitHeader& h) noexcept;
UnitHeader make_unit_header(std::uint64_t writer_id,
                            std::uint32_t sequence,
                            std::uint32_t total_size,
                            std::uint32_t index,
                            std::uint32_t payload_size) noexcept;
// Magic and check match and payload_size fits in a unit of `max_unit_size` bytes.
bool unit_header_valid(const UnitHeader& h, std::size_t max_unit_size) noexcept;

// Units needed for a message of `size` bytes (at least one, even for 0 bytes).
inline std::uint32_t unit_count(std::size_t size, std::size_t unit_size) noexcept {
    const std::size_t cap = unit_size - kUnitHeaderSize;
    return size == 0 ? 1u : static_cast<std::uint32_t>((size + cap - 1) / cap);
}

// ---------------------------------------------------------------------------------------
// Writer side

// What a mechanism can do beyond sending, for deliver_units. Both optional.
struct ReceiverHooks {
    // drop_oldest: removes up to `units` of the oldest units from a full receiver so that a
    // new message fits; returns how many it removed (a queue allows that, a socket does not).
    std::size_t (*make_room)(int fd, std::uint32_t units) noexcept = nullptr;
    // False once the reader removed its object: a queue outlives its name while a writer
    // holds it open, so a full one may belong to a reader that is gone.
    bool (*still_there)(const char* object) noexcept = nullptr;
    // Units the receiver takes now without waiting; lets fail and a stalled reader refuse a
    // message of several units before its first unit goes in.
    std::size_t (*free_units)(int fd) noexcept = nullptr;
};

// One receiver of a writer (a queue, a datagram socket). `fd` must be non-blocking and pollable for
// POLLOUT. `next_sequence` is kept across commits by the caller.
struct UnitTarget {
    int fd = -1;
    ReceiverHooks hooks;
    const char* object = nullptr;     // the receiver's OS name, for hooks.still_there
    std::size_t unit_size = 0;        // largest unit this receiver takes, header included
    std::uint32_t next_sequence = 0;  // sequence for the next message to this receiver
    std::int32_t pid = 0;             // the receiver's process, checked when it stops taking
    std::uint64_t start_time = 0;     // of that process (0: not known), see ProcessId
    std::atomic<bool> broken{false};  // set when the receiver is gone; skipped from then on
    // Owned by deliver_units.
    std::uint32_t next_unit_ = 0;
    std::uint32_t units_ = 0;
    Errc outcome_ = Errc::ok;
    bool waiting_ = false;
    bool stalled_ = false;  // block: stayed full for block_timeout; skipped until a unit goes in
    bool room_made_ = false;
    Clock::time_point grace_until_{};
};

// drop_oldest and fail: how long the rest of a message whose first units went in is waited for.
inline constexpr std::chrono::milliseconds kDropOldestGrace{50};

// Sends `len` bytes as one unit; returns 0 or an errno (EAGAIN when there is no room).
using SendUnitFn = int (*)(int fd, const std::byte* unit, std::size_t len) noexcept;

// Sends `size` bytes at `message` (with kUnitHeaderSize writable bytes before it) to every
// target that is not broken. Per target, when its receiver is full:
//   block       poll for room until `deadline`, then Errc::timeout; the target is then
//               "stalled": later messages skip it at once (Errc::timeout) until a unit goes in;
//   fail        Errc::would_block, without waiting (a message of several units is refused
//               before its first unit unless hooks.free_units says all fit);
//   drop_oldest never waits: hooks.make_room discards the receiver's oldest units if the
//               mechanism allows, else the message is skipped for it (the reader's sequence
//               gap counts it as lost).
// Only the rest of a message whose first units went in is waited for (kDropOldestGrace under
// fail and drop_oldest). A message abandoned half-way still consumes its sequence number, so
// the reader discards the partial when the next message arrives. A receiver that reports
// EPIPE/ENXIO/EBADF, or that is full while its pid is dead or hooks.still_there says it is
// gone, is marked broken. Returns the worst outcome (timeout over would_block over ok) with a
// message naming `what`; each target's outcome is in outcome(). Never throws.
Status deliver_units(std::byte* message,
                     std::size_t size,
                     std::uint64_t writer_id,
                     Overflow overflow,
                     Clock::time_point deadline,
                     std::vector<UnitTarget*>& targets,
                     SendUnitFn send,
                     const char* what) noexcept;

// ---------------------------------------------------------------------------------------
// Reader side

// A complete message. Either a view into a unit the caller still holds (`buffer` empty) or
// the owner of its bytes (`buffer`, from the reassembler's pool).
struct Message {
    const std::byte* data = nullptr;
    std::size_t size = 0;
    ByteBuffer buffer;
};

class Reassembler {
public:
    struct Limits {
        std::size_t max_message_size = 16u << 20;
        std::size_t max_partials = 32;  // concurrent partial messages, all writers together
        std::size_t partial_bytes = 0;  // bytes they may claim; 0 = max(64 MiB, 2 * max_message_size)
        std::size_t max_writers = 4096; // writer ids tracked (spoofed ids cannot grow this)
    };
    enum class Result {
        message,  // `out` holds a complete message
        pending,  // unit absorbed (or a stale/duplicate one dropped), nothing to deliver yet
        garbage,  // malformed unit dropped and counted as lost; `why` says what was wrong
    };

    explicit Reassembler(const Limits& limits);

    // Feeds one unit of `len` bytes that starts with a UnitHeader (len must be exactly
    // header + payload_size). Sequence gaps of a writer are added to lost().
    Result push(const std::byte* unit, std::size_t len, Message& out, const char** why = nullptr);

    // The complete set of live writers: those listed before and missing now are gone, and so
    // are unlisted ids whose process is dead. Their partial messages are discarded by on_idle().
    void set_writers(const std::vector<PeerInfo>& writers);
    // The caller found its receiver empty: a partial message of a gone writer (or of an
    // unlisted one whose process is dead) can never complete, so it is discarded and counted.
    void on_idle();
    bool has_gone_partials() const noexcept { return gone_partials_ > 0; }
    // Partial messages held now and the bytes they claim (bounded by Limits).
    std::size_t partial_count() const noexcept { return partials_; }
    std::size_t partial_bytes() const noexcept { return partial_bytes_; }

    // Turns a view into an owned message (copies into a pooled buffer). May throw bad_alloc.
    void own(Message& m);
    // Gives a message's buffer back to the pool.
    void recycle(Message& m) noexcept;
    BufferPool& pool() noexcept { return pool_; }

    // Any thread.
    std::uint64_t lost() const noexcept { return lost_.load(std::memory_order_relaxed); }
    void add_lost(std::uint64_t n) noexcept { lost_.fetch_add(n, std::memory_order_relaxed); }

private:
    struct Partial {
        ByteBuffer buffer;
        std::uint32_t sequence = 0;
        std::uint32_t total = 0;
        std::uint32_t received = 0;
        std::uint32_t next_index = 0;
        std::uint64_t touched = 0;
        bool active = false;
    };
    struct WriterState {
        std::uint32_t last_sequence = 0;
        bool has_last = false;
        bool listed = false;
        bool gone = false;
        std::uint64_t touched = 0;
        Partial partial;
    };

    WriterState* state_for(std::uint64_t writer_id);
    void drop_partial(WriterState& s) noexcept;
    void abandon_partial(WriterState& s) noexcept;
    bool make_room_for(std::size_t bytes, const WriterState* keep);
    bool accept_sequence(WriterState& s, std::uint32_t sequence) noexcept;

    Limits limits_;
    BufferPool pool_;
    std::unordered_map<std::uint64_t, WriterState> writers_;
    std::unordered_set<std::uint64_t> listed_;  // the last set_writers()
    std::size_t partials_ = 0;
    std::size_t partial_bytes_ = 0;
    std::size_t gone_partials_ = 0;
    std::uint64_t clock_ = 0;
    std::atomic<std::uint64_t> lost_{0};
};

// ---------------------------------------------------------------------------------------
// Base classes: a plugin whose mechanism carries units supplies only how to open a receiver
// and how to receive a unit; locking, loans, overflow policy, fragmentation, lost counting,
// drop_oldest draining and interrupt live here.

// A Writer over deliver_units. Loans come from a LoanPool with unit-header headroom. sync_readers() swaps in a new receiver list (copy-on-write), so a commit
// that is blocked never holds up discovery.
class FragmentingWriter : public Writer {
public:
    // `what` names the plugin in messages ("mq"). `send` must not raise SIGPIPE (MSG_NOSIGNAL
    // for a socket); a vanished receiver is an error it returns.
    FragmentingWriter(const Host& host, TopicParams params, SendUnitFn send, const char* what);
    ~FragmentingWriter() override;

    Status loan(std::size_t size, LoanBuffer& out) noexcept final;
    Status commit(LoanBuffer& buf, std::size_t size) noexcept final;
    void release(LoanBuffer& buf) noexcept final;
    void sync_readers(const std::vector<PeerInfo>& readers) noexcept final;
    std::size_t reader_count() const noexcept final;
    // A receiver is an OS object its reader owns: what went in stays for the reader.
    Status flush(Clock::time_point) noexcept final { return Status::ok(); }
    std::uint64_t undelivered() const noexcept final { return undelivered_.load(std::memory_order_relaxed); }

protected:
    // Opens the receiver of `reader` non-blocking for writing, says the largest unit it takes
    // and its OS name. Errc::closed when the receiver does not exist or nobody reads it.
    virtual Status open_receiver(const PeerInfo& reader,
                                 UniqueFd& fd,
                                 std::size_t& unit_size,
                                 std::string& object) noexcept = 0;
    virtual ReceiverHooks hooks() const noexcept { return {}; }
    // `reader` is gone and its process is dead: remove the OS object it left behind.
    virtual void reclaim_receiver(const PeerInfo& reader) noexcept = 0;

    const Host& host_;
    const TopicParams params_;

private:
    struct Receiver {
        PeerInfo peer;
        std::string object;
        UniqueFd fd;
        UnitTarget target;
    };
    using ReceiverList = std::vector<std::shared_ptr<Receiver>>;
    SendUnitFn send_;
    const char* what_;
    LoanPool loans_;
    std::vector<UnitTarget*> targets_;
    std::atomic<std::uint32_t> messages_{0};
    mutable std::mutex list_mutex_;
    std::mutex sync_mutex_;
    std::shared_ptr<const ReceiverList> receivers_;
    std::atomic<std::size_t> count_{0};
    std::atomic<std::uint64_t> undelivered_{0};
};

// A Reader over a Reassembler. In block/fail mode take() calls receive() on the caller's
// thread. In drop_oldest mode a drain thread calls receive() continuously and keeps the
// newest `depth` messages in a NewestQueue, so the mechanism's queue never stays full and
// writers never wait for a reader that stopped taking.
class FragmentingReader : public Reader {
public:
    FragmentingReader(const Host& host, TopicParams params, const char* what);
    ~FragmentingReader() override;  // the derived destructor must call stop() first

    Status take(SampleBuffer& out, Clock::time_point deadline) noexcept final;
    void release(SampleBuffer& sample) noexcept final;
    void sync_writers(const std::vector<PeerInfo>& writers) noexcept final;
    std::uint64_t lost() const noexcept final { return reassembler_.lost(); }
    void interrupt() noexcept final;

protected:
    // Waits for the next complete message until `deadline`: Errc::timeout then, or
    // Errc::would_block if `deadline` had passed on entry; Errc::closed once interrupted().
    // The message owns its buffer or is a view that stays valid until unpin(pin). Runs on one
    // thread at a time; uses reassembler() and calls idle() whenever its receiver is empty.
    virtual Status receive(Message& out, std::uint64_t& pin, Clock::time_point deadline) noexcept = 0;
    virtual void unpin(std::uint64_t pin) noexcept = 0;
    // Makes a blocked receive() return soon (it then sees interrupted()). Any thread.
    virtual void wake() noexcept = 0;

    // Starts the drain thread in drop_oldest mode: the end of the derived constructor.
    void start();
    // Interrupts and joins the drain thread: the start of the derived destructor.
    void stop() noexcept;
    bool interrupted() const noexcept { return interrupted_.load(std::memory_order_acquire); }
    Reassembler& reassembler() noexcept { return reassembler_; }
    // The receiver is empty: applies the latest writer list and drops dead writers' partials.
    void idle() noexcept;
    // Logs a dropped garbage unit (rate-limited).
    void report_garbage(const char* why) noexcept;

    const Host& host_;
    const TopicParams params_;
    const char* what_;

private:
    struct Held {
        Message message;
        std::uint64_t pin = 0;
        bool in_use = false;
    };
    void apply_writers() noexcept;
    void drain() noexcept;
    void recycle_returned() noexcept;

    Reassembler reassembler_;
    std::vector<Held> held_;
    std::atomic<bool> interrupted_{false};
    std::timed_mutex receive_mutex_;  // block/fail mode: one receive() at a time
    std::mutex held_mutex_;           // guards held_ (takes and releases from several threads)
    std::mutex writers_mutex_;
    std::vector<PeerInfo> pending_writers_;
    std::atomic<bool> writers_changed_{false};
    std::uint64_t garbage_logged_ = 0;
    Clock::time_point garbage_log_time_{};
    // drop_oldest mode
    std::unique_ptr<NewestQueue<Message>> latest_;
    std::thread drain_thread_;
    std::mutex returned_mutex_;
    std::vector<ByteBuffer> returned_;
};

}  // namespace ferry::transport
