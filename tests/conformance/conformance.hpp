// The transport conformance suite: every case runs once per transport plugin the loader finds,
// as its own test named "<transport>: <case>" and tagged [conformance][<transport>]. A new
// plugin gets the whole suite by existing.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <ferry/ferry.hpp>
#include <ferry/introspection.hpp>

#include "support/process.hpp"

// Ends a case that cannot apply to a network transport, saying why (a WARN, as other skips).
#define CONFORMANCE_SKIP_ON_NETWORK(why)                                                 \
    do {                                                                                 \
        if (::conformance::network(transport)) {                                         \
            WARN(transport << ": skipped on a network transport (Capabilities::network): " << why); \
            return;                                                                      \
        }                                                                                \
    } while (false)

// Requires a ferry::Status to be ok, showing its message when it is not.
#define REQUIRE_OK(expr)                     \
    do {                                     \
        const ::ferry::Status st_ = (expr);  \
        INFO("status: " << st_.message());   \
        REQUIRE(st_.is_ok());                \
    } while (false)

namespace conformance {

// The transport declares Capabilities::network (dds): peers through a network engine, no OS
// objects of its own, back-pressure by acknowledgement rather than by a reader's queue.
bool network(const std::string& transport);

using CaseFn = void (*)(const std::string& transport);

struct Case {
    std::string name;
    CaseFn fn;
};

std::vector<Case>& registry();

struct Registrar {
    Registrar(const char* name, CaseFn fn) { registry().push_back({name, fn}); }
};

#define FERRY_CONF_CAT2(a, b) a##b
#define FERRY_CONF_CAT(a, b) FERRY_CONF_CAT2(a, b)
// CONFORMANCE_CASE("what it checks") { ... uses `transport` ... }
#define CONFORMANCE_CASE(name)                                                                \
    static void FERRY_CONF_CAT(conf_case_, __LINE__)(const std::string& transport);          \
    static const ::conformance::Registrar FERRY_CONF_CAT(conf_reg_, __LINE__)(                \
        name, &FERRY_CONF_CAT(conf_case_, __LINE__));                                         \
    static void FERRY_CONF_CAT(conf_case_, __LINE__)(const std::string& transport)

struct QosOverrides {
    std::uint32_t depth = 8;  // fits a POSIX queue under the default fs.mqueue.msg_max (10)
    std::string overflow = "block";
    std::string max_message_size = "1MiB";
    int block_timeout_ms = 1000;
    std::string mode = "0600";
    int linger_ms = -1;  // -1: not written (the built-in default)
};

// One test's world: a fresh domain, a config file selecting `transport`, the environment for
// child processes, and the leak check at the end.
class Fixture {
public:
    Fixture(const std::string& transport, const QosOverrides& qos = {});
    ~Fixture();

    const std::string& domain() const { return domain_; }
    const std::string& config_path() const { return config_path_; }
    ferry::Node node(const std::string& name) const;

    // talker/listener (examples) in this fixture's domain and config.
    // Runs an example program in this world; `env` adds to (or overrides) its environment.
    ferry::test::Child spawn(const std::string& program,
                             const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env = {}) const;

    // Sum of the messages counter of the topic's live publishers, from the registry.
    std::uint64_t published(const std::string& topic) const;
    // The messages counter of the publisher of `topic` in process `pid`.
    std::uint64_t published_by(const std::string& topic, int pid) const;

    // Asserts that nothing of the domain remains in /dev/shm, /dev/mqueue or the runtime dir,
    // after removing what SIGKILLed processes left if `after_crash`.
    void expect_no_leftovers(bool after_crash = false) const;

private:
    std::string domain_, dir_, config_path_;
};

// The runtime directory ferry uses for sockets and FIFOs in this environment.
std::string runtime_dir();

// Collects what a callback subscriber receives on its thread. Declare it before the subscriber
// it feeds, so that it outlives it.
template <class T>
class Collector {
public:
    ferry::Subscription subscribe(ferry::Node& node, const std::string& topic) {
        return node.subscribe<T>(topic, [this](const T& v) {
            std::lock_guard<std::mutex> lock(mu_);
            got_.push_back(v);
        });
    }
    bool wait_for(std::size_t n, std::chrono::milliseconds timeout) {
        return ferry::test::wait_until([&] { return snapshot().size() >= n; }, timeout);
    }
    std::vector<T> snapshot() const {
        std::lock_guard<std::mutex> lock(mu_);
        return got_;
    }

private:
    mutable std::mutex mu_;
    std::vector<T> got_;
};

// Waits (bounded) for `line` to appear in a finished child's output.
bool output_has(const ferry::test::Child& child, const std::string& text);

}  // namespace conformance
