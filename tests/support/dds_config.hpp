// Test support: the [dds] table every test config carries, so that a dds endpoint keeps its
// traffic on the loopback interface (nothing leaves the machine) and in a DDS domain of its own
// per ferry domain (tests running side by side do not even discover each other).
#pragma once

#include <cstdint>
#include <string>

namespace ferry::test {

// DDS domain ids 1..200, from the ferry domain's name (collisions only cost discovery traffic:
// DDS topic names carry the ferry domain).
inline int dds_domain_id(const std::string& ferry_domain) {
    std::uint32_t h = 2166136261u;
    for (const char c : ferry_domain) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return 1 + static_cast<int>(h % 200);
}

inline std::string dds_config_section(const std::string& ferry_domain) {
    return "[dds]\ndomain_id = " + std::to_string(dds_domain_id(ferry_domain)) + "\ninterfaces = [\"lo\"]\n";
}

}  // namespace ferry::test
