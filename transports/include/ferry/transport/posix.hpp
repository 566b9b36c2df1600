// Small POSIX building blocks shared by plugins: owned file descriptors, deadlines for
// poll(), futex waits on shared-memory words, and OS error text.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include <ferry/transport/transport.hpp>

namespace ferry::transport {

// Owns one file descriptor.
class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

// "<action>: <strerror(err)>", e.g. "uds: cannot connect to /run/..: Connection refused".
Status os_error(Errc code, const std::string& action, int err);
// Picks the Errc for an errno (EACCES -> permission_denied, EMFILE -> no_resources, ...).
Errc errc_from_errno(int err) noexcept;

// Milliseconds until `deadline`, rounded up, for poll(): 0 if past, capped to INT_MAX.
int poll_timeout_ms(Clock::time_point deadline) noexcept;

// True if `deadline` is already reached.
inline bool expired(Clock::time_point deadline) noexcept { return Clock::now() >= deadline; }

// Futex on a 32-bit word that may live in shared memory (not process-private).
// futex_wait returns when *word != expected, on a wake, a signal, or at `deadline`.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, Clock::time_point deadline) noexcept;
void futex_wake_all(std::atomic<std::uint32_t>& word) noexcept;

// True if anyone may write to `path` (S_IWOTH set); false when it cannot be stat'ed.
bool world_writable(const std::string& path) noexcept;

// Why the shared module at `path` (a transport plugin, a type-support module) must not be
// loaded, or "" if it may be: it must exist, be a regular file starting with an ELF header, and
// neither the file nor (with `check_directory`) its directory may be world-writable, since then
// anyone could put their own code in its place. Symbolic links are followed.
std::string module_file_problem(const std::string& path, bool check_directory);

}  // namespace ferry::transport
