// Runs the conformance cases once per transport: those the build produced and any other the
// loader finds.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "conformance.hpp"

namespace conformance {

std::vector<Case>& registry() {
    static std::vector<Case> cases;
    return cases;
}

namespace {

class Invoker final : public Catch::ITestInvoker {
public:
    Invoker(CaseFn fn, std::string transport) : fn_(fn), transport_(std::move(transport)) {}
    void invoke() const override { fn_(transport_); }

private:
    CaseFn fn_;
    std::string transport_;
};

}  // namespace
}  // namespace conformance

int main(int argc, char* argv[]) {
    // Every transport this build produced, whether its module loads or not (then each of its
    // cases fails, with the loader's reason), and any other module found that loads.
    std::vector<std::string> transports;
    std::stringstream built(FERRY_BUILT_TRANSPORTS);
    for (std::string name; std::getline(built, name, ',');)
        if (!name.empty()) transports.push_back(name);
    for (const auto& p : ferry::list_plugins())
        if (p.loaded && std::find(transports.begin(), transports.end(), p.name) == transports.end())
            transports.push_back(p.name);
    for (const auto& t : transports) {
        for (const auto& c : conformance::registry()) {
            Catch::getMutableRegistryHub().registerTest(Catch::makeTestCase(
                new conformance::Invoker(c.fn, t), "", Catch::NameAndTags{t + ": " + c.name, "[conformance][" + t + "]"},
                CATCH_INTERNAL_LINEINFO));
        }
    }
    return Catch::Session().run(argc, argv);
}
