// ferry topic list / ferry topic info: what the registry says, rates from its counters.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include <ferry/transport/transport.hpp>

#include "cli.hpp"
#include "output.hpp"
#include "topics.hpp"

namespace ferry::cli {

namespace {

struct Counts {
    std::size_t publishers = 0, subscribers = 0;
    std::uint64_t messages = 0, bytes = 0;
};

Counts count(const TopicInfo& t) {
    Counts c;
    for (const auto& e : t.endpoints) {
        if (e.publisher) {
            ++c.publishers;
            c.messages += e.messages;
            c.bytes += e.bytes;
        } else {
            ++c.subscribers;
        }
    }
    return c;
}

struct Rate {
    double messages = 0, bytes = 0;
};

// Per-topic rates from two snapshots `dt` seconds apart; endpoints that appeared in between
// count from zero, those that left are ignored.
std::map<std::string, Rate> rates(const std::vector<TopicInfo>& before, const std::vector<TopicInfo>& after, double dt) {
    std::map<std::uint64_t, const EndpointInfo*> old;
    for (const auto& t : before)
        for (const auto& e : t.endpoints) old[e.id] = &e;
    std::map<std::string, Rate> out;
    for (const auto& t : after) {
        Rate& r = out[t.name];
        if (dt <= 0) continue;
        for (const auto& e : t.endpoints) {
            if (!e.publisher) continue;
            auto it = old.find(e.id);
            const std::uint64_t m0 = it == old.end() ? 0 : it->second->messages;
            const std::uint64_t b0 = it == old.end() ? 0 : it->second->bytes;
            r.messages += static_cast<double>(e.messages - m0) / dt;
            r.bytes += static_cast<double>(e.bytes - b0) / dt;
        }
    }
    return out;
}

void sleep_interruptible(double seconds) {
    sleep_until_or_interrupted(std::chrono::steady_clock::now() +
                               std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds)));
}

std::string hex_id(std::uint64_t id) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
    return buf;
}

}  // namespace

Json qos_json(const Qos& q) {
    return Json::object()
        .add("transport", Json::string(q.transport))
        .add("depth", Json::unsigned_integer(q.depth))
        .add("overflow", Json::string(overflow_name(q.overflow)))
        .add("max_message_size", Json::unsigned_integer(q.max_message_size))
        .add("block_timeout_ms", Json::integer(q.block_timeout.count()))
        .add("mode", Json::string([&] {
                 char buf[8];
                 std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(q.mode));
                 return std::string(buf);
             }()));
}

Json endpoint_json(const EndpointInfo& e) {
    return Json::object()
        .add("id", Json::string(hex_id(e.id)))
        .add("node", Json::string(e.node))
        .add("pid", Json::integer(e.pid))
        .add("role", Json::string(e.publisher ? "publisher" : "subscriber"))
        .add("messages", Json::unsigned_integer(e.messages))
        .add("bytes", Json::unsigned_integer(e.bytes))
        .add("undelivered", Json::unsigned_integer(e.undelivered))
        .add("remote", Json::boolean(e.remote))
        .add("host", e.remote ? Json::string(e.host) : Json::null());
}

