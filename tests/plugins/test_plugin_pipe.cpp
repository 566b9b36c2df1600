// The named-pipe plugin through the SDK interface, plus the SDK's fragmentation layer
// (fragment.hpp) that it shares with the mq plugin.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>

#include <ferry/transport/fragment.hpp>
#include <ferry/transport/framed_stream.hpp>
#include <ferry/transport/naming.hpp>

#define FERRY_TEST_PLUGIN "pipe"

namespace {

// "to-<reader id>.fifo": the suffix of every FIFO a writer creates for that reader.
std::string addressed_to(std::uint64_t reader_id) {
    char buf[32];
    std::snprintf(buf, sizeof buf, ".to-%016llx.fifo", static_cast<unsigned long long>(reader_id));
    return buf;
}

}  // namespace

// A reader's objects are the FIFOs its writers created for it.
bool reader_object_exists(const ferry::transport::TopicParams& reader) {
    DIR* dir = ::opendir(reader.runtime_dir.c_str());
    if (dir == nullptr) return false;
    const std::string prefix = "ferry." + reader.domain + ".";
    const std::string suffix = addressed_to(reader.endpoint_id);
    bool found = false;
    while (const dirent* e = ::readdir(dir)) {
        const std::string name = e->d_name;
        if (name.size() > prefix.size() + suffix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            found = true;
        }
    }
    ::closedir(dir);
    return found;
}

// A rogue process (same user) creates its own FIFO addressed to the reader, named like a
// writer's, waits until the reader has opened it, and writes into it. A reader that finds
// garbage closes and removes the FIFO; the rogue then makes a new one.
void write_raw(const ferry::transport::TopicParams& reader, const void* bytes, std::size_t n) {
    static std::map<std::uint64_t, int> fds;
    ::signal(SIGPIPE, SIG_IGN);  // runs in the rogue child only
    const std::string path = ferry::transport::runtime_path(
        reader.runtime_dir, reader.domain, ferry::transport::make_endpoint_id(::getpid(), 0xBAD),
        addressed_to(reader.endpoint_id).c_str() + 1);
    int& fd = fds[reader.endpoint_id];
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (fd <= 0) {
            ::unlink(path.c_str());
            if (::mkfifo(path.c_str(), 0600) != 0) return;
            // O_WRONLY|O_NONBLOCK opens only once a reader has the FIFO open.
            for (int i = 0; i < 2000 && fd <= 0; ++i) {
                fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0) ::usleep(1000);
            }
            if (fd < 0) {
                ::unlink(path.c_str());
                fd = 0;
                return;
            }
        }
        if (::write(fd, bytes, n) >= 0 || errno != EPIPE) return;
        ::close(fd);  // the reader dropped this FIFO as garbage: make another
        fd = 0;
    }
}

#include "plugins/transport_cases.hpp"

// ---------------------------------------------------------------------------------------
// fragment.hpp

namespace {

using namespace ferry::transport;

std::vector<std::byte> unit_bytes(const UnitHeader& h, const std::byte* payload) {
    std::vector<std::byte> u(kUnitHeaderSize + h.payload_size);
    std::memcpy(u.data(), &h, kUnitHeaderSize);
    if (h.payload_size != 0) std::memcpy(u.data() + kUnitHeaderSize, payload, h.payload_size);
    return u;
}

// Cuts a message into units the way a writer does, for feeding a Reassembler directly.
std::vector<std::vector<std::byte>> split(const std::vector<std::byte>& msg, std::size_t unit, std::uint64_t writer, std::uint32_t seq) {
    std::vector<std::vector<std::byte>> units;
    const std::size_t cap = unit - kUnitHeaderSize;
    const std::uint32_t n = unit_count(msg.size(), unit);
    for (std::uint32_t i = 0; i < n; ++i) {
        const std::size_t off = i * cap;
        const auto len = static_cast<std::uint32_t>(std::min(cap, msg.size() - off));
        units.push_back(unit_bytes(make_unit_header(writer, seq, static_cast<std::uint32_t>(msg.size()), i, len), msg.data() + off));
    }
    return units;
}

std::vector<std::byte> message(std::size_t n, std::uint64_t seed) {
    std::vector<std::byte> m(n);
    cases::fill(m.data(), n, seed);
    return m;
}

}  // namespace

