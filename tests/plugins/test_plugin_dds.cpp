// The dds plugin through the SDK interface: real Cyclone DDS on the loopback interface, real
// processes. What the conformance suite skips on a network transport (a stopped reader is
// DDS's full queue) is checked here.
#include <csignal>
#include <cstring>
#include <thread>

#include <catch2/catch.hpp>

#include <ferry/transport/transport.hpp>

#include "dds_transport.hpp"
#include "support/dds_config.hpp"
#include "support/load_plugin.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;
using namespace ferry::transport;
using ferry::test::Child;

namespace {

TopicParams params_for(const std::string& domain, const std::string& topic, Overflow overflow, std::uint64_t id) {
    TopicParams p;
    p.domain = domain;
    p.topic = topic;
    p.endpoint_id = id;
    p.depth = 4;
    p.overflow = overflow;
    p.max_message_size = (16u << 20) + 64;
    p.block_timeout = 200ms;
    p.options = {{"domain_id", std::to_string(ferry::test::dds_domain_id(domain))}, {"interfaces", "lo"}};
    return p;
}

void fill(std::byte* p, std::size_t n, std::uint64_t seed) {
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((seed * 131 + i * 7) & 0xff);
}

bool intact(const std::byte* p, std::size_t n, std::uint64_t seed) {
    for (std::size_t i = 0; i < n; ++i)
        if (p[i] != static_cast<std::byte>((seed * 131 + i * 7) & 0xff)) return false;
    return true;
}

Status send(Writer& w, std::size_t n, std::uint64_t seed) {
    LoanBuffer buf;
    if (auto st = w.loan(n, buf); !st) return st;
    fill(buf.data, n, seed);
    return w.commit(buf, n);
}

bool wait_for_readers(Writer& w, std::size_t n) {
    return ferry::test::wait_until([&] { return w.reader_count() >= n; }, 10000ms);
}

// A reader in another process that takes nothing, so that it can be stopped.
Child idle_reader(const TopicParams& p) {
    return Child::fork([p]() -> int {
        auto plugin = ferry::test::load_plugin("dds");
        std::unique_ptr<Reader> r;
        if (!plugin->transport->create_reader(p, r)) return 10;
        for (;;) ::pause();
    });
}

}  // namespace

TEST_CASE("dds: topic names map to DDS names and back") {
    using ferry::dds::parse_topic_name;
    using ferry::dds::topic_name;
    CHECK(topic_name("0", "camera/front") == "ferry_0/camera/front");
    CHECK(topic_name("t-1", "imu.raw") == "ferry_t_2D1/imu_2Eraw");
    CHECK(topic_name("0", "a_b") == "ferry_0/a_5Fb");
    for (const std::string t : {"camera/front", "imu.raw", "a_b", "x-y:z*?#~", "/lead", "9digit"}) {
        std::string domain, topic;
        REQUIRE(parse_topic_name(topic_name("dom_9", t), domain, topic));
        CHECK(domain == "dom_9");
        CHECK(topic == t);
    }
    std::string d, t;
    CHECK_FALSE(parse_topic_name("rt/chatter", d, t));
    CHECK_FALSE(parse_topic_name("ferry_0/a_ZZ", d, t));
    CHECK_FALSE(parse_topic_name("ferry_0/a_4", d, t));
}

TEST_CASE("dds: the Cyclone config takes CYCLONEDDS_URI, then the [dds] interfaces") {
    TopicParams p;
    p.options = {{"domain_id", "7"}, {"interfaces", "lo,192.0.2.1"}};
    const auto s = ferry::dds::Settings::from(p);
    CHECK(s.domain_id == 7);
    REQUIRE(s.interfaces == std::vector<std::string>{"lo", "192.0.2.1"});
    ::setenv("CYCLONEDDS_URI", "file:///etc/cyclone.xml", 1);
    const std::string config = ferry::dds::cyclone_config(s);
    ::unsetenv("CYCLONEDDS_URI");
    const auto uri = config.find("file:///etc/cyclone.xml");
    const auto ifs = config.find("<NetworkInterface name=\"lo\"/><NetworkInterface address=\"192.0.2.1\"/>");
    REQUIRE(uri != std::string::npos);
    REQUIRE(ifs != std::string::npos);
    CHECK(uri < ifs);  // the ferry config's interfaces win
    CHECK(ferry::dds::cyclone_config(ferry::dds::Settings{}).find("Interfaces") == std::string::npos);
}

TEST_CASE("dds: sizes 0 to 16 MiB arrive whole, in order") {
    const std::string domain = ferry::test::unique_domain();
    auto plugin = ferry::test::load_plugin("dds");
    auto rp = params_for(domain, "sizes", Overflow::block, 1);
    auto wp = params_for(domain, "sizes", Overflow::block, 2);
    rp.depth = wp.depth = 16;
    std::unique_ptr<Reader> r;
    std::unique_ptr<Writer> w;
    REQUIRE(plugin->transport->create_reader(rp, r));
    REQUIRE(plugin->transport->create_writer(wp, w));
    REQUIRE(wait_for_readers(*w, 1));
    const std::vector<std::size_t> sizes{0, 1, 64, 4095, 65536, 4u << 20, wp.max_message_size};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const Status st = send(*w, sizes[i], i);
        INFO(st.message());
        REQUIRE(st);
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        SampleBuffer s;
        const Status st = r->take(s, Clock::now() + 10s);
        INFO("size " << sizes[i] << ": " << st.message());
        REQUIRE(st);
        CHECK(s.size == sizes[i]);
        CHECK(intact(s.data, s.size, i));
        r->release(s);
    }
    LoanBuffer too_big;
    CHECK(w->loan(wp.max_message_size + 1, too_big).code() == Errc::too_large);
    CHECK(r->lost() == 0);
}

