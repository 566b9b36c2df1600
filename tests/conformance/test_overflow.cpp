// Blocking and non-blocking, both ends: each overflow policy, take with a deadline, try_take.
#include <catch2/catch.hpp>


#include "conformance.hpp"

using namespace std::chrono_literals;
using conformance::Fixture;
using Clock = std::chrono::steady_clock;

namespace {
// Publishes 64-byte messages numbered from 0 until one is refused (or `limit`); returns how
// many were accepted and the refusal.
std::size_t publish_until_refused(ferry::Publisher<std::uint64_t>& pub, ferry::Status& refusal, Clock::duration& took,
                                  std::size_t limit = 500000) {
    for (std::size_t i = 0; i < limit; ++i) {
        const auto start = Clock::now();
        refusal = pub.publish(i);
        took = Clock::now() - start;
        if (!refusal) return i;
    }
    return limit;
}

std::vector<std::uint64_t> drain(ferry::Subscriber<std::uint64_t>& sub) {
    std::vector<std::uint64_t> got;
    while (auto v = sub.take(300ms)) got.push_back(*v);
    return got;
}
}  // namespace

namespace {
// Fills a depth-4 queue that nobody reads until publish() is refused; checks the refusal, its
// duration, and that every accepted message then arrives in order.
void fill_until_refused(const std::string& transport,
                        const std::string& policy,
                        ferry::Errc expected,
                        Clock::duration min_took,
                        Clock::duration max_took) {
    conformance::QosOverrides q;
    q.depth = 4;
    q.overflow = policy;
    q.block_timeout_ms = 200;
    Fixture f(transport, q);
    {
        auto node = f.node(policy);
        auto sub = node.subscribe<std::uint64_t>("q");
        auto pub = node.advertise<std::uint64_t>("q");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        ferry::Status refusal;
        Clock::duration took{};
        const auto accepted = publish_until_refused(pub, refusal, took);
        REQUIRE(accepted < 500000);
        CHECK(refusal.code() == expected);
        CHECK(took >= min_took);
        CHECK(took < max_took);
        const auto got = drain(sub);
        REQUIRE(got.size() == accepted);  // nothing accepted was lost
        for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == i);
        // Room again: publishing works.
        REQUIRE_OK(pub.publish(7));
        CHECK(sub.take(2s) == 7u);
    }
    f.expect_no_leftovers();
}
}  // namespace

CONFORMANCE_CASE("block: a full queue blocks the publisher up to block_timeout, then reports timeout") {
    CONFORMANCE_SKIP_ON_NETWORK("a DDS reader acknowledges what it receives, taken or not, so a subscriber that "
                                "does not take never fills; a stopped one blocks the publisher (tests/plugins "
                                "test_plugin_dds)");
    fill_until_refused(transport, "block", ferry::Errc::timeout, 150ms, 2s);
}

CONFORMANCE_CASE("fail: a full queue makes publish fail at once") {
    CONFORMANCE_SKIP_ON_NETWORK("a DDS reader acknowledges what it receives, taken or not, so a subscriber that "
                                "does not take never fills; a stopped one makes publish fail (tests/plugins "
                                "test_plugin_dds)");
    fill_until_refused(transport, "fail", ferry::Errc::would_block, 0ms, 50ms);
}

CONFORMANCE_CASE("drop_oldest: the publisher never blocks and a slow subscriber gets the newest") {
    conformance::QosOverrides q;
    q.depth = 4;
    q.overflow = "drop_oldest";
    Fixture f(transport, q);
    {
        auto node = f.node("drop");
        auto sub = node.subscribe<std::uint64_t>("q");
        auto pub = node.advertise<std::uint64_t>("q");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        const auto start = Clock::now();
        for (std::uint64_t i = 0; i < 3000; ++i) REQUIRE_OK(pub.publish(i));
        CHECK(Clock::now() - start < 2s);
        const auto got = drain(sub);
        REQUIRE_FALSE(got.empty());
        CHECK(got.size() < 3000u);   // older ones were dropped...
        for (std::size_t i = 1; i < got.size(); ++i) CHECK(got[i] > got[i - 1]);
        // The newest is never held back for the old ones: where the writer cannot remove old
        // data (a socket, a FIFO) and the reader's drain thread lagged at that instant, it is
        // skipped rather than waited for, so what is published next always gets through, and
        // carries the count of what the writer skipped before it.
        REQUIRE_OK(pub.publish(3000));
        const auto next = sub.take(5s);
        REQUIRE(next);
        CHECK(*next == 3000u);
        CHECK(sub.lost() >= 3000u - got.size());  // ...and counted
    }
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("a blocking take returns at its deadline") {
    Fixture f(transport);
    {
        auto node = f.node("deadline");
        auto sub = node.subscribe<std::uint64_t>("quiet");
        auto pub = node.advertise<std::uint64_t>("quiet");
        const auto start = Clock::now();
        CHECK_FALSE(sub.take(300ms));
        const auto took = Clock::now() - start;
        CHECK(took >= 290ms);
        CHECK(took < 1500ms);
    }
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("try_take never blocks") {
    Fixture f(transport);
    {
        auto node = f.node("try");
        auto sub = node.subscribe<std::uint64_t>("quiet");
        auto pub = node.advertise<std::uint64_t>("quiet");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        for (int i = 0; i < 100; ++i) {
            const auto start = Clock::now();
            CHECK_FALSE(sub.try_take());
            CHECK(Clock::now() - start < 20ms);
        }
        REQUIRE_OK(pub.publish(5));
        CHECK(ferry::test::wait_until([&] { return sub.try_take() == 5u; }, 5000ms));
    }
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("a callback subscriber receives every message on its own thread") {
    Fixture f(transport);
    {
        auto node = f.node("callback");
        conformance::Collector<std::string> collector;
        auto sub = collector.subscribe(node, "cb");
        auto pub = node.advertise<std::string>("cb");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        for (int i = 0; i < 100; ++i) REQUIRE_OK(pub.publish("msg " + std::to_string(i)));
        CHECK(collector.wait_for(100, 5000ms));
        const auto got = collector.snapshot();
        REQUIRE(got.size() == 100);
        CHECK(got.front() == "msg 0");
        CHECK(got.back() == "msg 99");
    }
    f.expect_no_leftovers();
}
