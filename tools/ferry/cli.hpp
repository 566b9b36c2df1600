// Shared pieces of the `ferry` command: options every command sees, the two kinds of failure
// (usage -> exit 2, runtime -> exit 1), Ctrl-C, and the commands themselves.
#pragma once

#include <atomic>
#include <functional>
#include <stdexcept>
#include <string>
#include <memory>
#include <vector>

#include <ferry/node.hpp>

#include <ferry/introspection.hpp>

namespace CLI {
class App;
}

namespace ferry::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

// Wrong arguments detected after parsing (exit 2).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// Something failed while running (exit 1). ferry::Error and other exceptions count as this too.
struct RuntimeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Globals {
    std::string domain;  // --domain, else FERRY_DOMAIN, else "0"
    bool json = false;   // --json
    std::vector<std::string> type_modules;  // --types
    double discovery_s = 1.0;  // --discovery: how long network transports look for other hosts' endpoints
    // Chosen by the subcommand's parse callback, run once parsing succeeded; returns the exit code.
    std::function<int()> action;
};

// Set by SIGINT/SIGTERM; long-running commands poll it between bounded waits.
extern std::atomic<bool> g_interrupted;
void install_signal_handlers();

// Prints to stdout and flushes (output is often piped into another program).
void out(const std::string& text);

// Each registers its subcommands on `parent`; the callback runs the command and may throw.
void add_topic_commands(CLI::App& parent, Globals& g);
void add_system_commands(CLI::App& parent, Globals& g);
void add_bag_commands(CLI::App& parent, Globals& g);     // bag.cpp
void add_record_command(CLI::App& parent, Globals& g);   // record.cpp
void add_play_command(CLI::App& parent, Globals& g);     // play.cpp
void add_bridge_command(CLI::App& parent, Globals& g);   // bridge.cpp

// The topic's entry in the registry, if it exists.
bool find_topic(const std::string& domain, const std::string& name, TopicInfo& out);
// `local` (from the registry) with the endpoints network transports discovered beyond it added,
// marked remote (list_remote_topics; waits g.discovery_s when the domain uses one).
std::vector<TopicInfo> with_remote(const Globals& g, std::vector<TopicInfo> local);
// "node@host" for a remote endpoint, the node's name for a local one.
std::string endpoint_name(const EndpointInfo& e);
// Waits (polling the registry, no subscription) until `name` exists, `timeout_s` passes
// (negative: no limit) or Ctrl-C. False if it did not appear.
bool wait_for_topic(const std::string& domain, const std::string& name, double timeout_s, TopicInfo& out);
// The same, also looking beyond the registry (with_remote): a topic whose endpoints are all on
// other hosts comes back with only remote endpoints, its transport and type.
bool wait_for_topic(const Globals& g, const std::string& name, double timeout_s, TopicInfo& out);
// Subscribes `node` to topic `info` of any type; to a remote-only topic on its transport.
RawSubscriber subscribe_any(const Globals& g, const std::string& node_name, const TopicInfo& info, std::unique_ptr<Node>& node);

}  // namespace ferry::cli
