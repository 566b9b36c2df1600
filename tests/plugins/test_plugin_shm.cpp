// The shm transport through the SDK interface: semantics shared by every transport, plus what
// only shared memory does (zero copy, the chunk pool, reclaiming a dead reader's chunks).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/transport.hpp>

#include "../../plugins/shm/layout.hpp"
#include "support/load_plugin.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;
using ferry::test::Child;
using ferry::transport::Clock;
using ferry::transport::Errc;
using ferry::transport::LoanBuffer;
using ferry::transport::Overflow;
using ferry::transport::PeerInfo;
using ferry::transport::Reader;
using ferry::transport::SampleBuffer;
using ferry::transport::Status;
using ferry::transport::TopicParams;
using ferry::transport::Writer;

namespace {

// One test's world: the plugin, its own domain and runtime directory, endpoint ids.
struct World {
    std::unique_ptr<ferry::test::LoadedPlugin> plugin = ferry::test::load_plugin("shm");
    std::string domain = ferry::test::unique_domain();
    std::string runtime_dir;
    std::uint32_t serial = 1;

    World() {
        char tmpl[] = "/tmp/ferry-shm-test-XXXXXX";
        const char* dir = ::mkdtemp(tmpl);
        if (dir == nullptr) throw std::runtime_error("mkdtemp failed");
        runtime_dir = dir;
    }
    ~World() { ::rmdir(runtime_dir.c_str()); }

    ferry::transport::Transport& transport() { return *plugin->transport; }

    // Params for an endpoint of the calling process (call it in the child for a child's endpoint).
    TopicParams params(Overflow overflow = Overflow::block,
                       std::uint32_t depth = 16,
                       std::size_t max_message_size = 64 * 1024,
                       std::uint32_t serial_override = 0) {
        TopicParams p;
        p.domain = domain;
        p.topic = "test/shm";
        p.runtime_dir = runtime_dir;
        p.endpoint_id = ferry::transport::make_endpoint_id(::getpid(), serial_override ? serial_override : serial++);
        p.depth = depth;
        p.overflow = overflow;
        p.max_message_size = max_message_size;
        p.block_timeout = 5s;
        return p;
    }

    std::unique_ptr<Writer> writer(const TopicParams& p) {
        std::unique_ptr<Writer> w;
        const Status st = transport().create_writer(p, w);
        if (!st) throw std::runtime_error(st.message());
        return w;
    }
    std::unique_ptr<Reader> reader(const TopicParams& p) {
        std::unique_ptr<Reader> r;
        const Status st = transport().create_reader(p, r);
        if (!st) throw std::runtime_error(st.message());
        return r;
    }

    std::vector<std::string> leftovers() const {
        auto found = ferry::test::leftovers("/dev/shm", domain);
        for (auto& f : ferry::test::leftovers(runtime_dir, domain)) found.push_back(f);
        for (auto& f : ferry::test::leftovers("/dev/mqueue", domain)) found.push_back(f);
        return found;
    }
};

PeerInfo peer(std::uint64_t id) { return PeerInfo{id, ferry::transport::endpoint_pid(id)}; }
PeerInfo peer(const TopicParams& p) { return peer(p.endpoint_id); }

void connect(Writer& w, const TopicParams& wp, Reader& r, const TopicParams& rp) {
    w.sync_readers({peer(rp)});
    r.sync_writers({peer(wp)});
}

// A writer and a reader of this process, made with the same parameters and connected.
struct Pair {
    TopicParams wp, rp;
    std::unique_ptr<Writer> w;
    std::unique_ptr<Reader> r;
};
template <class... Args>
Pair connected(World& world, Args... args) {
    Pair p{world.params(args...), world.params(args...), nullptr, nullptr};
    p.w = world.writer(p.wp);
    p.r = world.reader(p.rp);
    connect(*p.w, p.wp, *p.r, p.rp);
    return p;
}

// Message bodies that prove they arrived whole: an 8-byte sequence number, then bytes
// derived from it and their position.
std::byte pattern(std::uint64_t seq, std::size_t i) { return static_cast<std::byte>((seq * 131 + i * 7) & 0xff); }

void fill(std::byte* data, std::size_t size, std::uint64_t seq) {
    std::memcpy(data, &seq, std::min<std::size_t>(size, 8));
    for (std::size_t i = 8; i < size; ++i) data[i] = pattern(seq, i);
}

// The sequence number of a well-formed message, or UINT64_MAX if any byte is wrong.
std::uint64_t check(const std::byte* data, std::size_t size) {
    if (size < 8) return UINT64_MAX;
    std::uint64_t seq = 0;
    std::memcpy(&seq, data, 8);
    for (std::size_t i = 8; i < size; ++i) {
        if (data[i] != pattern(seq, i)) return UINT64_MAX;
    }
    return seq;
}

Status publish(Writer& w, std::uint64_t seq, std::size_t size) {
    LoanBuffer buf;
    if (Status st = w.loan(size, buf); !st) return st;
    fill(buf.data, size, seq);
    return w.commit(buf, size);
}

// Takes one message and returns its sequence number (UINT64_MAX if malformed) in `seq`.
Status receive(Reader& r, std::uint64_t& seq, Clock::time_point deadline, std::size_t* size = nullptr) {
    SampleBuffer s;
    Status st = r.take(s, deadline);
    if (!st) return st;
    seq = check(s.data, s.size);
    if (size) *size = s.size;
    r.release(s);
    return st;
}

Clock::time_point in(std::chrono::milliseconds ms) { return Clock::now() + ms; }
Clock::time_point past() { return Clock::now() - 1ms; }

// Plays the core's discovery thread: calls `sync` every few milliseconds until destroyed.
class Discovery {
public:
    explicit Discovery(std::function<void()> sync)
        : thread_([this, sync = std::move(sync)] {
              while (!stop_.load()) {
                  sync();
                  std::this_thread::sleep_for(5ms);
              }
          }) {}
    ~Discovery() {
        stop_ = true;
        thread_.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

bool shm_exists(const std::string& domain, std::uint64_t id, const char* suffix) {
    return ::access(("/dev/shm/" + ferry::transport::object_name(domain, id, suffix)).c_str(), F_OK) == 0;
}

// [start, end) of the mapping of `path` in this process, from /proc/self/maps.
bool find_mapping(const std::string& path, std::uintptr_t& start, std::uintptr_t& end) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        if (line.size() < path.size() || line.compare(line.size() - path.size(), path.size(), path) != 0) continue;
        std::istringstream in(line);
        char dash = 0;
        in >> std::hex >> start >> dash >> end;
        return true;
    }
    return false;
}

double thread_cpu_ms() {
    struct rusage ru {};
    ::getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}

}  // namespace

TEST_CASE("shm reports zero copy and refuses impossible parameters", "[shm]") {
    World world;
    auto& t = world.transport();
    CHECK(std::string(t.name()) == "shm");
    CHECK(t.capabilities().zero_copy);
    CHECK(std::string(t.capabilities().summary).size() > 10);
    auto p = world.params();
    CHECK(t.validate(p));
    p.depth = 0;
    CHECK(t.validate(p).code() == Errc::invalid_argument);
    p.depth = 16;
    p.max_message_size = std::size_t{4} << 30;
    CHECK(t.validate(p).code() == Errc::invalid_argument);
    std::unique_ptr<Writer> w;
    CHECK(t.create_writer(p, w).code() == Errc::invalid_argument);
    CHECK(w == nullptr);
}

