#include "registry/registry.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>

#include <ferry/error.hpp>
#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>

#include "log/log.hpp"

namespace ferry::detail {

namespace {
constexpr std::uint64_t kMagic = 0x5947455259524546ull;  // "FERRYREGY"
constexpr std::uint32_t kVersion = 5;
// Sized for 500 processes of one domain, each with a few endpoints (about 1.2 MB of /dev/shm).
constexpr std::size_t kMaxParticipants = 1024;
constexpr std::size_t kMaxTopics = 1024;
constexpr std::size_t kMaxEndpoints = 4096;
static_assert(Registry::TopicSet().size() == kMaxTopics, "a TopicSet has a bit per topic slot");
// One process of the domain at a time checks every participant's liveness, this often.
constexpr std::chrono::milliseconds kPurgeInterval{500};
constexpr std::chrono::milliseconds kPurgePerProcess{4};
constexpr std::size_t kNameLen = 192;
constexpr std::size_t kTypeLen = 192;
constexpr std::size_t kTransportLen = 32;
constexpr std::size_t kNodeLen = 64;

// A registry critical section takes microseconds: a holder for longer is stopped or hung.
constexpr std::chrono::milliseconds kLockTimeout{2000};
// Leaving (endpoint or process): entries left behind are purged once this process is gone.
constexpr std::chrono::milliseconds kLeaveTimeout{500};
// How much longer than its timeout a lock may take while it makes progress (others acquire it).
constexpr int kLockCrowdFactor = 15;

enum State : std::uint32_t { kFree = 0, kWriting = 1, kLive = 2 };
}  // namespace

struct ShmParticipant {
    std::atomic<std::uint32_t> state;
    std::int32_t pid;
    std::uint64_t start_time;
    std::uint64_t token;  // liveness token: its .alive file is locked while the process lives
    // Rung (bumped and futex-woken) when an endpoint comes or goes on a topic this process has
    // an endpoint on: its discovery thread sleeps on this word alone, so a change wakes the
    // processes it concerns, not every process of the domain.
    std::atomic<std::uint32_t> doorbell;
};

struct ShmTopic {
    std::atomic<std::uint32_t> state;
    char name[kNameLen];
    char type[kTypeLen];
    char transport[kTransportLen];
    std::uint32_t depth;
    std::uint32_t overflow;
    std::uint64_t max_message_size;
    std::uint64_t block_timeout_ms;
    std::uint32_t mode;
    std::int32_t creator_pid;
    std::atomic<std::uint32_t> changes;  // bumped when an endpoint of the topic comes or goes
};

// Cache-line aligned, counters on a line of their own: publishers in different processes bump
// their counters on every message and must not share a line.
struct alignas(64) ShmEndpoint {
    std::atomic<std::uint32_t> state;
    std::uint32_t role;
    std::uint32_t topic;
    std::int32_t pid;
    std::uint64_t start_time;
    std::uint64_t id;
    std::uint64_t token;
    char node[kNodeLen];
    alignas(64) std::atomic<std::uint64_t> messages;
    std::atomic<std::uint64_t> bytes;
    std::atomic<std::uint64_t> undelivered;
};

struct RegistryLayout {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t size;
    pthread_mutex_t mutex;
    std::atomic<std::uint32_t> generation;
    std::uint32_t dead;  // set, under the lock, by the last participant just before it unlinks
    std::atomic<std::int64_t> next_purge_ns;  // CLOCK_MONOTONIC: when the next purge is due
    std::atomic<std::uint64_t> acquisitions;  // of the mutex: progress, for waiters' deadlines
    ShmParticipant participants[kMaxParticipants];
    ShmTopic topics[kMaxTopics];
    ShmEndpoint endpoints[kMaxEndpoints];
};

namespace {

// Test hooks: a process that dies (CRASH) or stops itself (STOP) holding the registry lock.
// Read on every use, not cached: a test sets them in a forked child.
bool crash_in_lock_requested() {
    const char* v = std::getenv("FERRY_TEST_CRASH_IN_REGISTRY_LOCK");
    return v && std::strcmp(v, "1") == 0;
}

bool stop_in_lock_requested() {
    const char* v = std::getenv("FERRY_TEST_STOP_IN_REGISTRY_LOCK");
    return v && std::strcmp(v, "1") == 0;
}

std::atomic<const std::atomic<bool>*> g_interrupt{nullptr};

// "pid 4242 (stopped)" for the thread `tid` holding the lock, from /proc/<tid>/status.
std::string describe_holder(pid_t tid) {
    if (tid <= 0) return "a process that is gone";
    std::ifstream in("/proc/" + std::to_string(tid) + "/status");
    std::string line, state, tgid;
    while (std::getline(in, line)) {
        if (line.rfind("State:", 0) == 0) {
            const auto open = line.find('('), close = line.rfind(')');
            if (open != std::string::npos && close != std::string::npos && close > open)
                state = line.substr(open + 1, close - open - 1);
        } else if (line.rfind("Tgid:", 0) == 0) {
            tgid = std::to_string(std::strtol(line.c_str() + 5, nullptr, 10));
        }
    }
    if (tgid.empty()) return "pid " + std::to_string(tid) + " (gone, or in another pid namespace)";
    return "pid " + tgid + " (" + (state.empty() ? std::string("unknown state") : state) + ")";
}

void copy_str(char* dst, std::size_t cap, const std::string& src) {
    const std::size_t n = std::min(src.size(), cap - 1);
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

std::string read_str(const char* src, std::size_t cap) { return std::string(src, ::strnlen(src, cap)); }

struct ProcStat {
    bool exists = false;
    bool zombie = false;
    std::uint64_t start_time = 0;
};

ProcStat read_proc_stat(pid_t pid) {
    ProcStat out;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(in, text)) return out;
    const auto close = text.rfind(')');
    if (close == std::string::npos) return out;
    std::istringstream rest(text.substr(close + 1));
    std::string state;
    rest >> state;
    std::string field;
    for (int i = 4; i <= 22 && rest >> field; ++i) {
        if (i == 22) out.start_time = std::strtoull(field.c_str(), nullptr, 10);
    }
    out.exists = true;
    out.zombie = state == "Z" || state == "X";
    return out;
}

}  // namespace

ProcessId this_process() {
    static const ProcessId self = [] {
        ProcessId p;
        p.pid = ::getpid();
        p.start_time = read_proc_stat(p.pid).start_time;
        return p;
    }();
    // After fork() the cached value belongs to the parent.
    if (self.pid != ::getpid()) {
        ProcessId p;
        p.pid = ::getpid();
        p.start_time = read_proc_stat(p.pid).start_time;
        return p;
    }
    return self;
}

bool process_gone(pid_t pid) {
    const ProcStat st = read_proc_stat(pid);
    return !st.exists || st.zombie;
}

bool process_is(const ProcessId& p) {
    const ProcStat st = read_proc_stat(p.pid);
    return st.exists && !st.zombie && st.start_time == p.start_time;
}

void set_registry_interrupt(const std::atomic<bool>* flag) noexcept { g_interrupt.store(flag); }

// Takes the registry mutex within `timeout` (in slices, so that an interrupt or a closing
// participant ends the wait early), or throws naming the holder: a stopped or hung process
// must never hang another.
class Registry::Lock {
public:
    explicit Lock(Registry& r, std::chrono::milliseconds timeout = kLockTimeout) : r_(r), local_(r.local_mu_) {
        // The deadline runs while the lock makes no progress (the same holder keeps it): a crowd
        // of waiters in a start-up storm only waits its turn, up to kLockCrowdFactor times longer.
        const auto start = std::chrono::steady_clock::now();
        auto deadline = start + timeout;
        const auto hard_deadline = start + timeout * kLockCrowdFactor;
        // A truncated file is never touched: rejoin first (the one cheap fstat per lock).
        if (r_.shm_ && r_.truncated()) r_.rejoin_if_needed();
        if (!r_.shm_) throw Error(Errc::closed, "registry of domain " + r_.domain_ + " is gone");
        std::uint64_t seen_acquisitions = r_.shm_->acquisitions.load(std::memory_order_relaxed);
        for (;;) {
            const auto now = std::chrono::steady_clock::now();
            const auto slice_end = std::min(deadline, now + std::chrono::milliseconds(50));
            timespec ts{};
            clock_gettime(CLOCK_MONOTONIC, &ts);
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(slice_end - now).count() +
                            static_cast<long long>(ts.tv_nsec);
            ts.tv_sec += static_cast<time_t>(ns / 1000000000);
            ts.tv_nsec = static_cast<long>(ns % 1000000000);
            const int rc = ::pthread_mutex_clocklock(&r_.shm_->mutex, CLOCK_MONOTONIC, &ts);
            if (rc == 0) {
                r_.shm_->acquisitions.fetch_add(1, std::memory_order_relaxed);
                break;
            }
            if (rc == EOWNERDEAD) {
                log_warn("registry of domain " + r_.domain_ + ": a process died holding the lock; repairing");
                r_.repair_locked();
                ::pthread_mutex_consistent(&r_.shm_->mutex);
                r_.shm_->acquisitions.fetch_add(1, std::memory_order_relaxed);
                break;
            }
            if (rc != ETIMEDOUT)
                throw Error(Errc::internal, "registry of domain " + r_.domain_ + ": lock failed: " + std::strerror(rc));
            const pid_t holder = __atomic_load_n(&r_.shm_->mutex.__data.__owner, __ATOMIC_RELAXED);
            const auto* interrupt = g_interrupt.load();
            if (r_.interrupted_.load() || (interrupt && interrupt->load()))
                throw Error(Errc::closed, "interrupted while waiting for the registry lock of domain " + r_.domain_ +
                                              " (held by " + describe_holder(holder) + ")");
            const auto after = std::chrono::steady_clock::now();
            const std::uint64_t acquisitions = r_.shm_->acquisitions.load(std::memory_order_relaxed);
            if (acquisitions != seen_acquisitions && after < hard_deadline) {
                seen_acquisitions = acquisitions;  // others got it meanwhile: a crowd, not a stuck holder
                deadline = std::min(hard_deadline, after + timeout);
                continue;
            }
            if (after >= deadline) {
                if (acquisitions != seen_acquisitions || after >= hard_deadline)
                    throw Error(Errc::timeout, "registry lock of domain " + r_.domain_ + " too contended: not acquired in " +
                                                   std::to_string((timeout * kLockCrowdFactor).count()) + " ms");
                throw Error(Errc::timeout, "registry lock of domain " + r_.domain_ + " held by " + describe_holder(holder) +
                                               " for more than " + std::to_string(timeout.count()) +
                                               " ms; resume it (kill -CONT) or end it");
            }
        }
    }
    ~Lock() { ::pthread_mutex_unlock(&r_.shm_->mutex); }

private:
    Registry& r_;
    std::unique_lock<std::recursive_mutex> local_;
};

std::string Registry::path_for(const std::string& domain) { return "/dev/shm/ferry." + domain + ".registry"; }

namespace {

RegistryLayout* map_fd(int fd) {
    void* p = ::mmap(nullptr, sizeof(RegistryLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? nullptr : static_cast<RegistryLayout*>(p);
}

std::string human_size(unsigned long long bytes) {
    char buf[32];
    if (bytes >= (1ull << 20))
        std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    else
        std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
    return buf;
}

// "/dev/shm (size 64.0 KiB, 0.0 KiB free)" for the file system holding `path`.
std::string describe_fs(const std::string& path) {
    const std::string dir = path.substr(0, path.rfind('/'));
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) != 0) return dir;
    return dir + " (size " + human_size(static_cast<unsigned long long>(vfs.f_blocks) * vfs.f_frsize) + ", " +
           human_size(static_cast<unsigned long long>(vfs.f_bavail) * vfs.f_frsize) + " free)";
}

// The temporary file of create_registry(), removed on every path out.
struct TmpFile {
    std::string path;
    ~TmpFile() { ::unlink(path.c_str()); }
};

// Creates a fully initialised registry under a temporary name and links it into place, so
// nobody ever maps a half-initialised one. Returns false if another process won the race.
// Its pages are reserved first: a full /dev/shm is an error here, never a SIGBUS later.
bool create_registry(const std::string& path, std::uint32_t mode) {
    TmpFile tmp{path + ".tmp." + std::to_string(::getpid())};
    transport::UniqueFd fd(::open(tmp.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) {
        const int err = errno;
        tmp.path.clear();  // not ours to remove
        throw Error(transport::errc_from_errno(err), "registry: cannot create " + path + ".tmp." +
                                                          std::to_string(::getpid()) + ": " + std::strerror(err));
    }
    // umask may have cleared bits the config grants: set them explicitly.
    ::fchmod(fd.get(), static_cast<mode_t>(mode & 0660));
    const int rc = ::posix_fallocate(fd.get(), 0, sizeof(RegistryLayout));
    if (rc != 0) {
        if (rc == ENOSPC)
            throw Error(Errc::no_resources, "registry: " + describe_fs(path) + " has no room for the " +
                                                human_size(sizeof(RegistryLayout)) + " registry " + path +
                                                "; free space there (ferry clean, or a larger --shm-size)");
        throw Error(Errc::no_resources, "registry: cannot reserve " + human_size(sizeof(RegistryLayout)) + " for " +
                                            tmp.path + ": " + std::strerror(rc));
    }
    RegistryLayout* shm = map_fd(fd.get());
    if (!shm) {
        const int err = errno;
        throw Error(Errc::no_resources, "registry: cannot map " + tmp.path + ": " + std::strerror(err));
    }
    pthread_mutexattr_t attr;
    ::pthread_mutexattr_init(&attr);
    ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    ::pthread_mutex_init(&shm->mutex, &attr);
    ::pthread_mutexattr_destroy(&attr);
    shm->version = kVersion;
    shm->size = sizeof(RegistryLayout);
    shm->magic = kMagic;
    ::munmap(shm, sizeof(RegistryLayout));
    const bool won = ::link(tmp.path.c_str(), path.c_str()) == 0;
    const int err = errno;
    if (!won && err != EEXIST)
        throw Error(Errc::io_error, "registry: cannot publish " + path + ": " + std::strerror(err));
    return won;
}

// ", and it belongs to uid 1001, not to you (uid 1000)" when another user owns `st`.
std::string foreign_owner(const std::string& path, const struct stat& st) {
    if (st.st_uid == ::geteuid()) return "";
    return ": " + path + " belongs to uid " + std::to_string(st.st_uid) + ", not to you (uid " +
           std::to_string(::geteuid()) + "); that user (or root, with `ferry clean`) must remove it, or use another domain";
}

}  // namespace

std::string Registry::check_layout(int fd, const std::string& path, struct stat* out) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return std::string("cannot stat it: ") + std::strerror(errno);
    if (out) *out = st;
    if (static_cast<std::size_t>(st.st_size) != sizeof(RegistryLayout))
        return "it has an unexpected size (" + std::to_string(st.st_size) + " bytes, not " +
               std::to_string(sizeof(RegistryLayout)) + ": another ferry version, or a damaged file)" +
               foreign_owner(path, st);
    struct {
        std::uint64_t magic;
        std::uint32_t version;
        std::uint32_t size;
    } head{};
    if (::pread(fd, &head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) ||
        head.magic != kMagic || head.version != kVersion || head.size != sizeof(RegistryLayout))
        return "it is not a ferry registry of this version" + foreign_owner(path, st);
    return "";
}

namespace {

struct Mapped {
    RegistryLayout* shm = nullptr;
    transport::UniqueFd fd;
    struct stat st {};
};

Mapped open_mapped(const std::string& path, bool& missing) {
    missing = false;
    Mapped m;
    m.fd = transport::UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!m.fd.valid()) {
        const int err = errno;
        if (err == ENOENT) {
            missing = true;
            return m;
        }
        struct stat st {};
        const std::string owner = ::lstat(path.c_str(), &st) == 0 ? foreign_owner(path, st) : "";
        throw Error(transport::errc_from_errno(err), "registry: cannot open " + path + ": " + std::strerror(err) + owner);
    }
    const std::string bad = Registry::check_layout(m.fd.get(), path, &m.st);
    if (!bad.empty())
        throw Error(Errc::invalid_argument, "registry: " + path + ": " + bad +
                                                (bad.find("belongs to uid") == std::string::npos
                                                     ? "; remove it with `ferry clean`"
                                                     : ""));
    m.shm = map_fd(m.fd.get());
    if (!m.shm) throw Error(Errc::no_resources, "registry: cannot map " + path + ": " + std::strerror(errno));
    return m;
}

}  // namespace

