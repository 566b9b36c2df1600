// Registry: topics and endpoints, type and transport conflicts, purge of SIGKILLed processes,
// recovery when a process dies holding the lock, and removal of the file by the last one out.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <ferry/transport/naming.hpp>

#include "registry/registry.hpp"
#include "support/process.hpp"

using namespace ferry::detail;
using namespace std::chrono_literals;

namespace {

bool file_exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}

TopicRecord topic(const std::string& name, const std::string& type, const std::string& transport = "uds") {
    TopicRecord t;
    t.name = name;
    t.type = type;
    t.qos.transport = transport;
    return t;
}

bool has_endpoint(Registry& r, std::uint64_t id) {
    const auto eps = r.endpoints();
    return std::any_of(eps.begin(), eps.end(), [id](const EndpointRecord& e) { return e.id == id; });
}

// A child that registers one endpoint, reports its id through a pipe, and waits to be killed.
ferry::test::Child registering_child(const std::string& domain, int report_fd) {
    return ferry::test::Child::fork([domain, report_fd] {
        Registry r(domain);
        const std::uint64_t id = ferry::transport::make_endpoint_id(::getpid(), 1);
        auto added = r.add_endpoint(topic("chatter", "string"), false, Role::publisher, id, "child");
        if (!added.ok) return 3;
        if (::write(report_fd, &id, sizeof id) != sizeof id) return 4;
        ::pause();
        return 0;
    });
}

}  // namespace

TEST_CASE("registry records topics and endpoints and removes its file when the last one leaves", "[registry]") {
    const auto domain = ferry::test::unique_domain();
    const auto path = Registry::path_for(domain);
    {
        Registry sut(domain);
        CHECK(file_exists(path));
        auto added = sut.add_endpoint(topic("chatter", "string"), false, Role::publisher, 0x1000001, "talker");
        REQUIRE(added.ok);
        added.counters.messages->fetch_add(5);
        auto t = sut.find_topic("chatter");
        REQUIRE(t);
        CHECK(t->type == "string");
        CHECK(t->qos.transport == "uds");
        const auto eps = sut.endpoints();
        REQUIRE(eps.size() == 1);
        CHECK(eps[0].node == "talker");
        CHECK(eps[0].messages == 5);
        CHECK(eps[0].pid == ::getpid());
        sut.remove_endpoint(0x1000001);
        CHECK_FALSE(sut.find_topic("chatter"));  // no endpoint left: the topic goes too
    }
    CHECK_FALSE(file_exists(path));
}

TEST_CASE("registry refuses a second type on a topic and an explicit conflicting transport", "[registry]") {
    Registry sut(ferry::test::unique_domain());
    REQUIRE(sut.add_endpoint(topic("pose", "demo/Pose"), false, Role::publisher, 0x1000001, "a").ok);
    auto wrong_type = sut.add_endpoint(topic("pose", "string"), false, Role::subscriber, 0x1000002, "b");
    CHECK_FALSE(wrong_type.ok);
    CHECK_THAT(wrong_type.error, Catch::Contains("carries type 'demo/Pose', not 'string'"));
    auto wrong_transport = sut.add_endpoint(topic("pose", "demo/Pose", "shm"), true, Role::subscriber, 0x1000003, "c");
    CHECK_FALSE(wrong_transport.ok);
    CHECK_THAT(wrong_transport.error, Catch::Contains("carried by transport 'uds'") && Catch::Contains("selects 'shm'"));
    auto follows = sut.add_endpoint(topic("pose", "demo/Pose", "shm"), false, Role::subscriber, 0x1000004, "d");
    CHECK(follows.ok);
    CHECK(follows.topic.qos.transport == "uds");
}

TEST_CASE("entries of a SIGKILLed process disappear within a second", "[registry][multiprocess]") {
    const auto domain = ferry::test::unique_domain();
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    auto child = registering_child(domain, fds[1]);
    std::uint64_t id = 0;
    REQUIRE(::read(fds[0], &id, sizeof id) == sizeof id);
    Registry sut(domain);
    CHECK(has_endpoint(sut, id));
    child.kill(SIGKILL);
    REQUIRE(child.wait(5000ms) == 128 + SIGKILL);
    const auto start = std::chrono::steady_clock::now();
    CHECK(ferry::test::wait_until([&] { sut.purge_dead(); return !has_endpoint(sut, id); }, 1000ms));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    CHECK_FALSE(sut.find_topic("chatter"));
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("a process killed while holding the registry lock never blocks the others", "[registry][multiprocess]") {
    const auto domain = ferry::test::unique_domain();
    auto child = ferry::test::Child::fork([domain] {
        ::setenv("FERRY_TEST_CRASH_IN_REGISTRY_LOCK", "1", 1);
        Registry r(domain);
        r.add_endpoint(topic("chatter", "string"), false, Role::publisher, ferry::transport::make_endpoint_id(::getpid(), 1), "doomed");
        return 0;  // not reached: the hook SIGKILLs us inside the lock
    });
    REQUIRE(child.wait(5000ms) == 128 + SIGKILL);

    const auto start = std::chrono::steady_clock::now();
    Registry sut(domain);  // locks: must recover the dead owner's mutex
    auto added = sut.add_endpoint(topic("chatter", "string"), false, Role::subscriber, 0x2000001, "survivor");
    CHECK(added.ok);
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    const auto eps = sut.endpoints();
    REQUIRE(eps.size() == 1);  // the half-written entry of the dead process is gone
    CHECK(eps[0].node == "survivor");
}

TEST_CASE("a change rings only the processes with an endpoint on its topic", "[registry][multiprocess]") {
    const auto domain = ferry::test::unique_domain();
    Registry sut(domain);
    REQUIRE(sut.add_endpoint(topic("mine", "string"), false, Role::subscriber, 0x1000001, "me").ok);
    const std::uint32_t rung = sut.changes_seen();
    const std::uint32_t generation = sut.generation();
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    // Another process: 100 endpoints come and go on another topic, then one joins ours.
    auto child = ferry::test::Child::fork([&] {
        Registry r(domain);
        for (std::uint64_t i = 0; i < 100; ++i) {
            const std::uint64_t id = ferry::transport::make_endpoint_id(::getpid(), 10 + i);
            if (!r.add_endpoint(topic("other", "string"), false, Role::publisher, id, "churn").ok) return 3;
            r.remove_endpoint(id);
        }
        if (!r.add_endpoint(topic("mine", "string"), false, Role::publisher, ferry::transport::make_endpoint_id(::getpid(), 1), "pub").ok)
            return 4;
        const char done = 1;
        if (::write(fds[1], &done, 1) != 1) return 5;
        ::pause();
        return 0;
    });
    char done = 0;
    REQUIRE(::read(fds[0], &done, 1) == 1);
    CHECK(sut.generation() - generation >= 201);  // every change counts in the generation
    CHECK(sut.changes_seen() - rung == 1);        // but only the one on "mine" rang this process
    // The ring wakes a sleeper at once.
    const auto start = std::chrono::steady_clock::now();
    sut.wait_for_change(rung, ferry::transport::Clock::now() + 5s);
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    child.kill(SIGKILL);
    child.wait(5000ms);
    ::close(fds[0]);
    ::close(fds[1]);
}
