// The MCAP writer and reader of the ferry tool: round trips for each compression, files cut
// short (as a recorder killed mid-write leaves them), and damaged or foreign input.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "mcap.hpp"

namespace fs = std::filesystem;
using namespace ferry::mcap;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "ferry-mcap-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() { fs::remove_all(path); }
};

struct Sent {
    std::uint16_t channel;
    std::uint32_t sequence;
    std::uint64_t log_time, publish_time;
    std::string data;
};

struct Got {
    std::string topic;
    std::uint32_t sequence;
    std::uint64_t log_time, publish_time;
    std::string data;
};

std::string payload(std::size_t i) {
    // Sizes from 0 up to a few KiB, some compressible, some not.
    std::mt19937 rng(static_cast<unsigned>(i));
    const std::size_t n = i % 7 == 0 ? 0 : (i * 131) % 3000;
    std::string s(n, '\0');
    for (std::size_t k = 0; k < n; ++k) s[k] = static_cast<char>(i % 2 ? rng() : k / 16);
    return s;
}

std::vector<Got> read_all(const std::string& path, FileInfo* info = nullptr, ReaderOptions opts = {}) {
    std::vector<Got> got;
    Reader reader(path, opts);
    const FileInfo& fi = reader.scan([&](const Channel& c, const Message& m) {
        got.push_back({c.topic, m.sequence, m.log_time, m.publish_time,
                       std::string(reinterpret_cast<const char*>(m.data), m.size)});
        return true;
    });
    if (info) *info = fi;
    return got;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Writes `n` messages on two channels; returns what was sent.
std::vector<Sent> write_file(const std::string& path, Compression compression, std::size_t n, std::uint64_t chunk_size,
                             bool close = true) {
    WriterOptions o;
    o.compression = compression;
    o.chunk_size = chunk_size;
    Writer w(path, o);
    const auto s1 = w.add_schema("string", "", "");
    const auto s2 = w.add_schema("demo::Pose", "jsonschema", R"({"type":"object"})");
    const auto c1 = w.add_channel(s1, "/chatter", "ferry.string", {{"ferry.type", "string"}});
    const auto c2 = w.add_channel(s2, "/pose", "ferry.cereal", {{"ferry.type", "demo::Pose"}});
    std::vector<Sent> sent;
    for (std::size_t i = 0; i < n; ++i) {
        Sent s{i % 3 ? c1 : c2, static_cast<std::uint32_t>(i), 1000 + i * 10, 900 + i * 10, payload(i)};
        Message m;
        m.channel_id = s.channel;
        m.sequence = s.sequence;
        m.log_time = s.log_time;
        m.publish_time = s.publish_time;
        m.data = reinterpret_cast<const std::byte*>(s.data.data());
        m.size = s.data.size();
        w.write(m);
        sent.push_back(std::move(s));
    }
    if (close) {
        w.write_metadata("ferry.recording", {{"lost./chatter", "0"}});
        w.close();
    }
    return sent;
}

void check_prefix(const std::vector<Got>& got, const std::vector<Sent>& sent) {
    REQUIRE(got.size() <= sent.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("message " << i);
        REQUIRE(got[i].topic == (sent[i].channel == 0 ? "/chatter" : "/pose"));
        REQUIRE(got[i].sequence == sent[i].sequence);
        REQUIRE(got[i].log_time == sent[i].log_time);
        REQUIRE(got[i].publish_time == sent[i].publish_time);
        REQUIRE(got[i].data == sent[i].data);
    }
}

}  // namespace