TEST_CASE("fragment: interleaved units of two writers reassemble - single units are views", "[fragment]") {
    Reassembler sut({1u << 20});
    const auto a = message(10000, 1), b = message(9000, 2), c = message(100, 3);
    auto ua = split(a, 4096, 0xA, 0), ub = split(b, 4096, 0xB, 0), uc = split(c, 4096, 0xC, 0);
    REQUIRE(ua.size() == 3);
    REQUIRE(uc.size() == 1);
    Message m;
    CHECK(sut.push(ua[0].data(), ua[0].size(), m) == Reassembler::Result::pending);
    CHECK(sut.push(ub[0].data(), ub[0].size(), m) == Reassembler::Result::pending);
    CHECK(sut.push(ua[1].data(), ua[1].size(), m) == Reassembler::Result::pending);
    REQUIRE(sut.push(uc[0].data(), uc[0].size(), m) == Reassembler::Result::message);
    CHECK(m.data == uc[0].data() + kUnitHeaderSize);  // no copy
    CHECK(cases::intact(m.data, m.size, 3));
    CHECK(sut.push(ub[1].data(), ub[1].size(), m) == Reassembler::Result::pending);
    REQUIRE(sut.push(ub[2].data(), ub[2].size(), m) == Reassembler::Result::message);
    CHECK(m.size == 9000);
    CHECK(cases::intact(m.data, m.size, 2));
    sut.recycle(m);
    REQUIRE(sut.push(ua[2].data(), ua[2].size(), m) == Reassembler::Result::message);
    CHECK(cases::intact(m.data, m.size, 1));
    sut.recycle(m);
    CHECK(sut.lost() == 0);
    CHECK(sut.partial_count() == 0);
}

TEST_CASE("fragment: a new sequence discards the partial - gaps and duplicates are handled", "[fragment]") {
    Reassembler sut({1u << 20});
    Message m;
    const auto big = split(message(10000, 1), 4096, 0xA, 0);
    CHECK(sut.push(big[0].data(), big[0].size(), m) == Reassembler::Result::pending);
    const auto next = split(message(50, 2), 4096, 0xA, 1);
    REQUIRE(sut.push(next[0].data(), next[0].size(), m) == Reassembler::Result::message);
    CHECK(sut.partial_count() == 0);
    // The rest of the abandoned message is ignored.
    CHECK(sut.push(big[1].data(), big[1].size(), m) == Reassembler::Result::pending);
    CHECK(sut.push(big[2].data(), big[2].size(), m) == Reassembler::Result::pending);
    CHECK(sut.lost() == 1);  // sequence 0 never arrived whole
    const auto later = split(message(50, 3), 4096, 0xA, 5);
    REQUIRE(sut.push(later[0].data(), later[0].size(), m) == Reassembler::Result::message);
    CHECK(sut.lost() == 4);  // 2, 3, 4 skipped
    CHECK(sut.push(later[0].data(), later[0].size(), m) == Reassembler::Result::pending);  // duplicate
    CHECK(sut.lost() == 4);
}

TEST_CASE("fragment: garbage is dropped and counted before anything is allocated", "[fragment]") {
    Reassembler sut({1u << 20});
    Message m;
    const char* why = nullptr;
    std::vector<std::byte> junk(100, std::byte{0x5A});
    CHECK(sut.push(junk.data(), junk.size(), m, &why) == Reassembler::Result::garbage);
    CHECK(std::string(why) == "bad magic");
    CHECK(sut.push(junk.data(), 5, m, &why) == Reassembler::Result::garbage);
    UnitHeader h = make_unit_header(1, 0, 0xFFFFFFFFu, 0, 10);
    auto u = unit_bytes(h, junk.data());
    CHECK(sut.push(u.data(), u.size(), m, &why) == Reassembler::Result::garbage);
    CHECK(std::string(why) == "message larger than max_message_size");
    CHECK(sut.partial_bytes() == 0);
    h = make_unit_header(1, 0, 100, 0, 50);
    u = unit_bytes(h, junk.data());
    CHECK(sut.push(u.data(), u.size() - 1, m, &why) == Reassembler::Result::garbage);  // length mismatch
    h.check ^= 1;
    u = unit_bytes(h, junk.data());
    CHECK(sut.push(u.data(), u.size(), m, &why) == Reassembler::Result::garbage);
    CHECK(sut.lost() == 5);
}

