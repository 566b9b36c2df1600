// ferry record / play / bag against live processes: the talker publishes checksummed messages
// (bytes 0..7: the index), a real `ferry record` writes them, and the files are read back with
// the tool's MCAP reader and through `ferry bag`. Each test runs in its own domain and directory.
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <ferry/introspection.hpp>

#include "checksum.hpp"
#include "mcap.hpp"
#include "pose_schema.hpp"
#include "support/process.hpp"

using ferry::test::Child;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Recorded {
    std::string topic, type, publisher;
    std::uint32_t sequence;
    std::uint64_t log_time, publish_time;
    std::uint64_t index;  // the talker's message index (bytes 0..7)
    std::size_t size;
    bool intact;  // the talker's checksum matches (false for other payloads)
};

struct Bag {
    ferry::mcap::FileInfo info;
    std::vector<Recorded> messages;
};

Bag read_bag(const std::string& path) {
    Bag bag;
    ferry::mcap::Reader reader(path);
    bag.info = reader.scan([&](const ferry::mcap::Channel& c, const ferry::mcap::Message& m) {
        Recorded r{c.topic, c.metadata.count("ferry.type") ? c.metadata.at("ferry.type") : "",
                   c.metadata.count("ferry.publisher") ? c.metadata.at("ferry.publisher") : "",
                   m.sequence, m.log_time, m.publish_time, 0, m.size, false};
        if (m.size >= 8) std::memcpy(&r.index, m.data, 8);
        std::uint64_t index = 0;
        r.intact = example::check_payload(m.data, m.size, index) && index == r.index;
        bag.messages.push_back(r);
        return true;
    });
    return bag;
}

struct Setup {
    std::string domain = ferry::test::unique_domain();
    fs::path dir;
    std::string config;
    explicit Setup(const std::string& transport = "uds") {
        std::string tmpl = (fs::temp_directory_path() / "ferry-record-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir = tmpl;
        config = std::string(FERRY_TEST_SOURCE_DIR) + "/examples/configs/" + transport + ".toml";
    }
    ~Setup() {
        ferry::clean_domain(domain);
        fs::remove_all(dir);
    }
    std::string file(const std::string& name) const { return (dir / name).string(); }
    std::map<std::string, std::string> env() const {
        return {{"FERRY_DOMAIN", domain}, {"FERRY_CONFIG", config}, {"FERRY_PLUGIN_PATH", FERRY_TEST_PLUGIN_DIR}};
    }
    Child spawn(const std::string& program, std::vector<std::string> args) const {
        return ferry::test::spawn_program(program, std::move(args), env());
    }
    using Result = ferry::test::ProgramResult;
    Result ferry(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) const {
        Result r = ferry::test::run_program("ferry", args, env(), timeout);
        UNSCOPED_INFO("ferry " << (args.empty() ? "" : args[0]) << " output (exit " << r.code << "):\n" << r.output);
        return r;
    }
    // True once the recorder subscribes to `topic` (it is registered as a subscriber).
    bool subscribed(const std::string& topic) const {
        return ferry::test::wait_until(
            [&] {
                for (const auto& t : ferry::list_topics(domain))
                    if (t.name == topic)
                        for (const auto& e : t.endpoints)
                            if (!e.publisher && e.node == "ferry_record") return true;
                return false;
            },
            20s);
    }
};

// Talker messages 0..n-1 in order, each once, each intact.
void check_in_order(const std::vector<Recorded>& got, std::uint64_t n, std::uint64_t first = 0) {
    REQUIRE(got.size() == n);
    for (std::uint64_t i = 0; i < n; ++i) {
        INFO("message " << i);
        REQUIRE(got[i].intact);
        REQUIRE(got[i].index == first + i);
        REQUIRE(got[i].sequence == first + i + 1);  // ferry sequences start at 1
        REQUIRE(got[i].publish_time <= got[i].log_time);
        REQUIRE(got[i].publish_time > 0);
    }
}

}  // namespace

