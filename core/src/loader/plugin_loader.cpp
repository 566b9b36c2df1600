#include "loader/plugin_loader.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <map>
#include <mutex>

#include <boost/dll/shared_library.hpp>

#include <ferry/error.hpp>

#include <ferry/transport/posix.hpp>
#include <ferry/transport/text.hpp>

#include "log/log.hpp"

namespace ferry::detail {

namespace {

constexpr const char* kPrefix = "ferry_plugin_";
constexpr const char* kSuffix = ".so";

void host_log(transport::LogLevel level, const char* message) noexcept {
    try {
        log_from_plugin(static_cast<int>(level), message);
    } catch (...) {
    }
}

const transport::Host kHost{transport::kAbiVersion, &host_log};

class DllTransport final : public LoadedTransport {
public:
    DllTransport(boost::dll::shared_library lib,
                 transport::Transport* t,
                 void (*destroy)(transport::Transport*) noexcept,
                 std::string path,
                 std::string version)
        : lib_(std::move(lib)), transport_(t), destroy_(destroy), path_(std::move(path)), version_(std::move(version)) {}
    ~DllTransport() override { destroy_(transport_); }
    transport::Transport& get() noexcept override { return *transport_; }
    const std::string& path() const noexcept override { return path_; }
    const std::string& version() const noexcept override { return version_; }

private:
    boost::dll::shared_library lib_;  // declared first: unloaded last
    transport::Transport* transport_;
    void (*destroy_)(transport::Transport*) noexcept;
    std::string path_;
    std::string version_;
};

std::string directory_of_this_library() {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&directory_of_this_library), &info) == 0 || !info.dli_fname) return {};
    std::string path = info.dli_fname;
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

bool is_dir(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}



std::string join_names(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "(none found)" : out;
}

}  // namespace

// Anyone could drop a module into a world-writable directory: such a directory is searched
// only when the user names it in FERRY_PLUGIN_PATH.
bool builtin_dir_allowed(const std::string& dir) { return !transport::world_writable(dir); }

