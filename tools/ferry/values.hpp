// Messages of the built-in types ("string", "bool", "int8".."uint64", "float32", "float64",
// "bytes") as text and JSON, and back; anything else as a hex/UTF-8 preview.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace ferry::cli {

bool is_builtin_type(const std::string& type);

// The message as text ("hello", "42", "true"); nullopt for types this tool cannot decode or
// bytes that do not fit the type.
std::optional<std::string> builtin_to_text(const std::string& type, const std::byte* data, std::size_t size);
// The message as a JSON value ("\"hello\"", "42"); nullopt as above.
std::optional<std::string> builtin_to_json(const std::string& type, const std::byte* data, std::size_t size);

// The bytes of `value` (as typed on the command line) for a built-in type; throws UsageError
// when the text is not a value of the type (bytes: hex digits, optionally spaced).
std::string builtin_from_text(const std::string& type, const std::string& value);

// Up to `max` bytes as hexdump-style lines: offset, hex, printable characters.
std::string hex_preview(const std::byte* data, std::size_t size, std::size_t max);
// Up to `max` bytes as a hex string.
std::string hex_string(const std::byte* data, std::size_t size, std::size_t max);

}  // namespace ferry::cli
