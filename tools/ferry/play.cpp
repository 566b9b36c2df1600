// ferry play: republish an MCAP recording with its original timing (scaled by --rate).
#include <algorithm>
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
};

// Sleeps until `t`: in the kernel until shortly before, then spinning, so a message leaves
// within microseconds of its due time rather than a scheduler tick late.
bool wait_until(std::chrono::steady_clock::time_point t) {
    constexpr auto kSpin = std::chrono::microseconds(300);
    if (t - std::chrono::steady_clock::now() > kSpin && !sleep_until_or_interrupted(t - kSpin)) return false;
    while (std::chrono::steady_clock::now() < t) {
        if (g_interrupted.load()) return false;
    }
    return true;
}

int run_play(const Globals& g, const PlayOptions& o) {
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
            const double offset_s = m.log_time > t0 ? static_cast<double>(m.log_time - t0) * 1e-9 / o.rate : 0.0;
            if (!wait_until(wall0 + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::duration<double>(offset_s))))
                return false;
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

    if (g.json)
        out(to_string(Json::object()
                          .add("file", Json::string(o.path))
                          .add("published", Json::unsigned_integer(published))
                          .add("failed", Json::unsigned_integer(failed))) +
            "\n");
    else
        out("played " + std::to_string(published) + " message(s) from " + shown(o.path) +
            (failed ? ", " + std::to_string(failed) + " failed" : "") + "\n");
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
    play->callback([&g, o] { g.action = [&g, o] { return run_play(g, *o); }; });
}

}  // namespace ferry::cli
