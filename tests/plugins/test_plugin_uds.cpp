// The uds transport plugin through the SDK interface alone, with real processes and sockets.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/transport.hpp>

#include "support/load_plugin.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;
namespace ft = ferry::transport;
using ferry::test::Child;
using ferry::test::wait_until;

namespace {

constexpr std::size_t kMaxDefault = 16u << 20;

std::uint64_t next_id() {
    static std::atomic<std::uint32_t> serial{1};
    return ft::make_endpoint_id(::getpid(), serial++);
}

// One test's world: its own domain, its own runtime dir, the plugin.
struct Env {
    std::string domain = ferry::test::unique_domain();
    std::string base;
    std::string dir;
    std::unique_ptr<ferry::test::LoadedPlugin> plugin = ferry::test::load_plugin("uds");
    ft::Transport& sut = *plugin->transport;

    // `deep`: the runtime dir is nested so deep that its socket paths exceed sun_path.
    explicit Env(bool deep = false) {
        char tmpl[] = "/tmp/ferry-uds-test-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        base = tmpl;
        dir = deep ? base + "/" + std::string(120, 'd') : base;
        if (deep && ::mkdir(dir.c_str(), 0700) != 0) throw std::runtime_error("mkdir failed");
    }
    ~Env() { std::filesystem::remove_all(base); }

