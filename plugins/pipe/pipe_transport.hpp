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

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <ferry/transport/framed_stream.hpp>
#include <ferry/transport/naming.hpp>
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

using transport::FrameHeader;
inline constexpr std::size_t kHeaderSize = transport::kFrameHeaderSize;

// "to-<reader id, 16 hex>.fifo": the suffix of the FIFO a writer creates for `reader_id`.
std::string fifo_suffix(std::uint64_t reader_id);
// The FIFO `writer_id` creates for `reader_id`.
std::string fifo_path(const TopicParams& params, std::uint64_t writer_id, std::uint64_t reader_id);
// Pipe capacity asked for with F_SETPIPE_SZ (see README: depth).
std::size_t wanted_pipe_size(const TopicParams& params);

class DirWatcher;

// The framing and the overflow policy are the SDK's FramedWriter; this is the mechanism: a
// FIFO per reader, created and owned by the writer; a dead reader shows as a FIFO that stays
// full while its pid is gone or its name was removed.
class PipeWriter final : public transport::FramedWriter {
public:
    PipeWriter(const Host& host, const TopicParams& params);
    ~PipeWriter() override;

private:
    struct Conn : Channel {
        transport::ProcessId reader;  // its process, for liveness
        std::string path;
        dev_t dev = 0;
        ino_t ino = 0;
        std::size_t capacity = 0;  // of the pipe, in bytes
    };

    std::shared_ptr<Channel> open_channel(const PeerInfo& reader, std::string& error, Errc& refusal) override;
    ssize_t put(Channel& ch, const std::byte* data, std::size_t size) noexcept override;
    bool refuse(const Channel& ch, std::size_t total) noexcept override;
    std::size_t undrained(const Channel& ch) noexcept override;
    bool peer_alive(const Channel& ch) noexcept override;
    void forget_locked(Channel& ch) noexcept override;
};

// The receiving, the budget and per-writer order are the SDK's FramedStreamReader; this is
// the mechanism: FIFOs addressed to this reader, found through the DirWatcher (and
// sync_writers as a fallback), opened the moment they appear, and removed here once their
// writer is dead.
class PipeReader final : public transport::FramedStreamReader {
public:
    friend class DirWatcher;
    // Creates the inotify watch, the epoll set (and, for drop_oldest, the drain thread).
    static Status create(const Host& host, const TopicParams& params, std::unique_ptr<transport::Reader>& out);
    ~PipeReader() override;

    void sync_writers(const std::vector<PeerInfo>& writers) noexcept override;

private:
    struct Conn : Stream {
        std::string path;
        dev_t dev = 0;
        ino_t ino = 0;
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

    PipeReader(const Host& host, const TopicParams& params);

    void on_events(std::uint32_t fired) override;
    void on_closed(Stream& stream, bool garbage) override;
    bool on_idle() override;
    std::string describe(const Stream& stream) const override {
        return "FIFO " + static_cast<const Conn&>(stream).path;
    }

    bool matches(const char* name) const;
    // Any thread: opens a FIFO addressed to us (holding it open keeps what its writer wrote,
    // even if the writer dies) and hands it to the receiving thread.
    void open_and_queue(const std::string& name);
    void scan_directory();
    void adopt(Incoming&& in);
    void handle_sync();
    void forget_stale(bool all);

    std::string prefix_;  // "ferry.<domain>."
    std::string suffix_;  // ".to-<our id>.fifo"
    UniqueFd sync_fd_;    // eventfd: sync_writers() or the watcher has something new

    std::shared_ptr<DirWatcher> watcher_;

    std::mutex sync_mu_;
    std::vector<PeerInfo> writers_;  // the last list from sync_writers
    std::vector<Incoming> incoming_;  // opened, not yet adopted
    std::unordered_set<std::uint64_t> attached_ids_;  // writers with an adopted FIFO

    std::vector<Stale> stale_;  // FIFOs seen at EOF whose creator may still be dying
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
    // Its objects: one FIFO per writer and reader, ferry.<domain>.<writer>.to-<reader>.fifo in the
    // runtime dir, needed while both live.
    std::vector<transport::OsObject> list_objects(const std::string& domain,
                                                  const std::string& runtime_dir) const noexcept override;
    bool remove_object(const std::string& path) const noexcept override;

private:
    const Host* host_;
};

}  // namespace ferry::pipe
