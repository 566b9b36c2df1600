// listener: receives N messages from a topic and checks each payload's checksum.
//   listener --topic chatter --count 100 [--timeout 30]
// Exits 0 once N messages arrived, 1 on timeout or error. The last line always reads
// "received N corrupt M". The line before it counts per-publisher order errors:
// "publishers P out_of_order K".
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <map>

#include <CLI/CLI.hpp>

#include <ferry/node.hpp>

#include "checksum.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Receives and checks messages from a ferry topic"};
    std::string topic;
    std::uint64_t count = 10;
    double timeout = 30;
    bool quiet = false;
    int progress_ms = 0;
    app.add_option("--topic", topic, "topic name")->required();
    app.add_option("--count", count, "messages to receive")->required();
    app.add_option("--timeout", timeout, "seconds before giving up");
    app.add_flag("--quiet", quiet, "print only the summary");
    app.add_option("--progress-ms", progress_ms, "print 'progress received R corrupt C' this often (for scripts)");
    CLI11_PARSE(app, argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines appear as they happen, even in a pipe

    std::uint64_t received = 0, corrupt = 0, out_of_order = 0;
    std::map<std::uint64_t, std::uint64_t> last_index;  // per publisher
    int code = 1;
    try {
        ferry::Node node("listener");
        auto sub = node.subscribe<ferry::Bytes>(topic);
        if (!quiet)
            std::printf("listener: topic '%s' on %s, domain %s\n", topic.c_str(), sub.qos().transport.c_str(),
                        node.domain().c_str());
        std::fflush(stdout);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(timeout * 1000));
        const auto progress_every = std::chrono::milliseconds(progress_ms);
        auto next_progress = std::chrono::steady_clock::now() + progress_every;
        while (received < count) {
            auto until = deadline;
            if (progress_ms > 0) {
                if (std::chrono::steady_clock::now() >= next_progress) {
                    std::printf("progress received %llu corrupt %llu\n", static_cast<unsigned long long>(received),
                                static_cast<unsigned long long>(corrupt));
                    std::fflush(stdout);
                    next_progress += progress_every;
                }
                until = std::min(deadline, next_progress);
            }
            // A view of the bytes where they lie (in shared memory on shm): no copy.
            auto sample = sub.take_sample(until - std::chrono::steady_clock::now());
            if (!sample) {
                if (sample.status().code() != ferry::Errc::timeout) {
                    std::fprintf(stderr, "listener: %s\n", sample.status().message().c_str());
                    break;
                }
                if (std::chrono::steady_clock::now() < deadline) continue;
                break;
            }
            ++received;
            std::uint64_t index = 0;
            if (!example::check_payload(sample.data(), sample.size(), index)) {
                ++corrupt;
                continue;
            }
            auto [it, first] = last_index.emplace(sample.info().publisher_id, index);
            if (!first) {
                if (index <= it->second) ++out_of_order;
                it->second = index;
            }
            if (!quiet && count <= 20)
                std::printf("listener: got #%llu (%zu bytes) from publisher %llx\n", static_cast<unsigned long long>(index),
                            sample.size(), static_cast<unsigned long long>(sample.info().publisher_id));
        }
        if (received == count) code = 0;
        else std::fprintf(stderr, "listener: timed out after %.1f s\n", timeout);
    } catch (const ferry::Error& e) {
        std::fprintf(stderr, "listener: %s\n", e.what());
    }
    std::printf("publishers %zu out_of_order %llu\n", last_index.size(), static_cast<unsigned long long>(out_of_order));
    std::printf("received %llu corrupt %llu\n", static_cast<unsigned long long>(received), static_cast<unsigned long long>(corrupt));
    return code;
}
