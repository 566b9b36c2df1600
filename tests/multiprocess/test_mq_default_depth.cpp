// mq works with the default config: a config that only says transport = "mq" (built-in depth 16)
// runs on a stock host where fs.mqueue.msg_max is 10; an explicit depth above the limit is a
// clear error. Real processes, the host's real limits (the sysctl is never changed).
#include <catch2/catch.hpp>

#include <dirent.h>
#include <mqueue.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <ferry/introspection.hpp>

#include "support/domain_guard.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;

namespace {

std::uint64_t msg_max() {
    std::ifstream in("/proc/sys/fs/mqueue/msg_max");
    std::uint64_t v = 0;
    in >> v;
    return v;
}

bool has_cap_sys_resource() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 24) & 1u;
    return false;
}

// A config file for the test's lifetime.
struct ConfigFile {
    std::string path;
    explicit ConfigFile(const std::string& text) {
        char tmpl[] = "/tmp/ferry-mqconfig-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        REQUIRE(fd >= 0);
        ::close(fd);
        path = tmpl;
        std::ofstream(path) << text;
    }
    ~ConfigFile() { std::remove(path.c_str()); }
};

// mq_maxmsg of the domain's one queue, or -1 while there is none.
long queue_depth(const std::string& domain) {
    for (const auto& name : ferry::test::leftovers("/dev/mqueue", domain)) {
        const mqd_t q = ::mq_open(("/" + name).c_str(), O_RDONLY | O_CLOEXEC);
        if (q == static_cast<mqd_t>(-1)) continue;
        mq_attr attr{};
        const bool ok = ::mq_getattr(q, &attr) == 0;
        ::mq_close(q);
        if (ok) return attr.mq_maxmsg;
    }
    return -1;
}

using ferry::test::DomainGuard;

bool mq_built() {
    for (const auto& p : ferry::list_plugins())
        if (p.name == "mq" && p.loaded) return true;
    return false;
}

}  // namespace

TEST_CASE("mq: the default depth runs under fs.mqueue.msg_max: publisher first, then a subscriber", "[mq][multiprocess]") {
    if (!mq_built()) {
        WARN("the mq plugin is not built: skipped");
        return;
    }
    const std::uint64_t limit = has_cap_sys_resource() ? 65536 : msg_max();
    const long expected = static_cast<long>(std::min<std::uint64_t>(16, limit));
    ConfigFile config("[defaults]\ntransport = \"mq\"\n");
    const DomainGuard guard;
    const std::string& domain = guard.name;
    const std::map<std::string, std::string> env{{"FERRY_DOMAIN", domain}, {"FERRY_CONFIG", config.path}};
    // The publisher creates the topic (default depth), the subscriber follows it.
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "chatter", "--count", "200",
                                             "--size", "64", "--rate", "200", "--wait-subscribers", "1", "--quiet"},
                                            env);
    REQUIRE(ferry::test::wait_until([&] { return !ferry::list_topics(domain).empty(); }, 10000ms));
    auto listen_env = env;
    listen_env["FERRY_LOG_LEVEL"] = "info";
    auto listener = ferry::test::Child::spawn(
        {ferry::test::bin_path("listener"), "--topic", "chatter", "--count", "200", "--timeout", "20", "--quiet"},
        listen_env);
    // The queue the subscriber really has, while the talker is still sending (about 1 s).
    long depth = -1;
    REQUIRE(ferry::test::wait_until([&] { return (depth = queue_depth(domain)) >= 0; }, 10000ms));
    CHECK(depth == expected);
    CHECK(talker.wait(20000ms) == 0);
    CHECK(listener.wait(20000ms) == 0);
    INFO(talker.output());
    INFO(listener.output());
    CHECK(talker.output().find("sent 200 failed 0") != std::string::npos);
    CHECK(listener.output().find("received 200 corrupt 0") != std::string::npos);
    if (expected < 16) {
        CHECK(listener.output().find("depth 16, not set in the config, exceeds what this system allows") != std::string::npos);
        CHECK(listener.output().find("holds " + std::to_string(expected) + " messages") != std::string::npos);
    }
    CHECK(ferry::test::leftovers("/dev/mqueue", domain).empty());
}

TEST_CASE("mq: swapping an example config to mq by its transport line alone works", "[mq][multiprocess]") {
    if (!mq_built()) {
        WARN("the mq plugin is not built: skipped");
        return;
    }
    std::ifstream in(std::string(FERRY_TEST_SOURCE_DIR) + "/examples/configs/uds.toml");
    std::stringstream text;
    text << in.rdbuf();
    std::string swapped = text.str();
    const auto at = swapped.find("transport = \"uds\"");
    REQUIRE(at != std::string::npos);
    swapped.replace(at, 17, "transport = \"mq\"");
    ConfigFile config(swapped);
    const DomainGuard guard;
    const std::map<std::string, std::string> env{{"FERRY_DOMAIN", guard.name}, {"FERRY_CONFIG", config.path}};
    auto listener = ferry::test::Child::spawn(
        {ferry::test::bin_path("listener"), "--topic", "chatter", "--count", "100", "--timeout", "20", "--quiet"}, env);
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "chatter", "--count", "100",
                                             "--size", "3000", "--wait-subscribers", "1", "--quiet"},
                                            env);
    CHECK(talker.wait(20000ms) == 0);
    CHECK(listener.wait(20000ms) == 0);
    INFO(listener.output());
    CHECK(listener.output().find("received 100 corrupt 0") != std::string::npos);
}

TEST_CASE("mq: an explicit depth above the limit stops a process with the limit and the fix", "[mq][multiprocess]") {
    if (!mq_built()) {
        WARN("the mq plugin is not built: skipped");
        return;
    }
    const bool privileged = has_cap_sys_resource();
    const std::uint64_t depth = privileged ? 70000 : msg_max() + 1;
    ConfigFile config("[defaults]\ntransport = \"mq\"\ndepth = " + std::to_string(depth) + "\n");
    const DomainGuard guard;
    const std::string& domain = guard.name;
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "x", "--count", "1"},
                                            {{"FERRY_DOMAIN", domain}, {"FERRY_CONFIG", config.path}});
    CHECK(talker.wait(10000ms) == 1);
    const std::string out = talker.output();
    INFO(out);
    CHECK(out.find("mq: depth " + std::to_string(depth) + " exceeds") != std::string::npos);
    if (privileged) {
        CHECK(out.find("65536") != std::string::npos);
    } else {
        CHECK(out.find("fs.mqueue.msg_max = " + std::to_string(msg_max())) != std::string::npos);
        CHECK(out.find("sysctl -w fs.mqueue.msg_max=" + std::to_string(depth)) != std::string::npos);
        CHECK(out.find("this process lacks CAP_SYS_RESOURCE") != std::string::npos);
        CHECK(out.find("root is not bound") == std::string::npos);
    }
}
