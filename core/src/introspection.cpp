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

std::vector<TopicInfo> list_remote_topics(const std::string& domain, std::chrono::milliseconds wait) {
    const auto local = list_topics(domain);
    const auto config = detail::Config::load_for_node(std::nullopt);
    char host_buf[256] = {};
    const std::string this_host = ::gethostname(host_buf, sizeof host_buf - 1) == 0 ? host_buf : "";
    std::vector<std::int32_t> local_pids;
    for (const auto& t : local)
        for (const auto& e : t.endpoints) local_pids.push_back(e.pid);
    std::vector<TopicInfo> out;
    for (const auto& name : detail::available_transports()) {
        std::shared_ptr<detail::LoadedTransport> loaded;
        try {
            loaded = detail::load_transport(name);
        } catch (const std::exception&) {
            continue;  // `ferry plugin list` says why
        }
        auto& transport = loaded->get();
        if (!transport.capabilities().network) continue;
        const auto& options = config.plugin_options(name);
        const bool used = !options.empty() || std::any_of(local.begin(), local.end(), [&](const TopicInfo& t) {
            return t.qos.transport == name;
        });
        if (!used) continue;
        std::vector<transport::RemoteEndpoint> found;
        if (auto st = transport.discover(domain, options, wait, found); !st)
            throw Error(Errc::io_error, name + ": discovery in domain " + domain + ": " + st.message());
        for (auto& r : found) {
            if (r.host == this_host && std::find(local_pids.begin(), local_pids.end(), r.pid) != local_pids.end())
                continue;  // the registry lists it already
            auto it = std::find_if(out.begin(), out.end(), [&](const TopicInfo& t) { return t.name == r.topic; });
            if (it == out.end()) {
                TopicInfo t;
                t.name = r.topic;
                t.qos.transport = name;
                out.push_back(std::move(t));
                it = out.end() - 1;
            }
            if (it->type.empty()) it->type = r.type;
            EndpointInfo e;
            e.topic = r.topic;
            e.node = r.node;
            e.publisher = r.publisher;
            e.pid = r.pid;
            e.remote = true;
            e.host = r.host;
            it->endpoints.push_back(std::move(e));
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
