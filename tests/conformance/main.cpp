// Runs the conformance cases once per transport the loader finds.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

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
    std::vector<std::string> transports;
    for (const auto& p : ferry::list_plugins())
        if (p.loaded) transports.push_back(p.name);
    for (const auto& t : transports) {
        for (const auto& c : conformance::registry()) {
            Catch::getMutableRegistryHub().registerTest(Catch::makeTestCase(
                new conformance::Invoker(c.fn, t), "", Catch::NameAndTags{t + ": " + c.name, "[conformance][" + t + "]"},
                CATCH_INTERNAL_LINEINFO));
        }
    }
    return Catch::Session().run(argc, argv);
}
