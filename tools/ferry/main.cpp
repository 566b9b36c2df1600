// ferry: inspect and poke a running ferry system (topics, nodes, plugins, config, clean-up).
// Exit codes: 0 success, 1 runtime error, 2 usage error. Errors are one line on stderr.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <exception>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include <ferry/error.hpp>
#include <ferry/introspection.hpp>

#include "cli.hpp"
#include "output.hpp"

namespace ferry::cli {

std::atomic<bool> g_interrupted{false};

namespace {
extern "C" void on_signal(int) { g_interrupted.store(true); }

void fail(const std::string& message) { std::fprintf(stderr, "ferry: %s\n", shown(message).c_str()); }
}  // namespace

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = &on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    interrupt_waits_on(&g_interrupted);
}

void out(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

bool find_topic(const std::string& domain, const std::string& name, TopicInfo& out) {
    for (auto& t : list_topics(domain)) {
        if (t.name == name) {
            out = std::move(t);
            return true;
        }
    }
    return false;
}

std::vector<TopicInfo> with_remote(const Globals& g, std::vector<TopicInfo> local) {
    if (g.discovery_s <= 0) return local;
    const auto wait = std::chrono::milliseconds(static_cast<long>(g.discovery_s * 1000));
    for (auto& r : list_remote_topics(g.domain, wait)) {
        auto it = std::find_if(local.begin(), local.end(), [&](const TopicInfo& t) { return t.name == r.name; });
        if (it == local.end()) {
            local.push_back(std::move(r));
            continue;
        }
        if (it->type.empty()) it->type = r.type;
        for (auto& e : r.endpoints) it->endpoints.push_back(std::move(e));
    }
    std::sort(local.begin(), local.end(), [](const TopicInfo& a, const TopicInfo& b) { return a.name < b.name; });
    return local;
}

std::string endpoint_name(const EndpointInfo& e) {
    if (!e.remote) return e.node;
    return (e.node.empty() ? std::string("?") : e.node) + "@" + (e.host.empty() ? std::string("?") : e.host);
}

bool wait_for_topic(const std::string& domain, const std::string& name, double timeout_s, TopicInfo& out) {
    const auto start = std::chrono::steady_clock::now();
    while (!g_interrupted.load()) {
        if (find_topic(domain, name, out)) return true;
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (timeout_s >= 0 && waited >= timeout_s) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the registry has no tool-side wake-up
    }
    return false;
}

bool wait_for_topic(const Globals& g, const std::string& name, double timeout_s, TopicInfo& out) {
    const auto start = std::chrono::steady_clock::now();
    while (!g_interrupted.load()) {
        if (find_topic(g.domain, name, out)) return true;
        if (g.discovery_s > 0) {
            for (auto& t : with_remote(g, {})) {
                if (t.name != name || t.type.empty()) continue;
                out = std::move(t);
                return true;
            }
        }
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (timeout_s >= 0 && waited >= timeout_s) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the registry has no tool-side wake-up
    }
    return false;
}

RawSubscriber subscribe_any(const Globals& g, const std::string& node_name, const TopicInfo& info, std::unique_ptr<Node>& node) {
    const bool remote_only = !info.endpoints.empty() && std::all_of(info.endpoints.begin(), info.endpoints.end(),
                                                                    [](const EndpointInfo& e) { return e.remote; });
    NodeOptions nopts;
    nopts.domain = g.domain;
    if (remote_only) nopts.transport = info.qos.transport;
    node = std::make_unique<Node>(node_name, nopts);
    return node->subscribe_raw(info.name, remote_only ? info.type : "");
}

}  // namespace ferry::cli

int main(int argc, char** argv) {
    using namespace ferry::cli;
    Globals g;
    CLI::App app{"ferry: inspect a running ferry system (topics, nodes, plugins, config) and clean up after crashes",
                 "ferry"};
    app.require_subcommand(1);
    app.fallthrough();
    std::string domain;
    app.add_option("--domain", domain, "domain to look at (default: FERRY_DOMAIN, else 0)");
    app.add_flag("--json", g.json, "machine-readable output (one JSON document)");
    app.add_option("--discovery", g.discovery_s,
                   "seconds the network transports (dds) look for endpoints on other hosts when the domain uses "
                   "one (topic list/info, node list; 0: this host's registry only)")
        ->check(CLI::Range(0.0, 60.0));
    app.add_option("--types", g.type_modules, "type-support module for user types (see FERRY_TYPE); repeatable")
        ->allow_extra_args(false);

    add_topic_commands(app, g);
    add_system_commands(app, g);
    add_bag_commands(app, g);
    add_record_command(app, g);
    add_play_command(app, g);
    add_bridge_command(app, g);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        fail(std::string(e.what()) + " (ferry --help for usage)");
        return kExitUsage;
    }

    try {
        // Same rule as ferry::default_domain(), which libferry does not export yet.
        const char* env = std::getenv("FERRY_DOMAIN");
        g.domain = !domain.empty() ? domain : env && *env ? env : "0";
        install_signal_handlers();
        return g.action ? g.action() : kExitUsage;
    } catch (const UsageError& e) {
        fail(e.what());
        return kExitUsage;
    } catch (const std::exception& e) {
        fail(e.what());
        return kExitRuntime;
    }
}