// Mappings of registries in this process, for the SIGBUS handler: a fault inside one (its file
// was truncated under us) replaces it with private zero pages and marks the registry lost, so
// the access that faulted, and every later one, go on harmlessly until the owner rejoins.
namespace {

struct GuardedRange {
    std::atomic<std::uintptr_t> begin{0};
    std::atomic<std::atomic<bool>*> lost{nullptr};
};
constexpr std::size_t kGuardedRanges = 64;
GuardedRange g_ranges[kGuardedRanges];
struct sigaction g_old_sigbus {};

void restore_old_and_return(int sig, siginfo_t* info, void* ctx) {
    if (g_old_sigbus.sa_flags & SA_SIGINFO) {
        if (g_old_sigbus.sa_sigaction) g_old_sigbus.sa_sigaction(sig, info, ctx);
        return;
    }
    if (g_old_sigbus.sa_handler == SIG_IGN) return;
    if (g_old_sigbus.sa_handler == SIG_DFL) {
        ::signal(SIGBUS, SIG_DFL);  // returning re-runs the access: the default action follows
        return;
    }
    g_old_sigbus.sa_handler(sig);
}

extern "C" void on_sigbus(int sig, siginfo_t* info, void* ctx) {
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (auto& r : g_ranges) {
        const std::uintptr_t begin = r.begin.load();
        if (begin == 0 || addr < begin || addr >= begin + sizeof(RegistryLayout)) continue;
        ::mmap(reinterpret_cast<void*>(begin), sizeof(RegistryLayout), PROT_READ | PROT_WRITE,
               MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (auto* lost = r.lost.load()) lost->store(true);
        return;
    }
    restore_old_and_return(sig, info, ctx);
}

void guard(RegistryLayout* shm, std::atomic<bool>* lost) {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = &on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGBUS, &sa, &g_old_sigbus);
    });
    for (auto& r : g_ranges) {
        std::uintptr_t expected = 0;
        r.lost.store(lost);
        if (r.begin.compare_exchange_strong(expected, reinterpret_cast<std::uintptr_t>(shm))) return;
    }
    log_warn("registry: more than 64 registry mappings in this process; a truncated file may raise SIGBUS");
}