TEST_CASE("mcap: every message comes back in order for each compression", "[mcap]") {
    TempDir dir;
    for (auto compression : {Compression::none, Compression::zstd, Compression::lz4}) {
        DYNAMIC_SECTION(compression_name(compression)) {
            const std::string path = (dir.path / "rt.mcap").string();
            const auto sent = write_file(path, compression, 500, 16 * 1024);
            FileInfo info;
            const auto got = read_all(path, &info);
            REQUIRE(got.size() == sent.size());
            check_prefix(got, sent);
            REQUIRE(info.finished);
            REQUIRE(info.message_count == 500);
            REQUIRE(info.chunk_count > 5);
            REQUIRE(info.chunks_by_compression.size() == 1);
            REQUIRE(info.chunks_by_compression.begin()->first == compression_name(compression));
            REQUIRE(info.schemas.at(2).name == "demo::Pose");
            REQUIRE(info.schemas.at(2).encoding == "jsonschema");
            REQUIRE(info.channels.at(1).metadata.at("ferry.type") == "demo::Pose");
            REQUIRE(info.metadata.size() == 1);
            REQUIRE(info.metadata[0].second.at("lost./chatter") == "0");
            REQUIRE(info.start_time == 1000);
            REQUIRE(info.end_time == 1000 + 499 * 10);
        }
    }
}

TEST_CASE("mcap: an empty recording is a valid file", "[mcap]") {
    TempDir dir;
    const std::string path = (dir.path / "empty.mcap").string();
    { Writer w(path, {}); }  // the destructor finishes the file
    FileInfo info;
    REQUIRE(read_all(path, &info).empty());
    REQUIRE(info.finished);
    REQUIRE(info.chunk_count == 0);
}

TEST_CASE("mcap: a writer abandoned mid-recording leaves every flushed chunk readable", "[mcap]") {
    TempDir dir;
    const std::string path = (dir.path / "live.mcap").string();
    const std::string copy = (dir.path / "crash.mcap").string();
    WriterOptions o;
    o.compression = Compression::zstd;
    o.chunk_size = 4096;
    auto w = std::make_unique<Writer>(path, o);
    const auto ch = w->add_channel(w->add_schema("bytes", "", ""), "/raw", "ferry.bytes", {});
    std::vector<Sent> sent;
    for (std::uint32_t i = 0; i < 40; ++i) {
        const std::string data(1000 + i, static_cast<char>('a' + i % 26));
        Message m{ch, i, 100u + i, 50u + i, reinterpret_cast<const std::byte*>(data.data()), data.size()};
        w->write(m);
        sent.push_back({0, i, 100u + i, 50u + i, data});
        if (i % 10 == 9) {
            w->flush_chunk();
            // What a SIGKILL now would leave: the bytes in the file at this moment.
            fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
            FileInfo info;
            std::vector<Got> got = read_all(copy, &info);
            REQUIRE_FALSE(info.finished);
            REQUIRE(got.size() == i + 1);
            for (auto& g : got) g.topic = "/chatter";  // check_prefix's naming for channel 0
            check_prefix(got, sent);
        }
    }
    w.reset();
}

TEST_CASE("mcap: a file cut at any byte yields a prefix of the messages, all of its complete chunks", "[mcap]") {
    TempDir dir;
    for (auto compression : {Compression::none, Compression::zstd, Compression::lz4}) {
        DYNAMIC_SECTION(compression_name(compression)) {
            const std::string path = (dir.path / "full.mcap").string();
            const std::string cut = (dir.path / "cut.mcap").string();
            const auto sent = write_file(path, compression, 120, 2048);
            const std::string bytes = slurp(path);
            std::size_t previous = 0;
            bool some_error = false;
            for (std::size_t len = 0; len <= bytes.size(); len += (len < 64 ? 1 : 61)) {
                spit(cut, bytes.substr(0, len));
                FileInfo info;
                try {
                    const auto got = read_all(cut, &info);
                    check_prefix(got, sent);
                    REQUIRE(got.size() >= previous);  // more file never means fewer messages
                    previous = got.size();
                    if (len < bytes.size()) REQUIRE_FALSE(info.finished);
                    REQUIRE(info.recovered_up_to <= len);
                } catch (const FormatError& e) {
                    // Only a file too short to carry the magic and the header is refused.
                    INFO(e.what());
                    REQUIRE(len < 8);
                    REQUIRE(std::string(e.what()).find(cut + ": byte 0: ") == 0);
                    some_error = true;
                }
            }
            REQUIRE(some_error);
            // The data section ends well before the summary: all messages are back by then.
            spit(cut, bytes.substr(0, bytes.size() - 30));
            REQUIRE(read_all(cut).size() == sent.size());
        }
    }
}