    ft::TopicParams params(ft::Overflow overflow = ft::Overflow::block, std::uint64_t id = 0) const {
        ft::TopicParams p;
        p.domain = domain;
        p.topic = "test/topic";
        p.runtime_dir = dir;
        p.endpoint_id = id != 0 ? id : next_id();
        p.overflow = overflow;
        return p;
    }
    std::unique_ptr<ft::Reader> reader(const ft::TopicParams& p) {
        std::unique_ptr<ft::Reader> r;
        const auto st = sut.create_reader(p, r);
        INFO(st.message());
        REQUIRE(st.is_ok());
        return r;
    }
    std::unique_ptr<ft::Writer> writer(const ft::TopicParams& p) {
        std::unique_ptr<ft::Writer> w;
        const auto st = sut.create_writer(p, w);
        INFO(st.message());
        REQUIRE(st.is_ok());
        return w;
    }
    std::vector<std::string> leftovers() const { return ferry::test::leftovers(dir, domain); }
};

ft::PeerInfo peer(const ft::TopicParams& p) { return ft::PeerInfo{p.endpoint_id, ft::endpoint_pid(p.endpoint_id)}; }

std::byte pattern(std::uint64_t seq, std::size_t i) { return static_cast<std::byte>((seq * 31 + i) & 0xff); }

// Sends message `seq` of `size` bytes: the first 8 bytes carry seq, the rest a pattern.
ft::Status send(ft::Writer& w, std::uint64_t seq, std::size_t size) {
    ft::LoanBuffer buf;
    if (auto st = w.loan(size, buf); !st) return st;
    for (std::size_t i = 0; i < size; ++i) buf.data[i] = pattern(seq, i);
    if (size >= 8) std::memcpy(buf.data, &seq, 8);
    return w.commit(buf, size);
}

// Sends numbered messages of `size` bytes until one is refused (at most 100000); returns how
// many were accepted, with the refusal and how long the refused send took.
std::uint64_t send_until_refused(ft::Writer& w, std::size_t size, ft::Status& refusal, std::chrono::milliseconds& took) {
    std::uint64_t sent = 0;
    for (; sent < 100000; ++sent) {
        const auto t0 = ft::Clock::now();
        refusal = send(w, sent, size);
        took = std::chrono::duration_cast<std::chrono::milliseconds>(ft::Clock::now() - t0);
        if (!refusal) break;
    }
    return sent;
}

// The seq of a received message if its bytes are intact, else ~0.
std::uint64_t check(const ft::SampleBuffer& s, std::uint64_t seq_if_short = 0) {
    std::uint64_t seq = seq_if_short;
    if (s.size >= 8) std::memcpy(&seq, s.data, 8);
    for (std::size_t i = s.size >= 8 ? 8 : 0; i < s.size; ++i) {
        if (s.data[i] != pattern(seq, i)) return ~std::uint64_t{0};
    }
    return seq;
}

// Takes one message, checks it and releases it; returns its seq, or ~0 with `st` set.
std::uint64_t take_one(ft::Reader& r, ft::Status& st, ft::Clock::time_point deadline, std::size_t* size = nullptr) {
    ft::SampleBuffer s;
    st = r.take(s, deadline);
    if (!st) return ~std::uint64_t{0};
    const std::uint64_t seq = check(s);
    if (size) *size = s.size;
    r.release(s);
    return seq;
}

std::size_t drain(ft::Reader& r, std::vector<std::uint64_t>& seqs) {
    ft::Status st;
    for (;;) {
        const std::uint64_t seq = take_one(r, st, ft::Clock::now() - 1ms);
        if (!st) return seqs.size();
        seqs.push_back(seq);
    }
}

// A connected raw socket to a reader's path, as a rogue process would open it.
int raw_connect(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

std::string sock_path(const Env& env, const ft::TopicParams& p) {
    return ft::runtime_path(env.dir, env.domain, p.endpoint_id, "sock");
}

}  // namespace

TEST_CASE("uds: the module describes itself", "[uds]") {
    Env env;
    CHECK(std::string(env.sut.name()) == "uds");
    const auto caps = env.sut.capabilities();
    CHECK_FALSE(caps.zero_copy);
    CHECK(caps.max_message_size == 0);
    CHECK(std::strlen(caps.summary) > 0);
    auto p = env.params();
    p.depth = 0;
    CHECK(env.sut.validate(p).code() == ft::Errc::invalid_argument);
    p = env.params();
    p.runtime_dir = env.dir + "/missing";
    CHECK_FALSE(env.sut.validate(p).is_ok());
}

TEST_CASE("uds: one writer process to one reader keeps order and loses nothing", "[uds][block]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    constexpr std::uint64_t kCount = 5000;

    Child child = Child::fork([&] {
        auto wp = env.params(ft::Overflow::block, ft::make_endpoint_id(::getpid(), 1));
        wp.block_timeout = 10s;
        std::unique_ptr<ft::Writer> w;
        if (!env.sut.create_writer(wp, w)) return 2;
        w->sync_readers({peer(rp)});
        if (w->reader_count() != 1) return 3;
        for (std::uint64_t i = 0; i < kCount; ++i) {
            if (!send(*w, i, 16 + (i * 37) % 3000)) return 4;
        }
        return 0;
    });

    ft::Status st;
    for (std::uint64_t i = 0; i < kCount; ++i) {
        std::size_t size = 0;
        const std::uint64_t seq = take_one(*reader, st, ft::Clock::now() + 10s, &size);
        INFO("message " << i << ": " << st.message());
        REQUIRE(st.is_ok());
        REQUIRE(seq == i);
        REQUIRE(size == 16 + (i * 37) % 3000);
    }
    CHECK(child.wait(10s) == 0);
    CHECK(reader->lost() == 0);
    reader.reset();
    CHECK(env.leftovers().empty());
}

TEST_CASE("uds: one writer fans out to three readers", "[uds][fanout]") {
    Env env;
    std::vector<ft::TopicParams> rps{env.params(), env.params(), env.params()};
    std::vector<std::unique_ptr<ft::Reader>> readers;
    for (auto& p : rps) readers.push_back(env.reader(p));
    constexpr std::uint64_t kCount = 2000;

    Child child = Child::fork([&] {
        auto wp = env.params(ft::Overflow::block, ft::make_endpoint_id(::getpid(), 1));
        wp.block_timeout = 10s;
        std::unique_ptr<ft::Writer> w;
        if (!env.sut.create_writer(wp, w)) return 2;
        w->sync_readers({peer(rps[0]), peer(rps[1]), peer(rps[2])});
        if (w->reader_count() != 3) return 3;
        for (std::uint64_t i = 0; i < kCount; ++i) {
            if (!send(*w, i, 100 + i % 500)) return 4;
        }
        return 0;
    });

    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (auto& r : readers) {
        threads.emplace_back([&good, &r] {
            ft::Status st;
            for (std::uint64_t i = 0; i < kCount; ++i) {
                if (take_one(*r, st, ft::Clock::now() + 10s) != i) return;
            }
            ++good;
        });
    }
    for (auto& t : threads) t.join();
    CHECK(good == 3);
    CHECK(child.wait(10s) == 0);
    readers.clear();
    CHECK(env.leftovers().empty());
}

TEST_CASE("uds: two writer processes keep their own order at one reader", "[uds][writers]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    constexpr std::uint64_t kCount = 3000;

    auto writer_body = [&](std::uint64_t tag) {
        return [&env, &rp, tag] {
            auto wp = env.params(ft::Overflow::block, ft::make_endpoint_id(::getpid(), 1));
            wp.block_timeout = 10s;
            std::unique_ptr<ft::Writer> w;
            if (!env.sut.create_writer(wp, w)) return 2;
            w->sync_readers({peer(rp)});
            for (std::uint64_t i = 0; i < kCount; ++i) {
                if (!send(*w, (tag << 32) | i, 64)) return 4;
            }
            return 0;
        };
    };
    Child a = Child::fork(writer_body(1));
    Child b = Child::fork(writer_body(2));

    std::uint64_t next[3] = {0, 0, 0};
    ft::Status st;
    for (std::uint64_t i = 0; i < 2 * kCount; ++i) {
        const std::uint64_t seq = take_one(*reader, st, ft::Clock::now() + 10s);
        REQUIRE(st.is_ok());
        const std::uint64_t tag = seq >> 32;
        REQUIRE((tag == 1 || tag == 2));
        REQUIRE((seq & 0xffffffffu) == next[tag]);
        ++next[tag];
    }
    CHECK(next[1] == kCount);
    CHECK(next[2] == kCount);
    CHECK(a.wait(10s) == 0);
    CHECK(b.wait(10s) == 0);
    CHECK(reader->lost() == 0);
}

TEST_CASE("uds: messages of every size arrive intact", "[uds][sizes]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    const std::vector<std::size_t> sizes{0, 1, 4095, 4097, 65536, 4u << 20, kMaxDefault, 7, 0};

    Child child = Child::fork([&] {
        auto wp = env.params(ft::Overflow::block, ft::make_endpoint_id(::getpid(), 1));
        wp.block_timeout = 10s;
        std::unique_ptr<ft::Writer> w;
        if (!env.sut.create_writer(wp, w)) return 2;
        w->sync_readers({peer(rp)});
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            if (!send(*w, i, sizes[i])) return 4;
        }
        return 0;
    });

