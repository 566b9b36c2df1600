#include <ferry/transport/naming.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ferry::transport {

std::string object_name(const std::string& domain, std::uint64_t endpoint_id, const char* suffix) {
    char id[17];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(endpoint_id));
    std::string name = "ferry.";
    name += domain;
    name += '.';
    name += id;
    name += '.';
    name += suffix;
    return name;
}

std::string runtime_path(const std::string& runtime_dir,
                         const std::string& domain,
                         std::uint64_t endpoint_id,
                         const char* suffix) {
    return runtime_dir + "/" + object_name(domain, endpoint_id, suffix);
}

namespace {

bool ensure_private_dir(const std::string& path, std::string& error) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        error = "cannot create runtime directory " + path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        error = "cannot stat runtime directory " + path + ": " + std::strerror(errno);
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        error = "runtime directory " + path + " is not a directory";
        return false;
    }
    if (st.st_uid != ::geteuid()) {
        error = "runtime directory " + path + " belongs to another user";
        return false;
    }
    return true;
}

}  // namespace

std::string default_runtime_dir(std::string& error) {
    std::string dir;
    if (const char* explicit_dir = std::getenv("FERRY_RUNTIME_DIR"); explicit_dir && *explicit_dir) {
        dir = explicit_dir;
    } else if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg && ::access(xdg, W_OK) == 0) {
        dir = std::string(xdg) + "/ferry";
    } else {
        dir = "/tmp/ferry-" + std::to_string(::geteuid());
    }
    if (!ensure_private_dir(dir, error)) return {};
    return dir;
}

std::vector<OsObject> list_objects_in(const std::string& dir, const std::string& domain, const char* suffix) noexcept {
    std::vector<OsObject> out;
    try {
        DIR* d = ::opendir(dir.c_str());
        if (!d) return out;
        const std::size_t id_end = std::string("ferry.").size() + domain.size() + 1 + 16;
        const std::size_t suffix_len = std::strlen(suffix);
        while (dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            const std::uint64_t id = parse_object_name(name, domain);
            if (id == 0 || name.compare(id_end + 1, suffix_len, suffix) != 0) continue;
            out.push_back(OsObject{dir + "/" + name, {id}});
        }
        ::closedir(d);
    } catch (...) {
    }
    return out;
}

std::uint64_t parse_object_name(const std::string& name, const std::string& domain) noexcept {
    const std::string prefix = "ferry." + domain + ".";
    if (name.compare(0, prefix.size(), prefix) != 0) return 0;
    if (name.size() < prefix.size() + 17 || name[prefix.size() + 16] != '.') return 0;
    std::uint64_t id = 0;
    for (std::size_t i = prefix.size(); i < prefix.size() + 16; ++i) {
        const char c = name[i];
        int v;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else return 0;
        id = (id << 4) | static_cast<std::uint64_t>(v);
    }
    return id;
}

namespace {

bool token_held(const std::string& path);

// Some domain's liveness token of `pid` is held: a process of that pid lives, perhaps in
// another pid namespace (a container sharing /dev/shm), where kill() cannot see it.
bool any_token_held(pid_t pid) noexcept {
    try {
        DIR* d = ::opendir("/dev/shm");
        if (!d) return false;
        bool held = false;
        while (dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            const auto at = name.find(".alive.");
            if (name.compare(0, 6, "ferry.") != 0 || at == std::string::npos || name.size() != at + 7 + 16) continue;
            const std::uint64_t token = std::strtoull(name.c_str() + at + 7, nullptr, 16);
            if (token == 0 || endpoint_pid(token) != pid) continue;
            if ((held = token_held("/dev/shm/" + name))) break;
        }
        ::closedir(d);
        return held;
    } catch (...) {
        return true;
    }
}

}  // namespace

namespace {

struct ProcStat {
    bool exists = false;
    bool zombie = false;
    std::uint64_t start_time = 0;
};

// /proc/<pid>/stat: "pid (comm) state ppid ... starttime(22) ..."; comm may hold ')' and spaces,
// so fields are counted from the last ')'.
ProcStat read_proc_stat(pid_t pid) noexcept {
    ProcStat out;
    char path[32];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[1024];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return out;
    buf[n] = '\0';
    const char* p = std::strrchr(buf, ')');
    if (p == nullptr) return out;
    ++p;
    int field = 2;  // the one ending at ')'
    const char* state = nullptr;
    while (*p != '\0') {
        while (*p == ' ') ++p;
        if (*p == '\0') break;
        ++field;
        if (field == 3) state = p;
        if (field == 22) {
            out.start_time = std::strtoull(p, nullptr, 10);
            break;
        }
        while (*p != ' ' && *p != '\0') ++p;
    }
    out.exists = true;
    out.zombie = state != nullptr && (*state == 'Z' || *state == 'X');
    return out;
}

}  // namespace

std::uint64_t process_start_time(pid_t pid) noexcept {
    const ProcStat st = read_proc_stat(pid);
    return st.exists ? st.start_time : 0;
}

ProcessId this_process() noexcept {
    static const ProcessId self{static_cast<std::int32_t>(::getpid()), process_start_time(::getpid())};
    if (self.pid == ::getpid()) return self;
    return ProcessId{static_cast<std::int32_t>(::getpid()), process_start_time(::getpid())};  // a forked child
}

bool process_alive(const ProcessId& p) noexcept {
    if (p.pid <= 0) return false;
    const ProcStat st = read_proc_stat(p.pid);
    if (st.exists) {
        if (!st.zombie && (p.start_time == 0 || st.start_time == p.start_time)) return true;
    } else if (::kill(p.pid, 0) == 0 || errno == EPERM) {
        return true;  // exists, but /proc does not show it (hidepid): the pid is all there is
    }
    return any_token_held(p.pid);
}

namespace {

// Calls `f(token, path)` for each liveness token file of `domain` whose pid matches `pid`
// (0: every pid) until `f` returns true; returns whether one did.
template <class F>
bool for_each_token(const std::string& domain, pid_t pid, F f) {
    DIR* d = ::opendir("/dev/shm");
    if (!d) return false;
    const std::string prefix = "ferry." + domain + ".alive.";
    bool hit = false;
    while (dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name.size() != prefix.size() + 16 || name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::uint64_t token = std::strtoull(name.c_str() + prefix.size(), nullptr, 16);
        if (token == 0 || (pid != 0 && endpoint_pid(token) != pid)) continue;
        if (f(token, "/dev/shm/" + name)) {
            hit = true;
            break;
        }
    }
    ::closedir(d);
    return hit;
}

bool token_held(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno != ENOENT;  // unreadable (another uid): assume alive
    const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
    ::close(fd);
    return held;
}

}  // namespace

bool peer_alive(const std::string& domain, std::uint64_t endpoint_id) noexcept {
    try {
        return for_each_token(domain, endpoint_pid(endpoint_id),
                              [](std::uint64_t, const std::string& path) { return token_held(path); });
    } catch (...) {
        return true;
    }
}

std::vector<pid_t> live_token_pids(const std::string& domain) noexcept {
    std::vector<pid_t> out;
    try {
        for_each_token(domain, 0, [&](std::uint64_t token, const std::string& path) {
            if (token_held(path)) out.push_back(endpoint_pid(token));
            return false;
        });
    } catch (...) {
    }
    return out;
}

}  // namespace ferry::transport