void unguard(RegistryLayout* shm) {
    for (auto& r : g_ranges) {
        std::uintptr_t expected = reinterpret_cast<std::uintptr_t>(shm);
        if (r.begin.compare_exchange_strong(expected, 0)) return;
    }
}

// Replaces a mapping whose file is gone bad with private zero pages (same address: pointers
// into it, such as endpoint counters, stay valid).
void neutralise(RegistryLayout* shm) {
    ::mmap(shm, sizeof(RegistryLayout), PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

}  // namespace

// Liveness tokens. Each joined Registry holds an exclusive flock on its own empty file
// /dev/shm/ferry.<domain>.alive.<token>; the kernel drops the lock when the process dies, in
// whatever pid namespace it runs. A forked child closes its copies (pthread_atfork), so a
// parent that dies is seen dead even while its children live.
namespace {

constexpr std::size_t kTokenSlots = 64;
std::atomic<int*> g_token_fds[kTokenSlots];

void close_tokens_in_child() {
    for (auto& slot : g_token_fds) {
        if (int* fd = slot.load()) {
            ::close(*fd);  // the parent's lock stays: it is on the parent's open file description
            *fd = -1;
        }
    }
}

void track_token_fd(int* fd) {
    static std::once_flag once;
    std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, &close_tokens_in_child); });
    for (auto& slot : g_token_fds) {
        int* expected = nullptr;
        if (slot.compare_exchange_strong(expected, fd)) return;
    }
}

