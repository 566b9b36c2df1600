#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

#include <ferry/transport/naming.hpp>

#include "pipe_transport.hpp"

namespace ferry::pipe {

namespace {

const transport::FramedWriterOptions kOptions{
    "pipe", kFrameMagic, "FIFO", "FIFO(s) closed mid-frame", "short write"};

}  // namespace

PipeWriter::PipeWriter(const Host& host, const TopicParams& params) : FramedWriter(host, params, kOptions) {}

// What is still in the FIFOs was waited for by flush() (the core calls it before it drops the
// writer, for up to linger_ms): see undrained().
PipeWriter::~PipeWriter() { forget_all(); }

ssize_t PipeWriter::put(Channel& ch, const std::byte* data, std::size_t size) noexcept {
    return ::write(ch.fd.get(), data, size);
}

// Removes the FIFO's name if it is still the one this connection created.
void PipeWriter::forget_locked(Channel& ch) noexcept {
    const Conn& conn = static_cast<const Conn&>(ch);
    struct stat st {};
    if (::lstat(conn.path.c_str(), &st) == 0 && st.st_dev == conn.dev && st.st_ino == conn.ino) {
        ::unlink(conn.path.c_str());
    }
}

// A full FIFO: is anyone still going to read it? (Writers hold O_RDWR, so a dead reader shows
// only as a FIFO that stays full: its pid is gone, or it removed our FIFO as garbage.)
bool PipeWriter::peer_alive(const Channel& ch) noexcept {
    const Conn& conn = static_cast<const Conn&>(ch);
    if (!transport::process_alive(conn.reader)) return false;
    struct stat st {};
    return ::lstat(conn.path.c_str(), &st) == 0 && st.st_dev == conn.dev && st.st_ino == conn.ino;
}

// fail: a frame above PIPE_BUF may be written in part, and a part must never stay behind, so
// such a frame is only written when the FIFO has room for all of it (a page per partly used
// page is counted as lost to packing).
bool PipeWriter::refuse(const Channel& ch, std::size_t total) noexcept {
    if (total <= PIPE_BUF) return false;
    const Conn& conn = static_cast<const Conn&>(ch);
    int queued = 0;
    if (::ioctl(conn.fd.get(), FIONREAD, &queued) != 0 || queued == 0) return false;  // empty: it goes in as it is read
    const std::size_t pages_used = (static_cast<std::size_t>(queued) + 4095) / 4096 + 1;
    const std::size_t pages_free = conn.capacity / 4096 > pages_used ? conn.capacity / 4096 - pages_used : 0;
    return pages_free * 4096 < total;
}

// What the reader has not read yet: lost if the FIFO goes before the reader opened it.
std::size_t PipeWriter::undrained(const Channel& ch) noexcept {
    int queued = 0;
    if (::ioctl(ch.fd.get(), FIONREAD, &queued) != 0 || queued < 0) return 0;
    return static_cast<std::size_t>(queued);
}

std::shared_ptr<PipeWriter::Channel> PipeWriter::open_channel(const PeerInfo& reader, std::string& error, Errc& /*refusal*/) {
    const transport::ProcessId who{reader.pid > 0 ? reader.pid : transport::endpoint_pid(reader.endpoint_id),
                                   reader.pid > 0 ? reader.start_time : 0};
    const std::string path = fifo_path(params_, params_.endpoint_id, reader.endpoint_id);
    if (!transport::process_alive(who)) {
        error = "reader of " + path + " is gone";
        return nullptr;
    }
    if (::mkfifo(path.c_str(), params_.mode & 07777) != 0) {
        // The name carries our id: an entry of that name is ours, or left over by a dead
        // process that had our pid.
        if (errno != EEXIST || ::unlink(path.c_str()) != 0 || ::mkfifo(path.c_str(), params_.mode & 07777) != 0) {
            error = "cannot create FIFO " + path + ": " + std::strerror(errno);
            return nullptr;
        }
    }
    // O_RDWR (Linux): never fails for want of a reader, and a write never raises SIGPIPE when
    // the reader dies. Data waits in the FIFO until the reader opens it.
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fchmod(fd.get(), params_.mode & 07777) != 0 || ::fstat(fd.get(), &st) != 0) {
        error = "cannot open FIFO " + path + ": " + std::strerror(errno);
        ::unlink(path.c_str());
        return nullptr;
    }
    const std::size_t size = wanted_pipe_size(params_);
    if (::fcntl(fd.get(), F_SETPIPE_SZ, static_cast<int>(size)) < 0) {
        transport::log(*host_, transport::LogLevel::warn,
                       "pipe: cannot size FIFO " + path + " to " + std::to_string(size) + " bytes (" +
                           std::strerror(errno) + "); keeping the kernel default");
    }
    auto conn = std::make_shared<Conn>();
    const int capacity = ::fcntl(fd.get(), F_GETPIPE_SZ);
    conn->capacity = capacity > 0 ? static_cast<std::size_t>(capacity) : 65536;
    conn->fd = std::move(fd);
    conn->reader_id = reader.endpoint_id;
    conn->reader = who;
    conn->path = path;
    conn->dev = st.st_dev;
    conn->ino = st.st_ino;
    return conn;
}

}  // namespace ferry::pipe
