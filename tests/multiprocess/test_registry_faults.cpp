// The registry against hostile or unlucky neighbours, with real processes: a holder of the
// lock that stops (SIGSTOP), a full /dev/shm, a registry file owned by another uid, and a
// registry file truncated or removed under running processes.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include <ferry/error.hpp>
#include <ferry/transport/naming.hpp>

#include "registry/registry.hpp"
#include "support/process.hpp"

using namespace ferry::detail;
using namespace std::chrono_literals;

namespace {

TopicRecord topic(const std::string& name, const std::string& type = "string") {
    TopicRecord t;
    t.name = name;
    t.type = type;
    t.qos.transport = "uds";
    return t;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// The one-letter state of /proc/<pid>/stat ('T' stopped, 'S' sleeping, ...).
char proc_state(pid_t pid) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

bool stopped(pid_t pid) { return proc_state(pid) == 'T'; }

// True while the main thread of `pid` sleeps on a futex (waiting for a lock).
bool in_futex_wait(pid_t pid) {
    return read_file("/proc/" + std::to_string(pid) + "/wchan").find("futex") != std::string::npos;
}

// A child that takes the registry lock of `domain` and stops itself inside it.
ferry::test::Child stopped_holder(const std::string& domain) {
    return ferry::test::Child::fork([domain] {
        ::setenv("FERRY_TEST_STOP_IN_REGISTRY_LOCK", "1", 1);
        Registry r(domain);
        auto added = r.add_endpoint(topic("held"), false, Role::publisher,
                                    ferry::transport::make_endpoint_id(::getpid(), 1), "holder");
        return added.ok ? 0 : 3;
    });
}

std::map<std::string, std::string> env_for(const std::string& domain) {
    return {{"FERRY_DOMAIN", domain}, {"FERRY_PLUGIN_PATH", FERRY_TEST_PLUGIN_DIR}};
}

}  // namespace

TEST_CASE("a process stopped while holding the registry lock hangs nobody", "[registry][multiprocess]") {
    const auto domain = ferry::test::unique_domain();
    Registry sut(domain);
    REQUIRE(sut.add_endpoint(topic("chatter"), false, Role::subscriber, 0x1000001, "early").ok);
    // A listener already running, whose own timeout expires while the lock is held. Running
    // means past subscribe(), which prints its first line: a subscribe() still going when the
    // holder stops fails with the lock error instead (right, but not what this case tests).
    auto listener = ferry::test::Child::spawn(
        {ferry::test::bin_path("listener"), "--topic", "quiet", "--count", "1", "--timeout", "2"}, env_for(domain));
    REQUIRE(ferry::test::wait_until(
        [&] { return listener.output().find("listener: topic 'quiet'") != std::string::npos; }, 5000ms));
    REQUIRE(sut.topics().size() == 2);

    auto holder = stopped_holder(domain);
    REQUIRE(ferry::test::wait_until([&] { return stopped(holder.pid()); }, 5000ms));
    const std::string message = "registry lock of domain " + domain + " held by pid " + std::to_string(holder.pid()) +
                                " (stopped)";

    // A new endpoint: a clear error within the deadline.
    auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(sut.add_endpoint(topic("late"), false, Role::subscriber, 0x1000002, "late"),
                      Catch::Contains(message));
    CHECK(std::chrono::steady_clock::now() - start < 3s);

    // ferry topic list: the same, exit code 1.
    start = std::chrono::steady_clock::now();
    auto list = ferry::test::Child::spawn({ferry::test::bin_path("ferry"), "topic", "list"}, env_for(domain));
    CHECK(list.wait(5000ms) == 1);
    CHECK(std::chrono::steady_clock::now() - start < 4s);
    CHECK_THAT(list.output(), Catch::Contains(message));

    // SIGTERM ends a ferry command waiting for the lock at once.
    auto waiting = ferry::test::Child::spawn({ferry::test::bin_path("ferry"), "topic", "list"}, env_for(domain));
    REQUIRE(ferry::test::wait_until([&] { return in_futex_wait(waiting.pid()); }, 3000ms));
    start = std::chrono::steady_clock::now();
    waiting.kill(SIGTERM);
    CHECK(waiting.wait(3000ms) == 1);
    CHECK(std::chrono::steady_clock::now() - start < 500ms);
    CHECK_THAT(waiting.output(), Catch::Contains("interrupted while waiting for the registry lock"));

    // The listener whose timeout expired exits (its destructors do not wait forever).
    CHECK(listener.wait(8000ms) == 1);
    CHECK_THAT(listener.output(), Catch::Contains("timed out"));

    // Resumed, the holder finishes and everyone proceeds.
    holder.kill(SIGCONT);
    CHECK(holder.wait(5000ms) == 0);
    CHECK(sut.add_endpoint(topic("late"), false, Role::subscriber, 0x1000002, "late").ok);
    auto list2 = ferry::test::Child::spawn({ferry::test::bin_path("ferry"), "topic", "list"}, env_for(domain));
    CHECK(list2.wait(5000ms) == 0);
    CHECK_THAT(list2.output(), Catch::Contains("late"));
}

TEST_CASE("SIGSTOP and SIGCONT at random moments of start-up never hang the others", "[registry][multiprocess]") {
    const char* env = std::getenv("FERRY_STOP_ROUNDS");
    const int rounds = env ? std::atoi(env) : 20;
    const auto domain = ferry::test::unique_domain();
    Registry sut(domain);
    REQUIRE(sut.add_endpoint(topic("chatter"), false, Role::subscriber, 0x1000001, "steady").ok);
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> delay_us(0, 3000);
    int held = 0;
    for (int round = 0; round < rounds; ++round) {
        auto child = ferry::test::Child::fork([domain] {
            Registry r(domain);
            auto added = r.add_endpoint(topic("chatter"), false, Role::publisher,
                                        ferry::transport::make_endpoint_id(::getpid(), 1), "starter");
            return added.ok ? 0 : 3;
        });
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));  // a random moment, on purpose
        child.kill(SIGSTOP);
        REQUIRE(ferry::test::wait_until([&] { return stopped(child.pid()) || !child.running(); }, 5000ms));
        const auto start = std::chrono::steady_clock::now();
        try {
            (void)sut.endpoints();
        } catch (const ferry::Error& e) {
            ++held;
            CHECK_THAT(e.what(), Catch::Contains("held by pid " + std::to_string(child.pid()) + " (stopped)"));
        }
        CHECK(std::chrono::steady_clock::now() - start < 3s);
        child.kill(SIGCONT);
        REQUIRE(child.wait(5000ms) == 0);
        sut.purge_dead();
        CHECK(sut.endpoints().size() == 1);  // the child is gone, nothing half-written stays
    }
    INFO("rounds in which the stopped child held the lock: " << held);
    CHECK(sut.topics().size() == 1);
}

