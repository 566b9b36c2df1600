// The SDK's stream reader (FramedStreamReader), driven through the smallest mechanism there
// is: each stream an anonymous pipe whose write end the test holds. The uds and pipe plugin
// tests and the conformance suite cover the same code through real plugins; these cases pin
// the contract a plugin author relies on.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <ferry/transport/framed_stream.hpp>

#include "support/process.hpp"

using namespace ferry::transport;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t kMagic = 0x54534554u;  // "TEST"
const Host kHost{kAbiVersion, nullptr};

class PairReader final : public FramedStreamReader {
public:
    static std::unique_ptr<PairReader> make(const TopicParams& params) {
        std::unique_ptr<PairReader> r(new PairReader(params));
        REQUIRE(r->init().is_ok());
        r->start();
        return r;
    }
    ~PairReader() override { stop(); }
    void sync_writers(const std::vector<PeerInfo>&) noexcept override {}

    // A new stream of `writer_id`; returns the write end. Direct mode: call between takes.
    int connect(std::uint64_t writer_id) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        auto stream = std::make_unique<Stream>();
        stream->fd.reset(fds[0]);
        stream->writer_id = writer_id;
        REQUIRE(add_stream(std::move(stream)) != nullptr);
        return fds[1];
    }
    std::size_t open_streams() const { return streams().size(); }

    int closed = 0;
    bool garbage = false;

private:
    explicit PairReader(const TopicParams& params)
        : FramedStreamReader(kHost, params, FramedReaderOptions{"test", kMagic, "pipe"}, "reader of test") {}
    void on_events(std::uint32_t) override {}
    void on_closed(Stream&, bool was_garbage) override {
        ++closed;
        garbage = was_garbage;
    }
};

TopicParams params(Overflow overflow = Overflow::block) {
    TopicParams p;
    p.topic = "test";
    p.max_message_size = 64 * 1024;
    p.overflow = overflow;
    p.depth = 2;
    return p;
}

void send(int fd, const std::string& text, std::uint32_t dropped_before = 0) {
    std::vector<std::byte> frame(kFrameHeaderSize + text.size());
    const FrameHeader h{kMagic, dropped_before, text.size()};
    std::memcpy(frame.data(), &h, sizeof h);
    std::memcpy(frame.data() + kFrameHeaderSize, text.data(), text.size());
    REQUIRE(::write(fd, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size()));
}

// The next message as text, or "" when none came before the deadline.
std::string take(Reader& r, std::chrono::milliseconds wait = 0ms) {
    SampleBuffer s;
    if (!r.take(s, Clock::now() + wait).is_ok()) return "";
    std::string text(reinterpret_cast<const char*>(s.data), s.size);
    r.release(s);
    return text;
}

}  // namespace

TEST_CASE("FramedStreamReader: frames of several streams arrive whole, each stream in order", "[framed_stream]") {
    auto sut = PairReader::make(params());
    const int a = sut->connect(1);
    const int b = sut->connect(2);
    for (int i = 0; i < 50; ++i) {
        send(a, "a" + std::to_string(i));
        send(b, "b" + std::to_string(i));
    }
    int next_a = 0, next_b = 0;
    for (int i = 0; i < 100; ++i) {
        const std::string m = take(*sut, 1000ms);
        REQUIRE(!m.empty());
        if (m[0] == 'a') CHECK(m == "a" + std::to_string(next_a++));
        else CHECK(m == "b" + std::to_string(next_b++));
    }
    CHECK(next_a == 50);
    CHECK(next_b == 50);
    SampleBuffer s;
    CHECK(sut->take(s, Clock::now()).code() == Errc::would_block);
    CHECK(sut->take(s, Clock::now() + 20ms).code() == Errc::timeout);
    CHECK(sut->lost() == 0);
    ::close(a);
    ::close(b);
}

TEST_CASE("FramedStreamReader: a newer stream of a writer waits until the older one has ended", "[framed_stream]") {
    auto sut = PairReader::make(params());
    const int old_stream = sut->connect(7);
    send(old_stream, "old 1");
    const int new_stream = sut->connect(7);
    send(new_stream, "new 1");
    send(old_stream, "old 2");
    CHECK(take(*sut, 1000ms) == "old 1");
    CHECK(take(*sut, 1000ms) == "old 2");
    CHECK(take(*sut, 50ms).empty());  // "new 1" waits behind the open older stream
    ::close(old_stream);
    CHECK(take(*sut, 1000ms) == "new 1");
    CHECK(sut->open_streams() == 1);
    CHECK(sut->lost() == 0);
    ::close(new_stream);
}