TEST_CASE("dds: take honours its deadline and interrupt") {
    const std::string domain = ferry::test::unique_domain();
    auto plugin = ferry::test::load_plugin("dds");
    std::unique_ptr<Reader> r;
    REQUIRE(plugin->transport->create_reader(params_for(domain, "idle", Overflow::block, 1), r));
    SampleBuffer s;
    auto start = Clock::now();
    CHECK(r->take(s, Clock::now() - 1ms).code() == Errc::would_block);
    CHECK(Clock::now() - start < 50ms);
    start = Clock::now();
    CHECK(r->take(s, Clock::now() + 300ms).code() == Errc::timeout);
    CHECK(Clock::now() - start >= 290ms);
    std::thread t([&] {
        std::this_thread::sleep_for(100ms);  // lets take() block first; the outcome does not depend on it
        r->interrupt();
    });
    start = Clock::now();
    CHECK(r->take(s, Clock::now() + 10s).code() == Errc::closed);
    CHECK(Clock::now() - start < 5s);
    t.join();
}

// Publishes 1 MiB messages to a stopped reader until one is refused (what it does not
// acknowledge passes Cyclone's writer-history watermark, 500 kB, with the second one): the
// refusal and how long that publish took. Fails the test if 100 were all accepted.
static std::pair<Status, Clock::duration> first_refusal(Writer& w) {
    for (int i = 0; i < 100; ++i) {
        const auto start = Clock::now();
        Status st = send(w, 1u << 20, static_cast<std::uint64_t>(i));
        const auto took = Clock::now() - start;
        if (!st) return {st, took};
    }
    FAIL("100 messages of 1 MiB to a stopped reader were all accepted");
    return {};
}

TEST_CASE("dds: a stopped reader blocks a block publisher for block_timeout, then timeout") {
    const std::string domain = ferry::test::unique_domain();
    auto rp = params_for(domain, "stall", Overflow::block, 1);
    auto child = idle_reader(rp);  // forked before this process starts Cyclone
    auto plugin = ferry::test::load_plugin("dds");
    std::unique_ptr<Writer> w;
    REQUIRE(plugin->transport->create_writer(params_for(domain, "stall", Overflow::block, 2), w));
    REQUIRE(wait_for_readers(*w, 1));
    REQUIRE(child.stop());
    const auto [refusal, took] = first_refusal(*w);
    INFO(refusal.message());
    CHECK(refusal.code() == Errc::timeout);
    CHECK(took >= 190ms);
    CHECK(took < 2s);
    CHECK(w->undelivered() >= 1);
    child.kill(SIGCONT);
    // Acknowledged again: publishing works.
    CHECK(ferry::test::wait_until([&] { return send(*w, 64, 1).is_ok(); }, 10000ms));
}

TEST_CASE("dds: a stopped reader makes a fail publisher return would_block at once") {
    const std::string domain = ferry::test::unique_domain();
    auto rp = params_for(domain, "stallf", Overflow::fail, 1);
    auto child = idle_reader(rp);
    auto plugin = ferry::test::load_plugin("dds");
    std::unique_ptr<Writer> w;
    REQUIRE(plugin->transport->create_writer(params_for(domain, "stallf", Overflow::fail, 2), w));
    REQUIRE(wait_for_readers(*w, 1));
    REQUIRE(child.stop());
    const auto [refusal, took] = first_refusal(*w);
    INFO(refusal.message());
    CHECK(refusal.code() == Errc::would_block);
    CHECK(took < 100ms);
    child.kill(SIGCONT);
    CHECK(ferry::test::wait_until([&] { return send(*w, 64, 1).is_ok(); }, 10000ms));
}

TEST_CASE("dds: drop_oldest keeps the newest depth messages and counts the rest as lost") {
    const std::string domain = ferry::test::unique_domain();
    auto plugin = ferry::test::load_plugin("dds");
    std::unique_ptr<Reader> r;
    std::unique_ptr<Writer> w;
    REQUIRE(plugin->transport->create_reader(params_for(domain, "newest", Overflow::drop_oldest, 1), r));
    REQUIRE(plugin->transport->create_writer(params_for(domain, "newest", Overflow::drop_oldest, 2), w));
    REQUIRE(wait_for_readers(*w, 1));
    for (std::uint64_t i = 0; i < 200; ++i) REQUIRE(send(*w, 64, i));
    REQUIRE(w->flush(Clock::now() + 10s));  // all 200 reached the reader
    std::vector<std::uint64_t> got;
    SampleBuffer s;
    while (r->take(s, Clock::now() + 200ms)) {
        for (std::uint64_t i = 0; i < 200; ++i)
            if (intact(s.data, s.size, i)) got.push_back(i);
        r->release(s);
    }
    REQUIRE(got.size() == 4);  // depth
    CHECK(got.back() == 199);
    CHECK(r->lost() == 196);
}