std::vector<std::string> plugin_search_path() {
    std::vector<std::string> dirs;
    auto add = [&](const std::string& d) {
        if (!d.empty() && std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
    };
    if (const char* env = std::getenv("FERRY_PLUGIN_PATH")) {
        std::string s = env;
        std::size_t start = 0;
        while (start <= s.size()) {
            const auto colon = s.find(':', start);
            const auto part = s.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
            if (!part.empty()) add(part);  // an empty entry never means "the current directory"
            if (colon == std::string::npos) break;
            start = colon + 1;
        }
    }
    auto add_builtin = [&](const std::string& d) {
        if (d.empty()) return;
        if (!builtin_dir_allowed(d)) {
            log_warn("plugin directory " + d + " is world-writable: not searched (name it in FERRY_PLUGIN_PATH to use it)");
            return;
        }
        add(d);
    };
    const std::string here = directory_of_this_library();
    if (!here.empty()) add_builtin(here + "/ferry/plugins");
    add_builtin(FERRY_INSTALL_PLUGIN_DIR);
    add_builtin(FERRY_BUILD_PLUGIN_DIR);
    return dirs;
}

std::vector<std::string> available_transports() {
    std::vector<std::string> names;
    for (const auto& dir : plugin_search_path()) {
        DIR* d = ::opendir(dir.c_str());
        if (!d) continue;
        while (dirent* e = ::readdir(d)) {
            const std::string f = e->d_name;
            const std::size_t pl = std::char_traits<char>::length(kPrefix);
            const std::size_t sl = std::char_traits<char>::length(kSuffix);
            if (f.size() > pl + sl && f.compare(0, pl, kPrefix) == 0 && f.compare(f.size() - sl, sl, kSuffix) == 0)
                names.push_back(f.substr(pl, f.size() - pl - sl));
        }
        ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
}

std::shared_ptr<LoadedTransport> load_transport_file(const std::string& path) {
    // The directory was vetted by plugin_search_path (or named by the user in FERRY_PLUGIN_PATH).
    if (const std::string problem = transport::module_file_problem(path, false); !problem.empty())
        throw Error(Errc::invalid_argument, "plugin " + path + ": cannot load: " + problem);
    boost::dll::shared_library lib;
    boost::system::error_code ec;
    lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
        const char* why = ::dlerror();
        throw Error(Errc::invalid_argument,
                    "plugin " + path + ": cannot load: " + (why ? std::string(why) : ec.message()));
    }
    for (const char* sym : {"ferry_transport_abi_version", "ferry_transport_create", "ferry_transport_destroy"}) {
        if (!lib.has(sym))
            throw Error(Errc::invalid_argument, "plugin " + path + ": not a ferry transport module (no '" + sym + "')");
    }
    const auto abi = lib.get<std::uint32_t()>("ferry_transport_abi_version")();
    if (abi != transport::kAbiVersion) {
        throw Error(Errc::invalid_argument, "plugin " + path + ": built for transport ABI " + std::to_string(abi) +
                                                ", this ferry needs ABI " + std::to_string(transport::kAbiVersion) +
                                                "; rebuild the plugin");
    }
    // Same standard library in the same ABI mode: C++ objects cross this boundary.
    if (!lib.has("ferry_transport_build_tag"))
        throw Error(Errc::invalid_argument, "plugin " + path +
                                                ": does not say which standard library it was built with "
                                                "(no 'ferry_transport_build_tag'); rebuild it against this ferry's SDK");
    const char* tag = lib.get<const char*()>("ferry_transport_build_tag")();
    if (tag == nullptr || std::strcmp(tag, transport::kBuildTag) != 0) {
        throw Error(Errc::invalid_argument,
                    "plugin " + path + ": built with " + (tag ? transport::escape_control(std::string_view(tag, ::strnlen(tag, 256))) : std::string("nothing stated")) +
                        ", this ferry with " + transport::kBuildTag +
                        "; C++ objects cross the plugin boundary, so rebuild the plugin with the same standard "
                        "library and ABI settings");
    }
    auto create = &lib.get<transport::Transport*(const transport::Host*)>("ferry_transport_create");
    auto destroy = reinterpret_cast<void (*)(transport::Transport*) noexcept>(
        &lib.get<void(transport::Transport*)>("ferry_transport_destroy"));
    std::string version = "unknown";
    if (lib.has("ferry_transport_version")) {
        const char* v = lib.get<const char*()>("ferry_transport_version")();
        if (v) version = v;
    }
    transport::Transport* t = create(&kHost);
    if (!t) throw Error(Errc::internal, "plugin " + path + ": its factory returned nothing");
    return std::make_shared<DllTransport>(std::move(lib), t, destroy, path, std::move(version));
}

std::shared_ptr<LoadedTransport> load_transport(const std::string& name) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<LoadedTransport>> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(name); it != cache.end()) return it->second;

    const bool safe_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
    if (safe_name) {
        for (const auto& dir : plugin_search_path()) {
            if (!is_dir(dir)) continue;
            const std::string path = dir + "/" + kPrefix + name + kSuffix;
            struct stat st {};
            if (::stat(path.c_str(), &st) != 0) continue;
            auto loaded = load_transport_file(path);
            const std::string real = loaded->get().name();
            if (real != name)
                throw Error(Errc::invalid_argument,
                            "plugin " + path + ": calls itself '" + real + "', expected '" + name + "'");
            log_debug("loaded transport '" + name + "' from " + path);
            cache.emplace(name, loaded);
            return loaded;
        }
    }
    std::string where;
    for (const auto& d : plugin_search_path()) where += (where.empty() ? "" : ":") + d;
    throw Error(Errc::invalid_argument, "unknown transport '" + name + "': no " + kPrefix + name + kSuffix +
                                            " in " + where + "; available: " + join_names(available_transports()));
}

}  // namespace ferry::detail
