// The transport SDK: the only seam between the ferry core and a transport plugin.
//
// A plugin is a shared module that exports, through FERRY_TRANSPORT_PLUGIN(Class) from
// <ferry/transport/plugin.hpp>, a factory returning a `Transport`. The core asks the
// transport for one `Writer` per publisher and one `Reader` per subscriber. The core owns
// discovery: it tells each writer which readers exist (`sync_readers`) and each reader
// which writers exist (`sync_writers`), from the registry. The plugin owns the mechanism.
//
// Rules every entry point follows:
//   * No exception crosses this interface: every virtual is noexcept and reports failure
//     as a `Status` (code + message naming the action, the object and the OS reason).
//   * A writer is used by one thread at a time; a reader is used by one thread at a time,
//     except `interrupt()`, which any thread may call.
//   * Bytes are opaque: the core puts its own frame header inside the payload.
//
//   std::unique_ptr<Writer> w;
//   if (auto st = transport.create_writer(params, w); !st) { report(st.message()); }
//   LoanBuffer buf;
//   w->loan(64, buf);  std::memcpy(buf.data, bytes, 64);  w->commit(buf, 64);
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ferry::transport {

// Bumped whenever anything in this header changes layout or meaning. The loader refuses a
// module built against another version.
inline constexpr std::uint32_t kAbiVersion = 6;

// C++ types (std::string, std::vector, classes with virtual functions) cross the plugin
// boundary, so a module must also be built with the same standard library, in the same ABI
// mode, as ferry. This names them as the compiler sees them; a module exports the value it was
// compiled with (ferry_transport_build_tag, see plugin.hpp) and the loader refuses one whose
// tag differs from its own (transports/README.md says why C++ and not a C table).
#define FERRY_SDK_STR2(x) #x
#define FERRY_SDK_STR(x) FERRY_SDK_STR2(x)
#if defined(_LIBCPP_VERSION)
#define FERRY_SDK_STDLIB "libc++ (ABI " FERRY_SDK_STR(_LIBCPP_ABI_VERSION) ")"
#elif defined(__GLIBCXX__)
#if defined(_GLIBCXX_DEBUG)
#define FERRY_SDK_STDLIB_MODE ", debug mode"
#else
#define FERRY_SDK_STDLIB_MODE ""
#endif
#define FERRY_SDK_STDLIB "libstdc++ (_GLIBCXX_USE_CXX11_ABI=" FERRY_SDK_STR(_GLIBCXX_USE_CXX11_ABI) FERRY_SDK_STDLIB_MODE ")"
#else
#define FERRY_SDK_STDLIB "an unknown standard library"
#endif
inline constexpr const char* kBuildTag = FERRY_SDK_STDLIB ", " FERRY_SDK_STR(__SIZEOF_POINTER__) "-byte pointers";

using Clock = std::chrono::steady_clock;

enum class Errc : int {
    ok = 0,
    timeout,            // a blocking call reached its deadline
    would_block,        // a non-blocking call found no data / no room
    too_large,          // message bigger than the topic's maximum
    no_resources,       // OS or pool limit reached (mq limits, shm pool, fds)
    closed,             // interrupted or peer gone
    invalid_argument,   // bad parameter from the caller
    permission_denied,  // OS refused access
    io_error,           // any other OS failure
    unsupported,        // the transport cannot do what was asked
    internal,           // a bug or an exception caught at the seam
};

inline const char* errc_name(Errc c) noexcept {
    switch (c) {
        case Errc::ok: return "ok";
        case Errc::timeout: return "timeout";
        case Errc::would_block: return "would_block";
        case Errc::too_large: return "too_large";
        case Errc::no_resources: return "no_resources";
        case Errc::closed: return "closed";
        case Errc::invalid_argument: return "invalid_argument";
        case Errc::permission_denied: return "permission_denied";
        case Errc::io_error: return "io_error";
        case Errc::unsupported: return "unsupported";
        case Errc::internal: return "internal";
    }
    return "unknown";
}

// Result of a call: a code and, on failure, a message for a human.
class Status {
public:
    Status() noexcept = default;
    Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status ok() noexcept { return {}; }

    bool is_ok() const noexcept { return code_ == Errc::ok; }
    explicit operator bool() const noexcept { return is_ok(); }
    Errc code() const noexcept { return code_; }
    const std::string& message() const noexcept { return message_; }

private:
    Errc code_ = Errc::ok;
    std::string message_;
};

// What a publisher does when a subscriber's queue is full. Spelled as in the config.
enum class Overflow : std::uint8_t {
    block,        // wait up to block_timeout for room, then fail with Errc::timeout
    drop_oldest,  // make room by discarding the oldest queued message (counted as lost)
    fail,         // return Errc::would_block at once
};

inline const char* overflow_name(Overflow o) noexcept {
    switch (o) {
        case Overflow::block: return "block";
        case Overflow::drop_oldest: return "drop_oldest";
        case Overflow::fail: return "fail";
    }
    return "unknown";
}

// Everything a plugin needs to know about one endpoint of one topic.
struct TopicParams {
    std::string domain;       // [A-Za-z0-9_-]{1,32}; part of every OS object name
    std::string topic;        // the topic name, for messages only (OS names use endpoint ids)
    std::string runtime_dir;  // existing 0700 directory for sockets and FIFOs
    std::uint64_t endpoint_id = 0;  // unique in the domain; see naming.hpp
    std::uint32_t depth = 16;       // per-subscriber queue length, in messages
    Overflow overflow = Overflow::block;
    std::size_t max_message_size = 16u << 20;  // largest commit(), in bytes (core header included)
    std::chrono::nanoseconds block_timeout = std::chrono::seconds(1);
    std::uint32_t mode = 0600;  // permission bits for every OS object the plugin creates
    // The config set `depth` for this topic. When false, depth is the built-in default and a
    // plugin may use less when the system allows less (logged at info); when true, a depth the
    // system cannot provide is an error.
    bool depth_explicit = false;
    // A reader's budget for bytes held in incomplete messages, all writers together (0: the
    // plugin's default, 4 x max_message_size and at least 8 MiB; see reader_budget()).
    std::size_t reader_buffer_budget = 0;
    // How a reader waits in take() on a transport that can poll: adaptive polls for `spin`
    // (yielding the CPU between polls) and then sleeps, sleep sleeps at once, spin polls until
    // a message or the deadline. Plugins that cannot poll ignore it.
    enum class Wait : std::uint8_t { adaptive, sleep, spin };
    Wait wait = Wait::adaptive;
    std::chrono::microseconds spin{50};
    // The config's table named after this transport (e.g. [dds]) as key -> value text, already
    // validated by the core: strings unquoted, arrays joined with ','. Empty when there is none.
    std::vector<std::pair<std::string, std::string>> options;
    // Who the endpoint is, for a network transport to announce to its engine's discovery (so
    // that another host's `ferry topic list` can name it; see Transport::discover): the node's
    // name and the topic's type name ("" for a subscriber that takes any type).
    std::string node;
    std::string type;
};

// An endpoint of another process that a network transport's engine discovered, possibly on
// another host (Transport::discover).
struct RemoteEndpoint {
    std::string topic;      // the ferry topic name
    std::string type;       // its type name as announced ("" if not)
    bool publisher = false; // else subscriber
    std::string host;       // the host name the process announced ("" if it is not ferry's)
    std::int32_t pid = 0;   // its pid on that host (0 if not announced)
    std::string node;       // its node name ("" if not announced)
};

// A peer endpoint as the registry knows it.
struct PeerInfo {
    std::uint64_t endpoint_id = 0;
    std::int32_t pid = 0;
    std::uint64_t start_time = 0;  // of process `pid` (see naming.hpp's ProcessId); 0 if not known
    bool operator==(const PeerInfo& o) const noexcept { return endpoint_id == o.endpoint_id; }
};

// A writable buffer from Writer::loan. `handle` is the plugin's to use.
struct LoanBuffer {
    std::byte* data = nullptr;
    std::size_t capacity = 0;
    std::uint64_t handle = 0;
};

// A received message from Reader::take. The bytes stay valid and unchanged until
// Reader::release(sample). `handle` is the plugin's to use.
struct SampleBuffer {
    const std::byte* data = nullptr;
    std::size_t size = 0;
    std::uint64_t handle = 0;
};

class Writer {
public:
    virtual ~Writer() = default;

    // A buffer of at least `size` bytes. Errc::too_large if size > max_message_size.
    // On a shared-memory transport the buffer lies inside the segment readers map; there it
    // may block (policy `block`, up to block_timeout) or fail while every chunk is in use.
    virtual Status loan(std::size_t size, LoanBuffer& out) noexcept = 0;

    // Deliver the first `size` bytes of `buf` to every connected reader, honouring the
    // overflow policy per reader. Consumes the loan whatever the outcome. Returns the worst
    // outcome over the readers (timeout or would_block when a reader's queue stayed full);
    // readers that were served keep their copy.
    virtual Status commit(LoanBuffer& buf, std::size_t size) noexcept = 0;

    // Give a loan back without sending it.
    virtual void release(LoanBuffer& buf) noexcept = 0;

    // The complete current set of readers for this topic (from the registry). Connect to new
    // ones, forget those no longer listed (their process may be dead: reclaim what they held).
    // Called periodically and on every registry change, from the core's discovery thread.
    virtual void sync_readers(const std::vector<PeerInfo>& readers) noexcept = 0;

    // Readers this writer currently delivers to. Thread-safe.
    virtual std::size_t reader_count() const noexcept = 0;

    // Waits, without burning a core, until every message committed so far is in its readers'
    // hands, so that closing the writer loses none of them: taken by the reader, or inside an
    // OS object the reader keeps after the writer is gone. Readers that die or leave are not
    // waited for. Errc::timeout at `deadline`, saying how many messages stayed undelivered to
    // how many readers. Called by the writing thread, typically just before destruction, while
    // the discovery thread keeps calling sync_readers().
    virtual Status flush(Clock::time_point deadline) noexcept = 0;

    // Messages (counted once per reader) that commit() did not hand to a connected reader:
    // queue full under block (after block_timeout, or at once while that reader is stalled)
    // or fail. Drops under drop_oldest are counted by the reader (Reader::lost). Thread-safe.
    virtual std::uint64_t undelivered() const noexcept = 0;
};

class Reader {
public:
    virtual ~Reader() = default;

    // The next message from any writer (per-writer order is kept). Blocks, without burning a
    // core, until a message arrives or `deadline` passes (Errc::timeout); a deadline already in
    // the past makes it a non-blocking poll (Errc::would_block when empty). Errc::closed after
    // interrupt().
    virtual Status take(SampleBuffer& out, Clock::time_point deadline) noexcept = 0;

    // Return a sample's bytes to the transport. Thread-safe: an application may drop a sample on
    // another thread, concurrently with take() (keep it cheap: a lock-free op or a short mutex).
    virtual void release(SampleBuffer& sample) noexcept = 0;

    // The complete current set of writers for this topic (from the registry). Attach to new
    // ones, drop state of those gone (a partial message from a dead writer is never delivered).
    // Called from the core's discovery thread, concurrently with take().
    virtual void sync_writers(const std::vector<PeerInfo>& writers) noexcept = 0;

    // Messages this reader lost to drop_oldest or to corruption since it was created.
    virtual std::uint64_t lost() const noexcept = 0;

    // Make a take() that is blocked, and every later one, return Errc::closed. Any thread.
    virtual void interrupt() noexcept = 0;
};

struct Capabilities {
    bool zero_copy = false;                 // loan() hands out memory readers see directly
    std::size_t max_message_size = 0;       // hard upper bound of the mechanism (0 = none)
    const char* summary = "";               // one line for `ferry plugin list`
    // Most readers one writer can serve (0 = no limit): the core refuses a subscriber beyond it
    // with a clear error instead of letting it receive nothing.
    std::size_t max_readers = 0;
    // Delivery runs through a network engine (dds): peers may be on other hosts, the plugin
    // creates no OS object of its own (nothing to inspect in /dev/shm or the runtime dir), and
    // back-pressure comes from the engine's acknowledgements: a subscriber that receives but
    // does not take never blocks a publisher, one that stops acknowledging (stopped, unreachable)
    // does until the engine's lease drops it. The conformance suite skips, saying why, the cases
    // that assume a local mechanism.
    bool network = false;
};

// An OS object a plugin made for a domain (a segment, a queue, a socket file), as found by
// listing where the plugin keeps them. It is stale, and may be removed, once the process of
// any of `endpoints` is gone.
struct OsObject {
    std::string path;                      // what remove_object() takes, and what users are shown
    std::vector<std::uint64_t> endpoints;  // the endpoints it serves (one, or writer and reader)
};

class Transport {
public:
    virtual ~Transport() = default;

    virtual const char* name() const noexcept = 0;
    virtual Capabilities capabilities() const noexcept = 0;

    // Check params against what the mechanism and the system allow (e.g. the host's POSIX
    // message-queue limits); the message says which limit and how to raise it.
    virtual Status validate(const TopicParams& params) const noexcept = 0;

    // The reader creates its OS objects here, before it is registered, so that a writer that
    // learns of it from the registry can connect at once.
    virtual Status create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept = 0;
    virtual Status create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept = 0;

    // The objects of `domain` this plugin's endpoints have made that exist now, in whatever
    // namespace the mechanism uses (only the plugin knows where). The core decides which are
    // stale (their processes gone: `ferry clean`, and one process of the domain now and then)
    // and removes those with remove_object(). Names are parsed, never trusted.
    virtual std::vector<OsObject> list_objects(const std::string& domain, const std::string& runtime_dir) const noexcept {
        (void)domain;
        (void)runtime_dir;
        return {};
    }
    virtual bool remove_object(const std::string& path) const noexcept {
        (void)path;
        return false;
    }

    // Network transports: the endpoints of ferry domain `domain` in other processes that the
    // engine knows of, on any host, with `options` the config's table for this transport (as in
    // TopicParams). Joins the engine's discovery if this process has not yet, and then waits
    // `wait` for it (blocks that long). Not this process's own endpoints. Local transports have
    // nothing to report (the registry knows their endpoints): they keep this default.
    virtual Status discover(const std::string& domain,
                            const std::vector<std::pair<std::string, std::string>>& options,
                            std::chrono::milliseconds wait,
                            std::vector<RemoteEndpoint>& out) noexcept {
        (void)domain;
        (void)options;
        (void)wait;
        out.clear();
        return Status::ok();
    }
};

enum class LogLevel : int { trace = 0, debug, info, warn, error };

// What the core lends a plugin.
struct Host {
    std::uint32_t abi_version = kAbiVersion;
    void (*log)(LogLevel level, const char* message) noexcept = nullptr;
};

}  // namespace ferry::transport

namespace ferry::transport {
// Logs through the core's logger (spdlog there); quiet unless FERRY_LOG_LEVEL asks.
inline void log(const Host& host, LogLevel level, const std::string& message) noexcept {
    if (host.log != nullptr) host.log(level, message.c_str());
}
}  // namespace ferry::transport
