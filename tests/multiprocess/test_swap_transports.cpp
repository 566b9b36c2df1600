// Swapping transports is a config edit: the same talker and listener binaries run under each
// file in examples/configs, every message arrives, and the registry reports the transport.
#include <catch2/catch.hpp>

#include <filesystem>

#include <ferry/introspection.hpp>

#include "support/process.hpp"

using namespace std::chrono_literals;

TEST_CASE("the same binaries run over every transport chosen by config", "[swap][multiprocess]") {
    std::vector<std::string> built;
    for (const auto& p : ferry::list_plugins())
        if (p.loaded) built.push_back(p.name);
    REQUIRE_FALSE(built.empty());
    int ran = 0;
    for (const auto& entry : std::filesystem::directory_iterator(std::string(FERRY_TEST_SOURCE_DIR) + "/examples/configs")) {
        const std::string transport = entry.path().stem().string();
        if (std::find(built.begin(), built.end(), transport) == built.end()) continue;
        INFO("config " << entry.path());
        const auto domain = ferry::test::unique_domain();
        const std::map<std::string, std::string> env{{"FERRY_DOMAIN", domain}, {"FERRY_CONFIG", entry.path().string()}};
        auto listener = ferry::test::Child::spawn({ferry::test::bin_path("listener"), "--topic", "swap", "--count", "500", "--quiet"}, env);
        bool reported = false;
        REQUIRE(ferry::test::wait_until([&] {
            for (const auto& t : ferry::list_topics(domain))
                if (t.name == "swap") {
                    reported = t.qos.transport == transport;
                    return true;
                }
            return false;
        }, 10000ms));
        CHECK(reported);
        auto talker = ferry::test::Child::spawn(
            {ferry::test::bin_path("talker"), "--topic", "swap", "--count", "500", "--size", "3000", "--wait-subscribers", "1", "--quiet"}, env);
        REQUIRE(talker.wait(30000ms) == 0);
        REQUIRE(listener.wait(30000ms) == 0);
        CHECK(listener.output().find("received 500 corrupt 0") != std::string::npos);
        ++ran;
    }
    CHECK(ran == static_cast<int>(built.size()));
}
