#include <ferry/introspection.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <ferry/error.hpp>
#include <ferry/transport/naming.hpp>
#include <ferry/transport/posix.hpp>

#include "config/config.hpp"
#include "loader/plugin_loader.hpp"
#include "registry/registry.hpp"
#include "runtime/participant.hpp"
#include "runtime/translate.hpp"

namespace ferry {

std::vector<TopicInfo> list_topics(const std::string& domain) {
    auto registry = detail::Registry::open_existing(detail::checked_domain(domain));
    if (!registry) return {};
    registry->purge_dead();
    std::vector<TopicInfo> out;
    for (auto& t : registry->topics()) {
        TopicInfo info;
        info.name = t.name;
        info.type = t.type;
        info.qos = t.qos;
        out.push_back(std::move(info));
    }
    for (auto& e : registry->endpoints()) {
        for (auto& t : out) {
            if (t.name != e.topic) continue;
            EndpointInfo ep;
            ep.id = e.id;
            ep.topic = e.topic;
            ep.node = e.node;
            ep.publisher = e.role == detail::Role::publisher;
            ep.pid = e.pid;
            ep.messages = e.messages;
            ep.bytes = e.bytes;
            ep.undelivered = e.undelivered;
            t.endpoints.push_back(std::move(ep));
        }
    }
    std::sort(out.begin(), out.end(), [](const TopicInfo& a, const TopicInfo& b) { return a.name < b.name; });
    return out;
}

std::vector<PluginInfo> list_plugins() {
    std::vector<PluginInfo> out;
    for (const auto& name : detail::available_transports()) {
        PluginInfo info;
        info.name = name;
        try {
            auto loaded = detail::load_transport(name);
            info.path = loaded->path();
            info.loaded = true;
            info.version = loaded->version();
            info.abi_version = transport::kAbiVersion;
            const auto caps = loaded->get().capabilities();
            info.zero_copy = caps.zero_copy;
            info.max_message_size = caps.max_message_size;
            info.max_readers = caps.max_readers;
            info.summary = caps.summary ? caps.summary : "";
        } catch (const std::exception& e) {
            info.error = e.what();
        }
        out.push_back(std::move(info));
    }
    return out;
}

std::vector<std::string> clean_domain(const std::string& domain) {
    const std::string d = detail::checked_domain(domain);
    std::vector<std::string> removed;
    std::string error;
    const std::string runtime_dir = transport::default_runtime_dir(error);
    // Every plugin is asked for the objects it made for the domain: only it knows where.
    const auto transports = detail::load_all_transports();
    // A registry file that is not one (damaged, zero-size, another version, a squatter's)
    // goes if no live process takes part in the domain: live ones would rejoin a fresh one.
    const std::string path = detail::Registry::path_for(d);
    if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW); fd >= 0) {
        const std::string bad = detail::Registry::check_layout(fd, path);
        ::close(fd);
        if (!bad.empty()) {
            const pid_t live = detail::live_object_owner(d, runtime_dir, transports);
            if (live != 0)
                throw Error(Errc::invalid_argument, path + ": " + bad + "; not removed: pid " + std::to_string(live) +
                                                        " still takes part in domain " + d);
            if (::unlink(path.c_str()) != 0)
                throw Error(detail::to_public(transport::errc_from_errno(errno)), "cannot remove " + path + ": " + std::strerror(errno));
            removed.push_back(path + " (" + bad.substr(0, bad.find(": /dev/shm")) + ")");
        }
    }
    std::vector<std::uint64_t> live;
    if (auto registry = detail::Registry::open_existing(d)) {
        for (auto id : registry->purge_dead()) {
            char hex[17];
            std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(id));
            removed.push_back("registry entry " + std::string(hex));
        }
        for (auto& f : registry->take_removed_files()) removed.push_back(std::move(f));
        live = detail::endpoint_ids(*registry);
    }
    auto objects = detail::remove_stale_objects(d, runtime_dir, live, transports);
    removed.insert(removed.end(), objects.begin(), objects.end());
    // The registry file itself goes when no live process takes part any more.
    {
        detail::Registry probe(d, true);  // join briefly: leaving as the last one removes the file
    }
    return removed;
}

void interrupt_waits_on(const std::atomic<bool>* flag) { detail::set_registry_interrupt(flag); }

Qos resolve_config(const std::string& path, const std::string& topic) {
    auto cfg = detail::Config::load_file(path);
    cfg.check_transports(detail::available_transports());
    return cfg.resolve(topic).qos;
}

BridgeConfig load_bridge_config(const std::string& path) {
    auto cfg = detail::Config::load_file(path);
    cfg.check_transports(detail::available_transports());
    const auto& b = cfg.bridge();
    return BridgeConfig{b.out, b.in, b.network_domain};
}

}  // namespace ferry
