#include <ferry/transport/posix.hpp>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ferry::transport {

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

Errc errc_from_errno(int err) noexcept {
    switch (err) {
        case EACCES:
        case EPERM: return Errc::permission_denied;
        case EMFILE:
        case ENFILE:
        case ENOMEM:
        case ENOSPC: return Errc::no_resources;
        case EAGAIN: return Errc::would_block;
        case ETIMEDOUT: return Errc::timeout;
        case EMSGSIZE: return Errc::too_large;
        case EINVAL: return Errc::invalid_argument;
        case EPIPE:
        case ECONNRESET:
        case ECONNREFUSED:
        case ENOENT: return Errc::closed;
        default: return Errc::io_error;
    }
}

Status os_error(Errc code, const std::string& action, int err) {
    return Status(code, action + ": " + std::strerror(err));
}

int poll_timeout_ms(Clock::time_point deadline) noexcept {
    const auto now = Clock::now();
    if (deadline <= now) return 0;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count();
    const long long ms = (us + 999) / 1000;
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, Clock::time_point deadline) noexcept {
    const auto now = Clock::now();
    if (deadline <= now) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    struct timespec ts {};
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    // A relative timeout: FUTEX_WAIT (without the private flag) works across processes.
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<std::uint32_t>& word) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace ferry::transport
