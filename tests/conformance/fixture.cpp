#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include <ferry/introspection.hpp>

#include "conformance.hpp"
#include "support/dds_config.hpp"

namespace conformance {

std::string runtime_dir() {
    if (const char* d = std::getenv("FERRY_RUNTIME_DIR"); d && *d) return d;
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x && ::access(x, W_OK) == 0) return std::string(x) + "/ferry";
    return "/tmp/ferry-" + std::to_string(::geteuid());
}

Fixture::Fixture(const std::string& transport, const QosOverrides& qos)
    : domain_(ferry::test::unique_domain()) {
    char tmpl[] = "/tmp/ferry-conformance-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    config_path_ = dir_ + "/ferry.toml";
    std::ofstream out(config_path_);
    out << "[defaults]\n"
        << "transport = \"" << transport << "\"\n"
        << "depth = " << qos.depth << "\n"
        << "overflow = \"" << qos.overflow << "\"\n"
        << "max_message_size = \"" << qos.max_message_size << "\"\n"
        << "block_timeout_ms = " << qos.block_timeout_ms << "\n"
        << "mode = \"" << qos.mode << "\"\n";
    if (qos.linger_ms >= 0) out << "linger_ms = " << qos.linger_ms << "\n";
    out << ferry::test::dds_config_section(domain_);
}

Fixture::~Fixture() {
    // A case that failed half-way had its children SIGKILLed (they are destroyed before the
    // fixture): remove what they left so one failure does not leak into later runs. Passing
    // cases have already asserted, in expect_no_leftovers(), that nothing was left.
    try {
        ferry::clean_domain(domain_);
    } catch (...) {
    }
    std::filesystem::remove_all(dir_);
}

ferry::Node Fixture::node(const std::string& name) const {
    ferry::NodeOptions opts;
    opts.domain = domain_;
    opts.config_path = config_path_;
    return ferry::Node(name, opts);
}

ferry::test::Child Fixture::spawn(const std::string& program,
                                  const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env) const {
    std::vector<std::string> argv{ferry::test::bin_path(program)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::map<std::string, std::string> all{{"FERRY_DOMAIN", domain_}, {"FERRY_CONFIG", config_path_}};
    for (const auto& [k, v] : env) all[k] = v;
    return ferry::test::Child::spawn(argv, all);
}

std::uint64_t Fixture::published(const std::string& topic) const {
    std::uint64_t n = 0;
    for (const auto& t : ferry::list_topics(domain_))
        if (t.name == topic)
            for (const auto& e : t.endpoints)
                if (e.publisher) n += e.messages;
    return n;
}

std::uint64_t Fixture::published_by(const std::string& topic, int pid) const {
    for (const auto& t : ferry::list_topics(domain_))
        if (t.name == topic)
            for (const auto& e : t.endpoints)
                if (e.publisher && e.pid == pid) return e.messages;
    return 0;
}

void Fixture::expect_no_leftovers(bool after_crash) const {
    if (after_crash) ferry::clean_domain(domain_);
    std::vector<std::string> left;
    for (const std::string& dir : {std::string("/dev/shm"), std::string("/dev/mqueue"), runtime_dir()}) {
        for (const auto& name : ferry::test::leftovers(dir, domain_)) left.push_back(dir + "/" + name);
    }
    INFO("left behind: " << [&] { std::string s; for (auto& l : left) s += l + " "; return s; }());
    CHECK(left.empty());
}

bool output_has(const ferry::test::Child& child, const std::string& text) {
    const std::string out = child.output();
    UNSCOPED_INFO("output of child:\n" << out);
    return out.find(text) != std::string::npos;
}

}  // namespace conformance
