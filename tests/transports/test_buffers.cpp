// The SDK's buffers (buffers.hpp): the loans every copying writer hands out, and the pool a
// reassembler keeps its messages in.
#include <catch2/catch.hpp>

#include <cstring>

#include <ferry/transport/buffers.hpp>

using namespace ferry::transport;

TEST_CASE("LoanPool: a loan has the headroom before it and is reused once given back", "[buffers]") {
    LoanPool sut(16, 1 << 20);
    LoanBuffer a;
    sut.lend(100, a);
    REQUIRE(a.data != nullptr);
    CHECK(a.capacity >= 100);
    std::byte* start = sut.open_loan(a);
    REQUIRE(start != nullptr);
    CHECK(start + 16 == a.data);
    std::memset(start, 0xAB, 16 + a.capacity);  // headroom and loan are all writable

    LoanBuffer b;
    sut.lend(100, b);  // a is still open: another buffer
    CHECK(b.data != a.data);
    CHECK(b.handle != a.handle);

    std::byte* const a_data = a.data;
    sut.give_back(a);
    CHECK(a.data == nullptr);
    CHECK(a.handle == 0);
    LoanBuffer c;
    sut.lend(50, c);
    CHECK(c.data == a_data);  // the free buffer that fits serves the next loan
}

TEST_CASE("LoanPool: only an open loan of the pool is recognised", "[buffers]") {
    LoanPool sut(16, 1 << 20);
    LoanBuffer a;
    sut.lend(10, a);
    LoanBuffer forged = a;
    forged.data += 1;
    CHECK(sut.open_loan(forged) == nullptr);
    forged = a;
    forged.handle = 7;
    CHECK(sut.open_loan(forged) == nullptr);
    CHECK(sut.open_loan(LoanBuffer{}) == nullptr);

    LoanBuffer stale = a;
    sut.give_back(a);
    CHECK(sut.open_loan(stale) == nullptr);  // given back: a second commit is refused
    sut.give_back(stale);                     // and a second release does nothing
    LoanBuffer b;
    sut.lend(10, b);
    LoanBuffer c;
    sut.lend(10, c);
    CHECK(b.data != c.data);  // the stale release did not free b's buffer twice
}

TEST_CASE("LoanPool: buffers grow geometrically but never past headroom plus max size", "[buffers]") {
    LoanPool sut(16, 10000);
    LoanBuffer a;
    sut.lend(5000, a);
    CHECK(a.capacity >= 5000);
    CHECK(a.capacity <= 10000);
    sut.give_back(a);
    sut.lend(9000, a);  // the same buffer, grown
    CHECK(a.capacity >= 9000);
    CHECK(a.capacity <= 10000);
    sut.give_back(a);
    sut.lend(0, a);  // 0 bytes is a loan too
    CHECK(a.data != nullptr);
    CHECK(sut.open_loan(a) != nullptr);
}

TEST_CASE("BufferPool: keeps the larger buffers and hands out the smallest that fits", "[buffers]") {
    BufferPool sut(2);
    ByteBuffer small = sut.acquire(100);
    ByteBuffer mid = sut.acquire(10000);
    ByteBuffer big = sut.acquire(100000);
    CHECK(small.capacity >= 100);
    const std::byte* mid_data = mid.data.get();
    const std::byte* big_data = big.data.get();
    sut.recycle(std::move(small));
    sut.recycle(std::move(mid));
    sut.recycle(std::move(big));  // full: replaces the smallest
    ByteBuffer x = sut.acquire(5000);
    CHECK(x.data.get() == mid_data);
    ByteBuffer y = sut.acquire(5000);
    CHECK(y.data.get() == big_data);
}