TEST_CASE("FramedStreamReader: an ended stream delivers its whole frames, a torn one counts lost", "[framed_stream]") {
    auto sut = PairReader::make(params());
    const int w = sut->connect(3);
    send(w, "first");
    send(w, "second", 4);  // the writer skipped 4 for this reader before it
    const FrameHeader torn{kMagic, 0, 1000};
    REQUIRE(::write(w, &torn, sizeof torn) == static_cast<ssize_t>(sizeof torn));
    REQUIRE(::write(w, "part", 4) == 4);
    ::close(w);  // the writer is gone mid-frame
    CHECK(take(*sut, 1000ms) == "first");
    CHECK(take(*sut, 1000ms) == "second");
    CHECK(take(*sut, 50ms).empty());
    CHECK(sut->lost() == 5);
    CHECK(sut->closed == 1);
    CHECK_FALSE(sut->garbage);
    CHECK(sut->open_streams() == 0);
}

TEST_CASE("FramedStreamReader: garbage or an oversized frame closes that stream only", "[framed_stream]") {
    auto sut = PairReader::make(params());
    const int good = sut->connect(1);
    const int bad = sut->connect(2);
    const FrameHeader oversized{kMagic, 0, 1u << 30};  // larger than max_message_size
    REQUIRE(::write(bad, &oversized, sizeof oversized) == static_cast<ssize_t>(sizeof oversized));
    send(good, "fine");
    CHECK(take(*sut, 1000ms) == "fine");
    CHECK(take(*sut, 50ms).empty());
    CHECK(sut->closed == 1);
    CHECK(sut->garbage);
    CHECK(sut->lost() == 1);
    const int worse = sut->connect(3);
    REQUIRE(::write(worse, "not a frame header", 16) == 16);
    send(good, "still fine");
    CHECK(take(*sut, 1000ms) == "still fine");
    CHECK(take(*sut, 50ms).empty());
    CHECK(sut->closed == 2);
    CHECK(sut->lost() == 2);
    CHECK(sut->open_streams() == 1);
    ::close(good);
    ::close(bad);
    ::close(worse);
}

TEST_CASE("FramedStreamReader: over its budget the stream with the largest incomplete frame is shed", "[framed_stream]") {
    TopicParams p = params();
    p.max_message_size = 32 * 1024;
    p.reader_buffer_budget = 64 * 1024;  // at least two whole frames: 65 568 bytes
    REQUIRE(reader_budget(p) == 2 * (kFrameHeaderSize + p.max_message_size));
    auto sut = PairReader::make(p);
    const std::size_t parts[] = {20000, 30000, 20000};
    std::vector<int> writers;
    const std::vector<char> bytes(30000, 'x');
    for (std::size_t part : parts) {
        writers.push_back(sut->connect(writers.size() + 1));
        const FrameHeader h{kMagic, 0, p.max_message_size};
        REQUIRE(::write(writers.back(), &h, sizeof h) == static_cast<ssize_t>(sizeof h));
        REQUIRE(::write(writers.back(), bytes.data(), part) == static_cast<ssize_t>(part));
    }
    // Takes (none completes) until the reader has read enough to be over its budget.
    REQUIRE(ferry::test::wait_until([&] { return !take(*sut, 10ms).empty() || sut->lost() != 0; }, 10000ms));
    CHECK(take(*sut, 50ms).empty());
    CHECK(sut->lost() == 1);
    CHECK(sut->closed == 1);
    CHECK(sut->open_streams() == 2);
    // The others still complete their frames.
    for (int w : {writers[0], writers[2]}) {
        REQUIRE(::write(w, bytes.data(), p.max_message_size - 20000) == static_cast<ssize_t>(p.max_message_size - 20000));
    }
    CHECK(take(*sut, 1000ms).size() == p.max_message_size);
    CHECK(take(*sut, 1000ms).size() == p.max_message_size);
    CHECK(sut->lost() == 1);
    for (int w : writers) ::close(w);
}

TEST_CASE("FramedStreamReader: drop_oldest keeps the newest depth frames, the rest count lost", "[framed_stream]") {
    auto sut = PairReader::make(params(Overflow::drop_oldest));
    const int w = sut->connect(1);
    for (int i = 1; i <= 5; ++i) send(w, std::to_string(i));
    REQUIRE(ferry::test::wait_until([&] { return sut->lost() == 3; }, 5000ms));
    CHECK(take(*sut) == "4");
    CHECK(take(*sut) == "5");
    CHECK(take(*sut, 20ms).empty());
    sut->interrupt();
    SampleBuffer s;
    CHECK(sut->take(s, Clock::now() + 1000ms).code() == Errc::closed);
    ::close(w);
}
