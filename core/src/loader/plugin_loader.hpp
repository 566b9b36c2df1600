// Finds and loads transport modules with Boost.DLL.
//
// Search order: each directory of FERRY_PLUGIN_PATH (colon-separated; empty entries ignored),
// then the install location (<dir of libferry.so>/ferry/plugins, and the configured install
// prefix), then the build tree. The current directory is never searched, and a world-writable
// built-in directory is skipped: only FERRY_PLUGIN_PATH can name such places. A module is ferry_plugin_<name>.so exporting the entries of
// <ferry/transport/plugin.hpp>; its ABI version is checked before anything else is called.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ferry/transport/transport.hpp>

namespace ferry::detail {

// A loaded transport. Writers and readers hold a shared_ptr to it so the module stays mapped
// while any object made by it lives.
class LoadedTransport {
public:
    virtual ~LoadedTransport() = default;
    virtual transport::Transport& get() noexcept = 0;
    virtual const std::string& path() const noexcept = 0;
    // The module's ferry_transport_version(), or "unknown" for a module without one.
    virtual const std::string& version() const noexcept = 0;
};

std::vector<std::string> plugin_search_path();

// Whether a built-in directory may be searched: not when anyone can write into it.
bool builtin_dir_allowed(const std::string& dir);

// Names of transports whose module file exists on the search path (sorted, unique).
std::vector<std::string> available_transports();

// The module for `name`, loaded once per process. Throws ferry::Error naming the file and the
// reason (missing, not a ferry module, ABI mismatch, factory failed) and listing what exists.
std::shared_ptr<LoadedTransport> load_transport(const std::string& name);

// The transports this process has loaded so far.
std::vector<std::shared_ptr<LoadedTransport>> loaded_transports();

// Loads every available transport (those that fail to load are skipped) and returns them all:
// for what must ask every plugin, like `ferry clean`.
std::vector<std::shared_ptr<LoadedTransport>> load_all_transports();

// Loads the module at `path` (no cache); throws like load_transport.
std::shared_ptr<LoadedTransport> load_transport_file(const std::string& path);

}  // namespace ferry::detail
