// Interop: dds_interop, a program on Cyclone DDS's C API alone, reads what the examples' talker
// publishes on a dds topic and publishes what the examples' listener receives, both through the
// wire format plugins/dds/README.md documents. Traffic stays on lo.
#include <cstdio>
#include <fstream>
#include <map>

#include <catch2/catch.hpp>

#include "support/dds_config.hpp"
#include "support/domain_guard.hpp"
#include "support/process.hpp"

using namespace std::chrono_literals;
using ferry::test::Child;

namespace {

struct DdsWorld {
    ferry::test::DomainGuard domain;
    std::string config = "/tmp/ferry-interop-" + domain.name + ".toml";
    DdsWorld() {
        std::ofstream out(config);
        out << "[defaults]\ntransport = \"dds\"\n" << ferry::test::dds_config_section(domain.name);
    }
    ~DdsWorld() { std::remove(config.c_str()); }
    std::map<std::string, std::string> env() const { return {{"FERRY_DOMAIN", domain.name}, {"FERRY_CONFIG", config}}; }
    Child ferry_program(const std::string& name, std::vector<std::string> args) const {
        args.insert(args.begin(), ferry::test::bin_path(name));
        return Child::spawn(args, env());
    }
    Child dds_program(const std::string& mode, const std::string& topic, const std::string& count, const std::string& extra) const {
        return Child::spawn({ferry::test::bin_path("dds_interop"), mode, std::to_string(ferry::test::dds_domain_id(domain.name)),
                             domain.name, topic, count, extra});
    }
};

bool has(const Child& c, const std::string& text) {
    const std::string out = c.output();
    UNSCOPED_INFO("output:\n" << out);
    return out.find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("dds interop: a plain Cyclone DDS reader decodes what a ferry talker publishes", "[dds][interop]") {
    DdsWorld w;
    auto reader = w.dds_program("sub", "interop/out.1", "200", "30");
    auto talker = w.ferry_program("talker", {"--topic", "interop/out.1", "--count", "200", "--size", "1000",
                                             "--wait-subscribers", "1", "--quiet"});
    REQUIRE(talker.wait(30000ms) == 0);
    REQUIRE(reader.wait(30000ms) == 0);
    CHECK(has(reader, "received 200 corrupt 0 out_of_order 0"));
}

TEST_CASE("dds interop: a ferry listener receives what a plain Cyclone DDS writer publishes", "[dds][interop]") {
    DdsWorld w;
    auto listener = w.ferry_program("listener", {"--topic", "interop/in", "--count", "100", "--timeout", "30", "--quiet"});
    auto writer = w.dds_program("pub", "interop/in", "100", "100000");
    REQUIRE(writer.wait(30000ms) == 0);
    CHECK(has(writer, "sent 100 acked yes"));
    REQUIRE(listener.wait(30000ms) == 0);
    CHECK(has(listener, "received 100 corrupt 0"));
    CHECK(has(listener, "publishers 1 out_of_order 0"));
}