TEST_CASE("record: every message of a topic that appears later, each compression, and bag info and echo show them",
          "[tools][record]") {
    for (const char* name : {"zstd", "lz4", "none"}) {
        const std::string compression = name;
        DYNAMIC_SECTION(compression) {
            Setup s;
            const std::string out = s.file("run.mcap");
            Child rec = s.spawn("ferry", {"record", "chatter", "-o", out, "--compression", compression,
                                          "--chunk-size", "2048"});
            // The recorder starts first; the topic appears afterwards.
            Child talker = s.spawn("talker", {"--topic", "chatter", "--count", "300", "--rate", "2000",
                                              "--size", "100", "--wait-subscribers", "1", "--quiet"});
            REQUIRE(talker.wait(30s) == 0);
            // Everything published was taken by the recorder (block overflow, depth 8): now stop it.
            rec.kill(SIGINT);
            REQUIRE(rec.wait(20s) == 0);
            INFO(rec.output());
            REQUIRE(std::regex_search(rec.output(), std::regex(R"(chatter\s+bytes\s+300\s+\S+ \S+\s+\d+\s+0)")));

            const Bag bag = read_bag(out);
            REQUIRE(bag.info.finished);
            check_in_order(bag.messages, 300);
            REQUIRE(bag.messages[0].topic == "chatter");
            REQUIRE(bag.messages[0].type == "bytes");
            REQUIRE(bag.messages[0].publisher.size() == 16);
            REQUIRE(bag.info.schemas.begin()->second.name == "bytes");
            REQUIRE(bag.info.schemas.begin()->second.encoding == "jsonschema");
            REQUIRE(bag.info.chunks_by_compression.count(compression) == 1);
            REQUIRE(bag.info.chunk_count > 5);
            REQUIRE(bag.info.metadata.size() == 1);
            REQUIRE(bag.info.metadata[0].second.at("lost.chatter") == "0");

            auto r = s.ferry({"bag", "info", out});
            REQUIRE(r.code == 0);
            CHECK(r.output.find("status:      finished") != std::string::npos);
            CHECK(std::regex_search(r.output, std::regex(R"(messages:\s+300\n)")));
            CHECK(std::regex_search(r.output, std::regex(R"(\nchatter\s+bytes\s+300\s)")));
            r = s.ferry({"bag", "info", out, "--json"});
            REQUIRE(r.code == 0);
            CHECK(r.output.find(R"("finished":true)") != std::string::npos);
            CHECK(r.output.find(R"("messages":300)") != std::string::npos);
            CHECK(r.output.find(R"("compression":{")" + compression) != std::string::npos);

            r = s.ferry({"bag", "echo", out, "-n", "3", "--json"});
            REQUIRE(r.code == 0);
            std::size_t lines = 0;
            for (char c : r.output) lines += c == '\n';
            CHECK(lines == 3);
            CHECK(r.output.find(R"({"topic":"chatter","type":"bytes","sequence":1,)") == 0);
        }
    }
}

TEST_CASE("record: a user type's schema comes from its serialize function, and bag echo decodes with it alone",
          "[tools][record]") {
    Setup s;
    const std::string out = s.file("pose.mcap");
    Child rec = s.spawn("ferry", {"record", "--all", "-o", out, "--types", FERRY_TEST_TYPES_MODULE});
    Child pub = s.spawn("ferry_tool_helper", {"pub-pose", "pose"});
    REQUIRE(s.subscribed("pose"));
    REQUIRE(ferry::test::wait_until([&] { return fs::exists(out) && fs::file_size(out) > 0; }, 10s));
    // A few messages later (one each 20 ms), stop the recorder.
    REQUIRE(ferry::test::wait_until(
        [&] {
            auto r = s.ferry({"topic", "info", "pose", "--json"});
            return std::regex_search(r.output, std::regex(R"("messages":([3-9]|\d\d+))"));
        },
        20s));
    rec.kill(SIGTERM);
    REQUIRE(rec.wait(20s) == 0);
    pub.kill(SIGKILL);

    const Bag bag = read_bag(out);
    REQUIRE(bag.messages.size() >= 1);
    REQUIRE(bag.messages[0].type == "demo/Pose");
    REQUIRE(bag.info.schemas.size() == 1);
    const auto& schema = bag.info.schemas.begin()->second;
    REQUIRE(schema.name == "demo/Pose");
    REQUIRE(schema.encoding == "jsonschema");
    // Every field of demo::Pose's serialize function, with its JSON type and how it travels.
    CHECK(schema.data == kPoseJsonSchema);
    const std::string pose = R"({"frame":"map","x":1.5,"y":-2.25,"theta":0.125,"covariance":[0.5,0.0,0.5]})";
    SECTION("with the type-support module") {
        auto r = s.ferry({"bag", "echo", out, "-n", "1", "--types", FERRY_TEST_TYPES_MODULE});
        REQUIRE(r.code == 0);
        CHECK(r.output.find(pose) != std::string::npos);
    }
    SECTION("without it: the schema in the file is enough") {
        auto r = s.ferry({"bag", "echo", out, "-n", "1", "--json"});
        REQUIRE(r.code == 0);
        CHECK(r.output.find(R"("type":"demo/Pose",)") != std::string::npos);
        CHECK(r.output.find(R"("data":)" + pose) != std::string::npos);
        CHECK(r.output.find("error") == std::string::npos);
    }
}

TEST_CASE("record: on shm the writer gets the samples in place, beyond max_held_samples they are copied and counted",
          "[tools][record]") {
    Setup s("shm");
    std::uint64_t expect_copied_all = 0;
    SECTION("default max_held_samples (4): samples are held for the writer") {}
    SECTION("max_held_samples = 1: nothing can be held, every message is copied, none lost") {
        const std::string config = s.file("held1.toml");
        std::ofstream(config) << "[defaults]\ntransport = \"shm\"\ndepth = 8\noverflow = \"block\"\n"
                                 "max_message_size = \"64KiB\"\nmax_held_samples = 1\n";
        s.config = config;
        expect_copied_all = 1;
    }
    const std::string out = s.file("held.mcap");
    const std::uint64_t n = 2000;
    Child rec = s.spawn("ferry", {"record", "chatter", "-o", out, "--json", "--chunk-size", "65536"});
    Child talker = s.spawn("talker", {"--topic", "chatter", "--count", std::to_string(n), "--rate", "5000", "--size",
                                      "1000", "--wait-subscribers", "1", "--quiet"});
    REQUIRE(talker.wait(60s) == 0);
    rec.kill(SIGINT);
    REQUIRE(rec.wait(20s) == 0);
    const std::string summary = rec.output();
    INFO(summary);
    std::smatch m;
    REQUIRE(std::regex_search(summary, m, std::regex(R"("topic":"chatter".*"messages":(\d+).*"copied":(\d+),"lost":(\d+))")));
    CHECK(std::stoull(m[1]) == n);
    CHECK(std::stoull(m[3]) == 0);
    if (expect_copied_all)
        CHECK(std::stoull(m[2]) == n);
    else
        CHECK(std::stoull(m[2]) < n);  // the writer released samples in time for most messages
    const Bag bag = read_bag(out);
    check_in_order(bag.messages, n);
    for (const auto& r : bag.messages) {
        REQUIRE(r.size == 1000);
        REQUIRE(r.intact);  // written from shared memory before the chunk was given back
    }
}

TEST_CASE("record: --max-size splits into numbered files without losing a message at the seams", "[tools][record]") {
    Setup s;
    Child rec = s.spawn("ferry", {"record", "chatter", "-o", s.file("split.mcap"), "--max-size", "40000",
                                  "--chunk-size", "4096", "--compression", "none"});
    Child talker = s.spawn("talker", {"--topic", "chatter", "--count", "400", "--rate", "4000", "--size", "1000",
                                      "--wait-subscribers", "1", "--quiet"});
    REQUIRE(talker.wait(30s) == 0);
    rec.kill(SIGINT);
    REQUIRE(rec.wait(20s) == 0);
    std::vector<Recorded> all;
    int files = 0;
    for (;; ++files) {
        const std::string f = s.file("split_" + std::to_string(files) + ".mcap");
        if (!fs::exists(f)) break;
        CHECK(fs::file_size(f) < 40000 + 4096);  // a file ends before the message that would overflow it
        const Bag bag = read_bag(f);
        REQUIRE(bag.info.finished);
        all.insert(all.end(), bag.messages.begin(), bag.messages.end());
    }
    REQUIRE(files >= 8);  // 400 kB of messages in files of 40 kB
    check_in_order(all, 400);
}

TEST_CASE("record: --duration stops by itself, --max-duration splits by time, nothing lost between files",
          "[tools][record]") {
    Setup s;
    const auto start = std::chrono::steady_clock::now();
    Child rec = s.spawn("ferry", {"record", "chatter", "-o", s.file("timed.mcap"), "--duration", "4",
                                  "--max-duration", "0.3"});
    Child talker = s.spawn("talker", {"--topic", "chatter", "--count", "300", "--rate", "300", "--size", "64",
                                      "--wait-subscribers", "1", "--quiet"});
    REQUIRE(talker.wait(30s) == 0);
    REQUIRE(rec.wait(30s) == 0);  // no signal: --duration ended it
    CHECK(std::chrono::steady_clock::now() - start >= 4s);
    std::vector<Recorded> all;
    int files = 0;
    for (;; ++files) {
        const std::string f = s.file("timed_" + std::to_string(files) + ".mcap");
        if (!fs::exists(f)) break;
        const Bag bag = read_bag(f);
        REQUIRE(bag.info.finished);
        if (bag.info.message_count) CHECK(bag.info.end_time - bag.info.start_time < 300'000'000u);
        all.insert(all.end(), bag.messages.begin(), bag.messages.end());
    }
    REQUIRE(files >= 3);  // 1 s of messages in files of 0.3 s
    check_in_order(all, 300);
}

TEST_CASE("record: a recorder killed with SIGKILL leaves its complete chunks, and bag info says it was not finished",
          "[tools][record]") {
    Setup s;
    const std::string out = s.file("crash.mcap");
    Child rec = s.spawn("ferry", {"record", "chatter", "-o", out, "--chunk-size", "1024"});
    Child talker = s.spawn("talker", {"--topic", "chatter", "--count", "500", "--rate", "5000", "--size", "64",
                                      "--wait-subscribers", "1", "--quiet"});
    REQUIRE(talker.wait(30s) == 0);
    // Wait until the file holds most messages in complete chunks, then kill without warning.
    REQUIRE(ferry::test::wait_until([&] { return read_bag(out).messages.size() >= 450; }, 20s));
    rec.kill(SIGKILL);
    REQUIRE(rec.wait(10s) == 128 + SIGKILL);

    const Bag bag = read_bag(out);
    REQUIRE_FALSE(bag.info.finished);
    REQUIRE(bag.messages.size() >= 450);
    check_in_order(bag.messages, bag.messages.size());

    auto r = s.ferry({"bag", "info", out});
    REQUIRE(r.code == 0);
    CHECK(r.output.find("NOT FINISHED") != std::string::npos);
    CHECK(r.output.find("recovered " + std::to_string(bag.messages.size()) + " message(s)") != std::string::npos);
    r = s.ferry({"bag", "info", out, "--json"});
    CHECK(r.output.find(R"("finished":false)") != std::string::npos);
}

TEST_CASE("play: a listener gets every recorded message, checksums intact, with the original pacing", "[tools][play]") {
    Setup s("shm");
    const std::string out = s.file("play.mcap");
    Child rec = s.spawn("ferry", {"record", "chatter", "-o", out});
    Child talker = s.spawn("talker", {"--topic", "chatter", "--count", "50", "--rate", "100", "--size", "256",
                                      "--wait-subscribers", "1", "--quiet"});
    REQUIRE(talker.wait(30s) == 0);
    rec.kill(SIGINT);
    REQUIRE(rec.wait(20s) == 0);
    const Bag bag = read_bag(out);
    check_in_order(bag.messages, 50);

    Child listener = s.spawn("listener", {"--topic", "chatter", "--count", "50", "--timeout", "30", "--quiet"});
    REQUIRE(ferry::test::wait_until(
        [&] {
            for (const auto& t : ferry::list_topics(s.domain))
                if (t.name == "chatter" && !t.endpoints.empty()) return true;
            return false;
        },
        10s));
    const auto start = std::chrono::steady_clock::now();
    auto r = s.ferry({"play", out});
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    REQUIRE(r.code == 0);
    CHECK(r.output.find("played 50 message(s)") != std::string::npos);
    REQUIRE(listener.wait(30s) == 0);
    INFO(listener.output());
    CHECK(listener.output().find("corrupt 0") != std::string::npos);
    // 50 messages recorded at 100 Hz span ~0.49 s; played at the original pace, not faster.
    const double span = (bag.messages.back().log_time - bag.messages.front().log_time) * 1e-9;
    CHECK(took >= span * 0.95);

    // --rate 4 plays four times as fast: a lower bound again, and everything arrives.
    Child listener2 = s.spawn("listener", {"--topic", "chatter", "--count", "50", "--timeout", "30", "--quiet"});
    REQUIRE(ferry::test::wait_until(
        [&] {
            for (const auto& t : ferry::list_topics(s.domain))
                if (t.name == "chatter")
                    for (const auto& e : t.endpoints)
                        if (!e.publisher && e.pid == listener2.pid()) return true;
            return false;
        },
        10s));
    r = s.ferry({"play", out, "--rate", "4"});
    REQUIRE(r.code == 0);
    REQUIRE(listener2.wait(30s) == 0);

    // --start skips the first seconds of the recording.
    const std::uint64_t cutoff = bag.messages.front().log_time + 250'000'000u;
    std::size_t after = 0;
    for (const auto& m : bag.messages) after += m.log_time >= cutoff;
    r = s.ferry({"play", out, "--start", "0.25"});
    REQUIRE(r.code == 0);
    CHECK(r.output.find("played " + std::to_string(after) + " message(s)") != std::string::npos);

    // --loop starts over: a subscriber gets more messages than the file holds, until Ctrl-C.
    // (The topic exists only while play publishes it: echo waits for it, then subscribes.)
    Child looping = s.spawn("ferry", {"play", out, "--loop", "--rate", "4"});
    Child echo = s.spawn("ferry", {"topic", "echo", "chatter", "-n", "120", "--json", "--timeout", "30"});
    REQUIRE(echo.wait(30s) == 0);
    looping.kill(SIGINT);
    REQUIRE(looping.wait(10s) == 0);
}

TEST_CASE("bag, play: foreign, cut or damaged files get a one-line error with the byte offset", "[tools][bag]") {
    Setup s;
    const std::string junk = s.file("junk.mcap");
    std::ofstream(junk) << "this is not a recording at all\n";
    for (const std::vector<std::string>& cmd : {std::vector<std::string>{"bag", "info", junk},
                                               {"bag", "echo", junk}, {"play", junk}}) {
        auto r = s.ferry(cmd);
        CHECK(r.code == 1);
        CHECK(r.output == "ferry: " + junk + ": byte 0: not an MCAP file (bad magic)\n");
    }
    auto r = s.ferry({"bag", "info", s.file("missing.mcap")});
    CHECK(r.code == 1);
    CHECK(r.output.find("missing.mcap: byte 0: cannot open: No such file or directory") != std::string::npos);

    // A good file with one byte of a chunk's records flipped.
    const std::string good = s.file("good.mcap");
    {
        ferry::mcap::WriterOptions o;
        o.compression = ferry::mcap::Compression::none;
        ferry::mcap::Writer w(good, o);
        const auto ch = w.add_channel(w.add_schema("string", "jsonschema", "{}"), "t", "ferry", {{"ferry.type", "string"}});
        const std::string text = "hello, recording";
        w.write({ch, 1, 10, 5, reinterpret_cast<const std::byte*>(text.data()), text.size()});
    }
    r = s.ferry({"bag", "echo", good});
    REQUIRE(r.code == 0);
    CHECK(r.output.find("hello, recording") != std::string::npos);
    std::string bytes;
    {
        std::ifstream in(good, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const auto at = bytes.find("hello");
    REQUIRE(at != std::string::npos);
    bytes[at] = 'j';
    const std::string bad = s.file("bad.mcap");
    std::ofstream(bad, std::ios::binary) << bytes;
    for (const std::vector<std::string>& cmd : {std::vector<std::string>{"bag", "info", bad},
                                               {"bag", "echo", bad}, {"play", bad}}) {
        r = s.ferry(cmd);
        CHECK(r.code == 1);
        CHECK(std::regex_match(r.output, std::regex("ferry: " + bad + R"(: byte \d+: Chunk CRC mismatch\n)")));
    }
}
