// camera_publisher: publishes 4 MiB camera frames at a fixed rate, zero-copy.
//   FERRY_CONFIG=examples/camera/camera.toml camera_publisher [--rate 30] [--count 300]
// Each frame is loaned from the topic's transport (on shm: a chunk of shared memory that every
// subscriber maps), filled in place and published; no byte of the frame is copied.
// Exits 0 when all frames were published, 1 if a publish failed, 2 on bad arguments.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <CLI/CLI.hpp>

#include <ferry/node.hpp>

#include "camera_frame.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Publishes 4 MiB camera frames through a zero-copy loan"};
    std::string topic = "camera/frames";
    double rate = 30;
    std::uint64_t count = 300;
    std::size_t wait_subscribers = 0;
    double wait_timeout = 30;
    app.add_option("--topic", topic, "topic name")->capture_default_str();
    app.add_option("--rate", rate, "frames per second")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--count", count, "frames to publish")->capture_default_str();
    app.add_option("--wait-subscribers", wait_subscribers, "wait for this many subscribers first");
    app.add_option("--wait-timeout", wait_timeout, "seconds to wait for them")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        ferry::Node node("camera");
        auto pub = node.advertise<camera::Frame>(topic);
        std::printf("camera_publisher: %zu-byte frames on '%s' over %s, %.1f fps, domain %s\n", sizeof(camera::Frame),
                    topic.c_str(), pub.qos().transport.c_str(), rate, node.domain().c_str());
        std::fflush(stdout);
        if (wait_subscribers > 0 &&
            !pub.wait_for_subscribers(wait_subscribers, std::chrono::milliseconds(static_cast<long>(wait_timeout * 1000)))) {
            std::fprintf(stderr, "camera_publisher: %zu subscriber(s) did not appear within %.1f s\n", wait_subscribers,
                         wait_timeout);
            return 1;
        }
        const auto period = std::chrono::nanoseconds(static_cast<long long>(1e9 / rate));
        auto next = std::chrono::steady_clock::now();
        std::uint64_t failed = 0;
        for (std::uint64_t n = 0; n < count; ++n) {
            auto frame = pub.loan();  // a camera::Frame inside the transport's buffer
            ferry::Status st = frame.status();
            if (frame) {
                // "Capture": a driver would DMA or decode into frame->pixels here.
                constexpr std::size_t kRow = camera::kWidth * camera::kBytesPerPixel;
                for (std::uint32_t y = 0; y < camera::kHeight; ++y)
                    std::memset(frame->pixels + y * kRow, camera::row_marker(n, y), kRow);
                frame->header.frame = n;
                frame->header.width = camera::kWidth;
                frame->header.height = camera::kHeight;
                frame->header.bytes_per_pixel = camera::kBytesPerPixel;
                frame->header.timestamp_ns = camera::now_ns();
                st = frame.publish();
            }
            if (!st) {
                ++failed;
                std::fprintf(stderr, "camera_publisher: frame %llu: %s\n", static_cast<unsigned long long>(n),
                             st.message().c_str());
            }
            next += period;
            std::this_thread::sleep_until(next);
        }
        std::printf("camera_publisher: sent %llu failed %llu\n", static_cast<unsigned long long>(count - failed),
                    static_cast<unsigned long long>(failed));
        return failed == 0 ? 0 : 1;
    } catch (const ferry::Error& e) {
        std::fprintf(stderr, "camera_publisher: %s\n", e.what());
        return 1;
    }
}
