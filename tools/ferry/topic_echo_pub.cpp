// ferry topic echo / ferry topic pub.
#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>

#include <ferry/node.hpp>

#include "topics.hpp"
#include "type_modules.hpp"
#include "values.hpp"

namespace ferry::cli {

namespace {

std::string hex_id(std::uint64_t id) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
    return buf;
}

struct EchoOptions {
    std::string topic;
    std::uint64_t count = 0;
    double timeout = -1;
    std::size_t max_bytes = 64;
    bool verbose = false;
    bool raw = false;
};

int run_echo(const Globals& g, const EchoOptions& o) {
    TypeModules modules(g.type_modules);
    TopicInfo info;
    const auto start = std::chrono::steady_clock::now();
    if (!wait_for_topic(g, o.topic, o.timeout, info)) {
        if (g_interrupted.load()) return kExitOk;
        throw RuntimeError("topic '" + o.topic + "' did not appear in domain " + g.domain + " within " +
                           fixed(o.timeout, 1) + " s");
    }
    std::unique_ptr<Node> node;
    auto sub = subscribe_any(g, "ferry_echo", info, node);
    const std::string type = sub.type_name();
    const bool user_type = !is_builtin_type(type);
    if (user_type && !o.raw && !modules.supports(type) && !g.json)
        std::fprintf(stderr, "ferry: no type support for '%s': showing raw bytes (pass --types MODULE)\n",
                     shown(type).c_str());

    std::uint64_t received = 0;
    const auto deadline = o.timeout >= 0 ? start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                      std::chrono::duration<double>(o.timeout))
                                         : std::chrono::steady_clock::time_point::max();
    while (!g_interrupted.load() && (o.count == 0 || received < o.count)) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) break;
        const auto wait = std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(100));
        auto s = sub.take_sample(wait);
        if (!s) {
            if (s.status().code() == Errc::timeout) continue;
            throw RuntimeError("take on '" + o.topic + "': " + s.status().message());
        }
        ++received;
        const auto& mi = s.info();
        const std::int64_t latency_ns = wall_now_ns() - mi.timestamp_ns;

        std::optional<std::string> decoded;  // JSON (g.json or user type) or text
        std::string error;
        if (!o.raw) {
            if (user_type) {
                if (modules.supports(type)) decoded = modules.to_json(type, s.data(), s.size(), error);
            } else {
                decoded = g.json ? builtin_to_json(type, s.data(), s.size())
                                 : builtin_to_text(type, s.data(), s.size());
                if (!decoded && type != "bytes") error = std::to_string(s.size()) + " bytes are not a " + type;
            }
        }
        if (g.json) {
            auto j = Json::object()
                         .add("topic", Json::string(o.topic))
                         .add("type", Json::string(type))
                         .add("sequence", Json::unsigned_integer(mi.sequence))
                         .add("publisher", Json::string(hex_id(mi.publisher_id)))
                         .add("size", Json::unsigned_integer(mi.size))
                         .add("latency_ns", Json::integer(latency_ns))
                         .add("data", decoded ? Json::raw(*decoded) : Json::null());
            if (!decoded) j.add("hex", Json::string(hex_string(s.data(), s.size(), o.max_bytes)));
            if (!error.empty()) j.add("error", Json::string(error));
            out(to_string(j) + "\n");
            continue;
        }
        std::string text;
        if (!decoded || o.verbose) {
            text += "#" + std::to_string(mi.sequence) + " from " + hex_id(mi.publisher_id) + ", " +
                    std::to_string(mi.size) + " bytes, latency " + human_seconds(latency_ns * 1e-9) +
                    (error.empty() ? "" : " (" + error + ")") + "\n";
        }
        if (decoded) text += shown(*decoded) + "\n";
        else text += hex_preview(s.data(), s.size(), o.max_bytes);
        if (o.count != 1 && !decoded) text += "---\n";
        out(text);
    }
    if (o.count > 0 && received < o.count && !g_interrupted.load())
        throw RuntimeError("received " + std::to_string(received) + " of " + std::to_string(o.count) + " message(s) on '" +
                           o.topic + "' within " + fixed(o.timeout, 1) + " s");
    return kExitOk;
}

struct PubOptions {
    std::string topic;
    std::string value;
    std::string type;
    double rate = 0;
    std::uint64_t count = 0;
    bool count_given = false;
    double wait = 2.0;
};

