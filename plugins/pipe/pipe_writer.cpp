#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <ferry/transport/naming.hpp>

#include "pipe_transport.hpp"

namespace ferry::pipe {

namespace {

int write_unit(int fd, const std::byte* unit, std::size_t len) noexcept {
    // At most PIPE_BUF bytes: written whole or not at all, even with O_NONBLOCK.
    const ssize_t n = ::write(fd, unit, len);
    if (n == static_cast<ssize_t>(len)) return 0;
    return n < 0 ? errno : EIO;
}

bool fifo_exists(const char* path) noexcept {
    struct stat st {};
    return ::lstat(path, &st) == 0 || errno != ENOENT;
}

}  // namespace

PipeWriter::PipeWriter(const Host& host, const TopicParams& params)
    : FragmentingWriter(host, params, &write_unit, "pipe", false) {}

ReceiverHooks PipeWriter::hooks() const noexcept {
    ReceiverHooks h;
    h.still_there = &fifo_exists;
    return h;
}

Status PipeWriter::open_receiver(const PeerInfo& reader,
                                 UniqueFd& fd,
                                 std::size_t& unit_size,
                                 std::string& object) noexcept {
    try {
        const std::string path = runtime_path(params_.runtime_dir, params_.domain, reader.endpoint_id, "fifo");
        const pid_t pid = reader.pid > 0 ? reader.pid : endpoint_pid(reader.endpoint_id);
        if (!process_alive(pid)) return Status(Errc::closed, "pipe: the reader of " + path + " is gone");
        // O_RDWR (Linux): the writer holds a read end too, so a write never raises SIGPIPE when
        // the reader dies; a dead or departed reader shows as a full FIFO whose pid is dead or
        // whose path is gone (hooks().still_there).
        UniqueFd f(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!f.valid()) {
            const int err = errno;
            const Errc code = (err == ENXIO || err == ENOENT) ? Errc::closed : errc_from_errno(err);
            return os_error(code, "pipe: cannot open FIFO " + path, err);
        }
        struct stat st {};
        if (::fstat(f.get(), &st) != 0 || !S_ISFIFO(st.st_mode)) {
            return Status(Errc::invalid_argument, "pipe: " + path + " is not a FIFO");
        }
        fd = std::move(f);
        unit_size = kUnitSize;
        object = path;
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "pipe: out of memory");
    }
}

void PipeWriter::reclaim_receiver(const PeerInfo& reader) noexcept {
    try {
        const std::string path = runtime_path(params_.runtime_dir, params_.domain, reader.endpoint_id, "fifo");
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) ::unlink(path.c_str());
    } catch (...) {
    }
}

}  // namespace ferry::pipe