    for (std::size_t i = 0; i < sizes.size(); ++i) {
        ft::SampleBuffer s;
        const auto st = reader->take(s, ft::Clock::now() + 20s);
        INFO("size " << sizes[i] << ": " << st.message());
        REQUIRE(st.is_ok());
        CHECK(s.size == sizes[i]);
        CHECK(check(s, i) == i);
        reader->release(s);
    }
    CHECK(child.wait(10s) == 0);
}

TEST_CASE("uds: a sample stays valid until released while later ones arrive", "[uds]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    auto writer = env.writer(env.params());
    writer->sync_readers({peer(rp)});
    std::vector<ft::SampleBuffer> held;
    for (std::uint64_t i = 0; i < 200; ++i) {
        REQUIRE(send(*writer, i, 1000 + i * 97));
        ft::SampleBuffer s;
        REQUIRE(reader->take(s, ft::Clock::now() + 5s).is_ok());
        held.push_back(s);
    }
    for (std::uint64_t i = 0; i < held.size(); ++i) {
        CHECK(held[i].size == 1000 + i * 97);
        CHECK(check(held[i]) == i);
        reader->release(held[i]);
    }
}

TEST_CASE("uds: block waits up to block_timeout for a full reader", "[uds][block]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    auto wp = env.params(ft::Overflow::block);
    wp.block_timeout = 150ms;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});

    // Small messages go into the socket whole or not at all: the queue fills, then times out.
    ft::Status st;
    std::chrono::milliseconds elapsed{};
    const std::uint64_t sent = send_until_refused(*writer, 1000, st, elapsed);
    REQUIRE(st.code() == ft::Errc::timeout);
    CHECK(elapsed >= 140ms);
    CHECK(elapsed < 2s);
    CHECK(sent > 0);
    CHECK(writer->reader_count() == 1);

    std::vector<std::uint64_t> seqs;
    drain(*reader, seqs);
    REQUIRE(seqs.size() == sent);
    for (std::uint64_t i = 0; i < sent; ++i) REQUIRE(seqs[i] == i);

    // Room again: the next message flows.
    REQUIRE(send(*writer, sent + 1, 1000).is_ok());
    ft::Status rst;
    CHECK(take_one(*reader, rst, ft::Clock::now() + 2s) == sent + 1);
    CHECK(reader->lost() == 0);
}

