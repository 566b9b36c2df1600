// ferry-bench: latency and throughput of every ferry transport through the public API, next to
// the raw OS mechanism underneath it, between two real processes.
//
//   ferry-bench [--transports shm,uds,mq,pipe,dds] [--sizes 64,4096,...] [--iterations N] [--json FILE]
//               [--kinds ferry,raw,...] [--repeat R] [--pin] [--same-cpu] [--qos KEY=VALUE ...]
//               [--fanout N]
//
// For each transport and size it spawns itself as the echo peer (`--peer ...`, hidden), once
// through ferry (a fresh FERRY_DOMAIN and a generated config) and once through the raw
// mechanism, and measures ping-pong latency (one way = round trip / 2) and one-direction
// throughput. With the shm transport it can also measure, in the same run, a spinning raw ring
// (raw-spin), ferry with `wait = "spin"` (ferry-spin), ZeroMQ and iceoryx (peer_channels.hpp).
// --fanout N: one publisher, N subscriber processes (ferry only). Kind `bridge` (shm): the ping
// process and its peer in two domains on shm, joined by two `ferry bridge` processes over dds on
// lo, so each way is shm -> bridge -> dds -> bridge -> shm; compare with --transports dds.
// Exits 1 if any measurement failed, 2 on bad arguments.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include <ferry/introspection.hpp>
#include <ferry/node.hpp>

#include "channel.hpp"
#include "ferry_channel.hpp"
#include "peer_channels.hpp"
#include "raw_channels.hpp"
#include "report.hpp"

extern char** environ;

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kDepth = 16;
int g_peer_cpu = -1;  // --pin / --same-cpu: the CPU the peer pins itself to
std::vector<std::string> g_qos;  // --qos KEY=VALUE: lines added to the [defaults] of ferry's config

// What each kind measures (see the file comment); the first two run for every transport, the
// others for shm only.
const std::vector<std::string> kKinds = {"ferry", "raw", "ferry-spin", "raw-spin", "bridge", "iceoryx-poll", "iceoryx-waitset", "zmq"};
bool shm_only(const std::string& kind) { return kind != "ferry" && kind != "raw"; }
bool is_other(const std::string& kind) { return kind == "zmq" || kind.rfind("iceoryx", 0) == 0; }

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string item; std::getline(in, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

// "64", "4K", "4KiB", "16M", "16MiB".
bool parse_size(const std::string& text, std::size_t& out) {
    std::size_t pos = 0;
    unsigned long long v = 0;
    try {
        v = std::stoull(text, &pos);
    } catch (...) {
        return false;
    }
    const std::string unit = text.substr(pos);
    if (unit.empty() || unit == "B") out = v;
    else if (unit == "K" || unit == "KiB") out = v << 10;
    else if (unit == "M" || unit == "MiB") out = v << 20;
    else return false;
    return true;
}

// Latency iterations and throughput messages for one size: `iterations` up to 64 KiB, then
// fewer as messages grow, so that every (transport, size) costs about the same time. shm moves
// no payload bytes (zero copy, header only), so its counts do not shrink with the size.
std::size_t round_trips_for(const std::string& transport, std::size_t iterations, std::size_t size) {
    const std::size_t floor = std::min<std::size_t>(iterations, 50);
    if (transport == "shm" || size <= (64u << 10)) return iterations;
    return std::max(floor, iterations / (size / (64u << 10)));
}
std::size_t messages_for(const std::string& transport, std::size_t iterations, std::size_t size) {
    const std::size_t floor = std::min<std::size_t>(iterations, 50);
    const std::size_t by_bytes = iterations * (100u << 10) / size;
    if (transport == "shm") return iterations * 20;
    return std::max(floor, std::min(iterations * 20, by_bytes));
}

// --depth: queue depth of every topic and raw ring/queue (default kDepth).
std::uint32_t g_depth = kDepth;

std::uint32_t depth_for(const std::string& transport) {
    // A POSIX queue may hold at most fs.mqueue.msg_max messages (for processes without
    // CAP_SYS_RESOURCE); ferry's mq topic and the raw queues get the same depth.
    if (transport == "mq") return static_cast<std::uint32_t>(std::min<std::size_t>(g_depth, mq_msg_max()));
    return g_depth;
}

std::string self_exe() {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("ferry-bench");
}

class Peer {
public:
    bool spawn(const std::vector<std::string>& args, std::string& error) {
        std::vector<std::string> all = args;
        if (g_peer_cpu >= 0) all.insert(all.end(), {"--peer-cpu", std::to_string(g_peer_cpu)});
        return spawn_program(self_exe(), all, error);
    }

    // `quiet`: its standard output goes to /dev/null.
    bool spawn_program(const std::string& path, const std::vector<std::string>& args, std::string& error, bool quiet = false) {
        std::vector<std::string> argv{path};
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> cargv;
        for (auto& a : argv) cargv.push_back(a.data());
        cargv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        if (quiet) ::posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        const int rc = ::posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(), environ);
        ::posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            error = "cannot start the peer " + argv[0] + ": " + std::strerror(rc);
            pid_ = -1;
            return false;
        }
        return true;
    }

    // Exit code of the peer; SIGKILLs it if it has not ended within `timeout`.
    int wait(std::chrono::milliseconds timeout) {
        if (pid_ < 0) return -1;
        const auto deadline = Clock::now() + timeout;
        int status = 0;
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (Clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                pid_ = -1;
                return -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the run is over: no measurement
        }
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    // SIGTERM, then the exit code as wait() gives it.
    int stop(std::chrono::milliseconds timeout) {
        if (pid_ > 0) ::kill(pid_, SIGTERM);
        return wait(timeout);
    }

    ~Peer() {
        if (pid_ > 0) wait(std::chrono::milliseconds(0));
    }

private:
    pid_t pid_ = -1;
};

