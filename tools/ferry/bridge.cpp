// ferry bridge: forwards chosen topics between this host's domain, on each topic's own transport,
// and the network, on dds (README.md, "The bridge"). Configured by the [bridge] table of the
// same TOML file the processes use:
//
//   [bridge]
//   out = ["chatter", "camera/*"]   # local topics that have a local publisher -> dds
//   in = ["cmd/*"]                  # dds -> local topics that have a local subscriber
//   network_domain = "net"          # the ferry domain of the dds side (DDS topic ferry_net/<topic>)
//
// Loops: a bridge never forwards what a bridge published. Outward, it skips messages whose
// publisher is a local endpoint of a node named "ferry_bridge" (itself, or another bridge of the
// domain); inward, it skips what its own dds publishers sent. A message therefore crosses the
// network once, whatever the number of sites.
#include <fnmatch.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <ferry/introspection.hpp>
#include <ferry/node.hpp>

#include "cli.hpp"
#include "output.hpp"
#include "topics.hpp"

namespace ferry::cli {

namespace {

constexpr const char* kBridgeNode = "ferry_bridge";
constexpr auto kScanEvery = std::chrono::milliseconds(250);
constexpr auto kTakeTimeout = std::chrono::milliseconds(200);
// How long a new outward route waits for its dds publisher to match the network's subscribers
// before it subscribes locally (a publisher that waits for subscribers then waits for the bridge,
// and its first messages are not lost to DDS discovery).
constexpr auto kMatchWait = std::chrono::milliseconds(3000);
// A topic the bridge failed to set up (a type or transport conflict, a plugin error) is tried
// again this much later, not at every scan.
constexpr auto kRetryAfter = std::chrono::seconds(5);

bool matches(const std::vector<std::string>& patterns, const std::string& topic) {
    for (const auto& p : patterns)
        if (::fnmatch(p.c_str(), topic.c_str(), 0) == 0) return true;
    return false;
}

void say(const std::string& line) { out("bridge: " + shown(line) + "\n"); }

class Bridge {
public:
    Bridge(const std::string& domain, const std::string& config_path, BridgeConfig config)
        : domain_(domain), config_(std::move(config)) {
        NodeOptions local;
        local.domain = domain;
        local.config_path = config_path;
        local_ = std::make_unique<Node>(kBridgeNode, local);
        NodeOptions net;
        net.domain = config_.network_domain;
        net.config_path = config_path;
        net.transport = "dds";
        net_ = std::make_unique<Node>(kBridgeNode, net);
    }

    ~Bridge() { stop(); }

    int run() {
        say("domain " + domain_ + " <-> dds (network domain " + config_.network_domain + "), out " +
            std::to_string(config_.out.size()) + " pattern(s), in " + std::to_string(config_.in.size()) + " pattern(s)");
        while (!g_interrupted.load()) {
            scan();
            sleep_until_or_interrupted(std::chrono::steady_clock::now() + kScanEvery);
        }
        stop();
        for (const auto& r : routes_)
            say(std::string(r->outward ? "out '" : "in '") + r->topic + "': forwarded " + std::to_string(r->forwarded.load()) +
                ", skipped " + std::to_string(r->skipped.load()) + " (published by a bridge), failed " +
                std::to_string(r->failed.load()));
        return kExitOk;
    }

private:
    struct Route {
        std::string topic;
        bool outward = false;
        RawSubscriber tap;
        RawPublisher outlet;
        std::thread thread;
        std::atomic<std::uint64_t> forwarded{0}, skipped{0}, failed{0};
    };

    void scan() {
        std::vector<TopicInfo> topics;
        try {
            topics = list_topics(domain_);
        } catch (const std::exception& e) {
            say(std::string("cannot read the registry: ") + e.what());
            return;
        }
        for (const auto& t : topics) {
            std::size_t publishers = 0, subscribers = 0;
            for (const auto& e : t.endpoints) {
                if (e.node == kBridgeNode) continue;
                (e.publisher ? publishers : subscribers) += 1;
            }
            const bool want_out = publishers > 0 && matches(config_.out, t.name) && !out_topics_.count(t.name);
            const bool want_in = subscribers > 0 && matches(config_.in, t.name) && !in_topics_.count(t.name);
            if (!want_out && !want_in) continue;
            if (t.qos.transport == "dds") {
                if (refused_.insert(t.name).second)
                    say("topic '" + t.name + "' is on dds in domain " + domain_ + " already: not bridged");
                continue;
            }
            const auto now = std::chrono::steady_clock::now();
            if (auto it = retry_at_.find(t.name); it != retry_at_.end() && now < it->second) continue;
            try {
                if (want_out) start_out(t);
                if (want_in) start_in(t);
                retry_at_.erase(t.name);
            } catch (const std::exception& e) {
                say("cannot bridge topic '" + t.name + "' (trying again in " + std::to_string(kRetryAfter.count()) +
                    " s): " + e.what());
                retry_at_[t.name] = now + kRetryAfter;
            }
        }
    }