void untrack_token_fd(int* fd) {
    for (auto& slot : g_token_fds) {
        int* expected = fd;
        if (slot.compare_exchange_strong(expected, nullptr)) return;
    }
}

std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

std::string Registry::token_path(const std::string& domain, std::uint64_t token) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(token));
    return "/dev/shm/ferry." + domain + ".alive." + hex;
}

bool Registry::token_alive(const std::string& domain, std::uint64_t token, bool remove_dead) {
    const std::string path = token_path(domain, token);
    transport::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return errno != ENOENT;  // unreadable (another uid): assume alive
    if (::flock(fd.get(), LOCK_SH | LOCK_NB) != 0) return true;  // held: its owner lives
    if (remove_dead) ::unlink(path.c_str());
    return false;
}

void Registry::make_token() {
    if (token_fd_ >= 0) return;
    // Laid out like an endpoint id (pid << 24 | 24 random bits): the SDK's peer_alive() finds a
    // peer's token from the pid in its endpoint ids, in whatever pid namespace it runs.
    std::random_device rd;
    const mode_t mode = static_cast<mode_t>((mode_ & 0660) | 0600);
    for (int attempt = 0; attempt < 16; ++attempt) {
        const std::uint64_t token = transport::make_endpoint_id(::getpid(), (rd() & 0xFFFFFFu) | 1u);
        if (try_make_token(token, mode)) return;
    }
    throw Error(Errc::io_error, "registry: cannot create a liveness token in /dev/shm for domain " + domain_ + ": " +
                                    std::strerror(errno));
}

bool Registry::try_make_token(std::uint64_t token, mode_t mode) {
    const std::string path = token_path(domain_, token);
    // Locked before it has its name: nobody ever sees it unlocked while we live.
    int fd = ::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (fd >= 0) {
        ::fchmod(fd, mode);
        const std::string proc = "/proc/self/fd/" + std::to_string(fd);
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) != 0) {
            ::close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {  // no O_TMPFILE or no /proc: create, then lock (the tiny window is harmless here)
        fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0) return false;  // taken (by a dead process's leftover): another token
        ::fchmod(fd, mode);
        ::flock(fd, LOCK_EX | LOCK_NB);
    }
    token_ = token;
    token_fd_ = fd;
    track_token_fd(&token_fd_);
    return true;
}

