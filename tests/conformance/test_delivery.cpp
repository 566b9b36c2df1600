// Delivery: order and no loss, fan-out, several publishers, every size, late subscribers,
// oversized messages refused.
#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include <ferry/introspection.hpp>

#include "conformance.hpp"

using namespace std::chrono_literals;
using conformance::Fixture;
using conformance::output_has;

CONFORMANCE_CASE("its module loads") {
    const auto plugins = ferry::list_plugins();
    const auto it = std::find_if(plugins.begin(), plugins.end(), [&](const auto& p) { return p.name == transport; });
    INFO("FERRY_PLUGIN_PATH=" << (std::getenv("FERRY_PLUGIN_PATH") ? std::getenv("FERRY_PLUGIN_PATH") : ""));
    REQUIRE(it != plugins.end());
    INFO(it->path << ": " << it->error);
    CHECK(it->loaded);
}

CONFORMANCE_CASE("1 to 1, 10000 messages in order and none lost under block") {
    Fixture f(transport);
    auto listener = f.spawn("listener", {"--topic", "chatter", "--count", "10000", "--timeout", "60", "--quiet"});
    auto talker = f.spawn("talker", {"--topic", "chatter", "--count", "10000", "--wait-subscribers", "1", "--quiet"});
    // While both run, the registry reports the transport in use.
    CHECK(ferry::test::wait_until([&] {
        for (const auto& t : ferry::list_topics(f.domain()))
            if (t.name == "chatter") return t.qos.transport == transport;
        return false;
    }, 10000ms));
    REQUIRE(talker.wait(60000ms) == 0);
    REQUIRE(listener.wait(60000ms) == 0);
    CHECK(output_has(talker, "sent 10000 failed 0"));
    CHECK(output_has(listener, "publishers 1 out_of_order 0"));
    CHECK(output_has(listener, "received 10000 corrupt 0"));
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("fan-out 1 to 4") {
    Fixture f(transport);
    std::vector<ferry::test::Child> listeners;
    for (int i = 0; i < 4; ++i)
        listeners.push_back(f.spawn("listener", {"--topic", "fan", "--count", "2000", "--timeout", "60", "--quiet"}));
    auto talker = f.spawn("talker", {"--topic", "fan", "--count", "2000", "--size", "256", "--wait-subscribers", "4", "--quiet"});
    REQUIRE(talker.wait(60000ms) == 0);
    for (auto& l : listeners) {
        REQUIRE(l.wait(60000ms) == 0);
        CHECK(output_has(l, "publishers 1 out_of_order 0"));
        CHECK(output_has(l, "received 2000 corrupt 0"));
    }
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("2 publishers to 1 subscriber keep per-publisher order") {
    Fixture f(transport);
    auto listener = f.spawn("listener", {"--topic", "merge", "--count", "6000", "--timeout", "60", "--quiet"});
    auto a = f.spawn("talker", {"--topic", "merge", "--count", "3000", "--size", "5000", "--wait-subscribers", "1", "--quiet"});
    auto b = f.spawn("talker", {"--topic", "merge", "--count", "3000", "--size", "100", "--wait-subscribers", "1", "--quiet"});
    REQUIRE(a.wait(60000ms) == 0);
    REQUIRE(b.wait(60000ms) == 0);
    REQUIRE(listener.wait(60000ms) == 0);
    CHECK(output_has(listener, "publishers 2 out_of_order 0"));
    CHECK(output_has(listener, "received 6000 corrupt 0"));
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("sizes 0, 1, 4095, 4097, 65536, 4 MiB and the maximum arrive intact") {
    conformance::QosOverrides q;
    q.depth = 4;
    q.max_message_size = "6MiB";
    Fixture f(transport, q);
    {
        auto node = f.node("sizes");
        // A callback subscriber reads on its own thread while this one publishes: on stream
        // transports a message larger than the kernel buffer needs a reader at the other end.
        conformance::Collector<ferry::Bytes> collector;
        auto sub = collector.subscribe(node, "sizes");
        auto pub = node.advertise<ferry::Bytes>("sizes");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        std::vector<ferry::Bytes> sent;
        for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4097}, std::size_t{65536},
                                 std::size_t{4} << 20, std::size_t{6} << 20}) {
            ferry::Bytes msg(size);
            for (std::size_t i = 0; i < size; ++i) msg[i] = static_cast<std::uint8_t>(i * 7 + size);
            REQUIRE_OK(pub.publish(msg));
            sent.push_back(std::move(msg));
        }
        REQUIRE(collector.wait_for(sent.size(), 10000ms));
        const auto got = collector.snapshot();
        REQUIRE(got.size() == sent.size());
        for (std::size_t i = 0; i < sent.size(); ++i) {
            INFO("size " << sent[i].size());
            CHECK(got[i].size() == sent[i].size());
            CHECK(got[i] == sent[i]);
        }
    }
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("a message over max_message_size is rejected and nothing is sent") {
    conformance::QosOverrides q;
    q.max_message_size = "64KiB";
    Fixture f(transport, q);
    {
        auto node = f.node("big");
        auto sub = node.subscribe<ferry::Bytes>("big");
        auto pub = node.advertise<ferry::Bytes>("big");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        const auto st = pub.publish(ferry::Bytes((64u << 10) + 1, 0xAB));
        CHECK(st.code() == ferry::Errc::too_large);
        CHECK_THAT(st.message(), Catch::Contains("max_message_size"));
        REQUIRE_OK(pub.publish(ferry::Bytes{1, 2, 3}));
        auto got = sub.take(5s);
        REQUIRE(got);
        CHECK(*got == ferry::Bytes{1, 2, 3});  // the oversized one never arrived ahead of it
        CHECK_FALSE(sub.try_take());
    }
    f.expect_no_leftovers();
}

CONFORMANCE_CASE("a subscriber started late receives what is published after it joined") {
    Fixture f(transport);
    auto talker = f.spawn("talker", {"--topic", "late", "--count", "1000000", "--rate", "2000", "--quiet"});
    REQUIRE(ferry::test::wait_until([&] { return f.published("late") > 100; }, 10000ms));
    auto listener = f.spawn("listener", {"--topic", "late", "--count", "200", "--timeout", "20", "--quiet"});
    REQUIRE(listener.wait(30000ms) == 0);
    CHECK(output_has(listener, "publishers 1 out_of_order 0"));
    CHECK(output_has(listener, "received 200 corrupt 0"));
    talker.kill(SIGTERM);
    talker.wait(5000ms);
    f.expect_no_leftovers(true);
}

CONFORMANCE_CASE("a subscriber of another type is refused with a clear error") {
    Fixture f(transport);
    {
        auto node = f.node("types");
        auto pub = node.advertise<std::int32_t>("typed");
        try {
            node.subscribe<std::string>("typed");
            FAIL("a subscriber of the wrong type was accepted");
        } catch (const ferry::Error& e) {
            CHECK_THAT(e.what(), Catch::Contains("type mismatch") && Catch::Contains("int32") && Catch::Contains("string"));
        }
        auto sub = node.subscribe<std::int32_t>("typed");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        REQUIRE_OK(pub.publish(42));
        CHECK(sub.take(5s) == 42);
    }
    f.expect_no_leftovers();
}
