// How ferry messages are described in MCAP files (`ferry record`, `ferry play`, `ferry bag`).
//
// Channel: topic = the ferry topic, message_encoding = kMessageEncoding (the bytes exactly as
// ferry publishes them: built-in scalars little-endian, `string` UTF-8, `bytes` as is, user types
// cereal binary), metadata "ferry.type" = the registry's type name (also the schema name).
// Schema: name = the registry's type name, encoding "jsonschema", data = a JSON Schema of the
// message as `ferry bag echo --json` prints it.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

#include "values.hpp"

namespace ferry::cli {

inline constexpr const char* kMessageEncoding = "ferry";
inline constexpr const char* kTypeKey = "ferry.type";
inline constexpr const char* kTransportKey = "ferry.transport";
inline constexpr const char* kProfile = "ferry";

// JSON Schema of a built-in type's JSON form ("" for a type that is not built in).
inline std::string builtin_json_schema(const std::string& type) {
    const std::string head = R"({"$schema":"https://json-schema.org/draft/2020-12/schema","title":")" + type + "\",";
    if (type == "string") return head + R"("type":"string","description":"UTF-8 text, the bytes of the message"})";
    if (type == "bytes")
        return head + R"("type":"string","contentEncoding":"hex","description":"raw bytes"})";
    if (type == "bool") return head + R"("type":"boolean","description":"one byte, 0 or 1"})";
    if (type == "float32" || type == "float64")
        return head + R"("type":"number","description":"IEEE 754 )" + type.substr(5) + R"(-bit, little-endian"})";
    if (is_builtin_type(type))  // integers
        return head + R"("type":"integer","description":")" + type + R"(, little-endian"})";
    return "";
}

// "2026-11-25 18:00:00.123456789" (UTC) from nanoseconds since the epoch.
inline std::string utc_time_ns(std::uint64_t ns) {
    const std::time_t s = static_cast<std::time_t>(ns / 1000000000u);
    std::tm tm{};
    ::gmtime_r(&s, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%09llu", static_cast<unsigned long long>(ns % 1000000000u));
    return std::string(buf) + frac;
}

}  // namespace ferry::cli
