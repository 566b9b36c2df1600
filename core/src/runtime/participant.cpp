#include "runtime/participant.hpp"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include <ferry/error.hpp>
#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>
#include <ferry/transport/text.hpp>

#include "log/log.hpp"

namespace ferry::detail {

namespace {

// How often an idle discovery thread looks at the registry file (rejoin) and offers to purge
// (the first process to find a purge due does it); between, it sleeps until the registry
// changes. 500 ms, longer in large domains (10 ms per process, at most 5 s): the domain as a
// whole still offers a purge more than twice a second, and idle processes cost nothing.
constexpr auto kCheckInterval = std::chrono::milliseconds(500);
constexpr auto kCheckPerProcess = std::chrono::milliseconds(10);
constexpr auto kMaxCheckInterval = std::chrono::seconds(5);
// And a full re-sync every second, 200 ms per process in large domains (at most 120 s): a safety
// net for a transport that failed to reach a peer, cheap while the domain is small.
constexpr auto kResyncInterval = std::chrono::seconds(1);
constexpr auto kResyncPerProcess = std::chrono::milliseconds(200);
constexpr auto kMaxResyncInterval = std::chrono::seconds(120);
constexpr std::chrono::milliseconds kFollowUp[2] = {std::chrono::milliseconds(200), std::chrono::milliseconds(1000)};

}  // namespace

std::string checked_domain(const std::string& domain) {
    const bool ok = !domain.empty() && domain.size() <= 32 && std::all_of(domain.begin(), domain.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
    if (!ok)
        throw Error(Errc::invalid_argument,
                    "domain '" + domain + "' is not valid: use 1 to 32 characters of A-Z a-z 0-9 _ -");
    return domain;
}

// FERRY_TEST_DISCOVERY_PAUSE_MS (tests only): the discovery thread pauses this long between
// reading the registry and handing the snapshot to its endpoints, the window in which a newer
// snapshot must not be overtaken.
void test_pause_between_read_and_sync() {
    static const long ms = [] {
        const char* v = std::getenv("FERRY_TEST_DISCOVERY_PAUSE_MS");
        return v ? std::strtol(v, nullptr, 10) : 0L;
    }();
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

std::vector<std::uint64_t> endpoint_ids(Registry& registry) {
    std::vector<std::uint64_t> ids;
    for (const auto& e : registry.endpoints()) ids.push_back(e.id);
    return ids;
}

std::vector<std::string> remove_stale_objects(const std::string& domain, const std::string& runtime_dir,
                                              const std::vector<std::uint64_t>& live,
                                              const std::vector<std::shared_ptr<LoadedTransport>>& transports) {
    std::vector<std::string> removed;
    // A process in another pid namespace has a pid that means nothing here: its live token says
    // it lives. Stale means no live token for the pid and no such process here either.
    const std::vector<pid_t> token_pids = transport::live_token_pids(domain);
    auto gone = [&](std::uint64_t id) {
        if (std::find(live.begin(), live.end(), id) != live.end()) return false;
        const pid_t pid = transport::endpoint_pid(id);
        return std::find(token_pids.begin(), token_pids.end(), pid) == token_pids.end() && process_gone(pid);
    };
    // The core's own objects: liveness tokens of processes that are gone.
    if (DIR* d = ::opendir("/dev/shm")) {
        std::vector<std::string> names;
        while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
        ::closedir(d);
        const std::string alive_prefix = "ferry." + domain + ".alive.";
        for (const auto& name : names) {
            if (name.compare(0, alive_prefix.size(), alive_prefix) != 0) continue;
            const std::uint64_t token = std::strtoull(name.c_str() + alive_prefix.size(), nullptr, 16);
            if (token != 0 && !Registry::token_alive(domain, token, true)) removed.push_back("/dev/shm/" + name);
        }
    }
    // The transports' objects: each plugin knows where it keeps them and how to remove them.
    for (const auto& t : transports) {
        for (const auto& o : t->get().list_objects(domain, runtime_dir)) {
            if (!std::any_of(o.endpoints.begin(), o.endpoints.end(), gone)) continue;
            if (t->get().remove_object(o.path)) {
                log_info("removed " + transport::escape_control(o.path) + " left by dead process " +
                         std::to_string(transport::endpoint_pid(o.endpoints.front())));
                removed.push_back(o.path);
            }
        }
    }
    return removed;
}

pid_t live_object_owner(const std::string& domain, const std::string& runtime_dir,
                        const std::vector<std::shared_ptr<LoadedTransport>>& transports) {
    const std::vector<pid_t> token_pids = transport::live_token_pids(domain);
    if (!token_pids.empty()) return token_pids.front();  // a live process of the domain, any namespace
    for (const auto& t : transports) {
        for (const auto& o : t->get().list_objects(domain, runtime_dir)) {
            for (std::uint64_t id : o.endpoints)
                if (!process_gone(transport::endpoint_pid(id))) return transport::endpoint_pid(id);
        }
    }
    return 0;
}

std::shared_ptr<Participant> Participant::get(const std::string& domain, std::uint32_t mode) {
    static std::mutex mu;
    static std::map<std::pair<pid_t, std::string>, std::weak_ptr<Participant>> cache;
    std::lock_guard<std::mutex> lock(mu);
    // Keyed by pid too: a forked child must not reuse its parent's participant.
    const auto key = std::make_pair(::getpid(), domain);
    if (auto p = cache[key].lock()) return p;
    auto p = std::make_shared<Participant>(domain, mode);
    cache[key] = p;
    return p;
}

Participant::Participant(const std::string& domain, std::uint32_t mode)
    : s_(std::make_shared<Shared>(checked_domain(domain), mode)) {
    std::string error;
    s_->runtime_dir = transport::default_runtime_dir(error);
    if (s_->runtime_dir.empty()) throw Error(Errc::io_error, error);
    // Whatever dead processes of this domain left behind goes now.
    s_->registry.purge_dead();
    remove_stale_objects(s_->registry.domain(), s_->runtime_dir, endpoint_ids(s_->registry), loaded_transports());
    thread_ = std::thread(&Participant::run, s_);
}

Participant::~Participant() {
    s_->stop.store(true);
    s_->registry.interrupt_waits();
    s_->registry.wake_waiters();
    if (thread_.get_id() == std::this_thread::get_id()) {
        thread_.detach();  // the thread owns `s_` and ends by itself
    } else if (thread_.joinable()) {
        thread_.join();
    }
}

std::uint64_t Participant::next_endpoint_id() noexcept {
    return transport::make_endpoint_id(::getpid(), ++serial_);
}

// Endpoint ids carry the pid, and processes in different pid namespaces (containers sharing
// /dev/shm) may have the same one: a random start of the serial keeps their ids apart.
std::uint32_t Participant::first_serial() {
    std::random_device rd;
    return rd() & 0xFFFFFFu;
}

void Participant::add(Endpoint* ep) {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->endpoints.push_back(ep);
}

void Participant::remove(const Endpoint* ep) {
    std::lock_guard<std::mutex> lock(s_->mu);
    auto& eps = s_->endpoints;
    eps.erase(std::remove(eps.begin(), eps.end(), ep), eps.end());
}

void Participant::sync_now(Endpoint& ep) {
    // Read and applied under the same lock as the discovery thread's passes, so that no endpoint
    // is ever handed a snapshot older than one it already has: a pass that read the table before
    // a subscriber came, applied after this newer one, would make a publisher drop that
    // subscriber (and what it had just queued for it) until the next pass.
    std::lock_guard<std::mutex> lock(s_->mu);
    ep.sync_peers(s_->registry.endpoints());
}

void Participant::run(std::shared_ptr<Shared> s) {
    Registry& registry = s->registry;
    std::uint32_t seen = registry.changes_seen() - 1;  // NOLINT: first pass always syncs
    // Spread the periodic checks of many processes over the period.
    std::minstd_rand rng(static_cast<unsigned>(::getpid()));
    auto next_check = transport::Clock::now() + std::chrono::milliseconds(rng() % 100);
    bool first = true;
    auto next_resync = transport::Clock::now() + kResyncInterval;
    std::array<transport::Clock::time_point, 2> followups{};
    std::string last_error;  // logged once, not once per period
    while (!s->stop.load()) {
        try {
            auto now = transport::Clock::now();
            bool resync = first;
            first = false;
            if (now >= next_check) {
                // The registry file removed, replaced or truncated: rejoin so new processes meet us.
                if (registry.rejoin_if_needed()) resync = true;
                if (!registry.purge_if_due().empty())
                    remove_stale_objects(registry.domain(), s->runtime_dir, endpoint_ids(registry), loaded_transports());
                (void)registry.take_removed_files();  // only `ferry clean` reports them
                const std::size_t n = registry.participant_count();
                next_check = now + std::clamp<transport::Clock::duration>(kCheckPerProcess * n, kCheckInterval,
                                                                          kMaxCheckInterval);
                if (now >= next_resync) {
                    resync = true;
                    next_resync = now + std::clamp<transport::Clock::duration>(kResyncPerProcess * n, kResyncInterval,
                                                                               kMaxResyncInterval);
                }
            }
            const std::uint32_t gen = registry.changes_seen();
            // Only a change on a topic of ours is worth reading the table for.
            const bool ours = gen != seen && registry.local_topics_changed();
            seen = gen;
            if (ours || resync) {
                // Two follow-ups, for a transport that could not reach a new peer at once (its
                // object not ready yet): what the 200 ms periodic sync used to retry, now only
                // after a change, so that idle processes still cost nothing.
                followups = {now + kFollowUp[0], now + kFollowUp[1]};
            } else if (followups[0] != transport::Clock::time_point{} && now >= followups[0]) {
                followups = {followups[1], transport::Clock::time_point{}};
                resync = true;
            }
            if (ours || resync) {
                std::lock_guard<std::mutex> lock(s->mu);  // see sync_now
                const auto all = registry.endpoints();
                test_pause_between_read_and_sync();
                for (Endpoint* ep : s->endpoints) ep->sync_peers(all);
            }
            if (!last_error.empty()) log_info("discovery: the registry of domain " + registry.domain() + " is usable again");
            last_error.clear();
            registry.wait_for_change(seen, followups[0] != transport::Clock::time_point{}
                                               ? std::min(next_check, followups[0])
                                               : next_check);
        } catch (const std::exception& e) {
            if (s->stop.load()) break;
            if (last_error != e.what()) log_error(std::string("discovery: ") + e.what());
            last_error = e.what();
            registry.wait_for_change(registry.changes_seen(), transport::Clock::now() + kCheckInterval);
        }
    }
}

}  // namespace ferry::detail
