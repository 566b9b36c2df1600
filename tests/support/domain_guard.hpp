// A test's own domain, cleaned when the test ends however it ends (a failed REQUIRE, a child
// killed by a timeout): what the processes left is removed with ferry::clean_domain.
#pragma once

#include <catch2/catch.hpp>

#include <exception>
#include <string>

#include <ferry/introspection.hpp>

#include "support/process.hpp"

namespace ferry::test {

struct DomainGuard {
    std::string name = unique_domain();
    DomainGuard() = default;
    DomainGuard(const DomainGuard&) = delete;
    DomainGuard& operator=(const DomainGuard&) = delete;
    ~DomainGuard() {
        try {
            ferry::clean_domain(name);
        } catch (const std::exception& e) {
            WARN("cleaning domain " << name << ": " << e.what());
        }
    }
};

}  // namespace ferry::test
