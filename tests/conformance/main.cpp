// Runs the conformance cases once per transport: those the build produced and any other the
// loader finds.
#define CATCH_CONFIG_RUNNER
#include <dlfcn.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>
#include <ferry/transport/transport.hpp>

#include "conformance.hpp"

namespace conformance {

std::vector<Case>& registry() {
    static std::vector<Case> cases;
    return cases;
}

namespace {

std::map<std::string, ferry::transport::Capabilities>& capabilities() {
    static std::map<std::string, ferry::transport::Capabilities> caps;
    return caps;
}

void quiet(ferry::transport::LogLevel, const char*) noexcept {}

// What the module at `path` declares, straight through the SDK (the public API does not show
// every capability). The module stays mapped, as the core's loader keeps it.
ferry::transport::Capabilities read_capabilities(const std::string& path) {
    ferry::transport::Capabilities caps;
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) return caps;
    using Create = ferry::transport::Transport* (*)(const ferry::transport::Host*) noexcept;
    using Destroy = void (*)(ferry::transport::Transport*) noexcept;
    auto create = reinterpret_cast<Create>(::dlsym(handle, "ferry_transport_create"));
    auto destroy = reinterpret_cast<Destroy>(::dlsym(handle, "ferry_transport_destroy"));
    static const ferry::transport::Host host{ferry::transport::kAbiVersion, &quiet};
    if (create != nullptr && destroy != nullptr) {
        if (auto* t = create(&host)) {
            caps = t->capabilities();
            destroy(t);
        }
    }
    return caps;
}

class Invoker final : public Catch::ITestInvoker {
public:
    Invoker(CaseFn fn, std::string transport) : fn_(fn), transport_(std::move(transport)) {}
    void invoke() const override { fn_(transport_); }

private:
    CaseFn fn_;
    std::string transport_;
};

}  // namespace

bool network(const std::string& transport) {
    const auto it = capabilities().find(transport);
    return it != capabilities().end() && it->second.network;
}

}  // namespace conformance

int main(int argc, char* argv[]) {
    // Every transport this build produced, whether its module loads or not (then each of its
    // cases fails, with the loader's reason), and any other module found that loads.
    std::vector<std::string> transports;
    std::stringstream built(FERRY_BUILT_TRANSPORTS);
    for (std::string name; std::getline(built, name, ',');)
        if (!name.empty()) transports.push_back(name);
    for (const auto& p : ferry::list_plugins())
        if (p.loaded) {
            if (std::find(transports.begin(), transports.end(), p.name) == transports.end()) transports.push_back(p.name);
            conformance::capabilities()[p.name] = conformance::read_capabilities(p.path);
        }
    for (const auto& t : transports) {
        for (const auto& c : conformance::registry()) {
            Catch::getMutableRegistryHub().registerTest(Catch::makeTestCase(
                new conformance::Invoker(c.fn, t), "", Catch::NameAndTags{t + ": " + c.name, "[conformance][" + t + "]"},
                CATCH_INTERNAL_LINEINFO));
        }
    }
    return Catch::Session().run(argc, argv);
}