TEST_CASE("fragment: spoofed writer ids cannot grow partial memory without bound", "[fragment]") {
    Reassembler::Limits limits;
    limits.max_message_size = 16u << 20;
    Reassembler sut(limits);
    Message m;
    std::vector<std::byte> payload(100);
    for (std::uint64_t id = 1; id <= 10000; ++id) {
        const auto u = unit_bytes(make_unit_header(id, 0, 16u << 20, 0, 100), payload.data());
        REQUIRE(sut.push(u.data(), u.size(), m) == Reassembler::Result::pending);
        REQUIRE(sut.partial_count() <= 32);
        REQUIRE(sut.partial_bytes() <= (64u << 20));
    }
    // A genuine writer still gets its message through.
    const auto good = split(message(50000, 9), 4096, 0x600D, 0);
    Reassembler::Result last = Reassembler::Result::pending;
    for (const auto& u : good) last = sut.push(u.data(), u.size(), m);
    REQUIRE(last == Reassembler::Result::message);
    CHECK(cases::intact(m.data, m.size, 9));
    sut.recycle(m);
}

TEST_CASE("fragment: a gone writer's partial is discarded when the source is idle", "[fragment]") {
    Reassembler sut({1u << 20});
    Message m;
    const PeerInfo w{make_endpoint_id(::getpid(), 77), ::getpid()};
    sut.set_writers({w});
    const auto units = split(message(10000, 1), 4096, w.endpoint_id, 0);
    CHECK(sut.push(units[0].data(), units[0].size(), m) == Reassembler::Result::pending);
    sut.set_writers({});
    CHECK(sut.has_gone_partials());
    CHECK(sut.partial_count() == 1);  // its tail may still be queued: kept until idle
    sut.on_idle();
    CHECK(sut.partial_count() == 0);
    CHECK(sut.lost() == 1);
    // Later units of that message never complete it.
    CHECK(sut.push(units[1].data(), units[1].size(), m) == Reassembler::Result::pending);
    CHECK(sut.push(units[2].data(), units[2].size(), m) == Reassembler::Result::pending);
}

TEST_CASE("fragment: deliver_units splits in place over a real pipe and restores the message", "[fragment]") {
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    REQUIRE(::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20) > 0);
    UnitTarget t;
    t.fd = fds[1];
    t.unit_size = 4096;
    std::vector<UnitTarget*> targets{&t};
    std::vector<std::byte> buf(kUnitHeaderSize + 100000);
    cases::fill(buf.data() + kUnitHeaderSize, 100000, 5);
    auto send = [](int fd, const std::byte* p, std::size_t n) noexcept -> int {
        return ::write(fd, p, n) == static_cast<ssize_t>(n) ? 0 : errno;
    };
    REQUIRE(deliver_units(buf.data() + kUnitHeaderSize, 100000, 0x77, Overflow::block, Clock::now() + std::chrono::seconds(1),
                          targets, send, "test"));
    CHECK(cases::intact(buf.data() + kUnitHeaderSize, 100000, 5));  // headers put back
    CHECK(t.next_sequence == 1);
    std::vector<std::byte> stream(1 << 20);
    const ssize_t n = ::read(fds[0], stream.data(), stream.size());
    REQUIRE(n > 0);
    CHECK(static_cast<std::size_t>(n) == 100000 + unit_count(100000, 4096) * kUnitHeaderSize);
    Reassembler sut({1u << 20});
    Message m;
    std::size_t pos = 0;
    Reassembler::Result r = Reassembler::Result::pending;
    while (pos < static_cast<std::size_t>(n)) {
        UnitHeader h;
        std::memcpy(&h, stream.data() + pos, sizeof h);
        REQUIRE(unit_header_valid(h, 4096));
        r = sut.push(stream.data() + pos, kUnitHeaderSize + h.payload_size, m);
        pos += kUnitHeaderSize + h.payload_size;
    }
    REQUIRE(r == Reassembler::Result::message);
    CHECK(cases::intact(m.data, m.size, 5));
    // Full pipe: fail refuses before the first unit, block times out.
    std::vector<std::byte> filler(4096, std::byte{1});
    while (::write(fds[1], filler.data(), filler.size()) > 0) {
    }
    CHECK(deliver_units(buf.data() + kUnitHeaderSize, 10, 0x77, Overflow::fail, Clock::now() + std::chrono::seconds(1),
                        targets, send, "test")
              .code() == Errc::would_block);
    CHECK(t.next_sequence == 1);
    const auto start = Clock::now();
    CHECK(deliver_units(buf.data() + kUnitHeaderSize, 10, 0x77, Overflow::block,
                        Clock::now() + std::chrono::milliseconds(50), targets, send, "test")
              .code() == Errc::timeout);
    CHECK(Clock::now() - start >= std::chrono::milliseconds(49));
    ::close(fds[0]);
    ::close(fds[1]);
}

