// Every OS object of a domain is owner-only by default; the config can let the group in.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "conformance.hpp"

using namespace std::chrono_literals;
using conformance::Fixture;

namespace {

// Permission bits of every object of the domain, by path.
std::map<std::string, unsigned> modes_of(const std::string& domain) {
    std::map<std::string, unsigned> out;
    for (const std::string& dir : {std::string("/dev/shm"), std::string("/dev/mqueue"), conformance::runtime_dir()}) {
        for (const auto& name : ferry::test::leftovers(dir, domain)) {
            struct stat st {};
            if (::stat((dir + "/" + name).c_str(), &st) == 0) out[dir + "/" + name] = st.st_mode & 0777;
        }
    }
    return out;
}

void check_modes(const std::string& transport, const std::string& mode, unsigned expected) {
    conformance::QosOverrides q;
    q.mode = mode;
    Fixture f(transport, q);
    {
        auto node = f.node("perm");
        auto sub = node.subscribe<std::string>("perm");
        auto pub = node.advertise<std::string>("perm");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));
        const auto modes = modes_of(f.domain());
        REQUIRE(modes.size() >= 2);  // at least the registry and the transport's own objects
        for (const auto& [path, bits] : modes) {
            INFO(path << " has mode " << std::oct << bits);
            CHECK(bits == expected);
        }
    }
    f.expect_no_leftovers();
}

}  // namespace

CONFORMANCE_CASE("OS objects are created owner-only (0600) by default") { check_modes(transport, "0600", 0600); }

CONFORMANCE_CASE("mode = \"0660\" in the config lets the group in") { check_modes(transport, "0660", 0660); }
