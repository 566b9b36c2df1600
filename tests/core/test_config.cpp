// Config: defaults, pattern rules, and an error with file and line for every kind of bad input.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <ferry/error.hpp>

#include "config/config.hpp"

using ferry::detail::Config;

namespace {
std::string error_of(const std::string& text) {
    try {
        Config::parse(text, "test.toml");
    } catch (const ferry::Error& e) {
        return e.what();
    }
    return "";
}

std::string load_error(const std::string& path) {
    try {
        Config::load_file(path);
    } catch (const ferry::Error& e) {
        return e.what();
    }
    return "";
}

// A scratch directory, removed with what the test left in it.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/ferry-config-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};
}  // namespace

TEST_CASE("config without a file resolves to built-in defaults", "[config]") {
    Config sut;
    const auto r = sut.resolve("anything");
    CHECK(r.qos.transport == "uds");
    CHECK(r.qos.depth == 16);
    CHECK(r.qos.overflow == ferry::Overflow::block);
    CHECK(r.qos.max_message_size == 16u << 20);
    CHECK_FALSE(r.transport_explicit);
}

TEST_CASE("config rules match by pattern, first match wins, on top of defaults", "[config]") {
    const auto sut = Config::parse(R"(
[defaults]
transport = "uds"
depth = 8

[[topic]]
match = "camera/*"
transport = "shm"
max_message_size = "8MiB"

[[topic]]
match = "camera/front"
transport = "pipe"

[[topic]]
match = "log*"
overflow = "drop_oldest"
block_timeout_ms = 50
)",
                                   "test.toml");
    const auto cam = sut.resolve("camera/front");
    CHECK(cam.qos.transport == "shm");
    CHECK(cam.qos.max_message_size == 8u << 20);
    CHECK(cam.qos.depth == 8);
    CHECK(cam.transport_explicit);
    CHECK(cam.where == "test.toml:8");
    const auto log = sut.resolve("logs");
    CHECK(log.qos.transport == "uds");
    CHECK(log.qos.overflow == ferry::Overflow::drop_oldest);
    CHECK(log.qos.block_timeout == std::chrono::milliseconds(50));
}

TEST_CASE("malformed TOML is an error with file and line", "[config]") {
    const auto e = error_of("[defaults]\ntransport = \"uds\"\ndepth = = 3\n");
    CHECK_THAT(e, Catch::Contains("test.toml:3:"));
    CHECK_THAT(e, Catch::Contains("malformed TOML"));
}

TEST_CASE("an unknown key names the key, the line and what is allowed", "[config]") {
    const auto e = error_of("[defaults]\ntransport = \"uds\"\ndepht = 3\n");
    CHECK_THAT(e, Catch::Contains("test.toml:3:"));
    CHECK_THAT(e, Catch::Contains("unknown key 'depht'"));
    CHECK_THAT(e, Catch::Contains("allowed: transport, depth, overflow"));
    CHECK_THAT(error_of("[surprise]\n"), Catch::Contains("test.toml:1:") && Catch::Contains("unknown key 'surprise'"));
}