TEST_CASE("uds: block timing out in the middle of a big frame never delivers a torn message", "[uds][block]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    auto wp = env.params(ft::Overflow::block);
    wp.block_timeout = 100ms;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});

    // 4 MiB does not fit into the socket: part of it goes out, then the reader stalls.
    REQUIRE(send(*writer, 1, 4u << 20).code() == ft::Errc::timeout);
    CHECK(writer->reader_count() == 0);  // disconnected so the torn frame cannot be completed

    ft::Status st;
    take_one(*reader, st, ft::Clock::now() + 300ms);
    CHECK(st.code() == ft::Errc::timeout);
    CHECK(reader->lost() == 1);

    writer->sync_readers({peer(rp)});  // the core's next sync reconnects
    REQUIRE(writer->reader_count() == 1);
    REQUIRE(send(*writer, 2, 1000).is_ok());
    CHECK(take_one(*reader, st, ft::Clock::now() + 2s) == 2);

    // A reader that keeps taking receives big frames whole.
    std::atomic<std::uint64_t> got{0};
    std::thread t([&] {
        ft::Status tst;
        got = take_one(*reader, tst, ft::Clock::now() + 10s);
    });
    auto patient = env.params(ft::Overflow::block);
    patient.block_timeout = 10s;
    auto writer2 = env.writer(patient);
    writer2->sync_readers({peer(rp)});
    const auto sent = send(*writer2, 3, 4u << 20);
    t.join();
    CHECK(sent.is_ok());
    CHECK(got == 3);
    CHECK(reader->lost() == 1);
}

TEST_CASE("uds: fail returns would_block at once on a full reader", "[uds][fail]") {
    Env env;
    const auto rp = env.params(ft::Overflow::fail);
    auto reader = env.reader(rp);
    auto wp = env.params(ft::Overflow::fail);
    wp.block_timeout = 5s;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});

    ft::Status st;
    std::chrono::milliseconds elapsed{};
    const std::uint64_t sent = send_until_refused(*writer, 1000, st, elapsed);
    REQUIRE(st.code() == ft::Errc::would_block);
    CHECK(elapsed < 100ms);
    CHECK(writer->reader_count() == 1);

    std::vector<std::uint64_t> seqs;
    drain(*reader, seqs);
    REQUIRE(seqs.size() == sent);
    for (std::uint64_t i = 0; i < sent; ++i) REQUIRE(seqs[i] == i);
    REQUIRE(send(*writer, 7, 1000).is_ok());
}

TEST_CASE("uds: drop_oldest never blocks and a resuming reader gets the newest depth", "[uds][drop_oldest]") {
    Env env;
    auto rp = env.params(ft::Overflow::drop_oldest);
    rp.depth = 4;
    auto reader = env.reader(rp);
    auto wp = env.params(ft::Overflow::drop_oldest);
    wp.depth = 4;
    wp.block_timeout = 5s;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});

    const auto t0 = ft::Clock::now();
    for (std::uint64_t i = 0; i < 100; ++i) REQUIRE(send(*writer, i, 100).is_ok());
    CHECK(ft::Clock::now() - t0 < 1s);

    REQUIRE(wait_until([&] { return reader->lost() == 96; }, 5000ms));
    std::vector<std::uint64_t> seqs;
    drain(*reader, seqs);
    CHECK(seqs == std::vector<std::uint64_t>{96, 97, 98, 99});

    // Still live afterwards, and big messages too.
    REQUIRE(send(*writer, 100, 1u << 20).is_ok());
    ft::Status st;
    CHECK(take_one(*reader, st, ft::Clock::now() + 5s) == 100);
    CHECK(reader->lost() == 96);
    reader.reset();
    writer.reset();
    CHECK(env.leftovers().empty());
}

TEST_CASE("uds: take honours its deadline and a past deadline polls", "[uds][take]") {
    const auto overflow = GENERATE(ft::Overflow::block, ft::Overflow::drop_oldest);
    Env env;
    auto reader = env.reader(env.params(overflow));
    ft::SampleBuffer s;

    auto t0 = ft::Clock::now();
    CHECK(reader->take(s, t0 - 1ms).code() == ft::Errc::would_block);
    CHECK(ft::Clock::now() - t0 < 50ms);

    t0 = ft::Clock::now();
    CHECK(reader->take(s, t0 + 120ms).code() == ft::Errc::timeout);
    const auto waited = ft::Clock::now() - t0;
    CHECK(waited >= 120ms);
    CHECK(waited < 2s);
}

