// A read-only view of a live domain, for tools (the `ferry` command) and tests: what topics
// exist, who publishes and subscribes, their counters, which plugins are installed, and the
// clean-up of what dead processes left behind. Reading never subscribes to anything.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <ferry/export.hpp>
#include <ferry/qos.hpp>

namespace ferry {

struct EndpointInfo {
    std::uint64_t id = 0;
    std::string topic;
    std::string node;
    bool publisher = false;  // else subscriber
    int pid = 0;
    std::uint64_t messages = 0;  // publishers: messages sent so far
    std::uint64_t bytes = 0;     // publishers: payload bytes sent so far
    // publishers: messages a subscriber did not get (its queue stayed full under block or was
    // full under fail; a stalled subscriber misses messages until it drains)
    std::uint64_t undelivered = 0;
    // An endpoint a network transport discovered in a process this host's registry does not
    // list (another host, or another /dev/shm): id and counters are 0, pid is on `host`.
    bool remote = false;
    std::string host;
};

struct TopicInfo {
    std::string name;
    std::string type;
    Qos qos;  // transport and QoS the topic was created with
    std::vector<EndpointInfo> endpoints;
};

// FERRY_DOMAIN or "0".
FERRY_API std::string default_domain();

// Topics of `domain` with their live endpoints (dead processes' entries are purged first).
// Empty if the domain has no registry. Throws ferry::Error if the registry is unusable.
FERRY_API std::vector<TopicInfo> list_topics(const std::string& domain);

struct PluginInfo {
    std::string name;
    std::string path;
    bool loaded = false;  // false: `error` says why
    std::string error;
    std::string version;            // the plugin's own version
    std::uint32_t abi_version = 0;  // the transport ABI it was built for (loaded: this ferry's)
    bool zero_copy = false;
    std::size_t max_message_size = 0;
    std::size_t max_readers = 0;  // subscribers per topic the transport serves (0: no limit)
    std::string summary;
};

// The topics of `domain` that network transports (dds) see beyond this host's registry: every
// endpoint of another process that the registry does not list, marked remote, with its host,
// pid, node and type as that process announced them; qos.transport names the transport, the
// rest of the QoS is not known. Runs only when the domain uses a network transport here (one of
// its topics is on it, or the config, FERRY_CONFIG else ./ferry.toml, has the transport's
// table); then joins the engine's discovery and waits `wait` for it (blocks that long). Throws
// ferry::Error if the config or the registry is unusable.
FERRY_API std::vector<TopicInfo> list_remote_topics(const std::string& domain, std::chrono::milliseconds wait);

// Every transport module found on the search path (FERRY_PLUGIN_PATH, the install location,
// the build tree), each loaded and checked.
FERRY_API std::vector<PluginInfo> list_plugins();

// Removes, for `domain`, the OS objects (segments, sockets, FIFOs, queues) and registry entries
// of processes that no longer exist; never anything of a live process. Returns what it removed.
FERRY_API std::vector<std::string> clean_domain(const std::string& domain);

// Registry lock waits in this process (each bounded by a few seconds anyway) end at once,
// with ferry::Error (closed), when *flag becomes true: for a tool's Ctrl-C/SIGTERM flag.
FERRY_API void interrupt_waits_on(const std::atomic<bool>* flag);

// Loads a config file (throws ferry::Error with file and line) and resolves `topic` in it.
FERRY_API Qos resolve_config(const std::string& path, const std::string& topic);

// The config's [bridge] table: what `ferry bridge` forwards between a local domain and the
// network (README.md, "The bridge").
struct BridgeConfig {
    std::vector<std::string> out;  // fnmatch patterns of local topics republished on dds
    std::vector<std::string> in;   // fnmatch patterns of dds topics republished locally
    std::string network_domain;    // the ferry domain of the dds side ("net" unless set)
};

// Loads (and validates, like resolve_config) a config file and returns its [bridge] table.
// Throws ferry::Error with file and line.
FERRY_API BridgeConfig load_bridge_config(const std::string& path);

}  // namespace ferry
