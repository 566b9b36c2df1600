#include <mqueue.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "mq_transport.hpp"

namespace ferry::mq {

namespace {

// A header-only unit interrupt() puts into the reader's own queue to end a blocked receive.
constexpr std::uint32_t kWakeMagic = 0x454B4157u;  // "WAKE"

// Waits until the queue has a unit, `deadline` passes or a signal arrives. The timeout handed to
// ppoll is relative and the kernel measures it on the monotonic clock, so a wall-clock step
// neither stretches nor cuts a wait (mq_timedreceive would take an absolute CLOCK_REALTIME time).
// Returns whether it slept: a queued unit makes ppoll return within a system call's time, a
// wake-up from sleep takes several microseconds.
bool wait_readable(int fd, Clock::time_point deadline) noexcept {
    const auto start = Clock::now();
    auto rel = deadline - start;
    if (rel < Clock::duration::zero()) rel = Clock::duration::zero();
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::min<Clock::duration>(rel, std::chrono::hours(24 * 365)))
                        .count();
    struct timespec ts {};
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    struct pollfd p {};
    p.fd = fd;
    p.events = POLLIN;
    ::ppoll(&p, 1, &ts, nullptr);
    return Clock::now() - start > std::chrono::microseconds(5);
}

}  // namespace

MqReader::MqReader(const Host& host, const TopicParams& params, std::string name, UniqueFd queue, std::size_t unit_size)
    : FragmentingReader(host, params, "mq"), name_(std::move(name)), queue_(std::move(queue)), unit_size_(unit_size) {
    start();
}

MqReader::~MqReader() {
    stop();
    ::mq_unlink(name_.c_str());
}

void MqReader::wake() noexcept {
    UnitHeader h{};
    h.magic = kWakeMagic;
    // If the queue is full it is not empty either: the receiver returns anyway.
    const struct timespec past {};
    ::mq_timedsend(static_cast<mqd_t>(queue_.get()), reinterpret_cast<const char*>(&h), sizeof h, 0, &past);
}

Status MqReader::receive(Message& out, std::uint64_t& pin, Clock::time_point deadline) noexcept {
    pin = 0;
    const bool try_only = expired(deadline);
    // Units are only ever received with a deadline in the past (1970): the call never blocks,
    // whatever the wall clock says.
    const struct timespec zero {};
    // A reader that keeps up finds the queue empty at each take: wait first and receive once,
    // rather than fail a receive, wait, and receive. Not with a dead writer's partial pending:
    // if the queue is empty that partial can never complete, and idle() must drop it at once.
    bool found_empty = expect_empty_ && !try_only && !reassembler().has_gone_partials() &&
                       wait_readable(queue_.get(), deadline);
    while (true) {
        if (interrupted()) return Status(Errc::closed, "interrupted");
        if (!unit_.data) {
            try {
                unit_ = reassembler().pool().acquire(unit_size_);
            } catch (...) {
                return Status(Errc::no_resources, "mq: out of memory");
            }
        }
        const ssize_t n = ::mq_timedreceive(static_cast<mqd_t>(queue_.get()), reinterpret_cast<char*>(unit_.data.get()),
                                            unit_.capacity, nullptr, &zero);
        if (n >= 0) {
            const auto len = static_cast<std::size_t>(n);
            std::uint32_t magic = 0;
            if (len >= sizeof magic) std::memcpy(&magic, unit_.data.get(), sizeof magic);
            if (len == kUnitHeaderSize && magic == kWakeMagic) continue;
            const char* why = nullptr;
            try {
                const auto result = reassembler().push(unit_.data.get(), len, out, &why);
                if (result == Reassembler::Result::message) {
                    // A single-unit message is a view into unit_: hand the buffer out with it.
                    if (!out.buffer.data) out.buffer = std::move(unit_);
                    unit_ = ByteBuffer{};
                    expect_empty_ = found_empty;
                    return Status::ok();
                }
            } catch (...) {
                return Status(Errc::no_resources, "mq: out of memory while reassembling");
            }
            if (why != nullptr) report_garbage(why);
            continue;
        }
        const int err = errno;
        if (err == EINTR) continue;
        if (err == ETIMEDOUT || err == EAGAIN) {
            idle();
            found_empty = true;
            expect_empty_ = true;
            if (try_only) return Status(Errc::would_block, "no message");
            // Looked at the queue before waiting: with a dead writer's partial pending and the
            // queue empty, idle() has dropped that partial.
            if (expired(deadline)) return Status(Errc::timeout, "timed out");
            wait_readable(queue_.get(), deadline);
            continue;
        }
        return os_error(errc_from_errno(err), "mq: cannot receive from queue " + name_, err);
    }
}

}  // namespace ferry::mq
