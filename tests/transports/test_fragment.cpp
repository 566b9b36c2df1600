// The SDK's fragmentation layer (fragment.hpp): units, reassembly and deliver_units, as the mq
// plugin and out-of-tree datagram plugins use them.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include <ferry/transport/fragment.hpp>
#include <ferry/transport/naming.hpp>

namespace {

using namespace ferry::transport;

// Message contents derived from a seed, so that a torn or shifted message fails intact().
std::byte pattern(std::size_t i, std::uint64_t seed) {
    return static_cast<std::byte>((i * 131 + seed * 7 + (i >> 8)) & 0xFF);
}

void fill(std::byte* p, std::size_t n, std::uint64_t seed) {
    for (std::size_t i = 0; i < n; ++i) p[i] = pattern(i, seed);
}

bool intact(const std::byte* p, std::size_t n, std::uint64_t seed) {
    for (std::size_t i = 0; i < n; ++i)
        if (p[i] != pattern(i, seed)) return false;
    return true;
}

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
    fill(m.data(), n, seed);
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
    CHECK(intact(m.data, m.size, 3));
    CHECK(sut.push(ub[1].data(), ub[1].size(), m) == Reassembler::Result::pending);
    REQUIRE(sut.push(ub[2].data(), ub[2].size(), m) == Reassembler::Result::message);
    CHECK(m.size == 9000);
    CHECK(intact(m.data, m.size, 2));
    sut.recycle(m);
    REQUIRE(sut.push(ua[2].data(), ua[2].size(), m) == Reassembler::Result::message);
    CHECK(intact(m.data, m.size, 1));
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
    CHECK(intact(m.data, m.size, 9));
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
    fill(buf.data() + kUnitHeaderSize, 100000, 5);
    auto send = [](int fd, const std::byte* p, std::size_t n) noexcept -> int {
        return ::write(fd, p, n) == static_cast<ssize_t>(n) ? 0 : errno;
    };
    REQUIRE(deliver_units(buf.data() + kUnitHeaderSize, 100000, 0x77, Overflow::block, Clock::now() + std::chrono::seconds(1),
                          targets, send, "test"));
    CHECK(intact(buf.data() + kUnitHeaderSize, 100000, 5));  // headers put back
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
    CHECK(intact(m.data, m.size, 5));
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
