// A process's presence in one domain: the registry mapping, the runtime directory, and the
// discovery thread that keeps every local writer and reader connected to the peers the
// registry lists (woken by registry changes, and every 200 ms to purge dead processes).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loader/plugin_loader.hpp"
#include "registry/registry.hpp"

namespace ferry::detail {

// A local publisher or subscriber as the discovery thread sees it.
class Endpoint {
public:
    virtual ~Endpoint() = default;
    virtual std::uint64_t endpoint_id() const noexcept = 0;
    // Hands the transport the current peers of its topic, taken from `all`.
    virtual void sync_peers(const std::vector<EndpointRecord>& all) noexcept = 0;
};

class Participant {
public:
    // The participant of this process for `domain`, created on first use. Throws ferry::Error.
    // `mode` applies if this process creates the domain's registry.
    static std::shared_ptr<Participant> get(const std::string& domain, std::uint32_t mode = 0600);
    ~Participant();

    Registry& registry() noexcept { return s_->registry; }
    const std::string& domain() const noexcept { return s_->registry.domain(); }
    const std::string& runtime_dir() const noexcept { return s_->runtime_dir; }
    std::uint64_t next_endpoint_id() noexcept;

    // The discovery thread syncs `ep` until remove(ep), which waits for a sync in progress:
    // an endpoint is always destroyed by its owner's thread, never by the discovery thread.
    void add(Endpoint* ep);
    void remove(const Endpoint* ep);
    // Syncs one endpoint now, from the caller's thread (right after it was registered).
    void sync_now(Endpoint& ep);

    Participant(const std::string& domain, std::uint32_t mode);  // use get()

private:
    // What the discovery thread uses; it holds its own reference, so that an endpoint destroyed
    // on that thread may also drop the last reference to the Participant.
    struct Shared {
        Shared(const std::string& domain, std::uint32_t mode) : registry(domain, true, mode) {}
        Registry registry;
        std::string runtime_dir;
        std::mutex mu;
        std::vector<Endpoint*> endpoints;  // guarded by `mu`, held during every sync
        std::atomic<bool> stop{false};
    };
    static void run(std::shared_ptr<Shared> s);

    std::shared_ptr<Shared> s_;
    static std::uint32_t first_serial();
    std::atomic<std::uint32_t> serial_{first_serial()};
    std::thread thread_;
};

// Removes the liveness tokens of dead processes of `domain` (the core's own objects), and asks
// each of `transports` which objects it made for the domain, removing through it those an
// endpoint of a dead process needed. Returns their paths. Objects of endpoints listed in `live`
// (the registry's, whose liveness tokens hold across pid namespaces) are kept whatever their
// pid says.
std::vector<std::string> remove_stale_objects(const std::string& domain, const std::string& runtime_dir,
                                              const std::vector<std::uint64_t>& live,
                                              const std::vector<std::shared_ptr<LoadedTransport>>& transports);
// The ids of the endpoints `registry` lists (after a purge: all of live processes).
std::vector<std::uint64_t> endpoint_ids(Registry& registry);

// The pid of a live process owning an OS object of `domain` (any of `transports`'), or 0 if
// there is none.
pid_t live_object_owner(const std::string& domain, const std::string& runtime_dir,
                        const std::vector<std::shared_ptr<LoadedTransport>>& transports);

// FERRY_DOMAIN or "0"; throws if the name is not [A-Za-z0-9_-]{1,32}.
std::string checked_domain(const std::string& domain);

}  // namespace ferry::detail
