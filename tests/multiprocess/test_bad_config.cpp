// A process started with a bad config exits with an error that names the file and the line.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "support/process.hpp"

using namespace std::chrono_literals;

namespace {
std::string run_with_config(const std::string& text) {
    char tmpl[] = "/tmp/ferry-badconfig-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    { std::ofstream(tmpl) << text; }
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "x", "--count", "1"},
                                            {{"FERRY_DOMAIN", ferry::test::unique_domain()}, {"FERRY_CONFIG", tmpl}});
    CHECK(talker.wait(10000ms) == 1);
    const std::string out = talker.output();
    CHECK_THAT(out, Catch::Contains(tmpl));
    std::remove(tmpl);
    return out;
}
}  // namespace

TEST_CASE("malformed TOML stops a process with file and line", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[defaults]\ntransport = uds\n"), Catch::Contains(":2:") && Catch::Contains("malformed TOML"));
}

TEST_CASE("an unknown key stops a process with file, line and the allowed keys", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[defaults]\n\nqueue_depth = 4\n"),
               Catch::Contains(":3:") && Catch::Contains("unknown key 'queue_depth'") && Catch::Contains("allowed:"));
}

TEST_CASE("an unknown transport stops a process with file, line and the available ones", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[defaults]\ntransport = \"smoke-signals\"\n"),
               Catch::Contains(":2: unknown transport 'smoke-signals'") && Catch::Contains("available: ") && Catch::Contains("uds"));
}

TEST_CASE("a bad overflow policy stops a process with file, line and the allowed policies", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[[topic]]\nmatch = \"x\"\noverflow = \"maybe\"\n"),
               Catch::Contains(":3:") && Catch::Contains("block, drop_oldest, fail"));
}

TEST_CASE("a missing config file named by FERRY_CONFIG stops a process with its name", "[config][multiprocess]") {
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "x", "--count", "1"},
                                            {{"FERRY_DOMAIN", ferry::test::unique_domain()}, {"FERRY_CONFIG", "/nonexistent/ferry.toml"}});
    CHECK(talker.wait(10000ms) == 1);
    CHECK_THAT(talker.output(), Catch::Contains("/nonexistent/ferry.toml"));
}