TEST_CASE("uds: interrupt wakes a blocked take and every later one", "[uds][interrupt]") {
    const auto overflow = GENERATE(ft::Overflow::block, ft::Overflow::drop_oldest);
    Env env;
    auto reader = env.reader(env.params(overflow));
    std::atomic<bool> entered{false};
    ft::Status result;
    auto t0 = ft::Clock::now();
    std::thread t([&] {
        ft::SampleBuffer s;
        entered = true;
        result = reader->take(s, ft::Clock::now() + 30s);
    });
    REQUIRE(wait_until([&] { return entered.load(); }, 2000ms));
    reader->interrupt();
    t.join();
    CHECK(result.code() == ft::Errc::closed);
    CHECK(ft::Clock::now() - t0 < 5s);
    ft::SampleBuffer s;
    CHECK(reader->take(s, ft::Clock::now() + 10s).code() == ft::Errc::closed);
}

TEST_CASE("uds: a SIGKILLed reader does not block the writer", "[uds][crash]") {
    Env env;
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    Child child = Child::fork([&] {
        std::unique_ptr<ft::Reader> r;
        if (!env.sut.create_reader(env.params(ft::Overflow::block, ft::make_endpoint_id(::getpid(), 1)), r)) return 2;
        const char c = 'r';
        if (::write(ready[1], &c, 1) != 1) return 3;
        for (;;) ::pause();  // never takes: the writer fills the socket
    });
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    ::close(ready[1]);
    const auto rp = env.params(ft::Overflow::block, ft::make_endpoint_id(child.pid(), 1));

    auto wp = env.params(ft::Overflow::block);
    wp.block_timeout = 20s;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});
    REQUIRE(writer->reader_count() == 1);

    std::atomic<bool> committing{false};
    ft::Status first;
    auto t0 = ft::Clock::now();
    std::thread t([&] {
        committing = true;
        first = send(*writer, 1, 8u << 20);  // blocks: the reader never reads
    });
    REQUIRE(wait_until([&] { return committing.load(); }, 2000ms));
    child.kill(SIGKILL);
    child.wait(5s);
    t.join();
    CHECK(ft::Clock::now() - t0 < 5s);  // far below block_timeout
    CHECK(first.is_ok());              // a dead reader is not a full reader
    CHECK(writer->reader_count() == 0);
    t0 = ft::Clock::now();
    CHECK(send(*writer, 2, 8u << 20).is_ok());
    CHECK(ft::Clock::now() - t0 < 1s);

    // The dead reader's socket stays until `ferry clean` removes it by its name.
    const auto stale = env.leftovers();
    REQUIRE(stale.size() == 1);
    CHECK(ft::parse_object_name(stale[0], env.domain) == rp.endpoint_id);
    CHECK_FALSE(ft::process_alive(ft::endpoint_pid(rp.endpoint_id)));
}

TEST_CASE("uds: a writer SIGKILLed mid-message leaves no torn message and a new writer is heard", "[uds][crash]") {
    Env env;
    const auto rp = env.params();
    auto reader = env.reader(rp);
    constexpr std::size_t kBig = 4u << 20;

    auto writer_body = [&](std::size_t size, std::uint64_t count) {
        return [&env, &rp, size, count] {
            auto wp = env.params(ft::Overflow::block, ft::make_endpoint_id(::getpid(), 1));
            wp.block_timeout = 30s;
            std::unique_ptr<ft::Writer> w;
            if (!env.sut.create_writer(wp, w)) return 2;
            w->sync_readers({peer(rp)});
            for (std::uint64_t i = 0; i < count; ++i) {
                if (!send(*w, i, size)) return 4;
            }
            return 0;
        };
    };
    Child first = Child::fork(writer_body(kBig, ~std::uint64_t{0}));
    ft::Status st;
    for (std::uint64_t i = 0; i < 3; ++i) {
        REQUIRE(take_one(*reader, st, ft::Clock::now() + 10s) == i);
    }
    // The writer is now stuck inside the next 4 MiB frame, part of it in the socket.
    first.kill(SIGKILL);
    first.wait(5s);
    // Whatever was complete is intact and in order; the cut one is discarded.
    std::uint64_t next = 3;
    for (;;) {
        std::size_t size = 0;
        const std::uint64_t seq = take_one(*reader, st, ft::Clock::now() + 300ms, &size);
        if (!st) break;
        REQUIRE(seq == next++);
        REQUIRE(size == kBig);
    }
    CHECK(st.code() == ft::Errc::timeout);
    CHECK(reader->lost() <= 1);

    Child second = Child::fork(writer_body(64, 10));
    for (std::uint64_t i = 0; i < 10; ++i) {
        REQUIRE(take_one(*reader, st, ft::Clock::now() + 10s) == i);
    }
    CHECK(second.wait(10s) == 0);
}

