// camera_subscriber: receives camera frames in place and reports frame rate and latency.
//   FERRY_CONFIG=examples/camera/camera.toml camera_subscriber [--count 300] [--timeout 30]
// Prints one line per second (frames in that second, fps, latency p50/max) and a summary at the
// end; latency is from the publisher's timestamp to the moment the frame is in our hands.
// Exits 0 once --count frames arrived intact (or, without --count, at --timeout), 1 otherwise.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <CLI/CLI.hpp>

#include <ferry/node.hpp>

#include "camera_frame.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Window {
    std::vector<double> latency_us;
    std::uint64_t frames = 0;

    void print(const char* label, double fps) {
        if (latency_us.empty()) {
            std::printf("camera_subscriber: %s: no frames\n", label);
            return;
        }
        std::sort(latency_us.begin(), latency_us.end());
        std::printf("camera_subscriber: %s: %llu frames, %.1f fps, latency p50 %.0f us max %.0f us\n", label,
                    static_cast<unsigned long long>(frames), fps, latency_us[latency_us.size() / 2], latency_us.back());
        std::fflush(stdout);
    }
};

// Samples a few rows: a frame whose rows disagree with its number was torn or overwritten.
bool frame_intact(const camera::Frame& f) {
    constexpr std::size_t kRow = camera::kWidth * camera::kBytesPerPixel;
    if (f.header.width != camera::kWidth || f.header.height != camera::kHeight) return false;
    for (std::uint32_t y = 0; y < camera::kHeight; y += 64) {
        if (f.pixels[y * kRow] != camera::row_marker(f.header.frame, y)) return false;
        if (f.pixels[y * kRow + kRow - 1] != camera::row_marker(f.header.frame, y)) return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Receives camera frames zero-copy and reports frame rate and latency"};
    std::string topic = "camera/frames";
    std::uint64_t count = 0;
    double timeout = 30;
    app.add_option("--topic", topic, "topic name")->capture_default_str();
    app.add_option("--count", count, "stop after this many frames (0: run until --timeout)");
    app.add_option("--timeout", timeout, "seconds to run (with --count: to wait for the frames)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        ferry::Node node("camera_viewer");
        auto sub = node.subscribe<camera::Frame>(topic);
        std::printf("camera_subscriber: '%s' over %s, domain %s\n", topic.c_str(), sub.qos().transport.c_str(),
                    node.domain().c_str());
        std::fflush(stdout);

        const auto start = Clock::now();
        const auto deadline = start + std::chrono::milliseconds(static_cast<long>(timeout * 1000));
        Window second, total;
        auto window_start = start;
        Clock::time_point first_frame{}, last_frame_at{};
        std::uint64_t received = 0, lost = 0, damaged = 0;
        std::int64_t last_frame = -1;
        while ((count == 0 || received < count) && Clock::now() < deadline) {
            auto wait = std::min<Clock::duration>(deadline - Clock::now(), window_start + std::chrono::seconds(1) - Clock::now());
            auto frame = sub.take_sample(std::max<Clock::duration>(wait, Clock::duration::zero()));
            const auto now = Clock::now();
            if (!frame && frame.status().code() != ferry::Errc::timeout) {
                std::fprintf(stderr, "camera_subscriber: %s\n", frame.status().message().c_str());
                return 1;
            }
            if (frame) {
                const double latency = static_cast<double>(camera::now_ns() - frame->header.timestamp_ns) / 1e3;
                if (received++ == 0) first_frame = now;
                last_frame_at = now;
                const auto n = static_cast<std::int64_t>(frame->header.frame);
                if (last_frame >= 0 && n > last_frame + 1) lost += static_cast<std::uint64_t>(n - last_frame - 1);
                last_frame = n;
                if (!frame_intact(*frame)) ++damaged;
                for (Window* w : {&second, &total}) {
                    w->latency_us.push_back(latency);
                    ++w->frames;
                }
            }
            if (now - window_start >= std::chrono::seconds(1)) {
                if (received > 0)
                    second.print("last second", static_cast<double>(second.frames) /
                                                    std::chrono::duration<double>(now - window_start).count());
                second = Window{};
                window_start = now;
            }
        }
        // Frame rate over the span the frames arrived in: intervals between the first and the last.
        const double span = std::chrono::duration<double>(last_frame_at - first_frame).count();
        total.print("total", received > 1 && span > 0 ? static_cast<double>(received - 1) / span : 0.0);
        std::printf("camera_subscriber: received %llu lost %llu damaged %llu\n", static_cast<unsigned long long>(received),
                    static_cast<unsigned long long>(lost), static_cast<unsigned long long>(damaged));
        const bool ok = damaged == 0 && received > 0 && (count == 0 || received == count);
        return ok ? 0 : 1;
    } catch (const ferry::Error& e) {
        std::fprintf(stderr, "camera_subscriber: %s\n", e.what());
        return 1;
    }
}
