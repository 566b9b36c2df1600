// The public API's shape (checked at compile time) and its contracts that no conformance case
// covers: what each take returns, for every kind of type, and how a failure is reported.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <ferry/ferry.hpp>

#include "support/domain_guard.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;

namespace api_test {

struct Pose {
    double x, y, theta;
};

// ---- compile-time shape ----------------------------------------------------------------------

template <class H>
constexpr bool kMoveOnly = std::is_nothrow_move_constructible_v<H> && std::is_nothrow_move_assignable_v<H> &&
                           !std::is_copy_constructible_v<H> && !std::is_copy_assignable_v<H>;
static_assert(kMoveOnly<ferry::RawPublisher>);
static_assert(kMoveOnly<ferry::Publisher<Pose>>);
static_assert(kMoveOnly<ferry::RawSubscriber>);
static_assert(kMoveOnly<ferry::Subscriber<std::string>>);
static_assert(kMoveOnly<ferry::Subscription>);
static_assert(kMoveOnly<ferry::RawLoan> && kMoveOnly<ferry::Loan<Pose>>);
static_assert(kMoveOnly<ferry::RawSample> && kMoveOnly<ferry::Sample<Pose>> && kMoveOnly<ferry::Sample<ferry::Bytes>>);

// Siblings: no typed handle is a raw one, or converts to one.
static_assert(!std::is_base_of_v<ferry::RawPublisher, ferry::Publisher<Pose>>);
static_assert(!std::is_base_of_v<ferry::RawSubscriber, ferry::Subscriber<Pose>>);
static_assert(!std::is_convertible_v<ferry::Publisher<ferry::Bytes>, ferry::RawPublisher>);
static_assert(!std::is_convertible_v<ferry::Subscriber<ferry::Bytes>, ferry::RawSubscriber>);
// Only a Node makes handles: nothing builds one from an internal core or from a raw handle.
static_assert(!std::is_constructible_v<ferry::RawPublisher, std::shared_ptr<ferry::detail::PublisherCore>>);
static_assert(!std::is_constructible_v<ferry::RawSubscriber, std::shared_ptr<ferry::detail::SubscriberCore>>);
static_assert(!std::is_constructible_v<ferry::Subscription, std::shared_ptr<ferry::detail::SubscriberCore>>);
static_assert(!std::is_constructible_v<ferry::Publisher<Pose>, ferry::RawPublisher>);
static_assert(!std::is_constructible_v<ferry::Subscriber<Pose>, ferry::RawSubscriber>);
static_assert(!std::is_constructible_v<ferry::Sample<Pose>, ferry::RawSample>);
static_assert(!std::is_constructible_v<ferry::Loan<Pose>, ferry::RawLoan>);

// What a call returns.
template <class H, class = void>
struct HasTake : std::false_type {};
template <class H>
struct HasTake<H, std::void_t<decltype(std::declval<H&>().take(1ms))>> : std::true_type {};
template <class H, class = void>
struct HasTryTake : std::false_type {};
template <class H>
struct HasTryTake<H, std::void_t<decltype(std::declval<H&>().try_take())>> : std::true_type {};
template <class H, class = void>
struct HasTakeSample : std::false_type {};
template <class H>
struct HasTakeSample<H, std::void_t<decltype(std::declval<H&>().take_sample(1ms))>> : std::true_type {};
template <class H, class = void>
struct HasNoteCorrupt : std::false_type {};
template <class H>
struct HasNoteCorrupt<H, std::void_t<decltype(std::declval<H&>().note_corrupt())>> : std::true_type {};

// A callback subscription cannot take: its thread owns the reader.
static_assert(!HasTake<ferry::Subscription>::value && !HasTryTake<ferry::Subscription>::value &&
              !HasTakeSample<ferry::Subscription>::value);
static_assert(!HasNoteCorrupt<ferry::RawSubscriber>::value && !HasNoteCorrupt<ferry::Subscriber<Pose>>::value);

static_assert(std::is_same_v<decltype(std::declval<ferry::Subscriber<Pose>&>().take(1ms)), ferry::Result<Pose>>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Subscriber<Pose>&>().try_take()), ferry::Result<Pose>>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Subscriber<ferry::Bytes>&>().take_sample(1ms)),
                             ferry::Sample<ferry::Bytes>>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Subscriber<std::string>&>().try_take_sample()),
                             ferry::Sample<std::string>>);