TEST_CASE("uds: oversized messages are refused and nothing is sent", "[uds][too_large]") {
    Env env;
    auto rp = env.params();
    rp.max_message_size = 1024;
    auto reader = env.reader(rp);
    auto wp = env.params();
    wp.max_message_size = 1024;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});

    ft::LoanBuffer buf;
    CHECK(writer->loan(1025, buf).code() == ft::Errc::too_large);
    REQUIRE(writer->loan(1024, buf).is_ok());
    CHECK(writer->commit(buf, 1025).code() == ft::Errc::too_large);
    ft::SampleBuffer s;
    CHECK(reader->take(s, ft::Clock::now() + 100ms).code() == ft::Errc::timeout);
    CHECK(send(*writer, 5, 1024).is_ok());
    ft::Status st;
    CHECK(take_one(*reader, st, ft::Clock::now() + 2s) == 5);
}

TEST_CASE("uds: garbage from rogue writers is dropped while good writers flow", "[uds][hostile]") {
    Env env;
    auto rp = env.params();
    rp.max_message_size = 4096;
    auto reader = env.reader(rp);
    const std::string path = sock_path(env, rp);

    struct Raw {
        std::uint32_t a;
        std::uint32_t b;
        std::uint64_t c;
    };
    const Raw hello{0x48595246u, 1, 42};
    std::vector<int> rogues;
    auto rogue = [&](const std::vector<Raw>& words) {
        const int fd = raw_connect(path);
        REQUIRE(fd >= 0);
        for (const Raw& w : words) REQUIRE(::send(fd, &w, sizeof w, MSG_NOSIGNAL) == sizeof w);
        rogues.push_back(fd);
    };
    rogue({Raw{0xdeadbeef, 7, 7}, Raw{1, 2, 3}});                 // no greeting
    rogue({hello, Raw{0x31595246u, 0, 4097}});                    // longer than max
    rogue({hello, Raw{0x31595246u, 0, std::uint64_t{1} << 62}});  // absurd length
    rogue({hello, Raw{0x12345678u, 0, 8}});                       // bad magic

    auto wp = env.params();
    wp.max_message_size = 4096;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp)});
    for (std::uint64_t i = 0; i < 50; ++i) REQUIRE(send(*writer, i, 200).is_ok());

    ft::Status st;
    for (std::uint64_t i = 0; i < 50; ++i) {
        REQUIRE(take_one(*reader, st, ft::Clock::now() + 5s) == i);
    }
    take_one(*reader, st, ft::Clock::now() + 200ms);
    CHECK(st.code() == ft::Errc::timeout);
    CHECK(reader->lost() == 4);
    // The reader hung up on every rogue.
    for (int fd : rogues) {
        pollfd p{fd, POLLIN, 0};
        CHECK(::poll(&p, 1, 2000) == 1);
        char byte;
        CHECK(::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0);
        ::close(fd);
    }
    // Good writers keep flowing.
    REQUIRE(send(*writer, 1000, 10).is_ok());
    CHECK(take_one(*reader, st, ft::Clock::now() + 2s) == 1000);
}

TEST_CASE("uds: sync_readers connects and forgets readers", "[uds][sync]") {
    Env env;
    const auto rp1 = env.params();
    const auto rp2 = env.params();
    auto r1 = env.reader(rp1);
    auto r2 = env.reader(rp2);
    auto writer = env.writer(env.params());
    CHECK(writer->reader_count() == 0);
    CHECK(send(*writer, 0, 10).is_ok());  // nobody to deliver to is not an error
    writer->sync_readers({peer(rp1), peer(rp2)});
    CHECK(writer->reader_count() == 2);
    writer->sync_readers({peer(rp2)});
    CHECK(writer->reader_count() == 1);
    REQUIRE(send(*writer, 1, 10).is_ok());
    ft::Status st;
    CHECK(take_one(*r2, st, ft::Clock::now() + 2s) == 1);
    take_one(*r1, st, ft::Clock::now() + 100ms);
    CHECK(st.code() == ft::Errc::timeout);
    // A listed reader that does not exist (yet) is retried on the next sync, not an error.
    const auto ghost = env.params();
    writer->sync_readers({peer(rp2), peer(ghost)});
    CHECK(writer->reader_count() == 1);
    auto r3 = env.reader(ghost);
    writer->sync_readers({peer(rp2), peer(ghost)});
    CHECK(writer->reader_count() == 2);
}

