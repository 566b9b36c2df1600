#include "registry/registry.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <ferry/error.hpp>
#include <ferry/transport/posix.hpp>

#include "log/log.hpp"

namespace ferry::detail {

namespace {
constexpr std::uint64_t kMagic = 0x5947455259524546ull;  // "FERRYREGY"
constexpr std::uint32_t kVersion = 3;
constexpr std::size_t kMaxParticipants = 256;
constexpr std::size_t kMaxTopics = 256;
constexpr std::size_t kMaxEndpoints = 1024;
constexpr std::size_t kNameLen = 192;
constexpr std::size_t kTypeLen = 192;
constexpr std::size_t kTransportLen = 32;
constexpr std::size_t kNodeLen = 64;

enum State : std::uint32_t { kFree = 0, kWriting = 1, kLive = 2 };
}  // namespace

struct ShmParticipant {
    std::atomic<std::uint32_t> state;
    std::int32_t pid;
    std::uint64_t start_time;
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
    ShmParticipant participants[kMaxParticipants];
    ShmTopic topics[kMaxTopics];
    ShmEndpoint endpoints[kMaxEndpoints];
};

namespace {

// Test hook: a process that dies holding the registry lock (see tests/multiprocess).
bool crash_in_lock_requested() {
    static const bool requested = [] {
        const char* v = std::getenv("FERRY_TEST_CRASH_IN_REGISTRY_LOCK");
        return v && std::strcmp(v, "1") == 0;
    }();
    return requested;
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

class Registry::Lock {
public:
    explicit Lock(Registry& r) : r_(r) {
        const int rc = ::pthread_mutex_lock(&r_.shm_->mutex);
        if (rc == EOWNERDEAD) {
            log_warn("registry of domain " + r_.domain_ + ": a process died holding the lock; repairing");
            r_.repair_locked();
            ::pthread_mutex_consistent(&r_.shm_->mutex);
        } else if (rc != 0) {
            throw Error(Errc::internal, "registry of domain " + r_.domain_ + ": lock failed: " + std::strerror(rc));
        }
    }
    ~Lock() { ::pthread_mutex_unlock(&r_.shm_->mutex); }

private:
    Registry& r_;
};

std::string Registry::path_for(const std::string& domain) { return "/dev/shm/ferry." + domain + ".registry"; }

namespace {

RegistryLayout* map_fd(int fd) {
    void* p = ::mmap(nullptr, sizeof(RegistryLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? nullptr : static_cast<RegistryLayout*>(p);
}

// Creates a fully initialised registry under a temporary name and links it into place, so
// nobody ever maps a half-initialised one. Returns false if another process won the race.
bool create_registry(const std::string& path, std::uint32_t mode) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    transport::UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    // umask may have cleared bits the config grants: set them explicitly.
    if (!fd.valid()) throw Error(Errc::io_error, "registry: cannot create " + tmp + ": " + std::strerror(errno));
    ::fchmod(fd.get(), static_cast<mode_t>(mode & 0660));
    if (::ftruncate(fd.get(), sizeof(RegistryLayout)) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error(Errc::no_resources, "registry: cannot size " + tmp + ": " + std::strerror(err));
    }
    RegistryLayout* shm = map_fd(fd.get());
    if (!shm) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw Error(Errc::no_resources, "registry: cannot map " + tmp + ": " + std::strerror(err));
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
    const bool won = ::link(tmp.c_str(), path.c_str()) == 0;
    const int err = errno;
    ::unlink(tmp.c_str());
    if (!won && err != EEXIST)
        throw Error(Errc::io_error, "registry: cannot publish " + path + ": " + std::strerror(err));
    return won;
}

RegistryLayout* open_mapped(const std::string& path, bool& missing) {
    missing = false;
    transport::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid()) {
        if (errno == ENOENT) {
            missing = true;
            return nullptr;
        }
        throw Error(transport::errc_from_errno(errno), "registry: cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || static_cast<std::size_t>(st.st_size) != sizeof(RegistryLayout))
        throw Error(Errc::invalid_argument, "registry: " + path +
                                                " has an unexpected size (another ferry version?); remove it with `ferry clean`");
    RegistryLayout* shm = map_fd(fd.get());
    if (!shm) throw Error(Errc::no_resources, "registry: cannot map " + path + ": " + std::strerror(errno));
    if (shm->magic != kMagic || shm->version != kVersion || shm->size != sizeof(RegistryLayout)) {
        ::munmap(shm, sizeof(RegistryLayout));
        throw Error(Errc::invalid_argument,
                    "registry: " + path + " is not a ferry registry of this version; remove it with `ferry clean`");
    }
    return shm;
}

}  // namespace

Registry::Registry(std::string domain, bool join, std::uint32_t mode) : domain_(std::move(domain)), path_(path_for(domain_)) {
    for (int attempt = 0; attempt < 100; ++attempt) {
        bool missing = false;
        shm_ = open_mapped(path_, missing);
        if (missing) {
            if (!join) return;
            create_registry(path_, mode);
            continue;
        }
        {
            Lock lock(*this);
            if (shm_->dead == 0) {
                if (join) {
                    const ProcessId self = this_process();
                    for (auto& p : shm_->participants) {
                        if (p.state.load() == kFree) {
                            p.pid = self.pid;
                            p.start_time = self.start_time;
                            p.state.store(kLive);
                            joined_ = true;
                            break;
                        }
                    }
                    if (!joined_) throw Error(Errc::no_resources, "registry of domain " + domain_ + " is full (256 processes)");
                    purge_locked();
                }
                return;
            }
        }
        ::munmap(shm_, sizeof(RegistryLayout));
        shm_ = nullptr;
    }
    throw Error(Errc::internal, "registry: " + path_ + " keeps being replaced; giving up");
}

std::unique_ptr<Registry> Registry::open_existing(const std::string& domain) {
    auto r = std::make_unique<Registry>(domain, false);
    if (!r->shm_) return nullptr;
    return r;
}

Registry::~Registry() {
    if (!shm_) return;
    try {
        Lock lock(*this);
        if (joined_) {
            const ProcessId self = this_process();
            for (auto& p : shm_->participants)
                if (p.state.load() == kLive && p.pid == self.pid && p.start_time == self.start_time) p.state.store(kFree);
        }
        purge_locked();
        bool anyone = false;
        for (auto& p : shm_->participants) anyone = anyone || p.state.load() != kFree;
        if (!anyone && joined_) {
            shm_->dead = 1;
            ::unlink(path_.c_str());
        }
        bump_locked();
    } catch (...) {
    }
    ::munmap(shm_, sizeof(RegistryLayout));
}

void Registry::bump_locked() noexcept {
    shm_->generation.fetch_add(1);
    transport::futex_wake_all(shm_->generation);
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

std::vector<std::uint64_t> Registry::purge_locked() {
    std::vector<std::uint64_t> removed;
    std::map<std::pair<pid_t, std::uint64_t>, bool> alive;
    auto is_alive = [&](pid_t pid, std::uint64_t start) {
        auto key = std::make_pair(pid, start);
        auto it = alive.find(key);
        if (it == alive.end()) it = alive.emplace(key, process_is(ProcessId{pid, start})).first;
        return it->second;
    };
    bool changed = false;
    for (auto& p : shm_->participants) {
        if (p.state.load() == kLive && !is_alive(p.pid, p.start_time)) {
            p.state.store(kFree);
            changed = true;
        }
    }
    for (auto& e : shm_->endpoints) {
        if (e.state.load() == kLive && !is_alive(e.pid, e.start_time)) {
            e.state.store(kFree);
            removed.push_back(e.id);
            changed = true;
        }
    }
    if (drop_unused_topics_locked() || changed) bump_locked();
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
    Lock lock(*this);
    return purge_locked();
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
            out.error = "registry of domain " + domain_ + " is full (256 topics)";
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
        out.error = "registry of domain " + domain_ + " is full (1024 endpoints)";
        return out;
    }
    const ProcessId self = this_process();
    slot->state.store(kWriting);
    if (crash_in_lock_requested()) ::raise(SIGKILL);
    slot->role = static_cast<std::uint32_t>(role);
    slot->topic = index;
    slot->pid = self.pid;
    slot->start_time = self.start_time;
    slot->id = endpoint_id;
    copy_str(slot->node, kNodeLen, node);
    slot->messages.store(0);
    slot->bytes.store(0);
    slot->undelivered.store(0);
    shm_->topics[index].state.store(kLive);
    slot->state.store(kLive);
    bump_locked();
    out.ok = true;
    out.counters.messages = &slot->messages;
    out.counters.bytes = &slot->bytes;
    out.counters.undelivered = &slot->undelivered;
    return out;
}

void Registry::remove_endpoint(std::uint64_t endpoint_id) {
    Lock lock(*this);
    for (auto& e : shm_->endpoints) {
        if (e.state.load() == kLive && e.id == endpoint_id) e.state.store(kFree);
    }
    drop_unused_topics_locked();
    bump_locked();
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

void Registry::wake_waiters() const noexcept { transport::futex_wake_all(shm_->generation); }

void Registry::wait_for_change(std::uint32_t seen, transport::Clock::time_point deadline) const noexcept {
    transport::futex_wait(shm_->generation, seen, deadline);
}

}  // namespace ferry::detail
