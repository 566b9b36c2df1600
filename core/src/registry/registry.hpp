// The per-domain registry: one shared-memory file /dev/shm/ferry.<domain>.registry, no daemon.
//
// It records topics (name, type, transport, QoS), the processes taking part, and every
// publisher and subscriber (endpoint id, pid + process start time, node name, counters).
// All changes happen under one robust process-shared mutex: a process SIGKILLed while holding
// it makes the next locker repair the table (entries half written are dropped) and go on.
// Entries of processes that died are purged by whoever looks next (every participant's
// discovery thread does every 200 ms). The last participant to leave removes the file.
#pragma once

#include <sys/types.h>

#include <sys/stat.h>

#include <atomic>
#include <bitset>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <ferry/qos.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::detail {

struct RegistryLayout;

enum class Role : std::uint32_t { publisher = 1, subscriber = 2 };

struct TopicRecord {
    std::string name;
    std::string type;  // "" never stored: the first typed endpoint fixes it
    Qos qos;
    int creator_pid = 0;
};

struct EndpointRecord {
    std::uint64_t id = 0;
    std::string topic;
    std::string node;
    Role role = Role::publisher;
    pid_t pid = 0;
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
    std::uint64_t undelivered = 0;  // publisher: messages a subscriber did not get (Writer::undelivered)
};

struct EndpointCounters {
    std::atomic<std::uint64_t>* messages = nullptr;
    std::atomic<std::uint64_t>* bytes = nullptr;
    std::atomic<std::uint64_t>* undelivered = nullptr;
};

// Identity of a process that survives pid reuse: pid + start time (clock ticks since boot).
struct ProcessId {
    pid_t pid = 0;
    std::uint64_t start_time = 0;
};
ProcessId this_process();
// False for a process that is gone, a zombie, or a new process that reused the pid.
bool process_is(const ProcessId& p);
// True if no running process has this pid (gone, or a zombie waiting to be reaped).
bool process_gone(pid_t pid);

class Registry {
public:
    // Opens the domain's registry, creating it if needed, and joins as a participant.
    // Throws ferry::Error when the file cannot be created or has another layout.
    // `mode` is used when this call creates the file (0600, or 0660/0640 to let the group in).
    explicit Registry(std::string domain, bool join = true, std::uint32_t mode = 0600);
    ~Registry();
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // Opens an existing registry without joining (for tools); nullopt if there is none.
    static std::unique_ptr<Registry> open_existing(const std::string& domain);

    const std::string& domain() const noexcept { return domain_; }

    std::optional<TopicRecord> find_topic(const std::string& name);

    struct AddResult {
        bool ok = false;
        TopicRecord topic;  // what the topic is (the existing record when it already existed)
        std::string error;  // why not
        EndpointCounters counters;
        std::uint32_t topic_index = 0;  // the topic's slot
    };
    // Adds an endpoint. If the topic exists, its type must equal `wanted.type` (unless `type`
    // is empty for an any-type subscriber) and its transport must equal wanted.qos.transport
    // when `transport_explicit`; otherwise the topic is created from `wanted`. A subscriber is
    // refused when the topic already has `max_subscribers` (0: no limit).
    AddResult add_endpoint(const TopicRecord& wanted,
                           bool transport_explicit,
                           Role role,
                           std::uint64_t endpoint_id,
                           const std::string& node,
                           std::size_t max_subscribers = 0);
    void remove_endpoint(std::uint64_t endpoint_id);

    std::vector<TopicRecord> topics();
    std::vector<EndpointRecord> endpoints();

    // Drops entries of dead processes. Returns the endpoint ids removed.
    std::vector<std::uint64_t> purge_dead();
    // purge_dead() if this process is the first of the domain to find a purge due (one
    // process at a time purges, every 500 ms); else nothing.
    std::vector<std::uint64_t> purge_if_due();

    // Token files of dead processes that purges removed since the last call.
    std::vector<std::string> take_removed_files() {
        std::lock_guard<std::recursive_mutex> local(local_mu_);
        return std::move(removed_files_);
    }

    // Liveness tokens: /dev/shm/ferry.<domain>.alive.<16 hex>, flock'ed by its live owner.
    static std::string token_path(const std::string& domain, std::uint64_t token);
    // False if the token's owner is gone (then, if `remove_dead`, its file is removed).
    static bool token_alive(const std::string& domain, std::uint64_t token, bool remove_dead);


