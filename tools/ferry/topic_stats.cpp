// ferry topic hz / bw / delay: rate, bandwidth and latency over a sliding window of messages,
// shown once a second until Ctrl-C or --duration, then a summary.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include <CLI/CLI.hpp>

#include <ferry/node.hpp>

#include "topics.hpp"

namespace ferry::cli {

namespace {

enum class Kind { hz, bw, delay };

struct StatsOptions {
    Kind kind = Kind::hz;
    std::string topic;
    double duration = 0;
    std::size_t window = 10000;
};

struct Point {
    std::int64_t arrival_ns;
    std::size_t size;
    std::int64_t latency_ns;
};

struct Summary {
    std::size_t n = 0;
    double mean = 0, min = 0, max = 0, stddev = 0;
};

template <class F>
Summary summarize(std::size_t n, F&& value) {
    Summary s;
    s.n = n;
    if (n == 0) return s;
    s.min = std::numeric_limits<double>::max();
    s.max = std::numeric_limits<double>::lowest();
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double v = value(i);
        sum += v;
        s.min = std::min(s.min, v);
        s.max = std::max(s.max, v);
    }
    s.mean = sum / static_cast<double>(n);
    double sq = 0;
    for (std::size_t i = 0; i < n; ++i) sq += (value(i) - s.mean) * (value(i) - s.mean);
    s.stddev = std::sqrt(sq / static_cast<double>(n));
    return s;
}

class Window {
public:
    Window(Kind kind, std::size_t capacity) : kind_(kind), capacity_(std::max<std::size_t>(capacity, 2)) {}

    void add(const Point& p) {
        points_.push_back(p);
        if (points_.size() > capacity_) points_.pop_front();
        ++total_;
    }
    std::uint64_t total() const { return total_; }
    std::size_t size() const { return points_.size(); }
    bool ready() const { return kind_ == Kind::delay ? !points_.empty() : points_.size() >= 2; }