static_assert(std::is_same_v<decltype(std::declval<ferry::RawSubscriber&>().take_sample(1ms)), ferry::RawSample>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Publisher<Pose>&>().publish(Pose{})), ferry::Status>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Publisher<Pose>&>().loan()), ferry::Loan<Pose>>);
// loan(0) is a loan of 0 bytes, not a null Status*.
static_assert(std::is_same_v<decltype(std::declval<ferry::Publisher<Pose>&>().loan(0)), ferry::RawLoan>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Publisher<ferry::Bytes>&>().loan(0)), ferry::RawLoan>);
static_assert(std::is_same_v<decltype(std::declval<ferry::Node&>().subscribe<Pose>("t", std::declval<void (*)(const Pose&)>())),
                             ferry::Subscription>);
// In-place access only where the bytes are the T.
template <class S, class = void>
struct HasDeref : std::false_type {};
template <class S>
struct HasDeref<S, std::void_t<decltype(*std::declval<const S&>())>> : std::true_type {};
static_assert(HasDeref<ferry::Sample<Pose>>::value && !HasDeref<ferry::Sample<std::string>>::value &&
              !HasDeref<ferry::Sample<ferry::Bytes>>::value);
// The user API's codes are its own, not the SDK's.
static_assert(std::is_enum_v<ferry::Errc> && std::is_same_v<decltype(ferry::Status().code()), ferry::Errc>);

// ---- runtime ---------------------------------------------------------------------------------

// A domain, and a config selecting `transport`, for one test.
struct World {
    ferry::test::DomainGuard domain;
    std::string dir;
    ferry::NodeOptions options;
    explicit World(const std::string& transport, const std::string& extra = "") {
        char tmpl[] = "/tmp/ferry-api-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        std::ofstream(dir + "/ferry.toml") << "[defaults]\ntransport = \"" << transport << "\"\ndepth = 8\n" << extra;
        options.domain = domain.name;
        options.config_path = dir + "/ferry.toml";
    }
    ~World() { std::filesystem::remove_all(dir); }
    ferry::Node node(const std::string& name) const { return ferry::Node(name, options); }
};

// Descriptors of this process that are epoll instances.
std::set<int> epoll_fds() {
    std::set<int> out;
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        char target[PATH_MAX] = {};
        const std::string link = std::string("/proc/self/fd/") + e->d_name;
        if (::readlink(link.c_str(), target, sizeof target - 1) > 0 && std::string(target) == "anon_inode:[eventpoll]")
            out.insert(std::atoi(e->d_name));
    }
    ::closedir(d);
    return out;
}

}  // namespace api_test

using api_test::Pose;
using api_test::World;

TEST_CASE("Result holds a value or the status saying why not", "[api]") {
    ferry::Result<int> sut = 42;
    CHECK(sut);
    CHECK(*sut == 42);
    CHECK(sut == 42);
    CHECK(sut.status().is_ok());
    ferry::Result<int> failed = ferry::Status(ferry::Errc::io_error, "uds: epoll_wait failed");
    CHECK_FALSE(failed);
    CHECK(failed.code() == ferry::Errc::io_error);
    CHECK(failed != 42);
    CHECK(failed.value_or(7) == 7);
    CHECK_THROWS_AS(failed.value(), ferry::Error);
    ferry::Result<int> from_ok = ferry::Status::ok();  // a misuse becomes an error, not a value
    CHECK_FALSE(from_ok);
    CHECK(from_ok.code() == ferry::Errc::internal);
    CHECK(std::string(ferry::errc_name(ferry::Errc::io_error)) == "io_error");
}

