#include <ferry/transport/posix.hpp>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
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

bool world_writable(const std::string& path) noexcept {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0;
}

std::string module_file_problem(const std::string& path, bool check_directory) {
    // O_NONBLOCK: a FIFO in the module's place must not hang the check.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) {
        const int err = errno;
        return err == ENOENT ? std::string("no such file") : std::string("cannot open: ") + std::strerror(err);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return std::string("cannot stat: ") + std::strerror(errno);
    if (!S_ISREG(st.st_mode)) return S_ISDIR(st.st_mode) ? "is a directory, not a module" : "not a regular file";
    char magic[4] = {};
    if (::read(fd.get(), magic, sizeof magic) != static_cast<ssize_t>(sizeof magic) || std::memcmp(magic, "\x7f" "ELF", 4) != 0)
        return "not a shared library (no ELF header)";
    char* resolved = ::realpath(path.c_str(), nullptr);
    const std::string real = resolved != nullptr ? resolved : path;
    std::free(resolved);
    if ((st.st_mode & S_IWOTH) != 0)
        return "the file is world-writable (anyone could replace its code): chmod o-w " + real;
    if (check_directory) {
        const auto slash = real.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : real.substr(0, slash);
        if (world_writable(dir))
            return "its directory " + dir + " is world-writable (anyone could replace the module): move it elsewhere";
    }
    return {};
}

}  // namespace ferry::transport
