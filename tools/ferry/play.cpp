// ferry play: republish an MCAP recording with its original timing (scaled by --rate).
#include <sys/prctl.h>

#include <algorithm>
#include <cstdint>
#include <vector>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>

#include "bus.hpp"
#include "cli.hpp"
#include "mcap.hpp"
#include "output.hpp"
#include "recording.hpp"
#include "topics.hpp"

namespace ferry::cli {

namespace {

struct PlayOptions {
    std::string path;
    std::vector<std::string> topics;
    double rate = 1.0;
    bool loop = false;
    double start = 0;
    double wait = 1.0;
    bool timing = false;
};

// Sleeps until `t`: in the kernel until shortly before, then spinning, so a message leaves
// within microseconds of its due time rather than a timer slack or a scheduler tick late.
bool wait_until(std::chrono::steady_clock::time_point t) {
    constexpr auto kSpin = std::chrono::microseconds(200);
    if (t - std::chrono::steady_clock::now() > kSpin && !sleep_until_or_interrupted(t - kSpin)) return false;
    while (std::chrono::steady_clock::now() < t) {
        if (g_interrupted.load()) return false;
    }
    return true;
}

int run_play(const Globals& g, const PlayOptions& o) {
    // The kernel may fire a sleeping thread's timer up to its slack (50 us by default) late.
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    mcap::Reader reader(o.path);
    const mcap::FileInfo info = reader.scan();  // validates the whole file before anything is published
    if (!info.finished)
        std::fprintf(stderr, "ferry: %s: not finished; playing the %llu recovered message(s)\n", shown(o.path).c_str(),
                     static_cast<unsigned long long>(info.message_count));
    auto selected = [&](const std::string& topic) {
        return o.topics.empty() || std::find(o.topics.begin(), o.topics.end(), topic) != o.topics.end();
    };

    bus::Bus bus("ferry_play", g.domain);
    std::map<std::string, std::unique_ptr<bus::Outlet>> outlets;  // by topic
    for (const auto& [id, c] : info.channels) {
        if (!selected(c.topic) || outlets.count(c.topic)) continue;
        auto it = c.metadata.find(kTypeKey);
        std::string type = it != c.metadata.end() ? it->second : "";
        if (type.empty() && info.schemas.count(c.schema_id)) type = info.schemas.at(c.schema_id).name;
        outlets[c.topic] = std::make_unique<bus::Outlet>(bus.outlet(c.topic, type));
    }
    // Subscribers already registered get the first message too (as `ferry topic pub` does).
    for (auto& [topic, outlet] : outlets) {
        TopicInfo ti;
        std::size_t subs = 0;
        if (find_topic(g.domain, topic, ti))
            for (const auto& e : ti.endpoints) subs += e.publisher ? 0 : 1;
        if (subs) outlet->wait_for_subscribers(subs, std::chrono::milliseconds(static_cast<long long>(o.wait * 1000)));
    }

    const std::uint64_t skip_until = info.start_time + static_cast<std::uint64_t>(o.start * 1e9);
    std::uint64_t published = 0, failed = 0;
    std::vector<std::int64_t> late_ns;  // --timing: when publish() was called minus when it was due
    if (o.timing) late_ns.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(info.message_count, 1u << 24)));
    bool again = o.loop;
    do {
        const std::uint64_t before = published + failed;
        bool first = true;
        std::uint64_t t0 = 0;
        std::chrono::steady_clock::time_point wall0;
        mcap::Reader pass(o.path);
        pass.scan([&](const mcap::Channel& c, const mcap::Message& m) {
            if (g_interrupted.load()) return false;
            if (m.log_time < skip_until) return true;
            auto it = outlets.find(c.topic);
            if (it == outlets.end()) return true;
            if (first) {
                first = false;
                t0 = m.log_time;
                wall0 = std::chrono::steady_clock::now();
            }
            // Every message has an absolute deadline from the start of the pass: a late one does
            // not delay the next (no drift accumulates).
            const double offset_s = m.log_time > t0 ? static_cast<double>(m.log_time - t0) * 1e-9 / o.rate : 0.0;
            const auto due = wall0 + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::duration<double>(offset_s));
            if (!wait_until(due)) return false;
            if (o.timing) late_ns.push_back((std::chrono::steady_clock::now() - due).count());
            std::string error;
            if (it->second->publish(m.data, m.size, error)) {
                ++published;
            } else {
                ++failed;
                std::fprintf(stderr, "ferry: play: publish on '%s': %s\n", shown(c.topic).c_str(), shown(error).c_str());
            }
            return true;
        });
        if (published + failed == before) again = false;  // nothing to play: looping would spin
    } while (again && !g_interrupted.load());

    std::sort(late_ns.begin(), late_ns.end());
    auto pick = [&](double q) {
        return late_ns.empty() ? 0.0
                               : static_cast<double>(late_ns[std::min(late_ns.size() - 1,
                                                                      static_cast<std::size_t>(q * late_ns.size()))]) *
                                     1e-3;
    };
    if (g.json) {
        auto j = Json::object()
                     .add("file", Json::string(o.path))
                     .add("published", Json::unsigned_integer(published))
                     .add("failed", Json::unsigned_integer(failed));
        if (o.timing)
            j.add("timing", Json::object()
                                .add("messages", Json::unsigned_integer(late_ns.size()))
                                .add("late_p50_us", Json::number(pick(0.5)))
                                .add("late_p99_us", Json::number(pick(0.99)))
                                .add("late_max_us", Json::number(late_ns.empty() ? 0.0 : late_ns.back() * 1e-3)));
        out(to_string(j) + "\n");
    } else {
        std::string text = "played " + std::to_string(published) + " message(s) from " + shown(o.path) +
                           (failed ? ", " + std::to_string(failed) + " failed" : "") + "\n";
        if (o.timing)
            text += "timing: " + std::to_string(late_ns.size()) + " message(s) published after their due time by " +
                    "median " + fixed(pick(0.5), 1) + " us, p99 " + fixed(pick(0.99), 1) + " us, max " +
                    fixed(late_ns.empty() ? 0.0 : late_ns.back() * 1e-3, 1) + " us\n";
        out(text);
    }
    return failed ? kExitRuntime : kExitOk;
}

}  // namespace

void add_play_command(CLI::App& parent, Globals& g) {
    auto o = std::make_shared<PlayOptions>();
    auto* play = parent.add_subcommand("play", "republish an MCAP recording with its original timing");
    play->fallthrough();
    play->add_option("file", o->path, "MCAP file")->required();
    play->add_option("--topics", o->topics, "only these topics");
    play->add_option("-r,--rate", o->rate, "speed factor (default 1: original timing)")->check(CLI::PositiveNumber);
    play->add_flag("-l,--loop", o->loop, "start over at the end, until Ctrl-C");
    play->add_option("--start", o->start, "skip the first SECONDS of the recording")->check(CLI::NonNegativeNumber);
    play->add_option("--wait", o->wait, "seconds to wait for registered subscribers to connect (default 1)")
        ->check(CLI::NonNegativeNumber);
    play->add_flag("--timing", o->timing,
                   "measure: print how late each publish was against its schedule (median, p99, max)");
    play->callback([&g, o] { g.action = [&g, o] { return run_play(g, *o); }; });
}

}  // namespace ferry::cli