TEST_CASE("take_sample views every kind of type in place and decode() copies it out", "[api]") {
    const std::string transport = GENERATE(as<std::string>{}, "shm", "uds");
    World w(transport);
    auto node = w.node("samples");
    auto bytes_sub = node.subscribe<ferry::Bytes>("bytes");
    auto text_sub = node.subscribe<std::string>("text");
    auto pose_sub = node.subscribe<Pose>("pose");
    auto bytes_pub = node.advertise<ferry::Bytes>("bytes");
    auto text_pub = node.advertise<std::string>("text");
    auto pose_pub = node.advertise<Pose>("pose");
    REQUIRE(bytes_pub.wait_for_subscribers(1, 5000ms));
    REQUIRE(text_pub.wait_for_subscribers(1, 5000ms));
    REQUIRE(pose_pub.wait_for_subscribers(1, 5000ms));
    INFO("transport " << transport);

    SECTION("Bytes") {
        REQUIRE(bytes_pub.publish(ferry::Bytes{1, 2, 3, 4}));
        auto s = bytes_sub.take_sample(5s);
        REQUIRE(s);
        CHECK(s.status().is_ok());
        REQUIRE(s.size() == 4);
        CHECK(std::memcmp(s.data(), "\x01\x02\x03\x04", 4) == 0);
        CHECK(s.info().sequence == 1);
        CHECK(s.decode() == ferry::Bytes{1, 2, 3, 4});
        // Zero bytes is a message too: loan(0) is a loan of 0 bytes.
        auto empty = bytes_pub.loan(0);
        REQUIRE(empty);
        REQUIRE(empty.publish());
        auto e = bytes_sub.take_sample(5s);
        REQUIRE(e);
        CHECK(e.size() == 0);
        CHECK(e.decode() == ferry::Bytes{});
    }
    SECTION("std::string") {
        REQUIRE(text_pub.publish("hello"));
        auto s = text_sub.take_sample(5s);
        REQUIRE(s);
        CHECK(std::string(reinterpret_cast<const char*>(s.data()), s.size()) == "hello");
        CHECK(s.decode() == std::string("hello"));
    }
    SECTION("a trivially copyable T, read in place") {
        auto loan = pose_pub.loan();
        REQUIRE(loan);
        loan->x = 1.5;
        loan->y = -2;
        loan->theta = 0.25;
        REQUIRE(loan.publish());
        auto s = pose_sub.take_sample(5s);
        REQUIRE(s);
        CHECK(s->x == 1.5);
        CHECK((*s).y == -2);
        CHECK(s.size() == sizeof(Pose));
        auto copy = s.decode();
        REQUIRE(copy);
        CHECK(copy->theta == 0.25);
    }
    SECTION("take() of the same types returns the value") {
        REQUIRE(text_pub.publish("x"));
        REQUIRE(pose_pub.publish(Pose{3, 4, 5}));
        CHECK(text_sub.take(5s) == std::string("x"));
        auto p = pose_sub.take(5s);
        REQUIRE(p);
        CHECK(p->y == 4);
    }
    SECTION("nothing to take: timeout when waiting, would_block when not") {
        auto waited = text_sub.take(20ms);
        CHECK(waited.code() == ferry::Errc::timeout);
        auto polled = text_sub.try_take();
        CHECK(polled.code() == ferry::Errc::would_block);
        auto sample = pose_sub.take_sample(20ms);
        CHECK_FALSE(sample);
        CHECK(sample.status().code() == ferry::Errc::timeout);
        CHECK(pose_sub.try_take_sample().status().code() == ferry::Errc::would_block);
    }
    CHECK(bytes_sub.lost() + bytes_sub.corrupt() + text_sub.corrupt() + pose_sub.corrupt() == 0);
}

TEST_CASE("a message that is not a T counts in corrupt(), not in lost()", "[api]") {
    World w("uds");
    auto node = w.node("counters");
    auto sub = node.subscribe<Pose>("pose");
    auto raw = node.advertise_raw("pose", ferry::type_name<Pose>());  // same type name, wrong size
    REQUIRE(raw.wait_for_subscribers(1, 5000ms));
    const char three[3] = {1, 2, 3};
    REQUIRE(raw.publish(three, sizeof three));
    REQUIRE(raw.publish(three, sizeof three));
    Pose p{7, 8, 9};
    REQUIRE(raw.publish(&p, sizeof p));
    auto got = sub.take(5s);  // skips the two that are not a Pose
    REQUIRE(got);
    CHECK(got->x == 7);
    CHECK(sub.corrupt() == 2);
    CHECK(sub.lost() == 0);
    REQUIRE(raw.publish(three, sizeof three));
    CHECK_FALSE(sub.take_sample(300ms));  // the sample path checks the size too
    CHECK(sub.corrupt() == 3);
}

TEST_CASE("a take that failed because the transport broke reports io_error, not a timeout", "[api]") {
    World w("uds");
    auto node = w.node("broken");
    const auto before = api_test::epoll_fds();
    auto sub = node.subscribe<std::string>("t");
    auto after = api_test::epoll_fds();
    for (int fd : before) after.erase(fd);
    REQUIRE(after.size() == 1);  // the uds reader's epoll set
    // Break it for real: the reader's descriptor now refers to a file, so epoll_wait fails (EINVAL).
    const int file = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(file >= 0);
    REQUIRE(::dup2(file, *after.begin()) == *after.begin());
    ::close(file);
    const auto start = std::chrono::steady_clock::now();
    auto got = sub.take(5s);
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(got);
    INFO(got.status().message());
    CHECK(got.code() == ferry::Errc::io_error);
    CHECK(got.status().message().find("epoll_wait") != std::string::npos);
    CHECK(took < ferry::test::time_bound(std::chrono::seconds(1)));  // at once, not at the deadline
    CHECK(sub.take_sample(5s).status().code() == ferry::Errc::io_error);
}

