// Test helper for the `ferry` command tests: a typed subscriber or publisher in its own process.
//   ferry_tool_helper sub-string TOPIC N     prints "ready", then "got: <text>" per message; exits after N
//   ferry_tool_helper sub-pose TOPIC N       prints "ready", then "pose: frame x y theta [cov...]"
//   ferry_tool_helper pub-pose TOPIC         waits for a subscriber, then publishes one fixed pose
//                                            every 20 ms until killed
// Exit 0 on success, 1 on timeout (20 s) or error.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "pose.hpp"

namespace {

int sub_string(const std::string& topic, int n) {
    ferry::Node node("helper_sub");
    auto sub = node.subscribe<std::string>(topic);
    std::printf("ready\n");
    std::fflush(stdout);
    for (int i = 0; i < n; ++i) {
        auto msg = sub.take(std::chrono::seconds(20));
        if (!msg) return 1;
        std::printf("got: %s\n", msg->c_str());
        std::fflush(stdout);
    }
    return 0;
}

int sub_pose(const std::string& topic, int n) {
    ferry::Node node("helper_sub");
    auto sub = node.subscribe<demo::Pose>(topic);
    std::printf("ready\n");
    std::fflush(stdout);
    for (int i = 0; i < n; ++i) {
        auto p = sub.take(std::chrono::seconds(20));
        if (!p) return 1;
        std::printf("pose: %s %g %g %g [", p->frame.c_str(), p->x, p->y, p->theta);
        for (double c : p->covariance) std::printf(" %g", c);
        std::printf(" ]\n");
        std::fflush(stdout);
    }
    return 0;
}

int pub_pose(const std::string& topic) {
    ferry::Node node("helper_pub");
    auto pub = node.advertise<demo::Pose>(topic);
    std::printf("advertised\n");
    std::fflush(stdout);
    if (!pub.wait_for_subscribers(1, std::chrono::seconds(20))) return 1;
    const demo::Pose pose{"map", 1.5, -2.25, 0.125, {0.5, 0.0, 0.5}};
    while (true) {
        if (auto st = pub.publish(pose); !st) std::fprintf(stderr, "publish: %s\n", st.message().c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a steady stream, not a condition
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: ferry_tool_helper sub-string|sub-pose|pub-pose TOPIC [N]\n");
        return 2;
    }
    const std::string mode = argv[1], topic = argv[2];
    const int n = argc > 3 ? std::atoi(argv[3]) : 1;
    try {
        if (mode == "sub-string") return sub_string(topic, n);
        if (mode == "sub-pose") return sub_pose(topic, n);
        if (mode == "pub-pose") return pub_pose(topic);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry_tool_helper: %s\n", e.what());
        return 1;
    }
    return 2;
}
