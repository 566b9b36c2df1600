#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pipe_transport.hpp"

namespace ferry::pipe {

namespace {

// Room for a burst of small units per read(); a unit never exceeds PIPE_BUF.
constexpr std::size_t kStreamBytes = 64u << 10;

}  // namespace

PipeReader::PipeReader(const Host& host,
                       const TopicParams& params,
                       std::string path,
                       UniqueFd read_fd,
                       UniqueFd self_fd,
                       UniqueFd wake_fd)
    : FragmentingReader(host, params, "pipe"),
      path_(std::move(path)),
      read_fd_(std::move(read_fd)),
      self_fd_(std::move(self_fd)),
      wake_fd_(std::move(wake_fd)) {
    streams_.reserve(4);
    streams_.push_back(Stream{reassembler().pool().acquire(kStreamBytes), 0});
    start();
}

PipeReader::~PipeReader() {
    stop();
    ::unlink(path_.c_str());
}

void PipeReader::wake() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

void PipeReader::unpin(std::uint64_t pin) noexcept {
    if (pin >= 1 && pin <= streams_.size() && streams_[pin - 1].pins > 0) --streams_[pin - 1].pins;
}

bool PipeReader::parse_next(Message& out, std::uint64_t& pin) {
    while (end_ - pos_ >= kUnitHeaderSize) {
        const std::byte* base = streams_[current_].buffer.data.get();
        UnitHeader h;
        std::memcpy(&h, base + pos_, kUnitHeaderSize);
        if (!unit_header_valid(h, kUnitSize)) {
            // Not a unit boundary: someone wrote garbage into the FIFO. Count the run once and
            // resynchronise on the next magic; good writers' units are contiguous (atomic).
            if (!in_garbage_) {
                in_garbage_ = true;
                reassembler().add_lost(1);
                report_garbage("bytes that are not a unit header in the FIFO");
            }
            const std::uint32_t magic = kUnitMagic;
            const void* found = ::memmem(base + pos_ + 1, end_ - pos_ - 1, &magic, sizeof magic);
            if (found != nullptr) {
                pos_ = static_cast<std::size_t>(static_cast<const std::byte*>(found) - base);
            } else {
                // Keep a tail that may be the start of a magic split across reads.
                pos_ = std::max(pos_ + 1, end_ - (sizeof magic - 1));
            }
            continue;
        }
        const std::size_t len = kUnitHeaderSize + h.payload_size;
        if (end_ - pos_ < len) return false;
        const char* why = nullptr;
        const auto result = reassembler().push(base + pos_, len, out, &why);
        pos_ += len;
        in_garbage_ = false;
        if (result == Reassembler::Result::message) {
            if (!out.buffer.data) {
                ++streams_[current_].pins;
                pin = current_ + 1;
            }
            return true;
        }
        if (result == Reassembler::Result::garbage) report_garbage(why);
    }
    return false;
}

long PipeReader::fill() noexcept {
    const std::size_t left = end_ - pos_;
    if (left == 0 || streams_[current_].buffer.capacity - end_ < kUnitSize) {
        if (streams_[current_].pins == 0) {
            std::byte* base = streams_[current_].buffer.data.get();
            if (left != 0) std::memmove(base, base + pos_, left);
        } else {
            // Samples still point into this buffer: continue in another one.
            std::size_t next = streams_.size();
            for (std::size_t i = 0; i < streams_.size(); ++i) {
                if (i != current_ && streams_[i].pins == 0) next = i;
            }
            try {
                if (next == streams_.size()) streams_.push_back(Stream{reassembler().pool().acquire(kStreamBytes), 0});
            } catch (...) {
                return -ENOMEM;
            }
            std::memcpy(streams_[next].buffer.data.get(), streams_[current_].buffer.data.get() + pos_, left);
            current_ = next;
        }
        pos_ = 0;
        end_ = left;
    }
    Stream& s = streams_[current_];
    while (true) {
        const ssize_t n = ::read(read_fd_.get(), s.buffer.data.get() + end_, s.buffer.capacity - end_);
        if (n > 0) {
            end_ += static_cast<std::size_t>(n);
            last_fill_full_ = end_ == s.buffer.capacity;
            return n;
        }
        if (n == 0) return 0;  // cannot happen while self_fd_ is open
        if (errno == EINTR) continue;
        last_fill_full_ = false;
        return errno == EAGAIN ? 0 : -errno;
    }
}

Status PipeReader::receive(Message& out, std::uint64_t& pin, Clock::time_point deadline) noexcept {
    const bool try_only = expired(deadline);
    // Blocking with nothing buffered (the common case): poll first, saving a read() that
    // would only say EAGAIN.
    bool read_first = try_only || last_fill_full_ || reassembler().has_gone_partials();
    while (true) {
        if (interrupted()) return Status(Errc::closed, "interrupted");
        try {
            if (parse_next(out, pin)) return Status::ok();
        } catch (...) {
            return Status(Errc::no_resources, "pipe: out of memory while reassembling");
        }
        if (read_first) {
            const long n = fill();
            if (n > 0) continue;
            if (n < 0) return os_error(errc_from_errno(static_cast<int>(-n)), "pipe: cannot read FIFO " + path_,
                                       static_cast<int>(-n));
            idle();
            if (try_only) return Status(Errc::would_block, "no message");
            if (expired(deadline)) return Status(Errc::timeout, "timed out");
        }
        read_first = true;
        pollfd fds[2] = {{read_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
        if (::poll(fds, 2, poll_timeout_ms(deadline)) < 0 && errno != EINTR) {
            return os_error(Errc::io_error, "pipe: cannot poll FIFO " + path_, errno);
        }
    }
}

}  // namespace ferry::pipe