Record to_record(const std::string& transport,
                 const std::string& kind,
                 std::size_t size,
                 std::size_t round_trips,
                 std::size_t messages,
                 const Measurement& m) {
    Record r;
    r.transport = transport;
    r.kind = kind;
    r.size = size;
    r.round_trips = round_trips;
    r.messages = messages;
    r.ok = m.ok;
    r.error = m.error;
    if (m.ok) {
        r.p50_us = percentile(m.one_way_us, 0.50);
        r.p90_us = percentile(m.one_way_us, 0.90);
        r.p99_us = percentile(m.one_way_us, 0.99);
        r.max_us = m.one_way_us.back();
        r.send_p50_us = percentile(m.send_us, 0.50);
        r.msgs_per_s = m.msgs_per_s;
        r.gb_per_s = m.msgs_per_s * static_cast<double>(size) / 1e9;
    }
    return r;
}

// Runs `body` against `count` freshly spawned peers and reaps them; a peer that failed fails the run.
Measurement with_peer(const std::vector<std::string>& peer_args,
                      const std::function<Measurement()>& body,
                      std::size_t count = 1) {
    Measurement m;
    std::vector<Peer> peers(count);
    for (auto& peer : peers)
        if (!peer.spawn(peer_args, m.error)) return m;
    m = body();
    for (auto& peer : peers) {
        const int code = peer.wait(m.ok ? std::chrono::milliseconds(10000) : std::chrono::milliseconds(0));
        if (m.ok && code != 0) {
            m.ok = false;
            m.error = "the peer exited with code " + std::to_string(code);
        }
    }
    return m;
}

