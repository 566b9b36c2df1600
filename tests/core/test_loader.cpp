// Plugin loader: finds the built transports, refuses foreign and mismatched modules by name,
// and lists what is available when a transport is missing.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <ferry/error.hpp>
#include <ferry/transport/transport.hpp>

#include "loader/plugin_loader.hpp"

using namespace ferry::detail;

TEST_CASE("the loader finds the uds transport and checks its ABI", "[loader]") {
    auto sut = load_transport("uds");
    CHECK(std::string(sut->get().name()) == "uds");
    CHECK_THAT(sut->path(), Catch::EndsWith("ferry_plugin_uds.so"));
    const auto names = available_transports();
    CHECK(std::find(names.begin(), names.end(), "uds") != names.end());
}

TEST_CASE("a missing transport is an error that lists the available ones", "[loader]") {
    try {
        load_transport("teleport");
        FAIL("an unknown transport loaded");
    } catch (const ferry::Error& e) {
        CHECK_THAT(e.what(), Catch::Contains("unknown transport 'teleport'") && Catch::Contains("ferry_plugin_teleport.so") &&
                                 Catch::Contains("available: ") && Catch::Contains("uds"));
    }
}

TEST_CASE("a module that is not a ferry transport is refused, naming the file", "[loader]") {
    const std::string path = std::string(FERRY_TEST_MODULE_DIR) + "/test_foreign_module.so";
    CHECK_THROWS_WITH(load_transport_file(path), Catch::Contains(path) && Catch::Contains("not a ferry transport module"));
}

TEST_CASE("a module built for another ABI is refused, naming the file and both versions", "[loader]") {
    const std::string path = std::string(FERRY_TEST_MODULE_DIR) + "/test_abi_mismatch_module.so";
    const auto abi = ferry::transport::kAbiVersion;  // the module says kAbiVersion + 100
    CHECK_THROWS_WITH(load_transport_file(path), Catch::Contains(path) && Catch::Contains("ABI " + std::to_string(abi + 100)) &&
                                                     Catch::Contains("needs ABI " + std::to_string(abi) + ";"));
}

TEST_CASE("a module built with another standard-library ABI is refused, naming both", "[loader]") {
    const std::string path = std::string(FERRY_TEST_MODULE_DIR) + "/test_stdlib_mismatch_module.so";
    CHECK_THAT(std::string(ferry::transport::kBuildTag), Catch::Contains("libstdc++ (_GLIBCXX_USE_CXX11_ABI=1)"));
    CHECK_THROWS_WITH(load_transport_file(path),
                      Catch::Contains(path) && Catch::Contains("built with libstdc++ (_GLIBCXX_USE_CXX11_ABI=0)") &&
                          Catch::Contains(std::string("this ferry with ") + ferry::transport::kBuildTag) &&
                          Catch::Contains("rebuild the plugin"));
}

TEST_CASE("a module that does not state its standard library is refused", "[loader]") {
    const std::string path = std::string(FERRY_TEST_MODULE_DIR) + "/test_untagged_module.so";
    CHECK_THROWS_WITH(load_transport_file(path), Catch::Contains(path) && Catch::Contains("ferry_transport_build_tag"));
}

TEST_CASE("a file that is not a shared library is refused, naming it", "[loader]") {
    char tmpl[] = "/tmp/ferry-loader-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    const std::string dir = tmpl;
    const std::string path = dir + "/ferry_plugin_junk.so";
    { std::FILE* f = std::fopen(path.c_str(), "w"); std::fputs("not an ELF file", f); std::fclose(f); }
    ::setenv("FERRY_PLUGIN_PATH", dir.c_str(), 1);
    CHECK_THROWS_WITH(load_transport("junk"), Catch::Contains(path) && Catch::Contains("cannot load"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("the search path never contains the current directory through an empty entry", "[loader][security]") {
    ::setenv("FERRY_PLUGIN_PATH", ":/opt/ferry-test-plugins::", 1);
    const auto dirs = plugin_search_path();
    REQUIRE_FALSE(dirs.empty());
    CHECK(dirs.front() == "/opt/ferry-test-plugins");
    for (const auto& d : dirs) {
        CHECK_FALSE(d.empty());
        CHECK(d != ".");
    }
}

TEST_CASE("a world-writable built-in directory is not searched, a named one is", "[loader][security]") {
    char tmpl[] = "/tmp/ferry-plugins-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    const std::string dir = tmpl;
    REQUIRE(::chmod(dir.c_str(), 0755) == 0);
    CHECK(builtin_dir_allowed(dir));
    REQUIRE(::chmod(dir.c_str(), 0777) == 0);
    CHECK_FALSE(builtin_dir_allowed(dir));
    ::setenv("FERRY_PLUGIN_PATH", dir.c_str(), 1);  // the user's own choice is honoured
    const auto named = plugin_search_path();
    CHECK(std::find(named.begin(), named.end(), dir) != named.end());
    std::filesystem::remove_all(dir);
}

TEST_CASE("a world-writable module file is refused, naming it and the fix", "[loader][security]") {
    char tmpl[] = "/tmp/ferry-plugins-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    const std::string path = std::string(tmpl) + "/ferry_plugin_foreign.so";
    std::filesystem::copy_file(std::string(FERRY_TEST_MODULE_DIR) + "/test_foreign_module.so", path);
    REQUIRE(::chmod(path.c_str(), 0666) == 0);
    CHECK_THROWS_WITH(load_transport_file(path), Catch::Contains(path) && Catch::Contains("world-writable") &&
                                                     Catch::Contains("chmod o-w"));
    REQUIRE(::chmod(path.c_str(), 0644) == 0);
    CHECK_THROWS_WITH(load_transport_file(path), Catch::Contains("not a ferry transport module"));
    std::filesystem::remove_all(tmpl);
}