TEST_CASE("a full /dev/shm is a clear no_resources error when the registry is created", "[registry][multiprocess]") {
    if (::geteuid() != 0) {
        WARN("skipped: a private tmpfs on /dev/shm needs root (a mount namespace); run the suite as root to check this");
        return;
    }
    // Forked before any thread: unshare(CLONE_NEWNS) needs a single-threaded process.
    auto child = ferry::test::Child::fork([] {
        if (::unshare(CLONE_NEWNS) != 0) return 10;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 11;
        if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") != 0) return 12;
        const int fill = ::open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
        char block[4096] = {};
        while (::write(fill, block, sizeof block) > 0) {
        }
        ::close(fill);
        try {
            Registry r("full");
            return 1;  // created a registry in a full /dev/shm?
        } catch (const ferry::Error& e) {
            const std::string what = e.what();
            if (e.code() != ferry::Errc::no_resources) return 2;
            if (what.find("/dev/shm (size 64.0 KiB") == std::string::npos) return 3;
            if (what.find("has no room for the") == std::string::npos) return 4;
        }
        if (!ferry::test::leftovers("/dev/shm", "full").empty()) return 5;  // no registry.tmp.<pid>
        return 0;
    });
    CHECK(child.wait(10000ms) == 0);  // not 128 + SIGBUS
}

