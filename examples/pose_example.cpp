// A user type on a topic, with a callback subscriber.
//   pose_example pub [--count N]     publishes poses
//   pose_example sub [--count N]     prints them as they arrive (exits after N)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "pose.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Publishes or subscribes demo::Pose messages"};
    std::string mode;
    int count = 5;
    app.add_option("mode", mode, "pub or sub")->required()->check(CLI::IsMember({"pub", "sub"}));
    app.add_option("--count", count, "messages");
    CLI11_PARSE(app, argc, argv);
    try {
        ferry::Node node("pose_" + mode);
        if (mode == "pub") {
            auto pub = node.advertise<demo::Pose>("pose");
            pub.wait_for_subscribers(1, std::chrono::seconds(10));
            for (int i = 0; i < count; ++i) {
                demo::Pose p{"map", 1.0 * i, 2.0 * i, 0.1 * i, {0.5, 0.0, 0.5}};
                if (auto st = pub.publish(p); !st) std::fprintf(stderr, "publish: %s\n", st.message().c_str());
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            return 0;
        }
        std::atomic<int> got{0};
        auto sub = node.subscribe<demo::Pose>("pose", [&](const demo::Pose& p) {
            std::printf("pose in %s: x=%.1f y=%.1f theta=%.2f (%zu covariance terms)\n", p.frame.c_str(), p.x, p.y,
                        p.theta, p.covariance.size());
            std::fflush(stdout);
            ++got;
        });
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (got < count && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return got >= count ? 0 : 1;
    } catch (const ferry::Error& e) {
        std::fprintf(stderr, "pose_example: %s\n", e.what());
        return 1;
    }
}
