// The conformance suite fails, rather than shrinks, when a transport the build produced does not
// load: run test_conformance with a broken module of one built transport first on the plugin path.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support/process.hpp"

using namespace std::chrono_literals;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/ferry-guard-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

ferry::test::Child run_suite(const std::vector<std::string>& args, const std::string& plugin_path) {
    std::vector<std::string> argv{ferry::test::bin_path("test_conformance")};
    argv.insert(argv.end(), args.begin(), args.end());
    return ferry::test::Child::spawn(argv, {{"FERRY_PLUGIN_PATH", plugin_path}});
}

}  // namespace

TEST_CASE("a built transport whose module does not load fails the conformance suite", "[conformance][guard]") {
    TempDir dir;
    {
        std::ofstream broken(dir.path + "/ferry_plugin_pipe.so");
        broken << "not a shared object\n";
    }
    const std::string broken_path = dir.path + ":" + FERRY_TEST_PLUGIN_DIR;

    SECTION("its cases are still listed") {
        auto normal = run_suite({"--list-test-names-only", "pipe: *"}, FERRY_TEST_PLUGIN_DIR);
        REQUIRE(normal.wait(60000ms) >= 0);
        auto broken = run_suite({"--list-test-names-only", "pipe: *"}, broken_path);
        REQUIRE(broken.wait(60000ms) >= 0);
        INFO("normal:\n" << normal.output() << "\nbroken:\n" << broken.output());
        CHECK(normal.output().find("pipe: its module loads") != std::string::npos);
        CHECK(broken.output().find("pipe: its module loads") != std::string::npos);
        CHECK(broken.output().find("pipe: 1 to 1, 10000 messages") != std::string::npos);
    }
    SECTION("and they fail, saying why") {
        auto broken = run_suite({"pipe: its module loads"}, broken_path);
        const int code = broken.wait(60000ms);
        INFO(broken.output());
        CHECK(code != 0);
        CHECK(code != -1);
        CHECK(broken.output().find("ferry_plugin_pipe.so") != std::string::npos);
        CHECK(broken.output().find("test cases: 1 | 1 failed") != std::string::npos);
    }
    SECTION("while the real module passes the same case") {
        auto normal = run_suite({"pipe: its module loads"}, FERRY_TEST_PLUGIN_DIR);
        INFO(normal.output());
        CHECK(normal.wait(60000ms) == 0);
    }
}