// ---------------------------------------------------------------------------------------
// Floods: many FIFOs addressed to one reader.

TEST_CASE("pipe: half frames in 40 FIFOs stay within the reader's buffer budget", "[pipe][hostile][flood]") {
    using namespace std::chrono_literals;
    using ferry::test::Child;
    using ferry::test::wait_until;
    cases::Env env;
    constexpr std::size_t kMax = 16u << 20;
    // The reader takes until a real writer's 100-byte message arrives.
    TopicParams rp;
    Child rd = cases::flood_target(env, kMax, rp);
    const std::size_t budget = reader_budget(rp);  // default: 4 x 16 MiB
    REQUIRE(budget == 4 * kMax);
    const std::size_t baseline = cases::vm_rss(rd.pid());

    struct sigaction ignore {}, old {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old);
    struct Flow {
        std::string path;
        int fd;
        std::size_t sent;
        bool closed;
    };
    const std::size_t half = kMax / 2;
    std::vector<Flow> flows;
    for (std::uint32_t i = 0; i < 40; ++i) {
        Flow f{runtime_path(rp.runtime_dir, rp.domain, make_endpoint_id(::getpid(), 1000 + i),
                            addressed_to(rp.endpoint_id).c_str() + 1),
               -1, 0, false};
        REQUIRE(::mkfifo(f.path.c_str(), 0600) == 0);
        // O_WRONLY|O_NONBLOCK opens once the reader has the FIFO open.
        REQUIRE(wait_until([&] { return (f.fd = ::open(f.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0; },
                           5000ms));
        const FrameHeader h{0x50595246u, 0, kMax - 64};
        REQUIRE(::write(f.fd, &h, sizeof h) == sizeof h);
        flows.push_back(f);
    }
    const std::vector<char> bytes(64 * 1024, 'x');
    std::size_t peak = 0;
    const auto until = Clock::now() + 30s;
    for (;;) {
        std::vector<pollfd> pfds;
        std::vector<Flow*> who;
        for (Flow& f : flows) {
            if (f.closed || f.sent == half) continue;
            pfds.push_back({f.fd, POLLOUT, 0});
            who.push_back(&f);
        }
        if (pfds.empty() || Clock::now() > until) break;
        ::poll(pfds.data(), pfds.size(), 100);
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            if (pfds[i].revents == 0) continue;
            Flow& f = *who[i];
            const ssize_t n = ::write(f.fd, bytes.data(), std::min(bytes.size(), half - f.sent));
            if (n > 0) f.sent += static_cast<std::size_t>(n);
            else if (n < 0 && errno != EAGAIN) f.closed = true;  // EPIPE: the reader dropped it
        }
        peak = std::max(peak, cases::vm_rss(rd.pid()));
    }
    ::sigaction(SIGPIPE, &old, nullptr);
    // A FIFO the reader dropped has no reader left: its writer sees EPIPE, or POLLERR if it had
    // already written its whole half and wrote no more.
    std::size_t dropped = 0;
    auto count_dropped = [&] {
        dropped = 0;
        for (Flow& f : flows) {
            pollfd p{f.fd, POLLOUT, 0};
            dropped += f.closed || (::poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) ? 1 : 0;
        }
        return dropped >= 40 - budget / half;
    };
    CHECK(wait_until(count_dropped, 5000ms));  // at most budget/half halves fit
    INFO("baseline " << (baseline >> 20) << " MiB, peak " << (peak >> 20) << " MiB, dropped " << dropped);
    CHECK(peak < baseline + budget + (32u << 20));
    for (Flow& f : flows) {
        ::close(f.fd);
        ::unlink(f.path.c_str());
    }

    // A real writer is still heard.
    cases::send_final(env, rp, rd, kMax);
}