void add_topic_list_info(CLI::App& topic, Globals& g) {
    auto* list = topic.add_subcommand("list", "live topics: type, transport, endpoints, rates (no subscription)");
    list->fallthrough();
    auto verbose = std::make_shared<bool>(false);
    auto window = std::make_shared<double>(0.5);
    list->add_flag("-v,--verbose", *verbose, "also QoS and node names");
    list->add_option("--window", *window, "seconds between the two counter samples behind the rates (0: no rates)")
        ->check(CLI::Range(0.0, 60.0));
    list->callback([&g, verbose, window] {
        g.action = [&g, verbose, window] {
            auto before = list_topics(g.domain);
            if (*window > 0 && !before.empty()) sleep_interruptible(*window);
            auto after = *window > 0 && !before.empty() ? list_topics(g.domain) : before;
            const double dt = *window > 0 && !before.empty() ? *window : 0;
            auto r = rates(before, after, dt);
            after = with_remote(g, std::move(after));
            if (g.json) {
                auto topics = Json::array();
                for (const auto& t : after) {
                    const Counts c = count(t);
                    auto eps = Json::array();
                    for (const auto& e : t.endpoints) eps.push(endpoint_json(e));
                    topics.push(Json::object()
                                    .add("name", Json::string(t.name))
                                    .add("type", Json::string(t.type))
                                    .add("transport", Json::string(t.qos.transport))
                                    .add("publishers", Json::unsigned_integer(c.publishers))
                                    .add("subscribers", Json::unsigned_integer(c.subscribers))
                                    .add("messages", Json::unsigned_integer(c.messages))
                                    .add("bytes", Json::unsigned_integer(c.bytes))
                                    .add("messages_per_s", dt > 0 ? Json::number(r[t.name].messages) : Json::null())
                                    .add("bytes_per_s", dt > 0 ? Json::number(r[t.name].bytes) : Json::null())
                                    .add("qos", qos_json(t.qos))
                                    .add("endpoints", eps));
                }
                out(to_string(Json::object()
                                  .add("domain", Json::string(g.domain))
                                  .add("window_s", Json::number(dt))
                                  .add("topics", topics)) +
                    "\n");
                return kExitOk;
            }
            if (after.empty()) {
                out("no topics in domain " + shown(g.domain) + "\n");
                return kExitOk;
            }
            std::vector<std::string> headers{"TOPIC", "TYPE", "TRANSPORT", "PUBS", "SUBS", "MSG/S", "BYTES/S"};
            std::vector<bool> right{false, false, false, true, true, true, true};
            if (*verbose) {
                for (const char* h : {"DEPTH", "OVERFLOW", "MAX SIZE"}) headers.push_back(h);
                right.insert(right.end(), {true, false, true});
                headers.push_back("NODES");
                right.push_back(false);
            }
            Table table(headers, right);
            for (const auto& t : after) {
                const Counts c = count(t);
                std::vector<std::string> row{t.name,
                                             t.type,
                                             t.qos.transport,
                                             std::to_string(c.publishers),
                                             std::to_string(c.subscribers),
                                             dt > 0 ? fixed(r[t.name].messages, 1) : "-",
                                             dt > 0 ? human_bytes(r[t.name].bytes) : "-"};
                if (*verbose) {
                    row.push_back(std::to_string(t.qos.depth));
                    row.push_back(overflow_name(t.qos.overflow));
                    row.push_back(human_bytes(static_cast<double>(t.qos.max_message_size)));
                    std::set<std::string> nodes;
                    for (const auto& e : t.endpoints)
                        nodes.insert(endpoint_name(e) + "(" + (e.publisher ? "pub" : "sub") + (e.remote ? ",remote" : "") + ")");
                    std::string joined;
                    for (const auto& n : nodes) joined += (joined.empty() ? "" : ",") + n;
                    row.push_back(joined);
                }
                table.add_row(row);
            }
            out(table.str());
            return kExitOk;
        };
    });

    auto* info = topic.add_subcommand("info", "one topic: type, transport and QoS, every endpoint, counters");
    info->fallthrough();
    auto name = std::make_shared<std::string>();
    info->add_option("topic", *name, "topic name")->required();
    info->callback([&g, name] {
        g.action = [&g, name] {
            TopicInfo t;
            bool found = false;
            for (auto& x : with_remote(g, list_topics(g.domain))) {
                if (x.name != *name) continue;
                t = std::move(x);
                found = true;
            }
            if (!found) throw RuntimeError("topic '" + *name + "' does not exist in domain " + g.domain);
            const Counts c = count(t);
            if (g.json) {
                auto eps = Json::array();
                for (const auto& e : t.endpoints) eps.push(endpoint_json(e));
                out(to_string(Json::object()
                                  .add("domain", Json::string(g.domain))
                                  .add("name", Json::string(t.name))
                                  .add("type", Json::string(t.type))
                                  .add("qos", qos_json(t.qos))
                                  .add("publishers", Json::unsigned_integer(c.publishers))
                                  .add("subscribers", Json::unsigned_integer(c.subscribers))
                                  .add("messages", Json::unsigned_integer(c.messages))
                                  .add("bytes", Json::unsigned_integer(c.bytes))
                                  .add("endpoints", eps)) +
                    "\n");
                return kExitOk;
            }
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(t.qos.mode));
            std::string s;
            s += "topic:      " + shown(t.name) + "\n";
            s += "type:       " + shown(t.type) + "\n";
            s += "transport:  " + shown(t.qos.transport) + "\n";
            const bool all_remote = !t.endpoints.empty() && std::all_of(t.endpoints.begin(), t.endpoints.end(),
                                                                        [](const EndpointInfo& e) { return e.remote; });
            if (all_remote)
                s += "qos:        not known here (every endpoint is on another host)\n";
            else
                s += "qos:        depth " + std::to_string(t.qos.depth) + ", overflow " +
                 overflow_name(t.qos.overflow) + ", max message " +
                 human_bytes(static_cast<double>(t.qos.max_message_size)) + ", block timeout " +
                 std::to_string(t.qos.block_timeout.count()) + " ms, mode " + mode + "\n";
            s += "counters:   " + std::to_string(c.messages) + " messages, " + std::to_string(c.bytes) +
                 " bytes published\n";
            s += "endpoints:  " + std::to_string(c.publishers) + " publisher(s), " + std::to_string(c.subscribers) +
                 " subscriber(s)";
            for (const auto& p : list_plugins())
                if (p.name == t.qos.transport && p.max_readers != 0)
                    s += " (" + p.name + " serves at most " + std::to_string(p.max_readers) + ")";
            s += "\n";
            out(s);
            Table table({"ROLE", "NODE", "PID", "ENDPOINT", "MESSAGES", "BYTES", "UNDELIVERED"},
                        {false, false, true, false, true, true, true});
            for (const auto& e : t.endpoints) {
                const bool counted = e.publisher && !e.remote;
                table.add_row({e.publisher ? "publisher" : "subscriber", endpoint_name(e), std::to_string(e.pid),
                               e.remote ? "remote" : hex_id(e.id), counted ? std::to_string(e.messages) : "-",
                               counted ? std::to_string(e.bytes) : "-", counted ? std::to_string(e.undelivered) : "-"});
            }
            if (!table.empty()) out("\n" + table.str());
            return kExitOk;
        };
    });
}

bool sleep_until_or_interrupted(std::chrono::steady_clock::time_point t) {
    while (!g_interrupted.load()) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= t) return true;
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(t - now, std::chrono::milliseconds(50)));
    }
    return false;
}

void add_topic_commands(CLI::App& parent, Globals& g) {
    auto* topic = parent.add_subcommand("topic", "topics: list, info, echo, pub, hz, bw, delay");
    topic->require_subcommand(1);
    topic->fallthrough();
    add_topic_list_info(*topic, g);
    add_topic_echo_pub(*topic, g);
    add_topic_stats(*topic, g);
}

}  // namespace ferry::cli