    // Local publishers -> dds.
    void start_out(const TopicInfo& t) {
        auto r = std::make_unique<Route>();
        r->topic = t.name;
        r->outward = true;
        r->outlet = net_->advertise_raw(t.name, t.type);
        {
            std::lock_guard<std::mutex> lock(mu_);
            own_net_ids_.insert(r->outlet.id());
        }
        // Our own inward dds subscriber of this topic matches too.
        const std::size_t expected = 1 + (in_topics_.count(t.name) ? 1 : 0);
        const bool matched = r->outlet.wait_for_subscribers(expected, kMatchWait);
        r->tap = local_->subscribe_raw(t.name, "");
        out_topics_.insert(t.name);
        say("out '" + t.name + "' (" + t.qos.transport + " -> dds, " + t.type + ")" +
            (matched ? "" : ", no dds subscriber yet"));
        start(*r);
        routes_.push_back(std::move(r));
    }

    // dds -> local subscribers.
    void start_in(const TopicInfo& t) {
        // The dds side may not know the topic yet (its publishers may all be on other hosts), so
        // the type comes from the local subscribers; untyped ones alone (`ferry topic echo`)
        // wait until a typed one, or a local publisher, names it.
        if (t.type.empty()) return;
        auto r = std::make_unique<Route>();
        r->topic = t.name;
        r->outward = false;
        r->outlet = local_->advertise_raw(t.name, t.type);
        r->tap = net_->subscribe_raw(t.name, t.type);
        const std::string& type = t.type;
        in_topics_.insert(t.name);
        say("in '" + t.name + "' (dds -> " + r->outlet.qos().transport + ", " + type + ")");
        start(*r);
        routes_.push_back(std::move(r));
    }

    void start(Route& r) {
        r.thread = std::thread([this, &r] { forward(r); });
    }

    void forward(Route& r) {
        auto last_report = std::chrono::steady_clock::time_point{};
        while (!stopping_.load()) {
            RawSample s = r.tap.take_sample(kTakeTimeout);
            if (!s) {
                if (s.status().code() == Errc::closed) return;
                continue;
            }
            const std::uint64_t from = s.info().publisher_id;
            if (r.outward ? published_by_local_bridge(from) : published_by_us(from)) {
                r.skipped.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            const Status st = r.outlet.publish(s.data(), s.size());
            if (st) {
                r.forwarded.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            r.failed.fetch_add(1, std::memory_order_relaxed);
            const auto now = std::chrono::steady_clock::now();
            if (now - last_report >= std::chrono::seconds(1)) {
                last_report = now;
                say(std::string(r.outward ? "out '" : "in '") + r.topic + "': " + st.message() + " (" +
                    std::to_string(r.failed.load()) + " failed so far)");
            }
        }
    }

    bool published_by_us(std::uint64_t id) {
        std::lock_guard<std::mutex> lock(mu_);
        return own_net_ids_.count(id) != 0;
    }

    // Whether local endpoint `id` belongs to a bridge: from the registry, remembered. A publisher
    // is in the registry before it publishes; one gone by the time we look is taken as not a bridge.
    bool published_by_local_bridge(std::uint64_t id) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = local_publishers_.find(id);
        if (it != local_publishers_.end()) return it->second;
        try {
            for (const auto& t : list_topics(domain_))
                for (const auto& e : t.endpoints)
                    if (e.publisher) local_publishers_[e.id] = e.node == kBridgeNode;
        } catch (const std::exception&) {
            return false;  // the registry could not be read: forward, and look again next time
        }
        return local_publishers_.emplace(id, false).first->second;
    }

    void stop() {
        stopping_.store(true);
        for (auto& r : routes_)
            if (r->thread.joinable()) r->thread.join();
    }

    std::string domain_;
    BridgeConfig config_;
    std::unique_ptr<Node> local_;
    std::unique_ptr<Node> net_;
    std::vector<std::unique_ptr<Route>> routes_;
    std::set<std::string> out_topics_, in_topics_, refused_;
    std::map<std::string, std::chrono::steady_clock::time_point> retry_at_;
    std::atomic<bool> stopping_{false};
    std::mutex mu_;  // the two below
    std::set<std::uint64_t> own_net_ids_;
    std::map<std::uint64_t, bool> local_publishers_;  // endpoint id -> published by a bridge
};

struct BridgeOptions {
    std::string config;
};

int run_bridge(const Globals& g, const BridgeOptions& o) {
    std::string path = o.config;
    if (path.empty()) {
        if (const char* env = std::getenv("FERRY_CONFIG"); env && *env)
            path = env;
        else if (std::filesystem::exists("ferry.toml"))
            path = "ferry.toml";
    }
    if (path.empty()) throw UsageError("bridge: no config (--config, FERRY_CONFIG or ./ferry.toml) with a [bridge] table");
    BridgeConfig config = load_bridge_config(path);
    if (config.out.empty() && config.in.empty())
        throw UsageError("bridge: " + path + " has no [bridge] table with 'out' or 'in' patterns");
    Bridge bridge(g.domain, path, std::move(config));
    return bridge.run();
}

}  // namespace

void add_bridge_command(CLI::App& parent, Globals& g) {
    auto o = std::make_shared<BridgeOptions>();
    auto* bridge = parent.add_subcommand(
        "bridge", "forward the [bridge] topics between this domain and dds (local subscribers stay on their transport)");
    bridge->fallthrough();
    bridge->add_option("--config", o->config, "TOML file with a [bridge] table (default: FERRY_CONFIG, else ./ferry.toml)");
    bridge->callback([&g, o] { g.action = [&g, o] { return run_bridge(g, *o); }; });
}

}  // namespace ferry::cli
