// Type support: lets the `ferry` command print and publish a user type as JSON.
//
// A type-support module is a shared library built from one source file:
//
//   #include <ferry/type_support.hpp>
//   #include "pose.hpp"
//   FERRY_TYPE(demo::Pose)            // one line per type, at global scope
//
//   add_library(mytypes MODULE mytypes.cpp)          # CMake
//   target_link_libraries(mytypes PRIVATE ferry::ferry)
//
//   ferry topic echo pose --types ./libmytypes.so
//   ferry topic pub pose --types ./libmytypes.so '{"value0":"map","value1":1.0, ...}'
//
// The type needs a cereal serialize (or save/load) function; its JSON is what cereal's
// JSONOutputArchive writes (members named with CEREAL_NVP keep their names, others are
// "value0", "value1", ...). The binary side is ferry::Codec<T>, so bytes match what
// Publisher<T> sends, and the type is known by ferry::type_name<T>(), as in the registry.
// The module also gives the type's JSON Schema, generated from the same serialize function
// (<ferry/json_schema.hpp>): `ferry record` stores it in the recording, named as in the registry.
//
// The module exports plain C functions (below), so a module and the tool need not be built
// with the same compiler or standard library. No exception crosses them.
//
// Include this header only in a type-support module: it pulls in cereal's JSON archives.
// Define FERRY_TYPE_SUPPORT_ABI_ONLY before including it to get the ABI declarations only
// (that is what a loader such as the `ferry` command does).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::type_support {

// Changes whenever a signature below changes; a loader refuses a module with another version.
inline constexpr std::uint32_t kAbiVersion = 1;

// Receives a result (JSON text, message bytes) or an error message. Called at most once per
// call below, before it returns; `data` is valid only during the call.
using Sink = void (*)(void* context, const char* data, std::size_t size);

// The exported symbols (extern "C"):
//   std::uint32_t ferry_type_support_abi_version()            -> kAbiVersion of the module
//   std::size_t   ferry_type_support_count()                  -> number of types
//   const char*   ferry_type_support_name(std::size_t i)      -> i-th type name (nullptr past the end)
//   int ferry_type_support_to_json(const char* type, const void* bytes, std::size_t size,
//                                  Sink sink, void* context)
//       decodes a message of `type` and writes its JSON; 0 on success, else an error message
//   int ferry_type_support_from_json(const char* type, const char* json, std::size_t size,
//                                    Sink sink, void* context)
//       parses JSON into `type` and writes the message bytes; 0 on success, else an error message
//   int ferry_type_support_json_schema(const char* type, Sink sink, void* context)
//       writes the JSON Schema of `type` generated from its serialize function (see
//       <ferry/json_schema.hpp>); 0 on success, else an error message. Optional: modules built
//       before it existed lack it, and a loader treats its absence as "no schema".
using AbiVersionFn = std::uint32_t (*)();
using CountFn = std::size_t (*)();
using NameFn = const char* (*)(std::size_t);
using ToJsonFn = int (*)(const char*, const void*, std::size_t, Sink, void*);
using FromJsonFn = int (*)(const char*, const char*, std::size_t, Sink, void*);
using JsonSchemaFn = int (*)(const char*, Sink, void*);

inline constexpr const char* kAbiVersionSymbol = "ferry_type_support_abi_version";
inline constexpr const char* kCountSymbol = "ferry_type_support_count";
inline constexpr const char* kNameSymbol = "ferry_type_support_name";
inline constexpr const char* kToJsonSymbol = "ferry_type_support_to_json";
inline constexpr const char* kFromJsonSymbol = "ferry_type_support_from_json";
inline constexpr const char* kJsonSchemaSymbol = "ferry_type_support_json_schema";

}  // namespace ferry::type_support

#ifndef FERRY_TYPE_SUPPORT_ABI_ONLY

#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <cereal/archives/json.hpp>

#include <ferry/cereal.hpp>
#include <ferry/codec.hpp>
#include <ferry/json_schema.hpp>

namespace ferry::type_support::detail {

struct Entry {
    std::string name;
    std::string (*to_json)(const void* bytes, std::size_t size);
    std::string (*from_json)(const std::string& json);
    std::string (*json_schema)();
};

inline std::vector<Entry>& entries() {
    static std::vector<Entry> all;
    return all;
}

inline const Entry* find(const char* name) {
    if (!name) return nullptr;
    for (const auto& e : entries())
        if (e.name == name) return &e;
    return nullptr;
}

template <class T>
std::string to_json(const void* bytes, std::size_t size) {
    T value{};
    if (!Codec<T>::decode(static_cast<const std::byte*>(bytes), size, value))
        throw std::runtime_error(std::to_string(size) + " bytes are not a " + type_name<T>());
    std::ostringstream os;
    {
        cereal::JSONOutputArchive ar(os, cereal::JSONOutputArchive::Options::NoIndent());
        ar(cereal::make_nvp("v", value));
    }
    // The archive wraps everything in a root object: {"v": <value>}. Keep <value>.
    std::string out = std::move(os).str();
    const auto open = out.find(':');
    const auto close = out.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close <= open)
        throw std::runtime_error("unexpected JSON from cereal");
    out = out.substr(open + 1, close - open - 1);
    std::string compact;  // NoIndent still breaks lines: make it one line
    compact.reserve(out.size());
    bool in_string = false, escaped = false;
    for (char c : out) {
        if (in_string) {
            compact += c;
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
            compact += c;
        } else if (c != '\n' && c != '\r' && c != ' ' && c != '\t') {
            compact += c;
        }
    }
    return compact;
}

