// Every wait is monotonic: a process whose wall clock is an hour ahead or behind (an LD_PRELOAD
// shim over clock_gettime(CLOCK_REALTIME), gettimeofday and time; the host clock is untouched)
// still waits 300 ms in take(300 ms), on every transport.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include <ferry/introspection.hpp>

#include "support/domain_guard.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;

namespace {

using ferry::test::DomainGuard;

void take_waits_300ms_with_the_wall_clock_shifted(const std::string& transport) {
    bool built = false;
    for (const auto& p : ferry::list_plugins()) built = built || (p.name == transport && p.loaded);
    if (!built) {
        WARN("transport " << transport << " is not built: skipped");
        return;
    }
    const char* inherited = std::getenv("ASAN_OPTIONS");
    const std::string asan_options = inherited != nullptr && *inherited ? std::string(inherited) + ":" : "";
    for (const long shift : {3600L, -3600L}) {
        INFO("transport " << transport << ", wall clock shifted by " << shift << " s");
        const DomainGuard domain;
        auto probe = ferry::test::Child::spawn(
            {ferry::test::bin_path("clock_probe"), "clock"},
            {{"FERRY_DOMAIN", domain.name},
             {"FERRY_CONFIG", std::string(FERRY_TEST_SOURCE_DIR) + "/examples/configs/" + transport + ".toml"},
             {"LD_PRELOAD", FERRY_TEST_CLOCK_SHIFT_LIB},
             {"FERRY_TEST_CLOCK_SHIFT", std::to_string(shift)},
             // In a sanitizer build the shim comes before the ASan runtime: allowed for this.
             {"ASAN_OPTIONS", asan_options + "verify_asan_link_order=0"}});
        // Far below the hour a wall-clock deadline would wait.
        const int code = probe.wait(10000ms);
        const std::string out = probe.output();
        INFO(out);
        REQUIRE(code == 0);
        std::istringstream in(out.substr(std::min(out.find("realtime "), out.size())));
        std::string w1, w2, w3;
        long long realtime = 0, took_ms = -1;
        int got = -1;
        in >> w1 >> realtime >> w2 >> took_ms >> w3 >> got;
        REQUIRE(w1 == "realtime");
        // The shim was in effect: the probe's wall clock was off by the shift.
        CHECK(std::llabs(realtime - static_cast<long long>(std::time(nullptr)) - shift) < 60);
        CHECK(got == 0);
        CHECK(took_ms >= 290);
        CHECK(took_ms < 2000);
    }
}

}  // namespace

TEST_CASE("take(300 ms) waits 300 ms with the wall clock an hour off, on mq", "[clock][multiprocess]") {
    take_waits_300ms_with_the_wall_clock_shifted("mq");
}
TEST_CASE("take(300 ms) waits 300 ms with the wall clock an hour off, on uds", "[clock][multiprocess]") {
    take_waits_300ms_with_the_wall_clock_shifted("uds");
}
TEST_CASE("take(300 ms) waits 300 ms with the wall clock an hour off, on shm", "[clock][multiprocess]") {
    take_waits_300ms_with_the_wall_clock_shifted("shm");
}
TEST_CASE("take(300 ms) waits 300 ms with the wall clock an hour off, on pipe", "[clock][multiprocess]") {
    take_waits_300ms_with_the_wall_clock_shifted("pipe");
}
