// ferry node list / plugin list / config check / clean.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include <CLI/CLI.hpp>

#include <ferry/error.hpp>
#include <ferry/introspection.hpp>
#include <ferry/transport/transport.hpp>

#include "cli.hpp"
#include "output.hpp"
#include "topics.hpp"

namespace ferry::cli {

namespace {

int run_node_list(const Globals& g) {
    struct Node {
        std::string name;
        int pid = 0;
        std::string host;  // remote nodes only
        std::set<std::string> publishes, subscribes;
    };
    std::map<std::tuple<std::string, int, std::string>, Node> nodes;
    for (const auto& t : with_remote(g, list_topics(g.domain))) {
        for (const auto& e : t.endpoints) {
            Node& n = nodes[{e.remote ? e.host : std::string(), e.pid, e.node}];
            n.name = endpoint_name(e);
            n.pid = e.pid;
            n.host = e.remote ? e.host : "";
            (e.publisher ? n.publishes : n.subscribes).insert(t.name);
        }
    }
    auto joined = [](const std::set<std::string>& s) {
        std::string out;
        for (const auto& x : s) out += (out.empty() ? "" : ",") + x;
        return out;
    };
    if (g.json) {
        auto arr = Json::array();
        for (const auto& [key, n] : nodes) {
            auto pubs = Json::array(), subs = Json::array();
            for (const auto& t : n.publishes) pubs.push(Json::string(t));
            for (const auto& t : n.subscribes) subs.push(Json::string(t));
            arr.push(Json::object()
                         .add("name", Json::string(n.name))
                         .add("pid", Json::integer(n.pid))
                         .add("remote", Json::boolean(!n.host.empty()))
                         .add("host", n.host.empty() ? Json::null() : Json::string(n.host))
                         .add("publishers", Json::unsigned_integer(n.publishes.size()))
                         .add("subscribers", Json::unsigned_integer(n.subscribes.size()))
                         .add("publishes", pubs)
                         .add("subscribes", subs));
        }
        out(to_string(Json::object().add("domain", Json::string(g.domain)).add("nodes", arr)) + "\n");
        return kExitOk;
    }
    if (nodes.empty()) {
        out("no nodes in domain " + shown(g.domain) + "\n");
        return kExitOk;
    }
    Table table({"NODE", "PID", "PUBS", "SUBS", "PUBLISHES", "SUBSCRIBES"}, {false, true, true, true, false, false});
    for (const auto& [key, n] : nodes)
        table.add_row({n.name, std::to_string(n.pid), std::to_string(n.publishes.size()),
                       std::to_string(n.subscribes.size()), joined(n.publishes), joined(n.subscribes)});
    out(table.str());
    return kExitOk;
}

int run_plugin_list(const Globals& g) {
    const auto plugins = list_plugins();
    if (g.json) {
        auto arr = Json::array();
        for (const auto& p : plugins) {
            auto j = Json::object()
                         .add("name", Json::string(p.name))
                         .add("path", Json::string(p.path))
                         .add("loaded", Json::boolean(p.loaded));
            if (p.loaded) {
                j.add("version", Json::string(p.version))
                    .add("abi_version", Json::unsigned_integer(p.abi_version))
                    .add("zero_copy", Json::boolean(p.zero_copy))
                    .add("max_message_size", Json::unsigned_integer(p.max_message_size))
                    .add("summary", Json::string(p.summary));
            } else {
                j.add("error", Json::string(p.error));
            }
            arr.push(j);
        }
        out(to_string(Json::object().add("plugins", arr)) + "\n");
        return kExitOk;
    }
    if (plugins.empty()) {
        out("no transport plugins found (FERRY_PLUGIN_PATH, the install location, the build tree)\n");
        return kExitOk;
    }
    Table table({"PLUGIN", "STATUS", "VERSION", "ABI", "ZERO-COPY", "MAX MESSAGE", "PATH / ERROR"},
                {false, false, false, true, false, true, false});
    std::string summaries;
    for (const auto& p : plugins) {
        if (p.loaded) {
            table.add_row({p.name, "ok", p.version, std::to_string(p.abi_version), p.zero_copy ? "yes" : "no",
                           p.max_message_size ? human_bytes(static_cast<double>(p.max_message_size)) : "no limit",
                           p.path});
            if (!p.summary.empty()) summaries += "  " + p.name + ": " + p.summary + "\n";
        } else {
            table.add_row({p.name, "error", "-", "-", "-", "-", p.error});
        }
    }
    out(table.str() + (summaries.empty() ? "" : "\n" + summaries));
    return kExitOk;
}

struct ConfigOptions {
    std::string file;
    std::vector<std::string> topics;
};

int run_config_check(const Globals& g, const ConfigOptions& o) {
    std::string path = o.file;
    std::string source = "argument";
    if (path.empty()) {
        if (const char* env = std::getenv("FERRY_CONFIG"); env && *env) {
            path = env;
            source = "FERRY_CONFIG";
        } else if (std::filesystem::exists("ferry.toml")) {
            path = "ferry.toml";
            source = "./ferry.toml";
        }
    }
    std::vector<std::pair<std::string, Qos>> resolved;
    if (path.empty()) {
        for (const auto& t : o.topics) resolved.emplace_back(t, Qos{});
    } else {
        if (!std::filesystem::exists(path)) throw RuntimeError("config " + path + ": no such file");
        // Loading validates the whole file (syntax, keys, values, transports), whatever the topic.
        (void)resolve_config(path, o.topics.empty() ? std::string("ferry_config_check") : o.topics.front());
        for (const auto& t : o.topics) resolved.emplace_back(t, resolve_config(path, t));
    }
    if (g.json) {
        auto arr = Json::array();
        for (const auto& [t, q] : resolved) arr.push(Json::object().add("topic", Json::string(t)).add("qos", qos_json(q)));
        out(to_string(Json::object()
                          .add("file", path.empty() ? Json::null() : Json::string(path))
                          .add("valid", Json::boolean(true))
                          .add("topics", arr)) +
            "\n");
        return kExitOk;
    }
    std::string s = path.empty() ? "no config file (no FERRY_CONFIG, no ./ferry.toml): built-in defaults apply\n"
                                 : shown(path) + ": valid (" + shown(source) + ")\n";
    if (!resolved.empty()) {
        Table table({"TOPIC", "TRANSPORT", "DEPTH", "OVERFLOW", "MAX SIZE", "BLOCK TIMEOUT", "MODE"},
                    {false, false, true, false, true, true, false});
        for (const auto& [t, q] : resolved) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(q.mode));
            table.add_row({t, q.transport, std::to_string(q.depth), overflow_name(q.overflow),
                           human_bytes(static_cast<double>(q.max_message_size)),
                           std::to_string(q.block_timeout.count()) + " ms", mode});
        }
        s += table.str();
    }
    out(s);
    return kExitOk;
}