template <class T>
std::string from_json(const std::string& json) {
    T value{};
    {
        std::istringstream is("{\"v\":" + json + "}");
        cereal::JSONInputArchive ar(is);
        ar(cereal::make_nvp("v", value));
    }
    if constexpr (Codec<T>::kDirect) {
        std::string out(Codec<T>::size(value), '\0');
        Codec<T>::write(value, reinterpret_cast<std::byte*>(out.data()));
        return out;
    } else {
        std::string out;
        Codec<T>::encode(value, out);
        return out;
    }
}

template <class T>
bool add() {
    entries().push_back(Entry{type_name<T>(), &to_json<T>, &from_json<T>, &::ferry::json_schema<T>});
    return true;
}

inline int run(const char* type,
               Sink sink,
               void* context,
               std::string (*work)(const Entry&, const void*, std::size_t),
               const void* in,
               std::size_t size) noexcept {
    std::string msg;
    try {
        const Entry* e = find(type);
        if (!e) {
            msg = std::string("no type support for '") + (type ? type : "") + "' in this module";
        } else {
            const std::string out = work(*e, in, size);
            sink(context, out.data(), out.size());
            return 0;
        }
    } catch (const std::exception& ex) {
        msg = ex.what();
    } catch (...) {
        msg = "unknown error";
    }
    try {
        sink(context, msg.data(), msg.size());
    } catch (...) {
    }
    return 1;
}

}  // namespace ferry::type_support::detail

#define FERRY_DETAIL_TS_EXPORT extern "C" inline __attribute__((used, visibility("default")))

FERRY_DETAIL_TS_EXPORT std::uint32_t ferry_type_support_abi_version() noexcept {
    return ::ferry::type_support::kAbiVersion;
}
FERRY_DETAIL_TS_EXPORT std::size_t ferry_type_support_count() noexcept {
    return ::ferry::type_support::detail::entries().size();
}
FERRY_DETAIL_TS_EXPORT const char* ferry_type_support_name(std::size_t i) noexcept {
    const auto& all = ::ferry::type_support::detail::entries();
    return i < all.size() ? all[i].name.c_str() : nullptr;
}
FERRY_DETAIL_TS_EXPORT int ferry_type_support_to_json(const char* type,
                                                      const void* bytes,
                                                      std::size_t size,
                                                      ::ferry::type_support::Sink sink,
                                                      void* context) noexcept {
    using ::ferry::type_support::detail::Entry;
    return ::ferry::type_support::detail::run(
        type, sink, context, [](const Entry& e, const void* in, std::size_t n) { return e.to_json(in, n); }, bytes,
        size);
}
FERRY_DETAIL_TS_EXPORT int ferry_type_support_from_json(const char* type,
                                                        const char* json,
                                                        std::size_t size,
                                                        ::ferry::type_support::Sink sink,
                                                        void* context) noexcept {
    using ::ferry::type_support::detail::Entry;
    return ::ferry::type_support::detail::run(
        type, sink, context,
        [](const Entry& e, const void* in, std::size_t n) {
            return e.from_json(std::string(static_cast<const char*>(in), n));
        },
        json, size);
}

FERRY_DETAIL_TS_EXPORT int ferry_type_support_json_schema(const char* type,
                                                          ::ferry::type_support::Sink sink,
                                                          void* context) noexcept {
    using ::ferry::type_support::detail::Entry;
    return ::ferry::type_support::detail::run(
        type, sink, context, [](const Entry& e, const void*, std::size_t) { return e.json_schema(); }, nullptr, 0);
}

#define FERRY_DETAIL_TS_CAT2(a, b) a##b
#define FERRY_DETAIL_TS_CAT(a, b) FERRY_DETAIL_TS_CAT2(a, b)

// Registers T (which needs a cereal serialize function) in this module. At global scope.
#define FERRY_TYPE(T)                                                                  \
    [[maybe_unused]] static const bool FERRY_DETAIL_TS_CAT(ferry_type_support_added_, \
                                                           __COUNTER__) =              \
        ::ferry::type_support::detail::add<T>();

#endif  // FERRY_TYPE_SUPPORT_ABI_ONLY
