// A load-test process: publishes or subscribes several topics for a while and reports what it
// sent or got, plus its resident memory over time.
//   load_peer pub <seconds> <rate per topic> <size> topic...
//   load_peer sub <seconds> topic...            (stops after <seconds> of silence at the end)
// Output: "sent TOPIC N" / "got TOPIC N gaps G corrupt C", "rss_kb START END".
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ferry/node.hpp>

namespace {
long rss_kb() {
    std::ifstream in("/proc/self/statm");
    long pages = 0, resident = 0;
    in >> pages >> resident;
    return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) return 2;
    const std::string role = argv[1];
    const double seconds = std::atof(argv[2]);
    ferry::Node node("load_" + role);
    using Clock = std::chrono::steady_clock;
    if (role == "pub") {
        const double rate = std::atof(argv[3]);
        const std::size_t size = std::strtoul(argv[4], nullptr, 10);
        std::vector<std::string> topics(argv + 5, argv + argc);
        std::vector<ferry::Publisher<ferry::Bytes>> pubs;
        for (auto& t : topics) pubs.push_back(node.advertise<ferry::Bytes>(t));
        for (auto& p : pubs)
            if (!p.wait_for_subscribers(1, std::chrono::seconds(20))) return 3;
        std::vector<std::uint64_t> sent(topics.size(), 0), failed(topics.size(), 0);
        const auto period = std::chrono::nanoseconds(static_cast<long long>(1e9 / rate));
        const auto end = Clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
        auto next = Clock::now();
        const long rss_start = rss_kb();
        while (Clock::now() < end) {
            for (std::size_t i = 0; i < pubs.size(); ++i) {
                auto loan = pubs[i].loan(size);
                if (!loan.valid()) { ++failed[i]; continue; }
                std::memset(loan.data(), static_cast<int>(sent[i] & 0xff), size);
                if (loan.publish()) ++sent[i]; else ++failed[i];
            }
            next += period;
            std::this_thread::sleep_until(next);
        }
        for (std::size_t i = 0; i < topics.size(); ++i)
            std::printf("sent %s %llu failed %llu\n", topics[i].c_str(), static_cast<unsigned long long>(sent[i]),
                        static_cast<unsigned long long>(failed[i]));
        std::printf("rss_kb %ld %ld\n", rss_start, rss_kb());
        return 0;
    }
    std::vector<std::string> topics(argv + 3, argv + argc);
    struct Stats {
        std::uint64_t got = 0, gaps = 0, corrupt = 0;
        std::map<std::uint64_t, std::uint64_t> last_seq;
    };
    std::mutex mu;
    std::map<std::string, Stats> stats;
    auto last_message = Clock::now();
    std::vector<ferry::Subscription> subs;
    for (auto& t : topics) {
        subs.push_back(node.subscribe_raw(t, "bytes", [&, t](ferry::RawSample& s) {
            std::lock_guard<std::mutex> lock(mu);
            auto& st = stats[t];
            ++st.got;
            const std::size_t n = s.size();
            if (n && (s.data()[0] != s.data()[n - 1] || s.data()[0] != s.data()[n / 2])) ++st.corrupt;
            auto [it, first] = st.last_seq.emplace(s.info().publisher_id, s.info().sequence);
            if (!first) {
                if (s.info().sequence != it->second + 1) st.gaps += s.info().sequence - it->second - 1;
                it->second = s.info().sequence;
            }
            last_message = Clock::now();
        }));
    }
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(seconds * 250)));
    const long rss_early = rss_kb();
    // Runs for `seconds`, then until the topics have been quiet for a second.
    while (true) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::lock_guard<std::mutex> lock(mu);
        const auto now = Clock::now();
        if (now - start > std::chrono::milliseconds(static_cast<long>(seconds * 1000)) && now - last_message > std::chrono::seconds(1))
            break;
    }
    const long rss_end = rss_kb();
    subs.clear();
    for (auto& t : topics)
        std::printf("got %s %llu gaps %llu corrupt %llu\n", t.c_str(), static_cast<unsigned long long>(stats[t].got),
                    static_cast<unsigned long long>(stats[t].gaps), static_cast<unsigned long long>(stats[t].corrupt));
    std::printf("rss_kb %ld %ld\n", rss_early, rss_end);
    return 0;
}
