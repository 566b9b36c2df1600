// Config: defaults, pattern rules, and an error with file and line for every kind of bad input.
#include <catch2/catch.hpp>

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
