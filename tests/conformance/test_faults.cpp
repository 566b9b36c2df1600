// Crashes: a SIGKILLed subscriber never blocks the publisher; a SIGKILLed publisher is noticed
// and a restarted one is received again, with no torn message in between.
#include <catch2/catch.hpp>

#include <signal.h>

#include "conformance.hpp"

using namespace std::chrono_literals;
using conformance::Fixture;
using conformance::output_has;

CONFORMANCE_CASE("a subscriber SIGKILLed mid-stream does not block the publisher") {
    CONFORMANCE_SKIP_ON_NETWORK("DDS forgets a SIGKILLed reader when its participant lease expires (10 s, "
                                "plugins/dds/README.md); until then a block publisher waits for its acknowledgements");
    Fixture f(transport);
    auto survivor = f.spawn("listener", {"--topic", "s", "--count", "3000", "--timeout", "60", "--quiet"});
    auto victim = f.spawn("listener", {"--topic", "s", "--count", "1000000", "--timeout", "60", "--quiet"});
    auto talker = f.spawn("talker", {"--topic", "s", "--count", "3000", "--rate", "3000", "--wait-subscribers", "2", "--quiet"});
    REQUIRE(ferry::test::wait_until([&] { return f.published("s") > 300; }, 20000ms));
    victim.kill(SIGKILL);
    REQUIRE(victim.wait(5000ms) == 128 + SIGKILL);
    REQUIRE(talker.wait(30000ms) == 0);
    CHECK(output_has(talker, "sent 3000 failed 0"));
    REQUIRE(survivor.wait(30000ms) == 0);
    CHECK(output_has(survivor, "received 3000 corrupt 0"));
    CHECK(output_has(survivor, "out_of_order 0"));
    f.expect_no_leftovers(true);
}

CONFORMANCE_CASE("a publisher SIGKILLed mid-stream and restarted is received again") {
    Fixture f(transport);
    auto listener = f.spawn("listener", {"--topic", "p", "--count", "400", "--timeout", "30", "--quiet"});
    auto first = f.spawn("talker", {"--topic", "p", "--count", "1000000", "--size", "20000", "--rate", "1000",
                                    "--wait-subscribers", "1", "--quiet"});
    REQUIRE(ferry::test::wait_until([&] { return f.published("p") > 150; }, 20000ms));
    first.kill(SIGKILL);
    REQUIRE(first.wait(5000ms) == 128 + SIGKILL);
    auto second = f.spawn("talker", {"--topic", "p", "--count", "250", "--size", "20000", "--rate", "1000",
                                     "--wait-subscribers", "1", "--quiet"});
    REQUIRE(second.wait(30000ms) == 0);
    REQUIRE(listener.wait(30000ms) == 0);
    CHECK(output_has(listener, "received 400 corrupt 0"));
    CHECK(output_has(listener, "publishers 2 out_of_order 0"));
    f.expect_no_leftovers(true);
}