    // Bumped on every change of the domain (what tools look at).
    std::uint32_t generation() const noexcept;
    // What wait_for_change() compares: this process's doorbell, rung when an endpoint comes
    // or goes on a topic it has an endpoint on (for a process that has not joined: the
    // generation). Read it before looking at the registry, then wait with it.
    std::uint32_t changes_seen() const noexcept;
    // Wakes this process's wait_for_change() (without changing anything).
    void wake_waiters() const noexcept;
    // Sleeps until changes_seen() differs from `seen` or `deadline` passes.
    void wait_for_change(std::uint32_t seen, transport::Clock::time_point deadline) const noexcept;

    // One bit per topic slot of the registry.
    using TopicSet = std::bitset<1024>;

    // Path of the registry file of `domain`.
    static std::string path_for(const std::string& domain);

    // Why the open file `fd` is not a registry of this version ("" if it is one), naming a
    // foreign owner; fills `st` when given.
    static std::string check_layout(int fd, const std::string& path, struct stat* st = nullptr);

    // Ends lock waits of this object early (Errc::closed): for a participant shutting down.
    void interrupt_waits() noexcept { interrupted_.store(true); }

    // True if the file was truncated, removed or replaced since this process mapped it.
    bool file_changed() const noexcept;
    // If file_changed(): maps the domain's registry again (creating it if needed), rejoins and
    // re-registers this process's endpoints. Returns true if it rejoined. Throws ferry::Error.
    bool rejoin_if_needed();
    // True if an endpoint came or went on a topic this process has endpoints on, since the
    // last call (lock-free: a change elsewhere in the domain costs a process nothing more).
    bool local_topics_changed();
    // Processes taking part (lock-free; a hint for how often to look).
    std::size_t participant_count() const noexcept;

private:
    class Lock;
    struct LocalEndpoint {
        TopicRecord topic;  // as registered: what to register again after a rejoin
        Role role;
        std::uint64_t id;
        std::string node;
        EndpointCounters first;  // what the endpoint counts in
        EndpointCounters now;    // its slot in the current registry
        std::uint32_t topic_index;
        std::uint32_t seen_changes;  // of its topic, when this process last looked
    };
    void attach(bool join);
    void make_token();
    bool try_make_token(std::uint64_t token, mode_t mode);
    void drop_token() noexcept;
    void detach() noexcept;
    bool truncated() const noexcept;
    AddResult add_locked(const TopicRecord& wanted, bool transport_explicit, Role role, std::uint64_t endpoint_id,
                         const std::string& node, std::size_t max_subscribers);
    // Bumps the generation and rings the doorbells of the processes with an endpoint on a
    // topic in `changed` (of every process if null).
    void bump_locked(const TopicSet* changed = nullptr) noexcept;
    std::atomic<std::uint32_t>& wait_word() const noexcept;
    void repair_locked() noexcept;
    // Drops entries whose token is in `dead_tokens` (nullptr: checks every token now).
    std::vector<std::uint64_t> purge_locked(const std::set<std::uint64_t>* dead_tokens = nullptr);
    bool drop_unused_topics_locked() noexcept;  // topics without endpoints; true if any went

    std::string domain_;
    std::string path_;
    std::uint32_t mode_ = 0600;
    RegistryLayout* shm_ = nullptr;
    int fd_ = -1;
    ino_t ino_ = 0;
    dev_t dev_ = 0;
    bool joined_ = false;
    std::size_t self_slot_ = static_cast<std::size_t>(-1);  // our participant slot, once joined
    std::uint64_t token_ = 0;
    int token_fd_ = -1;
    std::atomic<bool> interrupted_{false};
    std::atomic<bool> lost_{false};  // set by the SIGBUS handler: the mapping is private zeros now
    // Guards shm_ (swapped by a rejoin), local_ and retired_ among this process's threads.
    std::recursive_mutex local_mu_;
    std::vector<LocalEndpoint> local_;
    std::vector<RegistryLayout*> retired_;
    std::vector<std::string> removed_files_;  // earlier mappings: endpoint counters point there
};

// Registry lock waits of this process end early (Errc::closed) once *flag is true (the CLI's
// Ctrl-C/SIGTERM flag). nullptr clears it.
void set_registry_interrupt(const std::atomic<bool>* flag) noexcept;

}  // namespace ferry::detail
