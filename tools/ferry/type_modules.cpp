#include "type_modules.hpp"

#include <dlfcn.h>

#include <boost/dll/shared_library.hpp>
#include <boost/filesystem/operations.hpp>

#define FERRY_TYPE_SUPPORT_ABI_ONLY
#include <ferry/type_support.hpp>
#include <ferry/transport/posix.hpp>

#include "cli.hpp"

namespace ferry::cli {

namespace ts = ferry::type_support;

struct TypeModules::Module {
    std::string path;
    boost::dll::shared_library lib;
    std::vector<std::string> types;
    ts::ToJsonFn to_json = nullptr;
    ts::FromJsonFn from_json = nullptr;
    ts::JsonSchemaFn json_schema = nullptr;  // optional: older modules lack it
};

namespace {
void to_string_sink(void* context, const char* data, std::size_t size) {
    static_cast<std::string*>(context)->assign(data, size);
}
}  // namespace

TypeModules::TypeModules(const std::vector<std::string>& paths) {
    for (const auto& path : paths) {
        auto m = std::make_unique<Module>();
        m->path = path;
        boost::system::error_code ec;
        // A bare file name is looked up like any library (LD_LIBRARY_PATH, system folders).
        const bool bare = path.find('/') == std::string::npos && !boost::filesystem::exists(path);
        // Loaded code runs with our rights: the same rules as for transport plugins.
        if (!bare) {
            if (const std::string problem = transport::module_file_problem(path, true); !problem.empty())
                throw RuntimeError("cannot load type support " + path + ": " + problem);
        }
        m->lib.load(path, bare ? boost::dll::load_mode::search_system_folders : boost::dll::load_mode::default_mode, ec);
        if (ec) {
            const char* why = ::dlerror();  // names the file and the reason; ec says "Bad file descriptor"
            throw RuntimeError("cannot load type support " + path + ": " + (why ? std::string(why) : ec.message()));
        }
        for (const char* sym : {ts::kAbiVersionSymbol, ts::kCountSymbol, ts::kNameSymbol, ts::kToJsonSymbol, ts::kFromJsonSymbol})
            if (!m->lib.has(sym))
                throw RuntimeError("cannot load type support " + path + ": not a type-support module (no " + sym + ")");
        const auto version = m->lib.get<std::uint32_t()>(ts::kAbiVersionSymbol)();
        if (version != ts::kAbiVersion)
            throw RuntimeError("cannot load type support " + path + ": ABI version " + std::to_string(version) +
                               ", this ferry needs " + std::to_string(ts::kAbiVersion));
        const auto count = m->lib.get<std::size_t()>(ts::kCountSymbol)();
        auto name = m->lib.get<const char*(std::size_t)>(ts::kNameSymbol);
        for (std::size_t i = 0; i < count; ++i)
            if (const char* n = name(i)) m->types.emplace_back(n);
        m->to_json = &m->lib.get<int(const char*, const void*, std::size_t, ts::Sink, void*)>(ts::kToJsonSymbol);
        m->from_json = &m->lib.get<int(const char*, const char*, std::size_t, ts::Sink, void*)>(ts::kFromJsonSymbol);
        if (m->lib.has(ts::kJsonSchemaSymbol))
            m->json_schema = &m->lib.get<int(const char*, ts::Sink, void*)>(ts::kJsonSchemaSymbol);
        modules_.push_back(std::move(m));
    }
}

TypeModules::~TypeModules() = default;

const TypeModules::Module* TypeModules::find(const std::string& type) const {
    for (const auto& m : modules_)
        for (const auto& t : m->types)
            if (t == type) return m.get();
    return nullptr;
}

bool TypeModules::supports(const std::string& type) const { return find(type) != nullptr; }

std::vector<std::string> TypeModules::types() const {
    std::vector<std::string> all;
    for (const auto& m : modules_) all.insert(all.end(), m->types.begin(), m->types.end());
    return all;
}

std::optional<std::string> TypeModules::to_json(const std::string& type,
                                                const void* data,
                                                std::size_t size,
                                                std::string& error) const {
    const Module* m = find(type);
    if (!m) {
        error = "no type support for '" + type + "'";
        return std::nullopt;
    }
    std::string result;
    if (m->to_json(type.c_str(), data, size, &to_string_sink, &result) != 0) {
        error = result;
        return std::nullopt;
    }
    return result;
}

std::optional<std::string> TypeModules::json_schema(const std::string& type, std::string& error) const {
    const Module* m = find(type);
    if (!m) {
        error = "no type support for '" + type + "'";
        return std::nullopt;
    }
    if (!m->json_schema) {
        error = m->path + " has no " + ts::kJsonSchemaSymbol + " (built before schemas existed)";
        return std::nullopt;
    }
    std::string result;
    if (m->json_schema(type.c_str(), &to_string_sink, &result) != 0) {
        error = result;
        return std::nullopt;
    }
    return result;
}

std::string TypeModules::from_json(const std::string& type, const std::string& json) const {
    const Module* m = find(type);
    if (!m) throw RuntimeError("no type support for '" + type + "' (pass --types MODULE)");
    std::string result;
    if (m->from_json(type.c_str(), json.data(), json.size(), &to_string_sink, &result) != 0)
        throw RuntimeError("cannot convert JSON to " + type + ": " + result);
    return result;
}

}  // namespace ferry::cli
