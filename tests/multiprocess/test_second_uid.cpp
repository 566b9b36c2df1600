// A process of another user is refused by a domain whose objects are owner-only.
#include <catch2/catch.hpp>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include <ferry/ferry.hpp>

#include "support/process.hpp"

using namespace std::chrono_literals;

TEST_CASE("a subscriber running under a second uid is refused", "[security][multiprocess]") {
    if (::geteuid() != 0) {
        WARN("skipped: creating a second uid needs root; run the suite as root to check this");
        return;
    }
    const char* user = "ferrytest";
    if (::getpwnam(user) == nullptr) REQUIRE(std::system("useradd --system --no-create-home ferrytest >/dev/null 2>&1") == 0);
    const passwd* pw = ::getpwnam(user);
    REQUIRE(pw != nullptr);
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    const auto domain = ferry::test::unique_domain();

    int go[2];
    REQUIRE(::pipe(go) == 0);
    // Forked before this process creates any node: the child only holds what it makes itself.
    auto child = ferry::test::Child::fork([&] {
        char c;
        if (::read(go[0], &c, 1) != 1) return 10;
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) return 11;
        ::setenv("FERRY_RUNTIME_DIR", "/tmp", 1);  // its own runtime dir would be elsewhere anyway
        try {
            ferry::NodeOptions opts;
            opts.domain = domain;
            ferry::Node node("intruder", opts);
            auto sub = node.subscribe<std::string>("secret");
            return 1;  // it got in: a failure
        } catch (const ferry::Error& e) {
            const std::string what = e.what();
            if (what.find("Permission denied") == std::string::npos) return 2;
            return what.find("belongs to uid 0, not to you") != std::string::npos ? 0 : 3;
        }
    });
    ferry::NodeOptions opts;
    opts.domain = domain;
    ferry::Node node("owner", opts);
    auto pub = node.advertise<std::string>("secret");
    REQUIRE(::write(go[1], "g", 1) == 1);
    CHECK(child.wait(10000ms) == 0);
    ::close(go[0]);
    ::close(go[1]);
}