TEST_CASE("shm with the default config in Docker's 64 MiB /dev/shm: 64 B and 4 MiB topics work, a full one is a clear error", "[shm][multiprocess][containers]") {
    if (::geteuid() != 0) {
        WARN("skipped: a private tmpfs on /dev/shm needs root (a mount namespace); run the suite as root to check this");
        return;
    }
    const auto domain = ferry::test::unique_domain();
    char tmpl[] = "/tmp/ferry-shm64-XXXXXX";
    const int cfg_fd = ::mkstemp(tmpl);
    REQUIRE(cfg_fd >= 0);
    const std::string config = tmpl;
    const std::string text = "# every QoS key at its default, on shm\n[defaults]\ntransport = \"shm\"\n";
    REQUIRE(::write(cfg_fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(cfg_fd);
    auto env = env_for(domain);
    env["FERRY_CONFIG"] = config;
    // Exit codes say which step failed; a SIGBUS anywhere would show as 128+7 in a child's code.
    // Forked before any thread: unshare(CLONE_NEWNS) needs a single-threaded process.
    auto child = ferry::test::Child::fork([&] {
        if (::unshare(CLONE_NEWNS) != 0) return 10;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 11;
        if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64m,mode=1777") != 0) return 12;
        auto report = [](const char* what, ferry::test::Child& c, int code) {
            std::fprintf(stderr, "%s exited %d:\n%s\n", what, code, c.output().c_str());
        };
        // A pair per topic: the talker publishes as fast as the listener takes (no rate limit).
        auto pair = [&](const std::string& topic, const std::string& size, const std::string& count) {
            auto listener = ferry::test::Child::spawn(
                {ferry::test::bin_path("listener"), "--topic", topic, "--count", count, "--timeout", "30"}, env);
            auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", topic, "--count", count,
                                                     "--size", size, "--wait-subscribers", "1", "--wait-timeout", "20"},
                                                    env);
            const int t = talker.wait(40000ms), l = listener.wait(40000ms);
            if (t != 0) report("talker", talker, t);
            if (l != 0) report("listener", listener, l);
            return t == 0 && l == 0;
        };
        if (!pair("small", "64", "2000")) return 1;
        if (!pair("camera", std::to_string(4u << 20), "200")) return 2;
        if (!ferry::test::leftovers("/dev/shm", domain).empty()) return 3;

        // Now fill /dev/shm up to 3 MiB: a 4 MiB message cannot have a chunk any more.
        const int fill = ::open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
        if (fill < 0) return 4;
        std::vector<char> block(1u << 20, 'x');
        for (;;) {
            struct statvfs st {};
            if (::statvfs("/dev/shm", &st) != 0) return 5;
            if (static_cast<unsigned long long>(st.f_bavail) * st.f_frsize < (4u << 20)) break;
            if (::write(fill, block.data(), block.size()) != static_cast<ssize_t>(block.size())) return 6;
        }
        ::close(fill);
        // One listener, two talkers on its topic: the 4 MiB one fails at each loan with the
        // reason, the 64 B one is received in full by the same listener.
        auto listener = ferry::test::Child::spawn(
            {ferry::test::bin_path("listener"), "--topic", "camera", "--count", "100", "--timeout", "30"}, env);
        auto big = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "camera", "--count", "5",
                                              "--size", std::to_string(4u << 20), "--wait-subscribers", "1",
                                              "--wait-timeout", "20"},
                                             env);
        const int b = big.wait(40000ms);
        const std::string out = big.output();
        if (b != 1 || out.find("sent 0 failed 5") == std::string::npos ||
            out.find("cannot reserve ") == std::string::npos || out.find("/dev/shm (64 MiB, ") == std::string::npos ||
            out.find("enlarge /dev/shm") == std::string::npos) {
            report("4 MiB talker in a full /dev/shm", big, b);
            return 7;
        }
        auto small = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "camera", "--count", "100",
                                                "--size", "64", "--wait-subscribers", "1", "--wait-timeout", "20"},
                                               env);
        const int s = small.wait(40000ms), l = listener.wait(40000ms);
        if (s != 0) report("64 B talker", small, s);
        if (l != 0) report("listener", listener, l);
        if (s != 0 || l != 0) return 8;
        ::unlink("/dev/shm/filler");
        if (!ferry::test::leftovers("/dev/shm", domain).empty()) return 9;
        return 0;
    });
    CHECK(child.wait(120000ms) == 0);
    ::unlink(config.c_str());
}

