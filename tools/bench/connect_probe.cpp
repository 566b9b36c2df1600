// connect_probe: how long a new subscriber takes to receive from a running publisher.
//   connect_probe --topic connect [--timeout 10]
// Prints "node_ms N connect_ms M": the Node's creation (joining the domain), then the time
// from subscribe() to the first message (the publisher must publish often, e.g. every 1 ms).
#include <chrono>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include <ferry/ferry.hpp>

int main(int argc, char** argv) {
    CLI::App app{"connect_probe: time for a new subscriber to receive from a running publisher"};
    std::string topic;
    double timeout = 10;
    app.add_option("--topic", topic, "topic a running publisher publishes on often")->required();
    app.add_option("--timeout", timeout, "seconds before giving up");
    CLI11_PARSE(app, argc, argv);
    using Clock = std::chrono::steady_clock;
    auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    try {
        const auto t0 = Clock::now();
        ferry::Node node("connect_probe");
        const auto t1 = Clock::now();
        auto sub = node.subscribe_raw(topic, "");  // any type: the talker publishes bytes
        auto msg = sub.take_sample(std::chrono::milliseconds(static_cast<long>(timeout * 1000)));
        const auto t2 = Clock::now();
        if (!msg) {
            std::fprintf(stderr, "connect_probe: nothing received within %.1f s: %s\n", timeout,
                         msg.status().message().c_str());
            return 1;
        }
        std::printf("node_ms %.2f connect_ms %.2f\n", ms(t1 - t0), ms(t2 - t1));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "connect_probe: %s\n", e.what());
        return 1;
    }
}