void Registry::drop_token() noexcept {
    untrack_token_fd(&token_fd_);
    if (token_fd_ < 0) return;
    ::unlink(token_path(domain_, token_).c_str());
    ::close(token_fd_);
    token_fd_ = -1;
}

std::vector<std::uint64_t> Registry::purge_if_due() {
    std::int64_t due = 0;
    {
        std::lock_guard<std::recursive_mutex> local(local_mu_);
        if (!shm_ || truncated()) return {};
        const std::int64_t now = monotonic_ns();
        // 500 ms, longer in large domains (4 ms per process): a purge checks every process.
        const std::int64_t interval = std::max<std::int64_t>(
            std::chrono::nanoseconds(kPurgeInterval).count(),
            static_cast<std::int64_t>(participant_count()) * std::chrono::nanoseconds(kPurgePerProcess).count());
        due = shm_->next_purge_ns.load();
        // A due time far ahead comes from another clock (a time namespace): ignore it.
        if (now < due && due - now < 10 * interval) return {};
        if (!shm_->next_purge_ns.compare_exchange_strong(due, now + interval)) return {};
    }
    return purge_dead();
}

Registry::Registry(std::string domain, bool join, std::uint32_t mode)
    : domain_(std::move(domain)), path_(path_for(domain_)), mode_(mode) {
    try {
        attach(join);
    } catch (...) {
        drop_token();
        throw;
    }
}

void Registry::attach(bool join) {
    if (join) make_token();
    for (int attempt = 0; attempt < 100; ++attempt) {
        bool missing = false;
        Mapped m = open_mapped(path_, missing);
        if (missing) {
            if (!join) return;
            create_registry(path_, mode_);
            continue;
        }
        shm_ = m.shm;
        lost_.store(false);
        guard(shm_, &lost_);
        ino_ = m.st.st_ino;
        dev_ = m.st.st_dev;
        fd_ = m.fd.release();
        bool full = false;
        {
            Lock lock(*this);
            if (shm_->dead == 0) {
                if (join) {
                    const ProcessId self = this_process();
                    auto take_slot = [&] {
                        for (std::size_t i = 0; i < kMaxParticipants; ++i) {
                            ShmParticipant& p = shm_->participants[i];
                            if (p.state.load() == kFree) {
                                p.pid = self.pid;
                                p.start_time = self.start_time;
                                p.token = token_;
                                p.state.store(kLive);
                                self_slot_ = i;
                                return true;
                            }
                        }
                        return false;
                    };
                    // Purging checks every participant: only worth it when the table is full.
                    joined_ = take_slot() || (!purge_locked().empty(), take_slot());
                    full = !joined_;
                }
                if (!full) return;
            }
        }
        detach();
        if (full)
            throw Error(Errc::no_resources, "registry of domain " + domain_ + " is full (" +
                                                std::to_string(kMaxParticipants) + " processes)");
    }
    throw Error(Errc::internal, "registry: " + path_ + " keeps being replaced; giving up");
}