// A ferry.toml in a temporary directory of its own, removed with it: the [defaults] every ferry
// measurement uses (the transport's depth, block, max_message_size = the message size), the
// --qos keys, then `extra` (plugin and bridge tables). Check it with operator bool; `error`
// says why it could not be made.
class BenchConfig {
public:
    BenchConfig(const std::string& transport, std::size_t size, const std::vector<std::string>& qos,
                const std::string& extra, std::string& error) {
        char tmpl[] = "/tmp/ferry-bench-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            error = std::string("mkdtemp: ") + std::strerror(errno);
            return;
        }
        dir_ = tmpl;
        path_ = dir_ + "/ferry.toml";
        std::ofstream out(path_);
        out << "# generated by ferry-bench\n[defaults]\ntransport = \"" << transport << "\"\ndepth = "
            << depth_for(transport) << "\noverflow = \"block\"\nmax_message_size = " << size
            << "\nblock_timeout_ms = 10000\n";
        for (const auto& kv : qos) out << kv << "\n";
        out << extra;
    }
    ~BenchConfig() {
        if (dir_.empty()) return;
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    BenchConfig(const BenchConfig&) = delete;
    BenchConfig& operator=(const BenchConfig&) = delete;
    explicit operator bool() const { return !dir_.empty(); }
    const std::string& path() const { return path_; }

private:
    std::string dir_, path_;
};

Measurement run_ferry(const std::string& transport,
                      std::size_t size,
                      std::size_t trips,
                      std::size_t messages,
                      const std::vector<std::string>& qos,
                      std::size_t subscribers) {
    static int counter = 0;
    const std::string domain = "bench" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    Measurement m;
    // dds stays on the loopback interface: a benchmark sends nothing off the machine.
    const BenchConfig cfg(transport, size, qos, transport == "dds" ? "[dds]\ndomain_id = 210\ninterfaces = [\"lo\"]\n" : "",
                          m.error);
    if (!cfg) return m;
    const std::string& config = cfg.path();
    m = with_peer({"--peer", "ferry", "--peer-size", std::to_string(size), "--peer-a", domain, "--peer-b", config},
                  [&] {
                      Measurement r;
                      try {
                          auto ch = make_ferry_channel(domain, config, size, true);
                          if (!ferry_wait_connected(*ch, r.error, subscribers)) return r;
                          r = measure(*ch, trips, messages, subscribers);
                      } catch (const std::exception& e) {
                          r.error = e.what();
                      }
                      return r;
                  },
                  subscribers);
    try {
        ferry::clean_domain(domain);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry-bench: cleaning domain %s: %s\n", domain.c_str(), e.what());
    }
    return m;
}

// Kind `bridge`: ping in domain A, peer in domain B, both on shm, and a `ferry bridge` (the
// `ferry` next to this program) in each, over dds on lo.
Measurement run_bridged(std::size_t size, std::size_t trips, std::size_t messages) {
    static int counter = 0;
    const std::string base = "bench" + std::to_string(::getpid()) + "_b" + std::to_string(++counter);
    const std::string domain_a = base + "a", domain_b = base + "b", network = base + "n";
    Measurement m;
    const BenchConfig cfg("shm", size, g_qos,
                          "[dds]\ndomain_id = 211\ninterfaces = [\"lo\"]\n[bridge]\nout = [\"bench/*\"]\nin = [\"bench/*\"]\n"
                          "network_domain = \"" + network + "\"\n",
                          m.error);
    if (!cfg) return m;
    const std::string& config = cfg.path();
    const std::string exe = self_exe();
    const std::string ferry_tool = exe.substr(0, exe.rfind('/') + 1) + "ferry";
    Peer bridge_a, bridge_b;
    if (bridge_a.spawn_program(ferry_tool, {"--domain", domain_a, "bridge", "--config", config}, m.error, true) &&
        bridge_b.spawn_program(ferry_tool, {"--domain", domain_b, "bridge", "--config", config}, m.error, true)) {
        m = with_peer({"--peer", "ferry", "--peer-size", std::to_string(size), "--peer-a", domain_b, "--peer-b", config},
                      [&] {
                          Measurement r;
                          try {
                              auto ch = make_ferry_channel(domain_a, config, size, true);
                              // The subscriber is A's bridge, which taps once dds has matched B's.
                              if (!ferry_wait_connected(*ch, r.error, 1)) return r;
                              r = measure(*ch, trips, messages, 1);
                          } catch (const std::exception& e) {
                              r.error = e.what();
                          }
                          return r;
                      });
    }
    for (Peer* b : {&bridge_a, &bridge_b}) {
        const int code = b->stop(std::chrono::milliseconds(10000));
        if (m.ok && code != 0) {
            m.ok = false;
            m.error = "a ferry bridge exited with code " + std::to_string(code);
        }
    }
    for (const auto& d : {domain_a, domain_b, network}) {
        try {
            ferry::clean_domain(d);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ferry-bench: cleaning domain %s: %s\n", d.c_str(), e.what());
        }
    }
    return m;
}

