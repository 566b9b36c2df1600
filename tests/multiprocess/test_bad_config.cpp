// A process started with a bad config exits with an error that names the file and the line.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "support/process.hpp"

using namespace std::chrono_literals;

namespace {
std::string run_with_config(const std::string& text) {
    char tmpl[] = "/tmp/ferry-badconfig-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    { std::ofstream(tmpl) << text; }
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "x", "--count", "1"},
                                            {{"FERRY_DOMAIN", ferry::test::unique_domain()}, {"FERRY_CONFIG", tmpl}});
    CHECK(talker.wait(10000ms) == 1);
    const std::string out = talker.output();
    CHECK_THAT(out, Catch::Contains(tmpl));
    std::remove(tmpl);
    return out;
}
}  // namespace

TEST_CASE("malformed TOML stops a process with file and line", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[defaults]\ntransport = uds\n"), Catch::Contains(":2:") && Catch::Contains("malformed TOML"));
}

TEST_CASE("an unknown key stops a process with file, line and the allowed keys", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[defaults]\n\nqueue_depth = 4\n"),
               Catch::Contains(":3:") && Catch::Contains("unknown key 'queue_depth'") && Catch::Contains("allowed:"));
}

TEST_CASE("an unknown transport stops a process with file, line and the available ones", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[defaults]\ntransport = \"smoke-signals\"\n"),
               Catch::Contains(":2: unknown transport 'smoke-signals'") && Catch::Contains("available: ") && Catch::Contains("uds"));
}

TEST_CASE("a bad overflow policy stops a process with file, line and the allowed policies", "[config][multiprocess]") {
    CHECK_THAT(run_with_config("[[topic]]\nmatch = \"x\"\noverflow = \"maybe\"\n"),
               Catch::Contains(":3:") && Catch::Contains("block, drop_oldest, fail"));
}

TEST_CASE("a missing config file named by FERRY_CONFIG stops a process with its name", "[config][multiprocess]") {
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "x", "--count", "1"},
                                            {{"FERRY_DOMAIN", ferry::test::unique_domain()}, {"FERRY_CONFIG", "/nonexistent/ferry.toml"}});
    CHECK(talker.wait(10000ms) == 1);
    CHECK_THAT(talker.output(), Catch::Contains("/nonexistent/ferry.toml"));
}

namespace {
// Starts a talker with FERRY_CONFIG=path; it must fail within a few seconds (never hang, never
// crash) with one error line naming the file.
std::string run_with_config_file(const std::string& path) {
    auto talker = ferry::test::Child::spawn({ferry::test::bin_path("talker"), "--topic", "x", "--count", "1"},
                                            {{"FERRY_DOMAIN", ferry::test::unique_domain()}, {"FERRY_CONFIG", path}});
    const auto start = std::chrono::steady_clock::now();
    CHECK(talker.wait(5000ms) == 1);
    CHECK(std::chrono::steady_clock::now() - start < 5000ms);
    const std::string out = talker.output();
    CHECK_THAT(out, Catch::Contains(path));
    return out;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/ferry-badconfig-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};
}  // namespace

TEST_CASE("a device as config (/dev/zero, /dev/urandom) is refused at once, not read", "[config][multiprocess]") {
    CHECK_THAT(run_with_config_file("/dev/zero"), Catch::Contains("is a character device"));
    CHECK_THAT(run_with_config_file("/dev/urandom"), Catch::Contains("is a character device"));
}

TEST_CASE("a FIFO with no writer as config is refused, not waited on", "[config][multiprocess]") {
    TempDir dir;
    const std::string fifo = dir.path + "/ferry.toml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THAT(run_with_config_file(fifo), Catch::Contains("is a FIFO"));
}

TEST_CASE("a directory as config is refused, not taken as empty", "[config][multiprocess]") {
    TempDir dir;
    CHECK_THAT(run_with_config_file(dir.path), Catch::Contains("is a directory"));
}

TEST_CASE("a 2 MiB config is refused with its size", "[config][multiprocess]") {
    TempDir dir;
    const std::string big = dir.path + "/ferry.toml";
    {
        std::ofstream out(big);
        out << "[defaults]\n";
        const std::string line = "# " + std::string(1021, 'x') + "\n";
        for (int i = 0; i < 2048; ++i) out << line;
    }
    struct stat st {};
    REQUIRE(::stat(big.c_str(), &st) == 0);
    CHECK_THAT(run_with_config_file(big), Catch::Contains("is " + std::to_string(st.st_size) + " bytes"));
}

TEST_CASE("a config nested 100,000 levels deep is refused with file and line, no crash", "[config][multiprocess]") {
    TempDir dir;
    const std::string deep = dir.path + "/ferry.toml";
    {
        std::ofstream out(deep);
        out << "[defaults]\ntransport = \"uds\"\n[a";
        for (int i = 0; i < 100000; ++i) out << ".a";
        out << "]\n";
    }
    CHECK_THAT(run_with_config_file(deep), Catch::Contains(deep + ":3:") && Catch::Contains("deeper than 64"));
}