int run_pub(const Globals& g, const PubOptions& o) {
    TypeModules modules(g.type_modules);
    TopicInfo info;
    std::size_t registered_subscribers = 0;
    std::string type = o.type.empty() ? "string" : o.type;
    if (find_topic(g.domain, o.topic, info)) {
        if (!o.type.empty() && o.type != info.type)
            throw RuntimeError("topic '" + o.topic + "' carries " + info.type + ", not " + o.type);
        type = info.type;
        for (const auto& e : info.endpoints) registered_subscribers += e.publisher ? 0 : 1;
    }
    std::string bytes;
    if (is_builtin_type(type)) bytes = builtin_from_text(type, o.value);
    else if (modules.supports(type)) bytes = modules.from_json(type, o.value);
    else throw RuntimeError("no type support for '" + type + "' (pass --types MODULE)");

    NodeOptions nopts;
    nopts.domain = g.domain;
    Node node("ferry_pub", nopts);
    auto pub = node.advertise_raw(o.topic, type);
    // Subscribers already registered get the first message too.
    if (registered_subscribers > 0)
        pub.wait_for_subscribers(registered_subscribers,
                                 std::chrono::milliseconds(static_cast<long long>(o.wait * 1000)));
    const std::uint64_t count = o.count_given ? o.count : (o.rate > 0 ? 0 : 1);
    const double rate = o.rate > 0 ? o.rate : 1.0;
    const auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(1.0 / rate));
    auto next = std::chrono::steady_clock::now();
    std::uint64_t sent = 0, failed = 0;
    while (!g_interrupted.load() && (count == 0 || sent + failed < count)) {
        // Counted before publishing: a subscriber that takes this message and leaves at once
        // may already be gone from the count afterwards.
        const std::size_t subscribers = pub.subscriber_count();
        const Status st = pub.publish(bytes.data(), bytes.size());
        if (st) {
            ++sent;
            if (!g.json)
                out("published #" + std::to_string(sent) + " on '" + shown(o.topic) + "' (" + shown(type) + ", " +
                    std::to_string(bytes.size()) + " bytes, " + std::to_string(subscribers) +
                    " subscriber(s))\n");
        } else {
            ++failed;
            std::fprintf(stderr, "ferry: publish on '%s': %s\n", shown(o.topic).c_str(), shown(st.message()).c_str());
        }
        if (count != 0 && sent + failed >= count) break;
        next += period;
        if (!sleep_until_or_interrupted(next)) break;
    }
    if (g.json)
        out(to_string(Json::object()
                          .add("topic", Json::string(o.topic))
                          .add("type", Json::string(type))
                          .add("size", Json::unsigned_integer(bytes.size()))
                          .add("published", Json::unsigned_integer(sent))
                          .add("failed", Json::unsigned_integer(failed))
                          .add("subscribers", Json::unsigned_integer(pub.subscriber_count()))) +
            "\n");
    return failed == 0 ? kExitOk : kExitRuntime;
}

}  // namespace

void add_topic_echo_pub(CLI::App& topic, Globals& g) {
    auto eo = std::make_shared<EchoOptions>();
    auto* echo = topic.add_subcommand("echo", "print messages as they arrive (user types as JSON with --types)");
    echo->fallthrough();
    echo->add_option("topic", eo->topic, "topic name")->required();
    echo->add_option("-n,--count", eo->count, "exit after N messages (default: until Ctrl-C)");
    echo->add_option("--timeout", eo->timeout, "give up after this many seconds (exit 1 if -n was not reached)")
        ->check(CLI::NonNegativeNumber);
    echo->add_option("--max-bytes", eo->max_bytes, "bytes shown of messages that do not decode (default 64)");
    echo->add_flag("-v,--verbose", eo->verbose, "header line (sequence, publisher, size, latency) for every message");
    echo->add_flag("--raw", eo->raw, "always show bytes, never decode");
    echo->callback([&g, eo] { g.action = [&g, eo] { return run_echo(g, *eo); }; });

    auto po = std::make_shared<PubOptions>();
    auto* pub = topic.add_subcommand("pub", "publish a string, a number or (with --types) JSON of a user type");
    pub->fallthrough();
    pub->add_option("topic", po->topic, "topic name")->required();
    pub->add_option("value", po->value, "the message: text, a number, true/false, hex for bytes, or JSON")->required();
    pub->add_option("--type", po->type, "type when the topic does not exist yet (default: string)");
    pub->add_option("-r,--rate", po->rate, "messages per second (default: once; with --rate: until Ctrl-C)")
        ->check(CLI::PositiveNumber);
    pub->add_option("-n,--count", po->count, "number of messages (0: until Ctrl-C)");
    pub->add_option("--wait", po->wait, "seconds to wait for registered subscribers to connect (default 2)")
        ->check(CLI::NonNegativeNumber);
    pub->callback([&g, po, pub] {
        po->count_given = pub->count("--count") > 0;
        g.action = [&g, po] { return run_pub(g, *po); }; });
}

}  // namespace ferry::cli