Measurement run_raw(const std::string& transport, std::size_t size, std::size_t trips, std::size_t messages) {
    Measurement m;
    const std::uint32_t depth = depth_for(transport);
    auto ch = make_raw_ping(transport, size, depth, m.error);
    if (!ch) return m;
    const auto args = ch->peer_args();
    return with_peer({"--peer", "raw-" + transport, "--peer-size", std::to_string(size), "--peer-depth",
                      std::to_string(depth), "--peer-a", args[0], "--peer-b", args[1]},
                     [&] {
                         Measurement r;
                         if (ch->connect(r.error)) r = measure(*ch, trips, messages);
                         return r;
                     });
}

Measurement run_other(const std::string& kind, std::size_t size, std::size_t trips, std::size_t messages) {
    Measurement m;
    auto ch = make_other_ping(kind, size, g_depth, m.error);
    if (!ch) return m;
    const auto args = ch->peer_args();
    return with_peer({"--peer", kind, "--peer-size", std::to_string(size), "--peer-depth", std::to_string(g_depth),
                      "--peer-a", args[0], "--peer-b", args[1]},
                     [&] {
                         Measurement r;
                         if (ch->connect(r.error)) r = measure(*ch, trips, messages);
                         return r;
                     });
}

Measurement run_kind(const std::string& transport,
                     const std::string& kind,
                     std::size_t size,
                     std::size_t trips,
                     std::size_t messages,
                     std::size_t subscribers) {
    if (kind == "ferry") return run_ferry(transport, size, trips, messages, g_qos, subscribers);
    if (kind == "ferry-spin") {
        std::vector<std::string> qos = g_qos;
        qos.push_back("wait = \"spin\"");
        return run_ferry(transport, size, trips, messages, qos, subscribers);
    }
    if (kind == "raw") return run_raw(transport, size, trips, messages);
    if (kind == "bridge") return run_bridged(size, trips, messages);
    if (kind == "raw-spin") return run_raw("shm-spin", size, trips, messages);
    return run_other(kind, size, trips, messages);
}

// The repetitions of one cell: the one with the median p50 (its percentiles together), and the
// median throughput of all. A disturbance that hits one repetition does not count.
Measurement median_run(std::vector<Measurement> runs) {
    std::vector<double> rates;
    for (const auto& m : runs) rates.push_back(m.msgs_per_s);
    std::sort(rates.begin(), rates.end());
    std::sort(runs.begin(), runs.end(), [](const Measurement& a, const Measurement& b) {
        return percentile(a.one_way_us, 0.5) < percentile(b.one_way_us, 0.5);
    });
    Measurement chosen = std::move(runs[runs.size() / 2]);
    chosen.msgs_per_s = rates[rates.size() / 2];
    return chosen;
}

int run_peer(const std::string& kind, std::size_t size, std::uint32_t depth, const std::string& a, const std::string& b) {
    try {
        std::string error;
        std::unique_ptr<Channel> ch;
        if (kind == "ferry") {
            ch = make_ferry_channel(a, b, size, false);
            if (!ferry_wait_connected(*ch, error)) ch.reset();
        } else if (kind.rfind("raw-", 0) == 0) {
            ch = make_raw_peer(kind.substr(4), size, depth, a, b, error);
        } else if (is_other(kind)) {
            ch = make_other_peer(kind, size, depth, a, b, error);
        } else {
            error = "unknown peer kind '" + kind + "'";
        }
        if (!ch) {
            std::fprintf(stderr, "ferry-bench peer: %s\n", error.c_str());
            return 1;
        }
        return serve(*ch);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry-bench peer: %s\n", e.what());
        return 1;
    }
}