TEST_CASE("mcap: damaged or foreign files give one-line errors naming the file and offset", "[mcap]") {
    TempDir dir;
    const std::string path = (dir.path / "good.mcap").string();
    const std::string bad = (dir.path / "bad.mcap").string();
    write_file(path, Compression::none, 60, 1024);
    const std::string bytes = slurp(path);

    SECTION("not MCAP") {
        spit(bad, "hello, this is not a recording\n");
        REQUIRE_THROWS_WITH(read_all(bad), bad + ": byte 0: not an MCAP file (bad magic)");
        REQUIRE_THROWS_AS(Reader((dir.path / "missing.mcap").string()), FormatError);
        REQUIRE_THROWS_AS(Reader(dir.path.string()), FormatError);
    }
    SECTION("a flipped byte in a chunk fails its CRC") {
        const auto at = bytes.find("\x05", 200);  // some byte inside the first chunks
        std::string damaged = bytes;
        // Find the first Chunk record and damage a payload byte of it.
        std::size_t pos = 8;
        while (static_cast<std::uint8_t>(damaged[pos]) != 0x06) {
            std::uint64_t len = 0;
            for (int i = 0; i < 8; ++i) len |= std::uint64_t{static_cast<std::uint8_t>(damaged[pos + 1 + i])} << (8 * i);
            pos += 9 + len;
        }
        (void)at;
        damaged[pos + 9 + 8 + 8 + 8 + 4 + 4 + 8 + 40] ^= 0x20;
        spit(bad, damaged);
        try {
            read_all(bad);
            FAIL("no error");
        } catch (const FormatError& e) {
            const std::string what = e.what();
            REQUIRE(what == bad + ": byte " + std::to_string(pos) + ": Chunk CRC mismatch");
            REQUIRE(what.find('\n') == std::string::npos);
        }
    }
    SECTION("a flipped byte in the summary fails the summary CRC") {
        std::string damaged = bytes;
        damaged[bytes.size() - 8 - 29 - 10] ^= 0x01;
        spit(bad, damaged);
        REQUIRE_THROWS_AS(read_all(bad), FormatError);
    }
    SECTION("a huge length is refused without allocating it") {
        std::string damaged = bytes;
        // The header record's length (bytes 9..16) claims 2^62 bytes.
        for (int i = 0; i < 8; ++i) damaged[9 + i] = i == 7 ? '\x40' : '\0';
        spit(bad, damaged);
        FileInfo info;
        REQUIRE(read_all(bad, &info).empty());  // cut short at the header: nothing to recover
        REQUIRE_FALSE(info.finished);
        ReaderOptions small;
        small.max_record_bytes = 512;
        REQUIRE_THROWS_WITH(read_all(path, nullptr, small), Catch::Contains("exceeds the reader's limit of 512"));
    }
    SECTION("every single flipped byte is an error or a clean read, never a crash") {
        for (std::size_t i = 0; i < bytes.size(); i += 3) {
            std::string damaged = bytes;
            damaged[i] = static_cast<char>(damaged[i] ^ 0xA5);
            try {
                scan_buffer(reinterpret_cast<const std::byte*>(damaged.data()), damaged.size(), "mem",
                            ReaderOptions{1 << 20});
            } catch (const FormatError& e) {
                REQUIRE(std::string(e.what()).rfind("mem: byte ", 0) == 0);
            }
        }
    }
}
