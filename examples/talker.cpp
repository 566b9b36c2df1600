// talker: publishes N checksummed messages on a topic, for people and for scripts.
//   talker --topic chatter --count 100 [--size 64] [--rate 10] [--wait-subscribers 1]
// Exits 0 when all N were published, 1 if a publish failed (timeout / queue full) or the
// subscribers did not show up, 2 on bad arguments.
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include <ferry/node.hpp>

#include "checksum.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Publishes checksummed messages on a ferry topic"};
    std::string topic;
    std::uint64_t count = 10;
    std::size_t size = 64;
    double rate = 0;
    std::size_t wait_subscribers = 0;
    double wait_timeout = 30;
    bool quiet = false;
    app.add_option("--topic", topic, "topic name")->required();
    app.add_option("--count", count, "messages to publish")->required();
    app.add_option("--size", size, "payload bytes (at least 12)")->check(CLI::Range(std::size_t{12}, std::size_t{1} << 32));
    app.add_option("--rate", rate, "messages per second (0: as fast as possible)");
    app.add_option("--wait-subscribers", wait_subscribers, "wait for this many subscribers first");
    app.add_option("--wait-timeout", wait_timeout, "seconds to wait for them");
    app.add_flag("--quiet", quiet, "print only the summary");
    CLI11_PARSE(app, argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines appear as they happen, even in a pipe

    try {
        ferry::Node node("talker");
        auto pub = node.advertise<ferry::Bytes>(topic);
        if (!quiet)
            std::printf("talker: topic '%s' on %s, domain %s\n", topic.c_str(), pub.qos().transport.c_str(),
                        node.domain().c_str());
        if (wait_subscribers > 0 &&
            !pub.wait_for_subscribers(wait_subscribers, std::chrono::milliseconds(static_cast<long>(wait_timeout * 1000)))) {
            std::fprintf(stderr, "talker: %zu subscriber(s) did not appear within %.1f s\n", wait_subscribers, wait_timeout);
            return 1;
        }
        const auto period = rate > 0 ? std::chrono::nanoseconds(static_cast<long long>(1e9 / rate)) : std::chrono::nanoseconds(0);
        auto next = std::chrono::steady_clock::now();
        std::uint64_t failed = 0;
        for (std::uint64_t i = 0; i < count; ++i) {
            auto loan = pub.loan(size);  // zero-copy on shm, one copy elsewhere
            ferry::Status st = loan.status();
            if (loan) {
                example::fill_payload(loan.data(), size, i);
                st = loan.publish();
            }
            if (!st) {
                ++failed;
                std::fprintf(stderr, "talker: message %llu: %s\n", static_cast<unsigned long long>(i), st.message().c_str());
            } else if (!quiet && count <= 20) {
                std::printf("talker: sent #%llu (%zu bytes)\n", static_cast<unsigned long long>(i), size);
            }
            if (period.count() > 0) {
                next += period;
                std::this_thread::sleep_until(next);
            }
        }
        std::printf("sent %llu failed %llu\n", static_cast<unsigned long long>(count - failed),
                    static_cast<unsigned long long>(failed));
        return failed == 0 ? 0 : 1;
    } catch (const ferry::Error& e) {
        std::fprintf(stderr, "talker: %s\n", e.what());
        return 1;
    }
}