TEST_CASE("a registry file created first by another uid is reported as theirs", "[registry][security][multiprocess]") {
    if (::geteuid() != 0) {
        WARN("skipped: creating a second uid needs root; run the suite as root to check this");
        return;
    }
    if (::getpwnam("ferrytest") == nullptr)
        REQUIRE(std::system("useradd --system --no-create-home ferrytest >/dev/null 2>&1") == 0);
    const passwd* pw = ::getpwnam("ferrytest");
    REQUIRE(pw != nullptr);
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    const auto domain = ferry::test::unique_domain();
    const auto path = Registry::path_for(domain);
    // The squatter: an empty file under the registry's name, as `touch` would make it.
    auto squatter = ferry::test::Child::fork([&] {
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) return 11;
        const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
        return fd >= 0 ? 0 : 12;
    });
    REQUIRE(squatter.wait(5000ms) == 0);
    const std::string expected = path + " belongs to uid " + std::to_string(uid) + ", not to you (uid 0)";
    CHECK_THROWS_WITH(Registry(domain), Catch::Contains(expected));
    // ferry says the same, and `ferry clean` (root) removes it: nobody takes part in the domain.
    auto list = ferry::test::Child::spawn({ferry::test::bin_path("ferry"), "topic", "list"}, env_for(domain));
    CHECK(list.wait(5000ms) == 1);
    CHECK_THAT(list.output(), Catch::Contains(expected));
    auto clean = ferry::test::Child::spawn({ferry::test::bin_path("ferry"), "clean"}, env_for(domain));
    CHECK(clean.wait(5000ms) == 0);
    CHECK_THAT(clean.output(), Catch::Contains("removed " + path));
    struct stat st {};
    CHECK(::stat(path.c_str(), &st) != 0);
    ::unlink(path.c_str());
}

TEST_CASE("ferry clean removes a zero-size registry of a domain nobody takes part in", "[registry][multiprocess]") {
    const auto domain = ferry::test::unique_domain();
    const auto path = Registry::path_for(domain);
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    ::close(fd);
    CHECK_THROWS_WITH(Registry(domain), Catch::Contains("unexpected size (0 bytes") && Catch::Contains("ferry clean"));
    auto clean = ferry::test::Child::spawn({ferry::test::bin_path("ferry"), "clean"}, env_for(domain));
    CHECK(clean.wait(5000ms) == 0);
    CHECK_THAT(clean.output(), Catch::Contains("removed " + path) && Catch::Contains("0 bytes"));
    struct stat st {};
    CHECK(::stat(path.c_str(), &st) != 0);
    ::unlink(path.c_str());
}

namespace {

// A talker/listener pair survives its registry file being `damage`d: both keep exchanging,
// and a listener started afterwards meets the talker.
void survive(const std::function<void(const std::string&)>& damage) {
    const auto domain = ferry::test::unique_domain();
    const auto path = Registry::path_for(domain);
    auto env = env_for(domain);
    auto listener = ferry::test::Child::spawn(
        {ferry::test::bin_path("listener"), "--topic", "chatter", "--count", "150", "--timeout", "20"}, env);
    auto talker = ferry::test::Child::spawn(
        {ferry::test::bin_path("talker"), "--topic", "chatter", "--count", "200", "--rate", "50",
         "--wait-subscribers", "1", "--wait-timeout", "10"},
        env);
    auto registered = [&] {
        try {
            auto r = Registry::open_existing(domain);
            return r && r->endpoints().size() == 2;
        } catch (const ferry::Error&) {
            return false;
        }
    };
    REQUIRE(ferry::test::wait_until(registered, 10000ms));
    damage(path);
    // Both notice within a discovery period and rejoin a fresh registry.
    CHECK(ferry::test::wait_until(registered, 5000ms));
    auto late = ferry::test::Child::spawn(
        {ferry::test::bin_path("listener"), "--topic", "chatter", "--count", "5", "--timeout", "10"}, env);
    CHECK(late.wait(15000ms) == 0);
    CHECK(listener.wait(25000ms) == 0);  // kept receiving, most of it after the damage
    CHECK(talker.wait(10000ms) == 0);    // all published, no SIGBUS
    INFO(listener.output());
    INFO(talker.output());
    CHECK(ferry::test::leftovers("/dev/shm", domain).empty());
}

}  // namespace

TEST_CASE("a registry file truncated to 0 bytes under a running pair kills nobody", "[registry][multiprocess]") {
    survive([](const std::string& path) { REQUIRE(::truncate(path.c_str(), 0) == 0); });
}