    // Seconds between consecutive arrivals (hz), message sizes (bw), latencies (delay).
    Summary stats() const {
        switch (kind_) {
            case Kind::hz:
                return summarize(points_.empty() ? 0 : points_.size() - 1, [&](std::size_t i) {
                    return (points_[i + 1].arrival_ns - points_[i].arrival_ns) * 1e-9;
                });
            case Kind::bw:
                return summarize(points_.size(), [&](std::size_t i) { return static_cast<double>(points_[i].size); });
            case Kind::delay:
                return summarize(points_.size(), [&](std::size_t i) { return points_[i].latency_ns * 1e-9; });
        }
        return {};
    }
    // Bytes per second over the window (the first message opens the interval).
    double bytes_per_s() const {
        if (points_.size() < 2) return 0;
        const double span = (points_.back().arrival_ns - points_.front().arrival_ns) * 1e-9;
        double bytes = 0;
        for (std::size_t i = 1; i < points_.size(); ++i) bytes += static_cast<double>(points_[i].size);
        return span > 0 ? bytes / span : 0;
    }

private:
    Kind kind_;
    std::size_t capacity_;
    std::deque<Point> points_;
    std::uint64_t total_ = 0;
};

std::string line(Kind kind, const Window& w) {
    if (!w.ready()) return "no messages yet";
    const Summary s = w.stats();
    switch (kind) {
        case Kind::hz:
            return "average rate: " + fixed(s.mean > 0 ? 1.0 / s.mean : 0, 3) + " Hz  min: " + human_seconds(s.min) +
                   "  max: " + human_seconds(s.max) + "  std dev: " + human_seconds(s.stddev) +
                   "  window: " + std::to_string(w.size());
        case Kind::bw:
            return "bandwidth: " + human_bytes(w.bytes_per_s()) + "/s from " + std::to_string(w.size()) +
                   " messages  size mean: " + human_bytes(s.mean) + "  min: " + human_bytes(s.min) +
                   "  max: " + human_bytes(s.max) + "  std dev: " + human_bytes(s.stddev);
        case Kind::delay:
            return "average delay: " + human_seconds(s.mean) + "  min: " + human_seconds(s.min) + "  max: " +
                   human_seconds(s.max) + "  std dev: " + human_seconds(s.stddev) + "  window: " +
                   std::to_string(w.size());
    }
    return {};
}

Json summary_json(const StatsOptions& o, const Window& w, double elapsed) {
    auto j = Json::object()
                 .add("topic", Json::string(o.topic))
                 .add("messages", Json::unsigned_integer(w.total()))
                 .add("window", Json::unsigned_integer(w.size()))
                 .add("duration_s", Json::number(elapsed));
    const bool ok = w.ready();
    const Summary s = w.stats();
    auto num = [&](double v) { return ok ? Json::number(v) : Json::null(); };
    switch (o.kind) {
        case Kind::hz:
            j.add("rate_hz", num(s.mean > 0 ? 1.0 / s.mean : 0))
                .add("period_mean_s", num(s.mean))
                .add("period_min_s", num(s.min))
                .add("period_max_s", num(s.max))
                .add("period_std_s", num(s.stddev));
            break;
        case Kind::bw:
            j.add("bytes_per_s", num(w.bytes_per_s()))
                .add("size_mean", num(s.mean))
                .add("size_min", num(s.min))
                .add("size_max", num(s.max))
                .add("size_std", num(s.stddev));
            break;
        case Kind::delay:
            j.add("delay_mean_s", num(s.mean))
                .add("delay_min_s", num(s.min))
                .add("delay_max_s", num(s.max))
                .add("delay_std_s", num(s.stddev));
            break;
    }
    return j;
}

int run_stats(const Globals& g, const StatsOptions& o) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = o.duration > 0 ? start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                       std::chrono::duration<double>(o.duration))
                                         : std::chrono::steady_clock::time_point::max();
    TopicInfo info;
    if (!wait_for_topic(g, o.topic, o.duration > 0 ? o.duration : -1, info) && !g_interrupted.load())
        throw RuntimeError("topic '" + o.topic + "' did not appear in domain " + g.domain + " within " +
                           fixed(o.duration, 1) + " s");
    Window w(o.kind, o.window);
    if (!g_interrupted.load()) {
        std::unique_ptr<Node> node;
        auto sub = subscribe_any(g, "ferry_" + std::string(o.kind == Kind::hz ? "hz" : o.kind == Kind::bw ? "bw" : "delay"),
                                 info, node);
        auto next_print = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        while (!g_interrupted.load()) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline) break;
            if (!g.json && now >= next_print) {
                out(line(o.kind, w) + "\n");
                next_print += std::chrono::seconds(1);
            }
            const auto wait = std::min<std::chrono::nanoseconds>(std::min(deadline, next_print) - now,
                                                                 std::chrono::milliseconds(100));
            auto s = sub.take_sample(wait);
            if (!s) {
                if (s.status().code() == Errc::timeout) continue;
                throw RuntimeError("take on '" + o.topic + "': " + s.status().message());
            }
            const std::int64_t t = steady_now_ns();
            w.add(Point{t, s.size(), wall_now_ns() - s.info().timestamp_ns});
        }
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (g.json) out(to_string(summary_json(o, w, elapsed)) + "\n");
    else out("summary (" + std::to_string(w.total()) + " messages in " + fixed(elapsed, 1) + " s): " + line(o.kind, w) + "\n");
    if (!w.ready() && !g_interrupted.load())
        throw RuntimeError(std::string(o.kind == Kind::delay ? "no message" : "fewer than 2 messages") + " on '" +
                           o.topic + "' within " + fixed(elapsed, 1) + " s");
    return kExitOk;
}

void add_one(CLI::App& topic, Globals& g, Kind kind, const char* name, const char* what) {
    auto o = std::make_shared<StatsOptions>();
    o->kind = kind;
    auto* cmd = topic.add_subcommand(name, what);
    cmd->fallthrough();
    cmd->add_option("topic", o->topic, "topic name")->required();
    cmd->add_option("--duration", o->duration, "stop after this many seconds and print a summary (default: Ctrl-C)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--window", o->window, "messages in the sliding window (default 10000)")
        ->check(CLI::Range(std::size_t{2}, std::size_t{10000000}));
    cmd->callback([&g, o] { g.action = [&g, o] { return run_stats(g, *o); }; });
}

}  // namespace

void add_topic_stats(CLI::App& topic, Globals& g) {
    add_one(topic, g, Kind::hz, "hz", "message rate: mean, min, max and std dev of the period");
    add_one(topic, g, Kind::bw, "bw", "bandwidth and message sizes");
    add_one(topic, g, Kind::delay, "delay", "latency from publish to receipt (same host, steady clock)");
}

}  // namespace ferry::cli