TEST_CASE("a callback subscription runs until its handle is dropped, which waits for a running callback", "[api]") {
    World w("uds");
    auto node = w.node("callback");
    std::atomic<int> calls{0};
    std::atomic<bool> slow_started{false}, slow_finished{false};
    auto pub = node.advertise<std::string>("cb");
    {
        auto sub = node.subscribe<std::string>("cb", [&](const std::string& s, const ferry::MessageInfo& info) {
            if (info.sequence > 0) ++calls;
            if (s != "slow") return;
            slow_started = true;
            std::this_thread::sleep_for(1s);  // a long callback, still running when the handle is dropped
            slow_finished = true;
        });
        REQUIRE(sub);
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        REQUIRE(pub.publish("fast"));
        REQUIRE(ferry::test::wait_until([&] { return calls.load() == 1; }, 5000ms));
        REQUIRE(pub.publish("slow"));
        REQUIRE(ferry::test::wait_until([&] { return slow_started.load(); }, 5000ms));
        CHECK_FALSE(slow_finished.load());
    }  // the destructor returns only after the running callback did
    CHECK(slow_finished.load());
    CHECK(ferry::test::wait_until([&] { return pub.subscriber_count() == 0; }, 5000ms));
    const int seen = calls.load();
    (void)pub.publish("fast");
    CHECK(calls.load() == seen);  // nothing runs the callback any more
}

TEST_CASE("a callback that keeps its samples stops at max_held_samples and goes on at each release from another thread",
          "[api]") {
    // The callback thread waits for a release without polling: the releasing thread must wake
    // it, however the two interleave. 50 rounds of hold 2, release one.
    World w("shm", "max_held_samples = 2\n");
    auto node = w.node("keeper");
    auto pub = node.advertise_raw("keep", "bytes");
    std::mutex mu;
    std::vector<ferry::RawSample> kept;
    std::atomic<std::uint64_t> got{0};
    auto sub = node.subscribe_raw("keep", "bytes", [&](ferry::RawSample& s) {
        std::lock_guard<std::mutex> lock(mu);
        kept.push_back(std::move(s));
        ++got;
    });
    REQUIRE(pub.wait_for_subscribers(1, 5000ms));
    constexpr std::uint64_t kMessages = 52;
    std::uint64_t sent = 0;
    auto send = [&] {
        REQUIRE(pub.publish(&sent, sizeof sent));
        ++sent;
    };
    send();
    send();
    REQUIRE(ferry::test::wait_until([&] { return got.load() == 2; }, 5000ms));
    for (std::uint64_t round = 0; round + 2 < kMessages; ++round) {
        send();  // queued: the callback thread has it only after a release
        {
            std::lock_guard<std::mutex> lock(mu);
            REQUIRE(kept.size() == 2);  // never more than max_held_samples
            kept.erase(kept.begin());   // released here, on this thread
        }
        INFO("round " << round);
        REQUIRE(ferry::test::wait_until([&] { return got.load() == round + 3; }, 5000ms));
    }
    std::lock_guard<std::mutex> lock(mu);
    for (std::size_t i = 0; i < kept.size(); ++i) {
        std::uint64_t v = 0;
        std::memcpy(&v, kept[i].data(), sizeof v);
        CHECK(v == kMessages - 2 + i);  // in order, none lost
    }
    kept.clear();
}

TEST_CASE("NodeOptions::transport puts every topic of the node on that transport", "[api]") {
    World world("shm", "[[topic]]\nmatch = \"x/*\"\ntransport = \"shm\"\ndepth = 5\n");
    ferry::NodeOptions options = world.options;
    options.transport = "uds";
    ferry::Node sut("forced", options);
    auto pub = sut.advertise<std::string>("x/forced");
    CHECK(pub.qos().transport == "uds");
    CHECK(pub.qos().depth == 5);  // the rest of the QoS still comes from the config
    // A node without the override that the config sends to shm is refused, naming the conflict.
    CHECK_THROWS_WITH(world.node("plain").subscribe<std::string>("x/forced"), Catch::Contains("uds") && Catch::Contains("shm"));
    options.transport = "no_such_transport";
    CHECK_THROWS_WITH(ferry::Node("bad", options), Catch::Contains("unknown transport 'no_such_transport'"));
}