int run_clean(const Globals& g) {
    const auto removed = clean_domain(g.domain);
    if (g.json) {
        auto arr = Json::array();
        for (const auto& r : removed) arr.push(Json::string(r));
        out(to_string(Json::object().add("domain", Json::string(g.domain)).add("removed", arr)) + "\n");
        return kExitOk;
    }
    if (removed.empty()) {
        out("nothing to clean in domain " + shown(g.domain) + "\n");
        return kExitOk;
    }
    std::string s;
    for (const auto& r : removed) s += "removed " + shown(r) + "\n";
    s += std::to_string(removed.size()) + " object(s) of dead processes removed from domain " + shown(g.domain) + "\n";
    out(s);
    return kExitOk;
}

}  // namespace

void add_system_commands(CLI::App& parent, Globals& g) {
    auto* node = parent.add_subcommand("node", "nodes (from the registry's endpoints)");
    node->require_subcommand(1);
    node->fallthrough();
    auto* node_list = node->add_subcommand("list", "nodes: name, pid, publishers, subscribers");
    node_list->fallthrough();
    node_list->callback([&g] { g.action = [&g] { return run_node_list(g); }; });

    auto* plugin = parent.add_subcommand("plugin", "transport plugins");
    plugin->require_subcommand(1);
    plugin->fallthrough();
    auto* plugin_list = plugin->add_subcommand("list", "modules found, ABI, capabilities, load errors");
    plugin_list->fallthrough();
    plugin_list->callback([&g] { g.action = [&g] { return run_plugin_list(g); }; });

    auto* config = parent.add_subcommand("config", "configuration files");
    config->require_subcommand(1);
    config->fallthrough();
    auto co = std::make_shared<ConfigOptions>();
    auto* check = config->add_subcommand("check", "validate a config and show what topics resolve to");
    check->fallthrough();
    check->add_option("file", co->file, "TOML file (default: FERRY_CONFIG, else ./ferry.toml)");
    check->add_option("--topic", co->topics, "topic name to resolve; repeatable")->allow_extra_args(false);
    check->callback([&g, co] { g.action = [&g, co] { return run_config_check(g, *co); }; });

    auto* clean = parent.add_subcommand("clean", "remove what dead processes left in the domain (never a live one's)");
    clean->fallthrough();
    clean->callback([&g] { g.action = [&g] { return run_clean(g); }; });
}

}  // namespace ferry::cli
