// clock_probe TOPIC: subscribes to TOPIC (transport from FERRY_CONFIG), times take(300 ms) on
// the empty topic with the monotonic clock and prints
//   "realtime <CLOCK_REALTIME seconds> took_ms <ms> got <0|1>"
// test_wall_clock runs it under a shim that shifts the wall clock.
#include <chrono>
#include <cstdio>
#include <ctime>

#include <ferry/node.hpp>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: clock_probe TOPIC\n");
        return 2;
    }
    try {
        ferry::Node node("clock_probe");
        auto sub = node.subscribe<ferry::Bytes>(argv[1]);
        const auto start = std::chrono::steady_clock::now();
        auto sample = sub.take_sample(std::chrono::milliseconds(300));
        const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        struct timespec rt {};
        ::clock_gettime(CLOCK_REALTIME, &rt);
        std::printf("realtime %lld took_ms %lld got %d\n", static_cast<long long>(rt.tv_sec),
                    static_cast<long long>(took.count()), sample ? 1 : 0);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "clock_probe: %s\n", e.what());
        return 1;
    }
}
