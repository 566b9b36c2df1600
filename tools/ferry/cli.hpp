// Shared pieces of the `ferry` command: options every command sees, the two kinds of failure
// (usage -> exit 2, runtime -> exit 1), Ctrl-C, and the commands themselves.
#pragma once

#include <atomic>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

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
// Waits (polling the registry, no subscription) until `name` exists, `timeout_s` passes
// (negative: no limit) or Ctrl-C. False if it did not appear.
bool wait_for_topic(const std::string& domain, const std::string& name, double timeout_s, TopicInfo& out);

}  // namespace ferry::cli