TEST_CASE("bad values are errors with line and the allowed values", "[config]") {
    CHECK_THAT(error_of("[defaults]\noverflow = \"sometimes\"\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("block, drop_oldest, fail"));
    CHECK_THAT(error_of("[defaults]\ndepth = 0\n"), Catch::Contains("test.toml:2:") && Catch::Contains("depth"));
    CHECK_THAT(error_of("[defaults]\ndepth = \"ten\"\n"), Catch::Contains("test.toml:2:"));
    CHECK_THAT(error_of("[defaults]\nmax_message_size = \"lots\"\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("max_message_size"));
    CHECK_THAT(error_of("[[topic]]\ntransport = \"shm\"\n"), Catch::Contains("test.toml:1:") && Catch::Contains("'match'"));
    CHECK_THAT(error_of("[defaults]\nmode = \"0777\"\n"), Catch::Contains("test.toml:2:") && Catch::Contains("mode"));
}

TEST_CASE("an unknown transport names the line and the available ones", "[config]") {
    const auto sut = Config::parse("[defaults]\ntransport = \"uds\"\n[[topic]]\nmatch = \"x\"\ntransport = \"carrier-pigeon\"\n", "test.toml");
    try {
        sut.check_transports({"mq", "uds"});
        FAIL("an unknown transport was accepted");
    } catch (const ferry::Error& e) {
        CHECK_THAT(e.what(), Catch::Contains("test.toml:5") && Catch::Contains("unknown transport 'carrier-pigeon'") &&
                                 Catch::Contains("available: mq, uds"));
    }
    CHECK_NOTHROW(Config::parse("[defaults]\ntransport = \"mq\"\n", "ok.toml").check_transports({"mq"}));
}

TEST_CASE("a missing config file is an error naming it", "[config]") {
    CHECK_THROWS_WITH(Config::load_file("/nonexistent/ferry.toml"), Catch::Contains("/nonexistent/ferry.toml"));
}

TEST_CASE("sizes accept plain numbers and binary suffixes", "[config]") {
    using ferry::detail::parse_size;
    CHECK(parse_size("4096") == 4096u);
    CHECK(parse_size("64KiB") == 65536u);
    CHECK(parse_size("16MiB") == (16u << 20));
    CHECK(parse_size("2m") == (2u << 20));
    CHECK_FALSE(parse_size("MiB").has_value());
    CHECK_FALSE(parse_size("12 parsecs").has_value());
}

TEST_CASE("depth counts as explicit only where the file sets it", "[config]") {
    const auto sut = Config::parse("[defaults]\ntransport = \"mq\"\n[[topic]]\nmatch = \"deep/*\"\ndepth = 64\n", "test.toml");
    CHECK_FALSE(sut.resolve("chatter").depth_explicit);
    CHECK(sut.resolve("chatter").qos.depth == 16);
    CHECK(sut.resolve("deep/x").depth_explicit);
    CHECK(sut.resolve("deep/x").qos.depth == 64);
    CHECK(Config::parse("[defaults]\ndepth = 4\n", "test.toml").resolve("any").depth_explicit);
    CHECK_FALSE(Config().resolve("any").depth_explicit);
}

TEST_CASE("nesting beyond 64 levels is refused with file and line before toml++ recurses", "[config]") {
    const int kDeep = 100000;
    std::string header = "[defaults]\ntransport = \"uds\"\n\n[a";
    for (int i = 0; i < kDeep; ++i) header += ".a";
    header += "]\n";
    CHECK_THAT(error_of(header), Catch::Contains("test.toml:4:") && Catch::Contains("deeper than 64"));

    std::string arrays = "[defaults]\nx = " + std::string(kDeep, '[') + std::string(kDeep, ']') + "\n";
    CHECK_THAT(error_of(arrays), Catch::Contains("test.toml:2:") && Catch::Contains("deeper than 64"));

    std::string tables = "x = ";
    for (int i = 0; i < kDeep; ++i) tables += "{a = ";
    tables += "1" + std::string(kDeep, '}') + "\n";
    CHECK_THAT(error_of(tables), Catch::Contains("test.toml:1:") && Catch::Contains("deeper than 64"));

    std::string keys = "\n\na";
    for (int i = 0; i < kDeep; ++i) keys += ".a";
    keys += " = 1\n";
    CHECK_THAT(error_of(keys), Catch::Contains("test.toml:3:") && Catch::Contains("deeper than 64"));

    // Brackets, braces and dots inside strings and comments are text, not nesting.
    const std::string text = "# [[[[ {{{{ a.a.a.a\n[defaults]\ntransport = \"uds\" # ]]]\n[[topic]]\nmatch = \"" +
                             std::string(200, '[') + std::string(200, '.') + "\"\ndepth = 4\n";
    CHECK(error_of(text).empty());
    // Just inside the limit is still parsed (and then judged by the schema).
    std::string ok = "[defaults]\nx = " + std::string(60, '[') + std::string(60, ']') + "\n";
    CHECK_THAT(error_of(ok), Catch::Contains("unknown key 'x'"));
}

TEST_CASE("only a regular file of at most 1 MiB is read as a config", "[config]") {
    TempDir dir;
    CHECK_THAT(load_error(dir.path), Catch::Contains(dir.path) && Catch::Contains("is a directory"));
    CHECK_THAT(load_error("/dev/zero"), Catch::Contains("/dev/zero") && Catch::Contains("character device"));
    CHECK_THAT(load_error("/dev/urandom"), Catch::Contains("character device"));

    // A FIFO with no writer: refused at once, not waited on.
    const std::string fifo = dir.path + "/fifo.toml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THAT(load_error(fifo), Catch::Contains(fifo) && Catch::Contains("is a FIFO"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));

    const std::string big = dir.path + "/big.toml";
    {
        std::ofstream out(big);
        const std::string line = "# " + std::string(1021, 'x') + "\n";
        for (int i = 0; i < 2048; ++i) out << line;
    }
    CHECK_THAT(load_error(big), Catch::Contains(big) && Catch::Contains("is 2097152 bytes") && Catch::Contains("1 MiB"));

    const std::string fine = dir.path + "/fine.toml";
    { std::ofstream(fine) << "[defaults]\ndepth = 4\n"; }
    CHECK(load_error(fine).empty());
    CHECK(Config::load_file(fine).resolve("x").qos.depth == 4);

    if (::geteuid() == 0) {
        WARN("running as root: an unreadable file cannot be made, that part is skipped");
    } else {
        REQUIRE(::chmod(fine.c_str(), 0) == 0);
        CHECK_THAT(load_error(fine), Catch::Contains(fine) && Catch::Contains("cannot open: Permission denied"));
    }
}

TEST_CASE("wait and spin_us: adaptive by default, per rule, and bad values name the line", "[config]") {
    CHECK(Config().resolve("any").qos.wait == "adaptive");
    CHECK(Config().resolve("any").qos.spin_us == 50);
    const auto sut = Config::parse("[defaults]\nwait = \"sleep\"\n[[topic]]\nmatch = \"fast/*\"\nwait = \"spin\"\n"
                                   "[[topic]]\nmatch = \"tuned\"\nwait = \"adaptive\"\nspin_us = 200\n",
                                   "test.toml");
    CHECK(sut.resolve("slow").qos.wait == "sleep");
    CHECK(sut.resolve("fast/x").qos.wait == "spin");
    CHECK(sut.resolve("tuned").qos.wait == "adaptive");
    CHECK(sut.resolve("tuned").qos.spin_us == 200);
    CHECK(sut.resolve("slow").qos.spin_us == 50);
    CHECK_THAT(error_of("[defaults]\ntransport = \"shm\"\nwait = \"busy\"\n"),
               Catch::Contains("test.toml:3:") && Catch::Contains("adaptive, sleep, spin"));
    CHECK_THAT(error_of("[defaults]\nwait = 1\n"), Catch::Contains("test.toml:2:") && Catch::Contains("'wait'"));
    CHECK_THAT(error_of("[defaults]\nspin_us = -1\n"), Catch::Contains("test.toml:2:") && Catch::Contains("spin_us"));
    CHECK_THAT(error_of("[defaults]\nspin_us = 10001\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("0 to 10000"));
}

TEST_CASE("reader_buffer_budget is a size, per rule, and bad values name the line", "[config]") {
    const auto sut = Config::parse("[defaults]\nreader_buffer_budget = \"32MiB\"\n[[topic]]\nmatch = \"big/*\"\n"
                                   "reader_buffer_budget = 1073741824\n",
                                   "test.toml");
    CHECK(sut.resolve("small").qos.reader_buffer_budget == 32u << 20);
    CHECK(sut.resolve("big/x").qos.reader_buffer_budget == std::size_t{1} << 30);
    CHECK(Config().resolve("any").qos.reader_buffer_budget == 0);  // 0: the transport's default
    CHECK_THAT(error_of("[defaults]\nreader_buffer_budget = \"plenty\"\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("reader_buffer_budget"));
    CHECK_THAT(error_of("[defaults]\nreader_buffer_budget = -1\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("reader_buffer_budget"));
    CHECK_THAT(error_of("[defaults]\nreader_buffer_budget = \"2048GiB\"\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("up to 1TiB"));
}

TEST_CASE("the [dds] table is validated and handed to the dds plugin as text", "[config]") {
    const auto sut = Config::parse("[dds]\ndomain_id = 12\ninterfaces = [\"lo\", \"192.0.2.1\"]\n", "test.toml");
    using Options = ferry::detail::PluginOptions;
    CHECK(sut.plugin_options("dds") == Options{{"domain_id", "12"}, {"interfaces", "lo,192.0.2.1"}});
    CHECK(sut.plugin_options("uds").empty());
    CHECK_THAT(error_of("[dds]\ndomain_id = 233\n"), Catch::Contains("test.toml:2:") && Catch::Contains("0 to 232"));
    CHECK_THAT(error_of("[dds]\ndomain_id = \"zero\"\n"), Catch::Contains("test.toml:2:") && Catch::Contains("domain_id"));
    CHECK_THAT(error_of("[dds]\ninterfaces = \"lo\"\n"), Catch::Contains("test.toml:2:") && Catch::Contains("array"));
    CHECK_THAT(error_of("[dds]\ninterfaces = [\"lo\", \"\"]\n"), Catch::Contains("test.toml:2:") && Catch::Contains("interface"));
    CHECK_THAT(error_of("[dds]\ninterfaces = [\"lo,eth0\"]\n"), Catch::Contains("test.toml:2:"));
    CHECK_THAT(error_of("[dds]\nlease = 3\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("unknown key 'lease' in [dds]") &&
                   Catch::Contains("domain_id, interfaces"));
    CHECK_THAT(error_of("dds = 3\n"), Catch::Contains("test.toml:1:") && Catch::Contains("[dds]"));
}

TEST_CASE("the [bridge] table is validated, with file and line", "[config]") {
    const auto sut = Config::parse("[bridge]\nout = [\"chatter\", \"camera/*\"]\nin = [\"cmd/*\"]\nnetwork_domain = \"site-net\"\n",
                                   "test.toml");
    CHECK(sut.bridge().out == std::vector<std::string>{"chatter", "camera/*"});
    CHECK(sut.bridge().in == std::vector<std::string>{"cmd/*"});
    CHECK(sut.bridge().network_domain == "site-net");
    CHECK(Config::parse("[bridge]\nout = [\"a\"]\n", "test.toml").bridge().network_domain == "net");
    CHECK(Config().bridge().out.empty());
    CHECK_THAT(error_of("[bridge]\nout = \"chatter\"\n"), Catch::Contains("test.toml:2:") && Catch::Contains("array"));
    CHECK_THAT(error_of("[bridge]\nin = [\"a\", 3]\n"), Catch::Contains("test.toml:2:") && Catch::Contains("'in' entries"));
    CHECK_THAT(error_of("[bridge]\nin = [\"\"]\n"), Catch::Contains("test.toml:2:"));
    CHECK_THAT(error_of("\n[bridge]\nnetwork_domain = \"a.b\"\n"), Catch::Contains("test.toml:3:") && Catch::Contains("network_domain"));
    CHECK_THAT(error_of("[bridge]\nloop = true\n"),
               Catch::Contains("test.toml:2:") && Catch::Contains("unknown key 'loop' in [bridge]") &&
                   Catch::Contains("out, in, network_domain"));
    CHECK_THAT(error_of("bridge = 3\n"), Catch::Contains("test.toml:1:") && Catch::Contains("[bridge]"));
}