void Registry::detach() noexcept {
    if (!shm_) return;
    unguard(shm_);
    ::munmap(shm_, sizeof(RegistryLayout));
    shm_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

std::unique_ptr<Registry> Registry::open_existing(const std::string& domain) {
    auto r = std::make_unique<Registry>(domain, false);
    if (!r->shm_) return nullptr;
    return r;
}

Registry::~Registry() {
    interrupted_.store(false);
    if (shm_ && !file_changed()) {
        try {
            Lock lock(*this, kLeaveTimeout);
            if (joined_) {
                const ProcessId self = this_process();
                for (auto& p : shm_->participants)
                    if (p.state.load() == kLive && p.token == token_ && p.pid == self.pid) p.state.store(kFree);
            }
            purge_locked();
            bool anyone = false;
            for (auto& p : shm_->participants) anyone = anyone || p.state.load() != kFree;
            if (!anyone && joined_) {
                shm_->dead = 1;
                // Only the file we joined: a registry recreated under the same name is another's.
                struct stat st {};
                if (::stat(path_.c_str(), &st) == 0 && st.st_ino == ino_ && st.st_dev == dev_) ::unlink(path_.c_str());
            }
            // Its endpoints left with remove_endpoint() (which rang their topics' processes).
            const TopicSet none;
            bump_locked(&none);
        } catch (const std::exception& e) {
            log_warn(std::string("leaving the registry: ") + e.what());
        }
    }
    detach();
    drop_token();
    for (RegistryLayout* old : retired_) {
        unguard(old);
        ::munmap(old, sizeof(RegistryLayout));
    }
}

std::size_t Registry::participant_count() const noexcept {
    if (!shm_ || lost_.load()) return 0;
    std::size_t n = 0;
    for (auto& p : shm_->participants) n += p.state.load(std::memory_order_relaxed) == kLive;
    return n;
}

bool Registry::local_topics_changed() {
    std::lock_guard<std::recursive_mutex> local(local_mu_);
    if (!shm_ || truncated()) return true;
    bool changed = false;
    for (auto& l : local_) {
        if (l.topic_index >= kMaxTopics) continue;
        const std::uint32_t now = shm_->topics[l.topic_index].changes.load();
        if (now != l.seen_changes) {
            l.seen_changes = now;
            changed = true;
        }
    }
    return changed;
}

bool Registry::truncated() const noexcept {
    if (lost_.load()) return true;
    struct stat fst {};
    return fd_ < 0 || ::fstat(fd_, &fst) != 0 || static_cast<std::size_t>(fst.st_size) != sizeof(RegistryLayout);
}

bool Registry::file_changed() const noexcept {
    if (truncated()) return true;
    struct stat pst {};
    if (::stat(path_.c_str(), &pst) != 0) return errno == ENOENT;
    return pst.st_ino != ino_ || pst.st_dev != dev_;
}

bool Registry::rejoin_if_needed() {
    std::lock_guard<std::recursive_mutex> local(local_mu_);
    if (!shm_ || !file_changed()) return false;
    const bool was_truncated = truncated();
    if (was_truncated) {
        neutralise(shm_);
        // A damaged file still in place is removed (only that file, not one recreated since).
        struct stat pst {};
        if (::stat(path_.c_str(), &pst) == 0 && pst.st_ino == ino_ && pst.st_dev == dev_) ::unlink(path_.c_str());
    }
    if (!was_truncated) bump_locked();  // wakes the others still asleep on the old file: they rejoin now
    log_warn("registry " + path_ + " was " + (was_truncated ? "truncated" : "removed or replaced") +
             "; rejoining the domain with " + std::to_string(local_.size()) + " endpoint(s)");
    retired_.push_back(shm_);  // endpoint counters still point into it
    shm_ = nullptr;
    ::close(fd_);
    fd_ = -1;
    const bool join = joined_;
    joined_ = false;
    attach(join);
    if (!shm_) return true;
    Lock lock(*this);
    for (auto& l : local_) {
        auto added = add_locked(l.topic, false, l.role, l.id, l.node, 0);  // it was admitted already
        if (!added.ok) {
            log_error("registry: cannot re-register endpoint of '" + l.topic.name + "': " + added.error);
            l.now = EndpointCounters{};
            continue;
        }
        l.now = added.counters;
        l.topic_index = added.topic_index;
        l.seen_changes = shm_->topics[added.topic_index].changes.load() - 1;  // NOLINT: sync again
    }
    bump_locked();
    return true;
}

void Registry::bump_locked(const TopicSet* changed) noexcept {
    shm_->generation.fetch_add(1);
    transport::futex_wake_all(shm_->generation);
    // The processes to ring: those with an endpoint on a changed topic (every one if
    // `changed` is null). One pass over the endpoints, then one over the participants.
    std::array<std::uint64_t, kMaxParticipants> tokens;
    std::size_t n = 0;
    if (changed != nullptr) {
        if (changed->none()) return;
        for (auto& e : shm_->endpoints) {
            if (e.state.load() != kLive || e.topic >= kMaxTopics || !changed->test(e.topic)) continue;
            if (std::find(tokens.begin(), tokens.begin() + n, e.token) == tokens.begin() + n && n < tokens.size())
                tokens[n++] = e.token;
        }
    }
    for (auto& p : shm_->participants) {
        if (p.state.load() != kLive) continue;
        if (changed != nullptr && std::find(tokens.begin(), tokens.begin() + n, p.token) == tokens.begin() + n) continue;
        p.doorbell.fetch_add(1);
        transport::futex_wake_all(p.doorbell);
    }
}

void Registry::repair_locked() noexcept {
    for (auto& p : shm_->participants)
        if (p.state.load() == kWriting) p.state.store(kFree);
    for (auto& t : shm_->topics)
        if (t.state.load() == kWriting) t.state.store(kFree);
    for (auto& e : shm_->endpoints)
        if (e.state.load() == kWriting) e.state.store(kFree);
    bump_locked();
}

std::vector<std::uint64_t> Registry::purge_locked(const std::set<std::uint64_t>* dead_tokens) {
    std::vector<std::uint64_t> removed;
    // By liveness token (valid across pid namespaces), one check per process.
    std::map<std::uint64_t, bool> alive;
    auto is_alive = [&](std::uint64_t token, pid_t pid, std::uint64_t start) {
        if (token == 0) return process_is(ProcessId{pid, start});
        if (token == token_) return true;
        if (dead_tokens) return dead_tokens->count(token) == 0;
        auto it = alive.find(token);
        if (it == alive.end()) {
            it = alive.emplace(token, token_alive(domain_, token, true)).first;
            if (!it->second && removed_files_.size() < kMaxParticipants) removed_files_.push_back(token_path(domain_, token));
        }
        return it->second;
    };
    bool changed = false;
    TopicSet topics;
    for (auto& p : shm_->participants) {
        if (p.state.load() == kLive && !is_alive(p.token, p.pid, p.start_time)) {
            p.state.store(kFree);
            changed = true;
        }
    }
    for (auto& e : shm_->endpoints) {
        if (e.state.load() == kLive && !is_alive(e.token, e.pid, e.start_time)) {
            e.state.store(kFree);
            if (e.topic < kMaxTopics) {
                shm_->topics[e.topic].changes.fetch_add(1);
                topics.set(e.topic);
            }
            removed.push_back(e.id);
            changed = true;
        }
    }
    if (drop_unused_topics_locked() || changed) bump_locked(&topics);
    return removed;
}

bool Registry::drop_unused_topics_locked() noexcept {
    std::vector<bool> used(kMaxTopics, false);
    for (auto& e : shm_->endpoints)
        if (e.state.load() == kLive && e.topic < kMaxTopics) used[e.topic] = true;
    bool changed = false;
    for (std::size_t i = 0; i < kMaxTopics; ++i) {
        if (shm_->topics[i].state.load() == kLive && !used[i]) {
            shm_->topics[i].state.store(kFree);
            changed = true;
        }
    }
    return changed;
}

std::vector<std::uint64_t> Registry::purge_dead() {
    // Tokens are read under the lock and checked without it: checking 500 processes never
    // holds the others up. A token found dead stays dead (tokens are never reused).
    std::set<std::uint64_t> tokens;
    {
        Lock lock(*this);
        for (auto& p : shm_->participants)
            if (p.state.load() == kLive && p.token != 0 && p.token != token_) tokens.insert(p.token);
        for (auto& e : shm_->endpoints)
            if (e.state.load() == kLive && e.token != 0 && e.token != token_) tokens.insert(e.token);
    }
    std::set<std::uint64_t> dead;
    std::vector<std::string> files;
    for (std::uint64_t t : tokens) {
        if (!token_alive(domain_, t, true)) {
            dead.insert(t);
            files.push_back(token_path(domain_, t));
        }
    }
    Lock lock(*this);
    if (removed_files_.size() < kMaxParticipants) removed_files_.insert(removed_files_.end(), files.begin(), files.end());
    return purge_locked(&dead);
}

namespace {

TopicRecord to_record(const ShmTopic& t) {
    TopicRecord r;
    r.name = read_str(t.name, kNameLen);
    r.type = read_str(t.type, kTypeLen);
    r.qos.transport = read_str(t.transport, kTransportLen);
    r.qos.depth = t.depth;
    r.qos.overflow = static_cast<Overflow>(t.overflow);
    r.qos.max_message_size = t.max_message_size;
    r.qos.block_timeout = std::chrono::milliseconds(t.block_timeout_ms);
    r.qos.mode = t.mode;
    r.creator_pid = t.creator_pid;
    return r;
}

}  // namespace

std::optional<TopicRecord> Registry::find_topic(const std::string& name) {
    Lock lock(*this);
    for (auto& t : shm_->topics)
        if (t.state.load() == kLive && read_str(t.name, kNameLen) == name) return to_record(t);
    return std::nullopt;
}

Registry::AddResult Registry::add_endpoint(const TopicRecord& wanted,
                                           bool transport_explicit,
                                           Role role,
                                           std::uint64_t endpoint_id,
                                           const std::string& node,
                                           std::size_t max_subscribers) {
    AddResult out;
    if (wanted.name.size() >= kNameLen || wanted.type.size() >= kTypeLen || wanted.qos.transport.size() >= kTransportLen) {
        out.error = "topic name, type name or transport name too long (limits: 191, 191, 31 bytes)";
        return out;
    }
    Lock lock(*this);
    out = add_locked(wanted, transport_explicit, role, endpoint_id, node, max_subscribers);
    if (out.ok) {
        TopicRecord effective = out.topic;
        if (effective.type.empty()) effective.type = wanted.type;
        local_.push_back(LocalEndpoint{effective, role, endpoint_id, node, out.counters, out.counters,
                                       out.topic_index, shm_->topics[out.topic_index].changes.load()});
    }
    return out;
}

Registry::AddResult Registry::add_locked(const TopicRecord& wanted,
                                         bool transport_explicit,
                                         Role role,
                                         std::uint64_t endpoint_id,
                                         const std::string& node,
                                         std::size_t max_subscribers) {
    AddResult out;
    auto find_index = [&] {
        for (std::uint32_t i = 0; i < kMaxTopics; ++i)
            if (shm_->topics[i].state.load() == kLive && read_str(shm_->topics[i].name, kNameLen) == wanted.name) return i;
        return static_cast<std::uint32_t>(kMaxTopics);
    };
    auto conflicts = [&](std::uint32_t i) {
        const ShmTopic& t = shm_->topics[i];
        return (!wanted.type.empty() && read_str(t.type, kTypeLen) != wanted.type) ||
               (transport_explicit && read_str(t.transport, kTransportLen) != wanted.qos.transport);
    };
    std::uint32_t index = find_index();
    // The discovery threads purge every 200 ms; only a conflict is worth checking liveness for
    // now (the topic may belong to processes that just died).
    if (index != kMaxTopics && conflicts(index)) {
        purge_locked();
        index = find_index();
    }
    if (index != kMaxTopics) {
        out.topic = to_record(shm_->topics[index]);
        if (!wanted.type.empty() && out.topic.type != wanted.type) {
            out.error = "topic '" + wanted.name + "' carries type '" + out.topic.type + "', not '" + wanted.type + "'";
            return out;
        }
        if (transport_explicit && out.topic.qos.transport != wanted.qos.transport) {
            out.error = "topic '" + wanted.name + "' is carried by transport '" + out.topic.qos.transport +
                        "' (created by pid " + std::to_string(out.topic.creator_pid) + "), but the config selects '" +
                        wanted.qos.transport + "'";
            return out;
        }
        if (role == Role::subscriber && max_subscribers != 0) {
            std::size_t subscribers = 0;
            for (auto& e : shm_->endpoints)
                if (e.state.load() == kLive && e.topic == index && e.role == static_cast<std::uint32_t>(Role::subscriber))
                    ++subscribers;
            if (subscribers >= max_subscribers) {
                out.error = "topic '" + wanted.name + "' already has " + std::to_string(subscribers) +
                            " subscribers, the most transport '" + out.topic.qos.transport +
                            "' serves; a publisher could not deliver to one more";
                return out;
            }
        }
    } else {
        if (wanted.type.empty()) {
            out.error = "topic '" + wanted.name + "' does not exist yet and an any-type subscriber cannot create it";
            return out;
        }
        for (std::uint32_t i = 0; i < kMaxTopics; ++i) {
            if (shm_->topics[i].state.load() == kFree) {
                index = i;
                break;
            }
        }
        if (index == kMaxTopics) {
            out.error = "registry of domain " + domain_ + " is full (" + std::to_string(kMaxTopics) + " topics)";
            return out;
        }
        ShmTopic& t = shm_->topics[index];
        t.state.store(kWriting);
        copy_str(t.name, kNameLen, wanted.name);
        copy_str(t.type, kTypeLen, wanted.type);
        copy_str(t.transport, kTransportLen, wanted.qos.transport);
        t.depth = wanted.qos.depth;
        t.overflow = static_cast<std::uint32_t>(wanted.qos.overflow);
        t.max_message_size = wanted.qos.max_message_size;
        t.block_timeout_ms = static_cast<std::uint64_t>(wanted.qos.block_timeout.count());
        t.mode = wanted.qos.mode;
        t.creator_pid = ::getpid();
        out.topic = to_record(t);
    }
    ShmEndpoint* slot = nullptr;
    for (auto& e : shm_->endpoints) {
        if (e.state.load() == kFree) {
            slot = &e;
            break;
        }
    }
    if (!slot) {
        if (shm_->topics[index].state.load() == kWriting) shm_->topics[index].state.store(kFree);
        out.error = "registry of domain " + domain_ + " is full (" + std::to_string(kMaxEndpoints) + " endpoints)";
        return out;
    }
    const ProcessId self = this_process();
    slot->state.store(kWriting);
    if (crash_in_lock_requested()) ::raise(SIGKILL);
    if (stop_in_lock_requested()) ::raise(SIGSTOP);
    slot->role = static_cast<std::uint32_t>(role);
    slot->topic = index;
    slot->pid = self.pid;
    slot->start_time = self.start_time;
    slot->token = token_;
    slot->id = endpoint_id;
    copy_str(slot->node, kNodeLen, node);
    slot->messages.store(0);
    slot->bytes.store(0);
    slot->undelivered.store(0);
    shm_->topics[index].state.store(kLive);
    slot->state.store(kLive);
    shm_->topics[index].changes.fetch_add(1);
    TopicSet topics;
    topics.set(index);
    bump_locked(&topics);
    out.ok = true;
    out.topic_index = index;
    out.counters.messages = &slot->messages;
    out.counters.bytes = &slot->bytes;
    out.counters.undelivered = &slot->undelivered;
    return out;
}

void Registry::remove_endpoint(std::uint64_t endpoint_id) {
    {
        std::lock_guard<std::recursive_mutex> local(local_mu_);
        local_.erase(std::remove_if(local_.begin(), local_.end(),
                                    [&](const LocalEndpoint& l) { return l.id == endpoint_id; }),
                     local_.end());
    }
    Lock lock(*this, kLeaveTimeout);
    TopicSet topics;
    for (auto& e : shm_->endpoints) {
        if (e.state.load() == kLive && e.id == endpoint_id) {
            e.state.store(kFree);
            if (e.topic < kMaxTopics) {
                shm_->topics[e.topic].changes.fetch_add(1);
                topics.set(e.topic);
            }
        }
    }
    drop_unused_topics_locked();
    bump_locked(&topics);
}

std::vector<TopicRecord> Registry::topics() {
    Lock lock(*this);
    std::vector<TopicRecord> out;
    for (auto& t : shm_->topics)
        if (t.state.load() == kLive) out.push_back(to_record(t));
    return out;
}

std::vector<EndpointRecord> Registry::endpoints() {
    Lock lock(*this);
    // Endpoints re-registered after a rejoin count in their first slot: carry that forward.
    for (auto& l : local_)
        if (l.now.messages && l.now.messages != l.first.messages) {
            l.now.messages->store(l.first.messages->load(std::memory_order_relaxed), std::memory_order_relaxed);
            l.now.bytes->store(l.first.bytes->load(std::memory_order_relaxed), std::memory_order_relaxed);
            if (l.now.undelivered && l.first.undelivered)
                l.now.undelivered->store(l.first.undelivered->load(std::memory_order_relaxed), std::memory_order_relaxed);
        }
    std::vector<EndpointRecord> out;
    for (auto& e : shm_->endpoints) {
        if (e.state.load() != kLive || e.topic >= kMaxTopics) continue;
        EndpointRecord r;
        r.id = e.id;
        r.topic = read_str(shm_->topics[e.topic].name, kNameLen);
        r.node = read_str(e.node, kNodeLen);
        r.role = static_cast<Role>(e.role);
        r.pid = e.pid;
        r.messages = e.messages.load(std::memory_order_relaxed);
        r.bytes = e.bytes.load(std::memory_order_relaxed);
        r.undelivered = e.undelivered.load(std::memory_order_relaxed);
        out.push_back(std::move(r));
    }
    return out;
}

std::uint32_t Registry::generation() const noexcept { return shm_->generation.load(); }

std::atomic<std::uint32_t>& Registry::wait_word() const noexcept {
    return joined_ && self_slot_ < kMaxParticipants ? shm_->participants[self_slot_].doorbell : shm_->generation;
}

std::uint32_t Registry::changes_seen() const noexcept { return wait_word().load(); }

void Registry::wake_waiters() const noexcept {
    transport::futex_wake_all(shm_->generation);
    if (joined_ && self_slot_ < kMaxParticipants) {
        // Bumped, not only woken: a wake-up between the waiter's read and its sleep is not lost.
        shm_->participants[self_slot_].doorbell.fetch_add(1);
        transport::futex_wake_all(shm_->participants[self_slot_].doorbell);
    }
}

void Registry::wait_for_change(std::uint32_t seen, transport::Clock::time_point deadline) const noexcept {
    transport::futex_wait(wait_word(), seen, deadline);
}

}  // namespace ferry::detail