TEST_CASE("uds: sync_readers racing commits keeps every reader's order", "[uds][sync]") {
    Env env;
    const auto rp1 = env.params();
    const auto rp2 = env.params();
    auto r1 = env.reader(rp1);
    auto r2 = env.reader(rp2);
    auto wp = env.params();
    wp.block_timeout = 5s;
    auto writer = env.writer(wp);
    writer->sync_readers({peer(rp1), peer(rp2)});
    constexpr std::uint64_t kCount = 20000;

    std::atomic<bool> stop{false};
    std::atomic<int> reconnects{0};
    std::thread discovery([&] {
        // r2 keeps being dropped and reconnected; r1 is always listed. The core's discovery
        // period is ~200 ms; 1 ms makes the race with commit 200 times more frequent.
        while (!stop) {
            writer->sync_readers({peer(rp1)});
            writer->sync_readers({peer(rp1), peer(rp2)});
            ++reconnects;
            std::this_thread::sleep_for(1ms);
        }
    });
    std::atomic<std::uint64_t> r1_next{0};
    std::atomic<bool> r1_ok{true};
    std::atomic<std::uint64_t> r2_count{0};
    std::atomic<bool> r2_ok{true};
    std::thread t1([&] {
        ft::Status st;
        for (std::uint64_t i = 0; i < kCount; ++i) {
            if (take_one(*r1, st, ft::Clock::now() + 10s) != i) {
                r1_ok = false;
                return;
            }
            r1_next = i + 1;
        }
    });
    std::thread t2([&] {
        ft::Status st;
        std::uint64_t last = 0;
        for (;;) {
            const std::uint64_t seq = take_one(*r2, st, ft::Clock::now() + 300ms);
            if (st.code() == ft::Errc::timeout && !stop) continue;
            if (!st) return;
            if (seq == ~std::uint64_t{0} || (r2_count > 0 && seq <= last)) r2_ok = false;
            last = seq;
            ++r2_count;
        }
    });
    for (std::uint64_t i = 0; i < kCount; ++i) REQUIRE(send(*writer, i, 100).is_ok());
    stop = true;
    discovery.join();
    t1.join();
    t2.join();
    CHECK(r1_ok);
    CHECK(r1_next == kCount);
    CHECK(r2_ok);
    CHECK(r2_count > 0);
    CHECK(reconnects > 10);
    CHECK(r1->lost() == 0);
    CHECK(r2->lost() == 0);
}

TEST_CASE("uds: sockets get the topic's mode and nothing is left behind", "[uds][cleanup]") {
    const auto overflow = GENERATE(ft::Overflow::block, ft::Overflow::fail, ft::Overflow::drop_oldest);
    Env env;
    auto rp = env.params(overflow);
    rp.mode = 0660;
    {
        auto reader = env.reader(rp);
        auto writer = env.writer(env.params(overflow));
        writer->sync_readers({peer(rp)});
        struct stat st {};
        REQUIRE(::stat(sock_path(env, rp).c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0660);
        CHECK(env.leftovers().size() == 1);
        REQUIRE(send(*writer, 3, 100).is_ok());
        ft::Status s;
        CHECK(take_one(*reader, s, ft::Clock::now() + 2s) == 3);
    }
    CHECK(env.leftovers().empty());
}

TEST_CASE("uds: a runtime directory deeper than sun_path still works", "[uds]") {
    Env env(true);
    REQUIRE(env.dir.size() > sizeof(sockaddr_un::sun_path));
    const auto rp = env.params();
    auto reader = env.reader(rp);
    auto writer = env.writer(env.params());
    writer->sync_readers({peer(rp)});
    REQUIRE(writer->reader_count() == 1);
    REQUIRE(send(*writer, 9, 100).is_ok());
    ft::Status st;
    CHECK(take_one(*reader, st, ft::Clock::now() + 2s) == 9);
    reader.reset();
    CHECK(env.leftovers().empty());
}
