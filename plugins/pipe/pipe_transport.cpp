#include "pipe_transport.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/plugin.hpp>

namespace ferry::pipe {

namespace {

std::size_t pipe_max_size() {
    std::ifstream in("/proc/sys/fs/pipe-max-size");
    std::size_t v = 0;
    if (in >> v) return v;
    return 1u << 20;
}

std::size_t round_to_pages(std::size_t bytes) {
    std::size_t size = 4096;
    while (size < bytes) size <<= 1;
    return size;
}

// What depth asks for: depth units of PIPE_BUF (the kernel rounds to a power of two pages).
std::size_t depth_pipe_size(std::uint32_t depth) { return round_to_pages(static_cast<std::size_t>(depth) * kUnitSize); }

// Never less than the default 64 KiB (a smaller pipe only slows large messages down);
// drop_oldest asks for 1 MiB so that a writer rarely finds the pipe full while the drain
// thread is descheduled. Pages are only allocated when written.
std::size_t wanted_pipe_size(const TopicParams& params) {
    const std::size_t floor = params.overflow == Overflow::drop_oldest ? (1u << 20) : (64u << 10);
    return std::max(depth_pipe_size(params.depth), round_to_pages(std::min(floor, pipe_max_size())));
}

}  // namespace

Capabilities PipeTransport::capabilities() const noexcept {
    return Capabilities{false, kMaxFragmentedMessage,
                        "named pipes (FIFOs): one per reader, atomic PIPE_BUF units, fragments above"};
}

Status PipeTransport::validate(const TopicParams& params) const noexcept {
    if (params.max_message_size > kMaxFragmentedMessage) {
        return Status(Errc::invalid_argument, "pipe: max_message_size " + std::to_string(params.max_message_size) +
                                                  " exceeds the 4 GiB the unit header can describe");
    }
    if (params.depth == 0) return Status(Errc::invalid_argument, "pipe: depth must be at least 1");
    if (params.runtime_dir.empty()) return Status(Errc::invalid_argument, "pipe: no runtime directory");
    const std::size_t size = depth_pipe_size(params.depth);
    const std::size_t max = pipe_max_size();
    if (size > max) {
        return Status(Errc::no_resources,
                      "pipe: depth " + std::to_string(params.depth) + " needs a pipe of " + std::to_string(size) +
                          " bytes (depth x PIPE_BUF) but fs.pipe-max-size is " + std::to_string(max) +
                          "; raise it with `sysctl -w fs.pipe-max-size=" + std::to_string(size) +
                          "` or lower the topic's depth");
    }
    return Status::ok();
}

Status PipeTransport::create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept {
    if (Status st = validate(params); !st) return st;
    try {
        out = std::make_unique<PipeWriter>(host_, params);
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "pipe: cannot create writer: out of memory");
    }
}

Status PipeTransport::create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept {
    if (Status st = validate(params); !st) return st;
    try {
        const std::string path = runtime_path(params.runtime_dir, params.domain, params.endpoint_id, "fifo");
        if (::mkfifo(path.c_str(), params.mode) != 0) {
            // The id is ours: an entry of that name is a leftover of a dead process that had our pid.
            if (errno != EEXIST || ::unlink(path.c_str()) != 0 || ::mkfifo(path.c_str(), params.mode) != 0) {
                return os_error(errc_from_errno(errno), "pipe: cannot create FIFO " + path, errno);
            }
        }
        auto fail = [&](const std::string& action) {
            const int err = errno;
            ::unlink(path.c_str());
            return os_error(errc_from_errno(err), action + " " + path, err);
        };
        if (::chmod(path.c_str(), params.mode) != 0) return fail("pipe: cannot set mode of FIFO");
        UniqueFd read_fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
        if (!read_fd.valid()) return fail("pipe: cannot open FIFO for reading");
        UniqueFd self_fd(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        if (!self_fd.valid()) return fail("pipe: cannot open FIFO for writing");
        UniqueFd wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!wake_fd.valid()) return fail("pipe: cannot create eventfd for");
        const std::size_t size = wanted_pipe_size(params);
        if (::fcntl(read_fd.get(), F_SETPIPE_SZ, static_cast<int>(size)) < 0) {
            log(host_, LogLevel::warn,
                "pipe: cannot size FIFO " + path + " to " + std::to_string(size) + " bytes (" +
                    std::strerror(errno) + "); keeping the kernel default");
        }
        out = std::make_unique<PipeReader>(host_, params, path, std::move(read_fd), std::move(self_fd),
                                           std::move(wake_fd));
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "pipe: cannot create reader: out of memory");
    }
}

}  // namespace ferry::pipe

FERRY_TRANSPORT_PLUGIN(ferry::pipe::PipeTransport)
