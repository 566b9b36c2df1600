// Type-support modules (see <ferry/type_support.hpp>) loaded with Boost.DLL: JSON <-> bytes
// for user types, looked up by registry type name.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::cli {

class TypeModules {
public:
    // Loads every module; throws RuntimeError naming the module and the reason.
    explicit TypeModules(const std::vector<std::string>& paths);
    ~TypeModules();
    TypeModules(const TypeModules&) = delete;
    TypeModules& operator=(const TypeModules&) = delete;

    bool supports(const std::string& type) const;
    // Type names of all loaded modules.
    std::vector<std::string> types() const;
    // JSON of a message of `type`; nullopt and `error` when undecodable or unsupported.
    std::optional<std::string> to_json(const std::string& type, const void* data, std::size_t size, std::string& error) const;
    // Message bytes of `type` from JSON; throws RuntimeError when the JSON does not fit.
    std::string from_json(const std::string& type, const std::string& json) const;
    // JSON Schema of `type` generated from its serialize function (<ferry/json_schema.hpp>);
    // nullopt and `error` set when unsupported, or the module predates the schema entry point.
    std::optional<std::string> json_schema(const std::string& type, std::string& error) const;

private:
    struct Module;
    const Module* find(const std::string& type) const;
    std::vector<std::unique_ptr<Module>> modules_;
};

}  // namespace ferry::cli
