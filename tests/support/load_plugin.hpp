// Test support: load one transport module straight from the build tree with dlopen, so a
// plugin can be tested through the SDK interface alone. (The core's own loader uses
// Boost.DLL; these tests exercise the plugin, not the loader.)
#pragma once

#include <dlfcn.h>

#include <memory>
#include <stdexcept>
#include <string>

#include <ferry/transport/transport.hpp>

namespace ferry::test {

inline void quiet_log(ferry::transport::LogLevel, const char*) noexcept {}

struct LoadedPlugin {
    void* handle = nullptr;
    ferry::transport::Transport* transport = nullptr;
    void (*destroy)(ferry::transport::Transport*) noexcept = nullptr;
    ~LoadedPlugin() {
        if (transport && destroy) destroy(transport);
        // Keep the module mapped: threads or atexit handlers of the plugin may still refer to it.
    }
};

inline std::unique_ptr<LoadedPlugin> load_plugin(const std::string& name) {
    const std::string path = std::string(FERRY_TEST_PLUGIN_DIR) + "/ferry_plugin_" + name + ".so";
    auto p = std::make_unique<LoadedPlugin>();
    p->handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) throw std::runtime_error(std::string("dlopen failed: ") + ::dlerror());
    using Create = ferry::transport::Transport* (*)(const ferry::transport::Host*) noexcept;
    using Destroy = void (*)(ferry::transport::Transport*) noexcept;
    auto create = reinterpret_cast<Create>(::dlsym(p->handle, "ferry_transport_create"));
    p->destroy = reinterpret_cast<Destroy>(::dlsym(p->handle, "ferry_transport_destroy"));
    if (!create || !p->destroy) throw std::runtime_error("not a ferry transport: " + path);
    static ferry::transport::Host host{ferry::transport::kAbiVersion, &quiet_log};
    p->transport = create(&host);
    if (!p->transport) throw std::runtime_error("factory failed: " + path);
    return p;
}

}  // namespace ferry::test
