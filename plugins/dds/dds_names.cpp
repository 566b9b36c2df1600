// Topic names, settings and the Cyclone configuration string.
#include <ifaddrs.h>
#include <net/if.h>

#include <cctype>
#include <cstdlib>
#include <set>

#include "dds_transport.hpp"

namespace ferry::dds {

namespace {

const char kHex[] = "0123456789ABCDEF";

std::string escape(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '/') {
            out += c;
        } else {
            out += '_';
            out += kHex[u >> 4];
            out += kHex[u & 15];
        }
    }
    return out;
}

bool unescape(const std::string& s, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '_') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size()) return false;
        auto digit = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        const int hi = digit(s[i + 1]), lo = digit(s[i + 2]);
        if (hi < 0 || lo < 0) return false;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return true;
}

// Interfaces (by name) that cannot do multicast, such as Linux's lo by default.
bool none_multicast(const std::vector<std::string>& names) {
    std::set<std::string> multicast;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return false;
    for (ifaddrs* a = list; a != nullptr; a = a->ifa_next)
        if (a->ifa_name != nullptr && (a->ifa_flags & IFF_MULTICAST) != 0) multicast.insert(a->ifa_name);
    ::freeifaddrs(list);
    for (const auto& n : names)
        if (multicast.count(n) != 0) return false;
    return true;
}

}  // namespace

std::string topic_name(const std::string& domain, const std::string& topic) {
    return "ferry_" + escape(domain) + "/" + escape(topic);
}

bool parse_topic_name(const std::string& name, std::string& domain, std::string& topic) {
    if (name.compare(0, 6, "ferry_") != 0) return false;
    const auto slash = name.find('/', 6);
    if (slash == std::string::npos) return false;
    return unescape(name.substr(6, slash - 6), domain) && unescape(name.substr(slash + 1), topic) && !topic.empty();
}

Settings Settings::from(const TopicParams& params) {
    Settings s;
    for (const auto& [key, value] : params.options) {
        if (key == "domain_id") {
            s.domain_id = static_cast<dds_domainid_t>(std::strtoul(value.c_str(), nullptr, 10));
        } else if (key == "interfaces") {
            std::size_t start = 0;
            while (start <= value.size()) {
                const auto comma = value.find(',', start);
                const auto end = comma == std::string::npos ? value.size() : comma;
                if (end > start) s.interfaces.push_back(value.substr(start, end - start));
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        }
    }
    return s;
}

std::string cyclone_config(const Settings& s) {
    // Without multicast (lo), Cyclone finds peers on the same host by participant index, 9 by
    // default: too few for a host running many ferry processes.
    std::string config = "<Discovery><MaxAutoParticipantIndex>99</MaxAutoParticipantIndex></Discovery>";
    if (const char* uri = std::getenv("CYCLONEDDS_URI"); uri != nullptr && *uri != '\0') config += std::string(",") + uri;
    if (!s.interfaces.empty()) {
        std::string xml = "<General><Interfaces>";
        for (const auto& name : s.interfaces) {
            // An address ("192.168.1.2") or a name ("eth0").
            const bool address = name.find_first_not_of("0123456789.:abcdefABCDEF") == std::string::npos &&
                                 name.find_first_of(".:") != std::string::npos;
            xml += std::string("<NetworkInterface ") + (address ? "address" : "name") + "=\"" + name + "\"/>";
        }
        xml += "</Interfaces>";
        // Say it, rather than have Cyclone warn on stderr that it turned multicast off; without
        // multicast, peers on the host find each other by participant index.
        const bool unicast = none_multicast(s.interfaces);
        if (unicast) xml += "<AllowMulticast>false</AllowMulticast>";
        xml += "</General>";
        if (unicast) xml += "<Discovery><ParticipantIndex>auto</ParticipantIndex></Discovery>";
        config += "," + xml;
    }
    return config;
}

Status dds_status(dds_return_t rc, Errc code, const std::string& what) {
    return Status(code, "dds: " + what + ": " + dds_strretcode(rc));
}

}  // namespace ferry::dds