TEST_CASE("a registry file removed under a running pair is recreated and rejoined", "[registry][multiprocess]") {
    survive([](const std::string& path) { REQUIRE(::unlink(path.c_str()) == 0); });
}

TEST_CASE("processes in another pid and time namespace and outside meet and exchange, both ways", "[registry][multiprocess][containers]") {
    if (::geteuid() != 0) {
        WARN("skipped: a pid namespace needs root; run the suite as root to check this");
        return;
    }
    const std::string transport = GENERATE(as<std::string>{}, "uds", "shm", "mq", "pipe");
    const bool listener_inside = GENERATE(true, false);
    INFO("transport " << transport << (listener_inside ? ", listener inside" : ", talker inside"));
    const auto domain = ferry::test::unique_domain();
    auto env = env_for(domain);
    env["FERRY_CONFIG"] = std::string(FERRY_TEST_SOURCE_DIR) + "/examples/configs/" + transport + ".toml";
    const std::vector<std::string> listen{ferry::test::bin_path("listener"), "--topic", "across", "--count", "30",
                                          "--timeout", "20"};
    const std::vector<std::string> talk{ferry::test::bin_path("talker"), "--topic", "across", "--count", "30", "--rate",
                                        "100", "--wait-subscribers", "1", "--wait-timeout", "10"};
    const auto& inside_argv = listener_inside ? listen : talk;
    // The "container": a new pid namespace with its own /proc, and a time namespace whose
    // monotonic and boot-time clocks run an hour ahead, sharing /dev/shm and the runtime dir.
    auto container = ferry::test::Child::fork([&] {
        if (::unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWTIME) != 0) return 10;
        {
            std::ofstream offsets("/proc/self/timens_offsets");
            offsets << "monotonic 3600 0\nboottime 3600 0\n";
            if (!offsets.flush()) return 14;
        }
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 11;
        auto inside = ferry::test::Child::fork([&] {
            if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) return 12;
            for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
            std::vector<char*> args;
            for (const auto& a : inside_argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            return 13;
        });
        return inside.wait(30000ms);
    });
    auto registered = [&](std::size_t n) {
        try {
            auto r = Registry::open_existing(domain);
            return r && r->endpoints().size() == n;
        } catch (const ferry::Error&) {
            return false;
        }
    };
    REQUIRE(ferry::test::wait_until([&] { return registered(1); }, 10000ms));
    // Its liveness, judged by its token, not by a pid that means something else here.
    const std::uint64_t inside_id = Registry::open_existing(domain)->endpoints().at(0).id;
    CHECK(ferry::transport::peer_alive(domain, inside_id));
    auto outside = ferry::test::Child::spawn(listener_inside ? talk : listen, env);
    CHECK(outside.wait(20000ms) == 0);
    INFO(outside.output());
    CHECK(container.wait(30000ms) == 0);  // the side inside sent or got all 30
    CHECK_FALSE(ferry::transport::peer_alive(domain, inside_id));
    for (const char* dir : {"/dev/shm", "/dev/mqueue"})
        CHECK(ferry::test::wait_until([&] { return ferry::test::leftovers(dir, domain).empty(); }, 3000ms));
}

TEST_CASE("peer_alive follows a process's liveness token, not its pid", "[registry][multiprocess]") {
    const auto domain = ferry::test::unique_domain();
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    auto child = ferry::test::Child::fork([&] {
        Registry r(domain);
        const std::uint64_t id = ferry::transport::make_endpoint_id(::getpid(), 1);
        if (::write(fds[1], &id, sizeof id) != sizeof id) return 4;
        ::pause();
        return 0;
    });
    std::uint64_t id = 0;
    REQUIRE(::read(fds[0], &id, sizeof id) == sizeof id);
    CHECK(ferry::transport::peer_alive(domain, id));
    CHECK_FALSE(ferry::transport::peer_alive(domain, ferry::transport::make_endpoint_id(::getpid(), 1)));  // no token
    child.kill(SIGKILL);
    REQUIRE(child.wait(5000ms) == 128 + SIGKILL);
    CHECK_FALSE(ferry::transport::peer_alive(domain, id));  // the kernel released its lock
    Registry cleaner(domain);  // joining purges: the dead token's file goes
    cleaner.purge_dead();
    ::close(fds[0]);
    ::close(fds[1]);
}