// The bytes of /dev/shm objects of `domain`, by st_blocks (what tmpfs really holds).
std::uint64_t shm_bytes(const std::string& domain) {
    std::uint64_t total = 0;
    for (const auto& name : ferry::test::leftovers("/dev/shm", domain)) {
        struct stat st {};
        if (::stat(("/dev/shm/" + name).c_str(), &st) == 0) total += static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    return total;
}

TEST_CASE("shm max_message_size is a limit, not a reservation: chunks are sized for what is sent", "[shm]") {
    World world;
    // The largest topic shm allows: a writer costs its rings and chunk table, no chunk data.
    auto big = world.params(Overflow::block, 1024, ferry::shm::kMaxChunkPayload);
    {
        auto w = world.writer(big);
        CHECK(shm_bytes(world.domain) < (1u << 20));
    }
    CHECK(world.leftovers().empty());
    // Default-like topic (depth 16, 16 MiB): 64 B messages use a page per chunk in use.
    auto pair = connected(world, Overflow::block, 16, std::size_t{16} << 20);
    for (std::uint64_t i = 0; i < 100; ++i) {
        REQUIRE(publish(*pair.w, i, 64));
        std::uint64_t seq = 0;
        REQUIRE(receive(*pair.r, seq, in(1000ms)));
        CHECK(seq == i);
    }
    const std::uint64_t small = shm_bytes(world.domain);
    CHECK(small < (1u << 20));
    // A larger message gets a larger chunk (a new segment), mapped by the reader as it meets it.
    for (std::uint64_t i = 0; i < 20; ++i) {
        REQUIRE(publish(*pair.w, i, 3u << 20));
        std::uint64_t seq = 0;
        std::size_t size = 0;
        REQUIRE(receive(*pair.r, seq, in(1000ms), &size));
        CHECK(seq == i);
        CHECK(size == (3u << 20));
    }
    // Only the chunks in use grew; the replaced small segments are gone.
    CHECK(shm_bytes(world.domain) < (16u << 20));
    CHECK(pair.r->lost() == 0);
    pair.w.reset();
    pair.r.reset();
    CHECK(world.leftovers().empty());
}

// The writer's chunk data segments ("<writer segment>.<serial>") in /dev/shm now.
std::size_t data_segments(const World& world, const TopicParams& wp) {
    const std::string prefix = ferry::transport::object_name(world.domain, wp.endpoint_id, "shm") + ".";
    std::size_t n = 0;
    for (const auto& name : world.leftovers()) n += name.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
}

TEST_CASE("shm request/reply alternates two chunks for small messages, one for large, every message intact", "[shm]") {
    World world;
    auto pair = connected(world, Overflow::block, 16, std::size_t{1} << 20);
    // Send, take, release, send...: the readers are done with each chunk before the next send.
    // Small messages take turns in two chunks (the idle one is warmed while waiting).
    for (std::uint64_t i = 0; i < 200; ++i) {
        REQUIRE(publish(*pair.w, i, 64 + i % 200));
        std::uint64_t seq = 0;
        std::size_t size = 0;
        REQUIRE(receive(*pair.r, seq, in(1000ms), &size));
        CHECK(seq == i);
        CHECK(size == 64 + i % 200);
    }
    CHECK(data_segments(world, pair.wp) == 2);
    // Above 64 KiB the chunk sent last is reused: one more segment, not two.
    for (std::uint64_t i = 0; i < 50; ++i) {
        REQUIRE(publish(*pair.w, i, 512u << 10));
        std::uint64_t seq = 0;
        REQUIRE(receive(*pair.r, seq, in(1000ms)));
        CHECK(seq == i);
    }
    CHECK(data_segments(world, pair.wp) == 3);
    // A stream (the reader behind) still uses what the ring needs and loses nothing.
    for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(publish(*pair.w, i, 64));
    for (std::uint64_t i = 0; i < 10; ++i) {
        std::uint64_t seq = 0;
        REQUIRE(receive(*pair.r, seq, in(1000ms)));
        CHECK(seq == i);
    }
    CHECK(pair.r->lost() == 0);
    pair.w.reset();
    pair.r.reset();
    CHECK(world.leftovers().empty());
}

// The writer's segment, mapped read-only: the chunk masks as the readers see them.
class WriterSegment {
public:
    WriterSegment(const World& world, const TopicParams& wp) {
        const std::string name = "/" + ferry::transport::object_name(world.domain, wp.endpoint_id, "shm");
        const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
        struct stat st {};
        if (fd < 0 || ::fstat(fd, &st) != 0) throw std::runtime_error("cannot open " + name);
        size_ = static_cast<std::size_t>(st.st_size);
        base_ = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
        ::close(fd);
        if (base_ == MAP_FAILED) throw std::runtime_error("cannot map " + name);
        const auto* h = static_cast<const ferry::shm::SegmentHeader*>(base_);
        layout_.chunk_count = h->chunk_count;
        layout_.chunks_offset = h->chunks_offset;
    }
    ~WriterSegment() { ::munmap(base_, size_); }
    WriterSegment(const WriterSegment&) = delete;
    WriterSegment& operator=(const WriterSegment&) = delete;

    // The reader bits on all chunks together, and how many chunks carry any.
    std::uint64_t marked_bits(std::uint32_t* chunks = nullptr) const {
        const ferry::shm::SegmentView v{static_cast<std::byte*>(base_), layout_};
        std::uint64_t all = 0;
        std::uint32_t n = 0;
        for (std::uint32_t c = 0; c < layout_.chunk_count; ++c) {
            const std::uint64_t m = v.chunk(c)->mask.load();
            all |= m;
            n += m != 0 ? 1 : 0;
        }
        if (chunks) *chunks = n;
        return all;
    }

private:
    void* base_ = nullptr;
    std::size_t size_ = 0;
    ferry::shm::Layout layout_;
};

TEST_CASE("shm readers that change between loan and commit: it reaches those there at commit, no chunk stays marked",
          "[shm]") {
    // Between the loan and the commit a reader leaves, arrives, takes the slot of one that
    // left, or closes. The loan marks the chunk for the readers active then (so commit needs no
    // atomic read-modify-write in the common case); commit must correct that when they changed.
    World world;
    auto pair = connected(world, Overflow::fail, 4, 4096);
    auto& [wp, ap, w, a] = pair;  // writer and the reader that stays
    const WriterSegment segment(world, wp);
    enum Kind { leaves, arrives, replaced, closes };
    for (std::uint64_t round = 0; round < 200; ++round) {
        const auto kind = static_cast<Kind>(round % 4);
        INFO("round " << round << ", kind " << kind);
        auto bp = world.params(Overflow::fail, 4, 4096);
        auto cp = world.params(Overflow::fail, 4, 4096);
        auto b = world.reader(bp);
        auto c = world.reader(cp);
        if (kind != arrives) {
            w->sync_readers({peer(ap), peer(bp)});
            b->sync_writers({peer(wp)});
        }
        const std::uint64_t first = round * 10;
        LoanBuffer buf;
        REQUIRE(w->loan(64, buf));
        fill(buf.data, 64, first);
        switch (kind) {
            case leaves: w->sync_readers({peer(ap)}); break;  // b's slot is reclaimed
            case arrives:
                w->sync_readers({peer(ap), peer(bp)});
                b->sync_writers({peer(wp)});
                break;
            case replaced:  // b's slot is reclaimed and may serve c now
                w->sync_readers({peer(ap), peer(cp)});
                c->sync_writers({peer(wp)});
                break;
            case closes: b.reset(); break;  // closed, still listed by the writer
        }
        REQUIRE(w->commit(buf, 64));
        std::uint64_t seq = 0;
        REQUIRE(receive(*a, seq, in(1000ms)));
        CHECK(seq == first);
        Reader* late = kind == arrives ? b.get() : kind == replaced ? c.get() : nullptr;
        if (late == nullptr) {
            // Only a had it, and a let it go: no chunk keeps a bit of a reader that was not served.
            std::uint32_t chunks = 0;
            CHECK(segment.marked_bits(&chunks) == 0);
            CHECK(chunks == 0);
            if (b) CHECK(receive(*b, seq, past()).code() == Errc::would_block);
            continue;
        }
        // Queued for the late reader alone now: its chunk must stay marked for it, so that the
        // writer does not reuse it under it. Two more messages (a reads them) would.
        std::uint32_t chunks = 0;
        CHECK(segment.marked_bits(&chunks) != 0);
        CHECK(chunks == 1);
        for (std::uint64_t k = 1; k <= 2; ++k) {
            REQUIRE(publish(*w, first + k, 64));
            REQUIRE(receive(*a, seq, in(1000ms)));
            CHECK(seq == first + k);
        }
        for (std::uint64_t k = 0; k <= 2; ++k) {
            REQUIRE(receive(*late, seq, in(1000ms)));
            CHECK(seq == first + k);
        }
        CHECK(segment.marked_bits() == 0);
        w->sync_readers({peer(ap)});
    }
    CHECK(a->lost() == 0);
    w.reset();
    a.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm: a full /dev/shm is no_resources at loan, never SIGBUS, and others go on", "[shm][exhaustion]") {
    if (::geteuid() != 0) {
        WARN("skipped: a private tmpfs on /dev/shm needs root");
        return;
    }
    World world;
    // In a private mount namespace /dev/shm is a 6 MiB tmpfs: one chunk of 4 MiB fits, two do
    // not. Exit codes say which step failed; a signal would show as 128+n.
    Child child = Child::fork([&]() -> int {
        if (::unshare(CLONE_NEWNS) != 0) return 2;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 3;
        if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=6m,mode=1777") != 0) return 4;
        const std::size_t max = 4u << 20;
        auto wp1 = world.params(Overflow::block, 2, max);
        auto wp2 = world.params(Overflow::block, 2, max);
        auto rp = world.params(Overflow::block, 2, max);
        std::unique_ptr<Writer> w1, w2;
        if (!world.transport().create_writer(wp1, w1)) return 5;
        if (!world.transport().create_writer(wp2, w2)) return 6;  // a writer alone costs a few KiB
        LoanBuffer held;
        if (!w1->loan(max, held)) return 7;
        LoanBuffer none;
        const Status st = w2->loan(max, none);
        if (st.code() != Errc::no_resources) return 8;
        const std::string& m = st.message();
        if (m.find("/dev/shm (6 MiB") == std::string::npos || m.find("cannot reserve 4 MiB") == std::string::npos ||
            m.find(" MiB free)") == std::string::npos) {
            std::fprintf(stderr, "unexpected message: %s\n", m.c_str());
            return 9;
        }
        w1->release(held);
        w2.reset();
        // The first publisher goes on, to a subscriber made after the refusal.
        auto r = world.reader(rp);
        connect(*w1, wp1, *r, rp);
        for (std::uint64_t i = 0; i < 20; ++i) {
            if (!publish(*w1, i, max)) return 10;
            std::uint64_t seq = 0;
            if (!receive(*r, seq, in(5000ms)) || seq != i) return 11;
        }
        // Small messages in request/reply want a second chunk to alternate with (a page). With
        // /dev/shm full to the last page there is none: they go on in the one they have, at once
        // (overflow fail: a loan that did not find it would not wait and retry).
        auto wp3 = world.params(Overflow::fail, 2, 64);
        auto rp3 = world.params(Overflow::fail, 2, 64);
        std::unique_ptr<Writer> w3;
        if (!world.transport().create_writer(wp3, w3)) return 12;
        auto r3 = world.reader(rp3);
        connect(*w3, wp3, *r3, rp3);
        std::uint64_t seq = 0;
        if (!publish(*w3, 0, 64) || !receive(*r3, seq, in(5000ms)) || seq != 0) return 13;
        const int filler = ::open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
        if (filler < 0) return 14;
        static const char page[4096] = {};
        while (::write(filler, page, sizeof page) > 0) {
        }
        if (errno != ENOSPC) return 15;
        for (std::uint64_t i = 1; i < 50; ++i) {
            if (!publish(*w3, i, 64) || !receive(*r3, seq, in(5000ms)) || seq != i) return 16;
        }
        if (data_segments(world, wp3) != 1) return 17;
        ::close(filler);
        ::unlink("/dev/shm/filler");
        return 0;
    });
    CHECK(child.wait(20s) == 0);
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm objects are created with the configured mode and removed on destruction", "[shm]") {
    World world;
    auto wp = world.params();
    auto rp = world.params();
    rp.mode = 0640;
    {
        auto w = world.writer(wp);
        auto r = world.reader(rp);
        struct stat st {};
        REQUIRE(::stat(("/dev/shm/" + ferry::transport::object_name(world.domain, wp.endpoint_id, "shm")).c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        REQUIRE(::stat(("/dev/shm/" + ferry::transport::object_name(world.domain, rp.endpoint_id, "sig")).c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0640);
        connect(*w, wp, *r, rp);
        REQUIRE(publish(*w, 1, 100));
        std::uint64_t seq = 0;
        REQUIRE(receive(*r, seq, in(1000ms)));
        CHECK(seq == 1);
        // The chunk's data segment, made by the first loan.
        REQUIRE(::stat(("/dev/shm/" + ferry::transport::object_name(world.domain, wp.endpoint_id, "shm") + ".1").c_str(),
                       &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        CHECK(world.leftovers().size() == 3);
    }
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm 1->1 across processes keeps order and loses nothing under block", "[shm][conformance]") {
    World world;
    auto rp = world.params(Overflow::block, 8);
    auto r = world.reader(rp);
    constexpr std::uint64_t kCount = 5000;
    Child writer = Child::fork([&] {
        auto wp = world.params(Overflow::block, 8, 64 * 1024, 1);
        auto w = world.writer(wp);
        w->sync_readers({peer(rp)});
        for (std::uint64_t i = 0; i < kCount; ++i) {
            if (!publish(*w, i, 8 + (i * 37) % 3000)) return 1;
        }
        return 0;
    });
    const auto wid = ferry::transport::make_endpoint_id(writer.pid(), 1);
    {
        Discovery discovery([&] { r->sync_writers({peer(wid)}); });
        for (std::uint64_t i = 0; i < kCount; ++i) {
            std::uint64_t seq = 0;
            std::size_t size = 0;
            REQUIRE(receive(*r, seq, in(5000ms), &size));
            REQUIRE(seq == i);
            REQUIRE(size == 8 + (i * 37) % 3000);
        }
    }
    CHECK(writer.wait(5000ms) == 0);
    std::uint64_t extra = 0;
    CHECK(receive(*r, extra, past()).code() == Errc::would_block);
    CHECK(r->lost() == 0);
    r.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm fan-out 1->3 delivers every message to every reader", "[shm][conformance]") {
    World world;
    std::vector<TopicParams> rps;
    std::vector<std::unique_ptr<Reader>> readers;
    for (int i = 0; i < 3; ++i) {
        rps.push_back(world.params(Overflow::block, 16));
        readers.push_back(world.reader(rps.back()));
    }
    constexpr std::uint64_t kCount = 2000;
    Child writer = Child::fork([&] {
        auto w = world.writer(world.params(Overflow::block, 16, 64 * 1024, 1));
        w->sync_readers({peer(rps[0]), peer(rps[1]), peer(rps[2])});
        if (w->reader_count() != 3) return 2;
        for (std::uint64_t i = 0; i < kCount; ++i) {
            if (!publish(*w, i, 64)) return 1;
        }
        return 0;
    });
    const auto wid = ferry::transport::make_endpoint_id(writer.pid(), 1);
    std::atomic<int> good{0};
    {
        Discovery discovery([&] {
            for (auto& r : readers) r->sync_writers({peer(wid)});
        });
        std::vector<std::thread> threads;
        for (auto& r : readers) {
            threads.emplace_back([&good, reader = r.get()] {
                for (std::uint64_t i = 0; i < kCount; ++i) {
                    std::uint64_t seq = 0;
                    if (!receive(*reader, seq, in(5000ms)) || seq != i) return;
                }
                ++good;
            });
        }
        for (auto& t : threads) t.join();
    }
    CHECK(good == 3);
    CHECK(writer.wait(5000ms) == 0);
    readers.clear();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm 2 writers -> 1 reader keeps per-writer order", "[shm][conformance]") {
    World world;
    auto rp = world.params(Overflow::block, 16);
    auto r = world.reader(rp);
    constexpr std::uint64_t kCount = 3000;
    auto body = [&](std::uint64_t tag) {
        return [&, tag] {
            auto w = world.writer(world.params(Overflow::block, 16, 64 * 1024, 1));
            w->sync_readers({peer(rp)});
            for (std::uint64_t i = 0; i < kCount; ++i) {
                if (!publish(*w, (tag << 32) | i, 16 + i % 200)) return 1;
            }
            return 0;
        };
    };
    Child a = Child::fork(body(1));
    Child b = Child::fork(body(2));
    const std::vector<PeerInfo> writers{peer(ferry::transport::make_endpoint_id(a.pid(), 1)),
                                        peer(ferry::transport::make_endpoint_id(b.pid(), 1))};
    {
        Discovery discovery([&] { r->sync_writers(writers); });
        std::uint64_t next[3] = {0, 0, 0};
        for (std::uint64_t n = 0; n < 2 * kCount; ++n) {
            std::uint64_t seq = 0;
            REQUIRE(receive(*r, seq, in(5000ms)));
            const std::uint64_t tag = seq >> 32;
            REQUIRE((tag == 1 || tag == 2));
            REQUIRE((seq & 0xffffffffu) == next[tag]);
            ++next[tag];
        }
        CHECK(next[1] == kCount);
        CHECK(next[2] == kCount);
    }
    CHECK(a.wait(5000ms) == 0);
    CHECK(b.wait(5000ms) == 0);
    r.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm carries every size from 0 bytes to max_message_size", "[shm][conformance]") {
    World world;
    const std::size_t max = (8u << 20) + 32;
    auto pair = connected(world, Overflow::block, 4, max);
    auto& w = pair.w;
    auto& r = pair.r;
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4097}, std::size_t{65536},
                             std::size_t{4} << 20, max}) {
        INFO("size " << size);
        LoanBuffer buf;
        REQUIRE(w->loan(size, buf));
        REQUIRE(buf.capacity >= size);
        if (size >= 8) fill(buf.data, size, size);
        else if (size > 0) std::memset(buf.data, 0x5a, size);
        REQUIRE(w->commit(buf, size));
        SampleBuffer s;
        REQUIRE(r->take(s, in(1000ms)));
        REQUIRE(s.size == size);
        if (size >= 8) CHECK(check(s.data, s.size) == size);
        else if (size > 0) CHECK(s.data[0] == std::byte{0x5a});
        r->release(s);
    }
    CHECK(r->lost() == 0);
}

TEST_CASE("shm rejects messages above max_message_size and sends nothing", "[shm][conformance]") {
    World world;
    auto pair = connected(world, Overflow::block, 4, 1000);
    auto& w = pair.w;
    auto& r = pair.r;
    LoanBuffer buf;
    CHECK(w->loan(1001, buf).code() == Errc::too_large);
    REQUIRE(w->loan(10, buf));
    CHECK(w->commit(buf, 1001).code() == Errc::too_large);
    SampleBuffer s;
    CHECK(r->take(s, past()).code() == Errc::would_block);
    // The rejected loan was consumed: every chunk is still available.
    std::vector<LoanBuffer> loans(ferry::shm::chunk_count_for_depth(4));
    for (auto& l : loans) REQUIRE(w->loan(1000, l));
    for (auto& l : loans) w->release(l);
    REQUIRE(publish(*w, 7, 1000));
    std::uint64_t seq = 0;
    REQUIRE(receive(*r, seq, in(1000ms)));
    CHECK(seq == 7);
}

TEST_CASE("shm overflow block: waits block_timeout, then times out for the full reader only", "[shm][conformance]") {
    World world;
    auto wp = world.params(Overflow::block, 4);
    wp.block_timeout = 150ms;
    auto slow_p = world.params(Overflow::block, 4);
    auto fast_p = world.params(Overflow::block, 4);
    auto w = world.writer(wp);
    auto slow = world.reader(slow_p);
    auto fast = world.reader(fast_p);
    w->sync_readers({peer(slow_p), peer(fast_p)});
    slow->sync_writers({peer(wp)});
    fast->sync_writers({peer(wp)});
    REQUIRE(w->reader_count() == 2);
    std::uint64_t seq = 0;
    for (std::uint64_t i = 0; i < 4; ++i) {
        REQUIRE(publish(*w, i, 64));
        REQUIRE(receive(*fast, seq, past()));
        CHECK(seq == i);
    }
    const auto t0 = Clock::now();
    const Status st = publish(*w, 4, 64);
    const auto waited = Clock::now() - t0;
    CHECK(st.code() == Errc::timeout);
    CHECK(waited >= 150ms);
    CHECK(waited < 1000ms);
    REQUIRE(receive(*fast, seq, past()));
    CHECK(seq == 4);
    for (std::uint64_t i = 0; i < 4; ++i) {
        REQUIRE(receive(*slow, seq, past()));
        CHECK(seq == i);
    }
    CHECK(receive(*slow, seq, past()).code() == Errc::would_block);
    CHECK(slow->lost() == 0);

    // A blocked commit goes through as soon as the reader makes room.
    for (std::uint64_t i = 10; i < 14; ++i) {
        REQUIRE(publish(*w, i, 64));
        REQUIRE(receive(*fast, seq, past()));
    }
    std::thread taker([&] {
        std::this_thread::sleep_for(30ms);  // let the commit below block first
        std::uint64_t s = 0;
        receive(*slow, s, in(1000ms));
    });
    const auto t1 = Clock::now();
    CHECK(publish(*w, 14, 64));
    CHECK(Clock::now() - t1 < 150ms);
    taker.join();
}

TEST_CASE("shm overflow fail: would_block at once for the full reader only", "[shm][conformance]") {
    World world;
    auto wp = world.params(Overflow::fail, 4);
    auto slow_p = world.params(Overflow::fail, 4);
    auto fast_p = world.params(Overflow::fail, 4);
    auto w = world.writer(wp);
    auto slow = world.reader(slow_p);
    auto fast = world.reader(fast_p);
    w->sync_readers({peer(slow_p), peer(fast_p)});
    slow->sync_writers({peer(wp)});
    fast->sync_writers({peer(wp)});
    std::uint64_t seq = 0;
    for (std::uint64_t i = 0; i < 4; ++i) {
        REQUIRE(publish(*w, i, 64));
        REQUIRE(receive(*fast, seq, past()));
    }
    const auto t0 = Clock::now();
    CHECK(publish(*w, 4, 64).code() == Errc::would_block);
    CHECK(Clock::now() - t0 < 50ms);
    REQUIRE(receive(*fast, seq, past()));
    CHECK(seq == 4);
    for (std::uint64_t i = 0; i < 4; ++i) {
        REQUIRE(receive(*slow, seq, past()));
        CHECK(seq == i);
    }
    CHECK(receive(*slow, seq, past()).code() == Errc::would_block);
    CHECK(slow->lost() == 0);
}

TEST_CASE("shm overflow drop_oldest: a resumed reader gets the newest depth messages", "[shm][conformance]") {
    World world;
    auto pair = connected(world, Overflow::drop_oldest, 4);
    auto& w = pair.w;
    auto& r = pair.r;
    const auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < 100; ++i) REQUIRE(publish(*w, i, 200));
    CHECK(Clock::now() - t0 < 500ms);
    for (std::uint64_t i = 96; i < 100; ++i) {
        std::uint64_t seq = 0;
        REQUIRE(receive(*r, seq, past()));
        CHECK(seq == i);
    }
    std::uint64_t seq = 0;
    CHECK(receive(*r, seq, past()).code() == Errc::would_block);
    CHECK(r->lost() == 96);
}

TEST_CASE("shm take honours deadlines, try-take and sleeps without burning CPU", "[shm][conformance]") {
    World world;
    auto pair = connected(world);
    auto& w = pair.w;
    auto& r = pair.r;
    SampleBuffer s;
    auto t0 = Clock::now();
    CHECK(r->take(s, past()).code() == Errc::would_block);
    CHECK(Clock::now() - t0 < 20ms);

    const double cpu0 = thread_cpu_ms();
    t0 = Clock::now();
    CHECK(r->take(s, t0 + 300ms).code() == Errc::timeout);
    const auto waited = Clock::now() - t0;
    CHECK(waited >= 300ms);
    CHECK(waited < 1000ms);
    CHECK(thread_cpu_ms() - cpu0 < 30.0);  // asleep in the kernel, not spinning

    // A message that arrives while take sleeps wakes it at once.
    std::thread late([&] {
        std::this_thread::sleep_for(50ms);
        publish(*w, 3, 64);
    });
    t0 = Clock::now();
    std::uint64_t seq = 0;
    CHECK(receive(*r, seq, in(5000ms)));
    CHECK(seq == 3);
    CHECK(Clock::now() - t0 < 1000ms);
    late.join();
}

TEST_CASE("shm wait modes: adaptive polls spin_us then sleeps, sleep never polls, spin polls to the deadline", "[shm]") {
    using Wait = TopicParams::Wait;
    World world;
    // Per mode: the CPU a 200 ms take() that finds nothing costs its thread, and a message
    // published by another thread while it waits is still taken.
    struct Run {
        double idle_cpu_ms;
        long sleeps;  // voluntary context switches: the thread blocked (futex), not just yielded
        bool got_late_message;
    };
    auto voluntary_switches = [] {
        struct rusage ru {};
        ::getrusage(RUSAGE_THREAD, &ru);
        return ru.ru_nvcsw;
    };
    auto run = [&](Wait mode, std::chrono::microseconds spin) {
        auto wp = world.params();
        auto rp = world.params();
        rp.wait = mode;
        rp.spin = spin;
        auto w = world.writer(wp);
        auto r = world.reader(rp);
        connect(*w, wp, *r, rp);
        SampleBuffer s;
        const double cpu0 = thread_cpu_ms();
        const long sw0 = voluntary_switches();
        CHECK(r->take(s, in(200ms)).code() == Errc::timeout);
        Run out{thread_cpu_ms() - cpu0, voluntary_switches() - sw0, false};
        std::thread late([&] {
            std::this_thread::sleep_for(20ms);
            publish(*w, 5, 64);
        });
        std::uint64_t seq = 0;
        out.got_late_message = receive(*r, seq, in(5000ms)) && seq == 5;
        late.join();
        return out;
    };
    const Run sleep = run(Wait::sleep, 50us);
    const Run adaptive = run(Wait::adaptive, 1000us);
    const Run spin = run(Wait::spin, 50us);
    CHECK(sleep.got_late_message);
    CHECK(adaptive.got_late_message);
    CHECK(spin.got_late_message);
    INFO("CPU of a 200 ms idle take: sleep " << sleep.idle_cpu_ms << " ms, adaptive(1 ms) " << adaptive.idle_cpu_ms
                                             << " ms, spin " << spin.idle_cpu_ms << " ms; blocked " << sleep.sleeps
                                             << ", " << adaptive.sleeps << ", " << spin.sleeps << " times");
    CHECK(sleep.idle_cpu_ms < 15.0);
    CHECK(adaptive.idle_cpu_ms < 15.0);  // 1 ms of polling, then asleep
    CHECK(sleep.sleeps >= 1);
    CHECK(adaptive.sleeps >= 1);
    // Polled the whole 200 ms without ever blocking (however little CPU a loaded machine gave it).
    CHECK(spin.sleeps == 0);
    CHECK(spin.idle_cpu_ms > sleep.idle_cpu_ms);
}

TEST_CASE("shm interrupt makes a blocked take and every later one return closed", "[shm][conformance]") {
    World world;
    auto r = world.reader(world.params());
    std::atomic<int> code{-1};
    const auto t0 = Clock::now();
    std::thread taker([&] {
        SampleBuffer s;
        code = static_cast<int>(r->take(s, in(10000ms)).code());
    });
    std::this_thread::sleep_for(50ms);  // most likely asleep by now; either way it must end closed
    r->interrupt();
    taker.join();
    CHECK(code == static_cast<int>(Errc::closed));
    CHECK(Clock::now() - t0 < 2000ms);
    SampleBuffer s;
    CHECK(r->take(s, in(1000ms)).code() == Errc::closed);
    CHECK(r->take(s, past()).code() == Errc::closed);
}

TEST_CASE("shm zero copy: the reader's sample lies in its mapping of the writer's segment", "[shm]") {
    World world;
    const std::size_t size = 4u << 20;
    auto wp = world.params(Overflow::block, 4, size);
    // The data segment of the first chunk the writer makes.
    const std::string seg_path = "/dev/shm/" + ferry::transport::object_name(world.domain, wp.endpoint_id, "shm") + ".1";
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    Child reader = Child::fork([&] {
        ::close(ready[0]);
        auto rp = world.params(Overflow::block, 4, size, 1);
        auto r = world.reader(rp);
        const char one = 1;
        if (::write(ready[1], &one, 1) != 1) return 10;
        SampleBuffer s;
        for (int i = 0; i < 1000 && !r->take(s, in(10ms)); ++i) r->sync_writers({peer(wp)});
        if (s.data == nullptr) return 1;
        std::uintptr_t start = 0, end = 0;
        if (!find_mapping(seg_path, start, end)) return 2;
        const auto addr = reinterpret_cast<std::uintptr_t>(s.data);
        if (addr < start || addr + s.size > end) return 3;
        // The writer put the loan's offset in its segment into the message itself.
        std::uint64_t writer_offset = 0;
        std::memcpy(&writer_offset, s.data + 8, 8);
        if (addr - start != writer_offset) return 4;
        if (s.size != size) return 5;
        for (std::size_t i = 16; i < size; i += 4096) {
            if (s.data[i] != std::byte{0xa5}) return 6;
        }
        if (s.data[size - 1] != std::byte{0x3c}) return 7;
        r->release(s);
        return 0;
    });
    ::close(ready[1]);
    auto w = world.writer(wp);  // after fork: the child must not inherit a mapping of the segment
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    const auto rp_id = ferry::transport::make_endpoint_id(reader.pid(), 1);
    REQUIRE(ferry::test::wait_until(
        [&] {
            w->sync_readers({peer(rp_id)});
            return w->reader_count() == 1;
        },
        5000ms));
    LoanBuffer buf;
    REQUIRE(w->loan(size, buf));
    std::uintptr_t start = 0, end = 0;
    REQUIRE(find_mapping(seg_path, start, end));
    const auto addr = reinterpret_cast<std::uintptr_t>(buf.data);
    REQUIRE(addr >= start);
    REQUIRE(addr + size <= end);
    // Written after loan(), before commit: the reader must see exactly these bytes.
    const std::uint64_t magic = 0x5a5a5a5a, offset = addr - start;
    std::memcpy(buf.data, &magic, 8);
    std::memcpy(buf.data + 8, &offset, 8);
    std::memset(buf.data + 16, 0xa5, size - 17);
    buf.data[size - 1] = std::byte{0x3c};
    REQUIRE(w->commit(buf, size));
    CHECK(reader.wait(10000ms) == 0);
    w->sync_readers({});
    CHECK(w->reader_count() == 0);
    w.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm chunk pool exhausted by a slow reader: fail", "[shm]") {
    World world;
    auto pair = connected(world, Overflow::fail, 2);
    auto& w = pair.w;
    auto& r = pair.r;
    const std::uint32_t chunks = ferry::shm::chunk_count_for_depth(2);
    std::vector<SampleBuffer> held;
    for (std::uint32_t i = 0; i + 1 < chunks; ++i) {
        REQUIRE(publish(*w, i, 64));
        held.emplace_back();
        REQUIRE(r->take(held.back(), past()));
    }
    LoanBuffer last;
    REQUIRE(w->loan(64, last));  // the final free chunk
    LoanBuffer none;
    const auto t0 = Clock::now();
    CHECK(w->loan(64, none).code() == Errc::would_block);
    CHECK(Clock::now() - t0 < 50ms);
    r->release(held.front());
    CHECK(w->loan(64, none));
    w->release(none);
    w->release(last);
    for (std::size_t i = 1; i < held.size(); ++i) r->release(held[i]);
}

TEST_CASE("shm chunk pool exhausted by a slow reader: block", "[shm]") {
    World world;
    auto wp = world.params(Overflow::block, 2);
    wp.block_timeout = 150ms;
    auto rp = world.params(Overflow::block, 2);
    auto w = world.writer(wp);
    auto r = world.reader(rp);
    connect(*w, wp, *r, rp);
    const std::uint32_t chunks = ferry::shm::chunk_count_for_depth(2);
    std::vector<SampleBuffer> held(chunks - 1);
    for (std::uint32_t i = 0; i + 1 < chunks; ++i) {
        REQUIRE(publish(*w, i, 64));
        REQUIRE(r->take(held[i], past()));
    }
    LoanBuffer last, none;
    REQUIRE(w->loan(64, last));
    auto t0 = Clock::now();
    CHECK(w->loan(64, none).code() == Errc::timeout);
    CHECK(Clock::now() - t0 >= 150ms);
    // A release while the writer waits hands it the chunk at once.
    std::thread releaser([&] {
        std::this_thread::sleep_for(30ms);
        r->release(held[0]);
    });
    t0 = Clock::now();
    CHECK(w->loan(64, none));
    CHECK(Clock::now() - t0 < 150ms);
    releaser.join();
    w->release(none);
    w->release(last);
    for (std::size_t i = 1; i < held.size(); ++i) r->release(held[i]);
}

TEST_CASE("shm chunk pool exhausted by a slow reader: drop_oldest", "[shm]") {
    World world;
    auto pair = connected(world, Overflow::drop_oldest, 2);
    auto& w = pair.w;
    auto& r = pair.r;
    const std::uint32_t chunks = ferry::shm::chunk_count_for_depth(2);  // 6
    std::vector<SampleBuffer> held;
    for (std::uint64_t i = 0; i < chunks - 2; ++i) {
        REQUIRE(publish(*w, i, 64));
        held.emplace_back();
        REQUIRE(r->take(held.back(), past()));
    }
    // Two more fill the reader's ring and the pool; the next loan drops the oldest queued one.
    REQUIRE(publish(*w, 100, 64));
    REQUIRE(publish(*w, 101, 64));
    REQUIRE(publish(*w, 102, 64));
    CHECK(r->lost() == 1);
    for (std::uint64_t want : {101, 102}) {
        held.emplace_back();
        REQUIRE(r->take(held.back(), past()));
        CHECK(check(held.back().data, held.back().size) == want);
    }
    // Now the reader holds every chunk as a sample: nothing queued is left to drop.
    REQUIRE(held.size() == chunks);
    LoanBuffer none;
    CHECK(w->loan(64, none).code() == Errc::no_resources);
    r->release(held.front());
    CHECK(w->loan(64, none));
    w->release(none);
    for (std::size_t i = 1; i < held.size(); ++i) r->release(held[i]);
}

TEST_CASE("shm SIGKILLed reader does not block the writer", "[shm][conformance]") {
    World world;
    auto wp = world.params(Overflow::block, 4);
    wp.block_timeout = 2000ms;
    auto w = world.writer(wp);
    Child reader = Child::fork([&] {
        auto r = world.reader(world.params(Overflow::block, 4, 64 * 1024, 1));
        ::pause();
        return 0;
    });
    const auto rid = ferry::transport::make_endpoint_id(reader.pid(), 1);
    REQUIRE(ferry::test::wait_until([&] { return shm_exists(world.domain, rid, "sig"); }, 5000ms));
    w->sync_readers({peer(rid)});
    REQUIRE(w->reader_count() == 1);
    for (std::uint64_t i = 0; i < 4; ++i) REQUIRE(publish(*w, i, 64));
    reader.kill(SIGKILL);
    reader.wait(5000ms);
    // The queue is full and its reader is dead: the writer notices long before block_timeout.
    const auto t0 = Clock::now();
    CHECK(publish(*w, 4, 64));
    CHECK(Clock::now() - t0 < 500ms);
    CHECK(w->reader_count() == 0);
    // Once the registry drops it, nothing waits at all; its leftover doorbell is the core's to clean.
    w->sync_readers({});
    for (std::uint64_t i = 5; i < 100; ++i) REQUIRE(publish(*w, i, 64));
    ::shm_unlink(("/" + ferry::transport::object_name(world.domain, rid, "sig")).c_str());
}

TEST_CASE("shm SIGKILLed reader holding samples: its chunks are recycled", "[shm]") {
    World world;
    auto wp = world.params(Overflow::fail, 2);
    auto w = world.writer(wp);
    const std::uint32_t chunks = ferry::shm::chunk_count_for_depth(2);
    int held_pipe[2];
    REQUIRE(::pipe(held_pipe) == 0);
    Child reader = Child::fork([&] {
        ::close(held_pipe[0]);
        auto r = world.reader(world.params(Overflow::fail, 2, 64 * 1024, 1));
        std::vector<SampleBuffer> held;
        while (held.size() < chunks - 1) {
            r->sync_writers({peer(wp)});
            SampleBuffer s;
            if (r->take(s, in(10ms))) held.push_back(s);  // and never released
        }
        const char one = 1;
        if (::write(held_pipe[1], &one, 1) != 1) return 1;
        ::pause();
        return 0;
    });
    ::close(held_pipe[1]);
    const auto rid = ferry::transport::make_endpoint_id(reader.pid(), 1);
    REQUIRE(ferry::test::wait_until(
        [&] {
            w->sync_readers({peer(rid)});
            return w->reader_count() == 1;
        },
        5000ms));
    for (std::uint64_t i = 0; i < chunks - 1; ++i) {
        // Overflow fail: retry while the reader's ring (depth 2) is momentarily full.
        REQUIRE(ferry::test::wait_until([&] { return static_cast<bool>(publish(*w, i, 64)); }, 5000ms));
    }
    char c = 0;
    REQUIRE(::read(held_pipe[0], &c, 1) == 1);
    ::close(held_pipe[0]);
    LoanBuffer last, none;
    REQUIRE(w->loan(64, last));
    CHECK(w->loan(64, none).code() == Errc::would_block);  // the reader holds all the others
    w->release(last);

    reader.kill(SIGKILL);
    reader.wait(5000ms);
    w->sync_readers({});
    CHECK(w->reader_count() == 0);
    std::vector<LoanBuffer> loans(chunks);
    for (auto& l : loans) REQUIRE(w->loan(64, l));
    for (auto& l : loans) w->release(l);
    ::shm_unlink(("/" + ferry::transport::object_name(world.domain, rid, "sig")).c_str());
    w.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm SIGKILLed writer mid-stream: no torn message, a new writer is received", "[shm][conformance]") {
    World world;
    const std::size_t size = 256 * 1024;  // big enough that a kill often lands mid-fill
    auto rp = world.params(Overflow::drop_oldest, 8, size);
    auto r = world.reader(rp);
    Child writer = Child::fork([&] {
        auto w = world.writer(world.params(Overflow::drop_oldest, 8, size, 1));
        w->sync_readers({peer(rp)});
        for (std::uint64_t i = 0;; ++i) {
            if (!publish(*w, i, size)) return 1;
        }
    });
    const auto wid = ferry::transport::make_endpoint_id(writer.pid(), 1);
    std::uint64_t received = 0, torn = 0;
    for (int i = 0; i < 5000 && received < 200; ++i) {
        r->sync_writers({peer(wid)});
        std::uint64_t seq = 0;
        if (receive(*r, seq, in(10ms))) {
            ++received;
            torn += seq == UINT64_MAX;
        }
    }
    REQUIRE(received >= 200);
    writer.kill(SIGKILL);
    CHECK(writer.wait(5000ms) == 128 + SIGKILL);
    // Whatever was queued when it died is complete.
    std::uint64_t seq = 0;
    while (receive(*r, seq, past())) {
        ++received;
        torn += seq == UINT64_MAX;
    }
    CHECK(torn == 0);
    r->sync_writers({});  // the registry forgets the dead writer
    // What the core's cleanup of a dead process does: its segment and its chunks' segments.
    const std::string dead = ferry::transport::object_name(world.domain, wid, "shm");
    for (const auto& name : ferry::test::leftovers("/dev/shm", world.domain)) {
        if (name.compare(0, dead.size(), dead) == 0) ::shm_unlink(("/" + name).c_str());
    }

    auto wp = world.params(Overflow::drop_oldest, 8, size);
    auto w = world.writer(wp);
    connect(*w, wp, *r, rp);
    REQUIRE(publish(*w, 424242, size));
    REQUIRE(receive(*r, seq, in(1000ms)));
    CHECK(seq == 424242);
    w.reset();
    r.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm rogue writer: scribbled headers are refused, garbage is dropped, good writers flow", "[shm][conformance]") {
    World world;
    auto rp = world.params(Overflow::block, 4, 4096);
    auto r = world.reader(rp);
    auto gp = world.params(Overflow::block, 4, 4096);
    auto good = world.writer(gp);
    good->sync_readers({peer(rp)});

    auto make_segment = [&](std::uint64_t id, std::size_t size) -> std::byte* {
        const std::string name = "/" + ferry::transport::object_name(world.domain, id, "shm");
        const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) return nullptr;
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        return p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
    };
    // 1. Random bytes. 2. Valid magic, lying sizes. 3. Smaller than a header.
    const auto junk_id = ferry::transport::make_endpoint_id(::getpid(), 901);
    const auto liar_id = ferry::transport::make_endpoint_id(::getpid(), 902);
    const auto tiny_id = ferry::transport::make_endpoint_id(::getpid(), 903);
    std::byte* junk = make_segment(junk_id, 1 << 20);
    REQUIRE(junk != nullptr);
    for (std::size_t i = 0; i < (1 << 20); ++i) junk[i] = static_cast<std::byte>((i * 2654435761u) >> 13);
    std::byte* liar = make_segment(liar_id, 1 << 20);
    REQUIRE(liar != nullptr);
    auto* lh = reinterpret_cast<ferry::shm::SegmentHeader*>(liar);
    lh->version = ferry::shm::kLayoutVersion;
    lh->slot_count = ferry::shm::kSlotCount;
    lh->depth = 4;
    lh->chunk_count = 1000000;  // would index far past the file
    lh->max_message_size = 1u << 30;
    lh->magic.store(ferry::shm::kSegmentMagic);
    REQUIRE(make_segment(tiny_id, 16) != nullptr);

    // 4. A well-formed header whose ring and chunks hold garbage for our reader.
    ferry::shm::Layout l;
    REQUIRE(ferry::shm::compute_layout(8, 4096, l));
    const auto rogue_id = ferry::transport::make_endpoint_id(::getpid(), 904);
    std::byte* rogue = make_segment(rogue_id, l.total_size);
    REQUIRE(rogue != nullptr);
    ferry::shm::SegmentView v{rogue, l};
    auto* h = v.header();
    h->version = ferry::shm::kLayoutVersion;
    h->slot_count = ferry::shm::kSlotCount;
    h->depth = l.depth;
    h->chunk_count = l.chunk_count;
    h->max_message_size = l.max_message_size;
    h->slots_offset = l.slots_offset;
    h->rings_offset = l.rings_offset;
    h->chunks_offset = l.chunks_offset;
    h->total_size = l.total_size;
    h->magic.store(ferry::shm::kSegmentMagic);
    auto* slot = v.slot(5);
    slot->reader_id.store(rp.endpoint_id);
    slot->state.store(ferry::shm::kSlotActive);
    // Chunk data segments: "<segment name>.<serial>".
    const std::string rogue_name = ferry::transport::object_name(world.domain, rogue_id, "shm");
    auto make_data = [&](std::uint64_t serial, std::size_t size) {
        const std::string name = "/" + rogue_name + "." + std::to_string(serial);
        const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
        const bool ok = fd >= 0 && ::ftruncate(fd, static_cast<off_t>(size)) == 0;
        if (fd >= 0) ::close(fd);
        return ok;
    };
    REQUIRE(make_data(1, 4096));
    REQUIRE(make_data(2, 8192));
    using ferry::shm::ring_entry;
    v.ring(5)[0].store(ring_entry(123456, 10));        // index out of range
    v.ring(5)[1].store(ring_entry(0, 1u << 31));        // size out of range
    v.ring(5)[2].store(ring_entry(1, 10));              // plausible: delivered as 10 bytes
    v.chunk(1)->segment.store(1);
    v.chunk(1)->capacity.store(4096);
    v.ring(5)[3].store(ring_entry(2, 10));
    v.chunk(2)->segment.store(2);
    v.chunk(2)->capacity.store(std::uint64_t{1} << 40);  // a data segment far above max_message_size
    v.ring(5)[4].store(ring_entry(3, 10));
    v.chunk(3)->segment.store(77);  // does not exist
    v.chunk(3)->capacity.store(4096);
    v.ring(5)[5].store(ring_entry(4, 10));
    v.chunk(4)->segment.store(2);
    v.chunk(4)->capacity.store(4096);  // the file is 8192 bytes: refused, not mapped in part
    slot->tail.store(0);
    slot->head.store(6);

    r->sync_writers({peer(junk_id), peer(liar_id), peer(tiny_id), peer(rogue_id), peer(gp)});
    SampleBuffer s;
    REQUIRE(r->take(s, past()));
    CHECK(s.size == 10);
    r->release(s);
    CHECK(r->take(s, past()).code() == Errc::would_block);
    CHECK(r->lost() == 5);
    slot->head.store(1000);  // more entries than the ring has
    CHECK(r->take(s, past()).code() == Errc::would_block);
    CHECK(r->lost() == 6);

    for (std::uint64_t i = 0; i < 50; ++i) {
        REQUIRE(publish(*good, i, 4096));
        std::uint64_t seq = 0;
        REQUIRE(receive(*r, seq, in(1000ms)));
        CHECK(seq == i);
    }
    r->sync_writers({peer(junk_id), peer(liar_id), peer(tiny_id), peer(rogue_id), peer(gp)});  // refused stay refused
    r->sync_writers({peer(gp)});
    ::munmap(junk, 1 << 20);
    ::munmap(liar, 1 << 20);
    ::munmap(rogue, l.total_size);
    for (auto id : {junk_id, liar_id, tiny_id, rogue_id}) {
        ::shm_unlink(("/" + ferry::transport::object_name(world.domain, id, "shm")).c_str());
    }
    ::shm_unlink(("/" + rogue_name + ".1").c_str());
    ::shm_unlink(("/" + rogue_name + ".2").c_str());
    good.reset();
    r.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm reader attached after messages were queued for it still gets them", "[shm]") {
    World world;
    auto wp = world.params(Overflow::block, 8);
    auto rp = world.params(Overflow::block, 8);
    auto w = world.writer(wp);
    auto r = world.reader(rp);
    w->sync_readers({peer(rp)});  // the writer learns of the reader first
    for (std::uint64_t i = 0; i < 5; ++i) REQUIRE(publish(*w, i, 64));
    r->sync_writers({peer(wp)});
    for (std::uint64_t i = 0; i < 5; ++i) {
        std::uint64_t seq = 0;
        REQUIRE(receive(*r, seq, past()));
        CHECK(seq == i);
    }
    // A writer that goes away normally: what it queued is still delivered, then it is unmapped.
    REQUIRE(publish(*w, 5, 64));
    w.reset();
    r->sync_writers({});
    std::uint64_t seq = 0;
    REQUIRE(receive(*r, seq, past()));
    CHECK(seq == 5);
    CHECK(receive(*r, seq, past()).code() == Errc::would_block);
    r.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm destroyed reader hands its chunks back without waiting for discovery", "[shm]") {
    World world;
    auto pair = connected(world, Overflow::fail, 2);
    auto& w = pair.w;
    auto& r = pair.r;
    SampleBuffer held;
    REQUIRE(publish(*w, 0, 64));
    REQUIRE(r->take(held, past()));
    REQUIRE(publish(*w, 1, 64));
    REQUIRE(publish(*w, 2, 64));
    CHECK(publish(*w, 3, 64).code() == Errc::would_block);
    r.reset();  // without releasing `held`: the destructor hands it back
    CHECK(publish(*w, 4, 64));
    std::vector<LoanBuffer> loans(ferry::shm::chunk_count_for_depth(2));
    for (auto& l : loans) REQUIRE(w->loan(64, l));
    for (auto& l : loans) w->release(l);
    w->sync_readers({});
    w.reset();
    CHECK(world.leftovers().empty());
}

TEST_CASE("shm readers coming and going while a writer publishes: the others lose nothing unaccounted", "[shm]") {
    World world;
    auto wp = world.params(Overflow::drop_oldest, 8, 1024);
    auto sp = world.params(Overflow::drop_oldest, 8, 1024);
    auto w = world.writer(wp);
    auto stable = world.reader(sp);
    connect(*w, wp, *stable, sp);
    constexpr std::uint64_t kCount = 20000;
    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> churned{0};
    std::uint64_t received = 0, disorder = 0, torn = 0;
    std::thread taker([&] {
        std::uint64_t last = 0;
        bool first = true;
        while (true) {
            std::uint64_t seq = 0;
            const Status st = receive(*stable, seq, in(2000ms));
            if (!st) break;
            torn += seq == UINT64_MAX;
            disorder += !first && seq <= last;
            first = false;
            last = seq;
            ++received;
            if (seq == kCount - 1) break;
        }
    });
    std::thread churn([&] {
        for (int i = 0; !done.load(); ++i) {
            auto xp = world.params(Overflow::drop_oldest, 8, 1024);
            auto x = world.reader(xp);
            w->sync_readers({peer(sp), peer(xp)});
            x->sync_writers({peer(wp)});
            for (int k = 0; k < i % 5; ++k) {
                SampleBuffer s;
                if (x->take(s, in(1ms)) && k % 2 == 0) x->release(s);  // some samples never released
            }
            if (i % 2 == 0) x.reset();  // gone before the registry says so
            w->sync_readers({peer(sp)});
            ++churned;
        }
    });
    for (std::uint64_t i = 0; i < kCount; ++i) {
        REQUIRE(publish(*w, i, 64 + i % 900));
        if (i % 100 == 0) {  // keep the churn interleaved with the whole stream
            REQUIRE(ferry::test::wait_until([&] { return churned.load() >= i / 100; }, 5000ms));
        }
    }
    done = true;
    churn.join();
    taker.join();
    CHECK(torn == 0);
    CHECK(disorder == 0);
    CHECK(received + stable->lost() == kCount);
    CHECK(w->reader_count() == 1);
    // Every chunk the departed readers held has come back.
    std::vector<LoanBuffer> loans(ferry::shm::chunk_count_for_depth(8));
    for (auto& l : loans) REQUIRE(w->loan(64, l));
    for (auto& l : loans) w->release(l);
}

TEST_CASE("shm replaces a stale segment left under its own name by a dead process", "[shm]") {
    World world;
    auto wp = world.params();
    const std::string name = "/" + ferry::transport::object_name(world.domain, wp.endpoint_id, "shm");
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 123) == 0);
    ::close(fd);
    auto rp = world.params();
    auto w = world.writer(wp);
    auto r = world.reader(rp);
    connect(*w, wp, *r, rp);
    REQUIRE(publish(*w, 9, 64));
    std::uint64_t seq = 0;
    REQUIRE(receive(*r, seq, in(1000ms)));
    CHECK(seq == 9);
    w.reset();
    r.reset();
    CHECK(world.leftovers().empty());
}