// Pins the calling process (and the threads it starts later) to one CPU.
bool pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

bool plugin_available(const std::vector<ferry::PluginInfo>& plugins, const std::string& name, std::string& why) {
    for (const auto& p : plugins) {
        if (p.name != name) continue;
        if (p.loaded) return true;
        why = "plugin " + p.path + " refused: " + p.error;
        return false;
    }
    why = "plugin ferry_plugin_" + name + " not built or not on the search path (FERRY_PLUGIN_PATH)";
    return false;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
    using namespace bench;
    CLI::App app{"ferry-bench: latency and throughput of ferry's transports next to the raw OS mechanisms"};
    std::string transports_arg = "shm,uds,mq,pipe";
    std::string sizes_arg = "64,4096,65536,1048576,4194304,16777216";
    std::size_t iterations = 10000;
    std::size_t repeat = 1;
    std::string json_path;
    std::string kinds_arg = "ferry,raw";
    std::string peer_kind, peer_a, peer_b;
    std::size_t peer_size = 0;
    std::uint32_t peer_depth = kDepth;
    bool pin = false;
    bool same_cpu = false;
    std::size_t fanout = 1;
    int peer_cpu = -1;
    app.add_option("--transports", transports_arg, "comma-separated transports")->capture_default_str();
    app.add_option("--sizes", sizes_arg, "comma-separated payload sizes in bytes (K/M suffixes allowed)")
        ->capture_default_str();
    app.add_option("--iterations", iterations, "round trips per size up to 64 KiB (scaled down above)")
        ->capture_default_str()
        ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
    app.add_option("--repeat", repeat, "measure every cell this many times, going round the kinds of a size in turn, and keep the median (odd numbers)")
        ->capture_default_str()
        ->check(CLI::Range(std::size_t{1}, std::size_t{99}));
    app.add_flag("--pin", pin, "pin the ping process to CPU 0 and the peer to CPU 1 (cross-CPU)");
    app.add_flag("--same-cpu", same_cpu, "pin the ping process and the peer both to CPU 0");
    app.add_option("--qos", g_qos, "KEY=VALUE added to ferry's generated [defaults] (repeatable), e.g. wait=\"spin\"");
    app.add_option("--fanout", fanout, "ferry only: one publisher, this many subscriber processes")
        ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
        ->capture_default_str();
    app.add_option("--json", json_path, "write the results as a JSON array to FILE");
    app.add_option("--depth", g_depth, "queue depth of every topic and raw queue (mq: at most fs.mqueue.msg_max)")
        ->check(CLI::Range(1u, 65536u))
        ->capture_default_str();
    app.add_option("--kinds", kinds_arg,
                   "what to measure: ferry, raw (the OS baseline); for shm also ferry-spin, raw-spin, bridge (shm -> "
                   "ferry bridge -> dds -> ferry bridge -> shm), iceoryx-poll, iceoryx-waitset, zmq")
        ->capture_default_str();
    // The echo peer, started by the benchmark itself.
    app.add_option("--peer", peer_kind)->group("");
    app.add_option("--peer-size", peer_size)->group("");
    app.add_option("--peer-depth", peer_depth)->group("");
    app.add_option("--peer-a", peer_a)->group("");
    app.add_option("--peer-b", peer_b)->group("");
    app.add_option("--peer-cpu", peer_cpu)->group("");
    CLI11_PARSE(app, argc, argv);

    if (!peer_kind.empty()) {
        if (peer_cpu >= 0 && !pin_to_cpu(peer_cpu)) std::perror("ferry-bench peer: sched_setaffinity");
        return run_peer(peer_kind, peer_size, peer_depth, peer_a, peer_b);
    }
    if (pin && same_cpu) {
        std::fprintf(stderr, "ferry-bench: --pin and --same-cpu exclude each other\n");
        return 2;
    }
    if (pin) {
        if (std::thread::hardware_concurrency() < 2 || !pin_to_cpu(0)) {
            std::fprintf(stderr, "ferry-bench: --pin needs two CPUs to pin to\n");
            return 2;
        }
        g_peer_cpu = 1;
    }
    if (same_cpu) {
        if (!pin_to_cpu(0)) {
            std::perror("ferry-bench: sched_setaffinity");
            return 2;
        }
        g_peer_cpu = 0;
    }
    for (auto& kv : g_qos) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) {
            std::fprintf(stderr, "ferry-bench: --qos '%s' is not KEY=VALUE\n", kv.c_str());
            return 2;
        }
        kv = kv.substr(0, eq) + " = " + kv.substr(eq + 1);
    }

    ::signal(SIGPIPE, SIG_IGN);
    std::vector<std::size_t> sizes;
    for (const auto& s : split(sizes_arg)) {
        std::size_t v = 0;
        if (!parse_size(s, v) || v < kMinSize) {
            std::fprintf(stderr, "ferry-bench: bad size '%s' (at least %zu bytes)\n", s.c_str(), kMinSize);
            return 2;
        }
        sizes.push_back(v);
    }
    std::vector<std::string> transports;
    for (const auto& t : split(transports_arg)) {
        if (t != "shm" && t != "uds" && t != "mq" && t != "pipe" && t != "dds") {
            std::fprintf(stderr, "ferry-bench: unknown transport '%s' (shm, uds, mq, pipe, dds)\n", t.c_str());
            return 2;
        }
        transports.push_back(t);
    }

    std::vector<std::string> kinds = split(kinds_arg);
    for (const auto& k : kinds) {
        if (std::find(kKinds.begin(), kKinds.end(), k) == kKinds.end()) {
            std::fprintf(stderr,
                         "ferry-bench: unknown kind '%s' (ferry, raw, ferry-spin, raw-spin, iceoryx-poll, "
                         "iceoryx-waitset, zmq)\n",
                         k.c_str());
            return 2;
        }
    }
    if (fanout > 1) {
        kinds.erase(std::remove_if(kinds.begin(), kinds.end(), [](const std::string& k) { return k != "ferry"; }),
                    kinds.end());
        if (kinds.empty()) {
            std::fprintf(stderr, "ferry-bench: --fanout measures ferry only (--kinds ferry)\n");
            return 2;
        }
    }
    // Other middleware: skipped with the reason when not built in; iceoryx needs its daemon.
    // Static: destroyed (RouDi stopped) after iceoryx's runtime, which is made later and so
    // ends first at exit, deregistering from a RouDi still there.
    static Roudi roudi;
    const bool with_shm = std::find(transports.begin(), transports.end(), "shm") != transports.end();
    for (auto it = kinds.begin(); it != kinds.end();) {
        std::string why;
        if (is_other(*it) && !other_available(*it, why)) {
            std::printf("ferry-bench: skipping %s: %s\n", it->c_str(), why.c_str());
            it = kinds.erase(it);
        } else if (it->rfind("iceoryx", 0) == 0 && with_shm && !roudi.running() && !roudi.start(sizes, g_depth, why)) {
            std::printf("ferry-bench: skipping iceoryx: %s\n", why.c_str());
            kinds.erase(std::remove_if(kinds.begin(), kinds.end(),
                                       [](const std::string& k) { return k.rfind("iceoryx", 0) == 0; }),
                        kinds.end());
            it = kinds.begin();
        } else {
            ++it;
        }
    }
    const auto plugins = ferry::list_plugins();
    std::vector<Record> records;
    const auto started = Clock::now();
    std::printf("ferry-bench: %zu iterations up to 64 KiB, %zu repetition(s), fs.mqueue.msgsize_max = %zu, %u CPUs\n",
                iterations, repeat, mq_msgsize_max(), std::thread::hardware_concurrency());
    for (const auto& t : transports) {
        std::string why;
        if (!plugin_available(plugins, t, why)) {
            std::printf("ferry-bench: skipping %s: %s\n", t.c_str(), why.c_str());
            continue;
        }
        for (std::size_t size : sizes) {
            struct Cell {
                std::string kind;
                std::size_t trips = 0;
                std::size_t messages = 0;
                std::vector<Measurement> runs;
                std::optional<Measurement> failed;
                double secs = 0;
            };
            std::vector<Cell> cells;
            for (const std::string& kind : kKinds) {
                if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) continue;
                if (shm_only(kind) && t != "shm") continue;
                // ZeroMQ copies every byte: it gets the counts of a copying transport.
                // The bridge crosses dds: the counts of dds.
                const std::string cost = kind == "zmq" ? "zmq" : kind == "bridge" ? "dds" : t;
                cells.push_back(Cell{kind, round_trips_for(cost, iterations, size), messages_for(cost, iterations, size), {}, {}, 0});
            }
            // Repetitions go round the kinds (ferry, raw, ferry, raw, ...) rather than one kind
            // after the other: on a shared VM the speed of a hand-over shifts from minute to
            // minute (the host moves the vCPUs), and this way every kind's median is drawn from
            // the same stretch of time, so the ratios between them hold.
            for (std::size_t i = 0; i < repeat; ++i) {
                for (Cell& c : cells) {
                    if (c.failed) continue;
                    const auto t0 = Clock::now();
                    Measurement m = run_kind(t, c.kind, size, c.trips, c.messages, fanout);
                    c.secs += std::chrono::duration<double>(Clock::now() - t0).count();
                    if (m.ok)
                        c.runs.push_back(std::move(m));
                    else
                        c.failed = std::move(m);
                }
            }
            for (Cell& c : cells) {
                const std::string& kind = c.kind;
                const Measurement m = c.failed ? *c.failed : median_run(std::move(c.runs));
                Record r = to_record(t, kind, size, c.trips, c.messages, m);
                r.subscribers = fanout;
                const double secs = c.secs;
                if (r.ok)
                    std::printf("  %-4s %-15s %7s  p50 %9.2f us (send %7.2f)  p99 %9.2f us  %12.0f msgs/s  %8.2f GB/s"
                                "  (%.1f s)\n",
                                t.c_str(), kind.c_str(), size_label(size).c_str(), r.p50_us, r.send_p50_us, r.p99_us,
                                r.msgs_per_s, r.gb_per_s, secs);
                else
                    std::printf("  %-4s %-15s %7s  FAILED: %s\n", t.c_str(), kind.c_str(), size_label(size).c_str(),
                                r.error.c_str());
                std::fflush(stdout);
                records.push_back(r);
            }
        }
    }
    std::printf("\n");
    if (fanout > 1) std::printf("Fan-out: 1 publisher, %zu subscriber processes\n\n", fanout);
    print_table(std::cout, records);
    print_others(std::cout, records);
    std::cout << '\n';
    print_targets(std::cout, records);
    std::printf("\ntotal %.1f s\n", std::chrono::duration<double>(Clock::now() - started).count());

    if (!json_path.empty()) {
        std::ofstream out(json_path);
        write_json(out, records);
        if (!out) {
            std::fprintf(stderr, "ferry-bench: cannot write %s\n", json_path.c_str());
            return 1;
        }
    }
    const bool any_failed = std::any_of(records.begin(), records.end(), [](const Record& r) { return !r.ok; });
    if (records.empty()) std::fprintf(stderr, "ferry-bench: nothing was measured\n");
    return any_failed || records.empty() ? 1 : 0;
}
