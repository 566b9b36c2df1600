#include "values.hpp"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cli.hpp"
#include "output.hpp"

namespace ferry::cli {

namespace {

template <class T>
std::optional<T> read_as(const std::byte* data, std::size_t size) {
    if (size != sizeof(T)) return std::nullopt;
    T v;
    std::memcpy(&v, data, sizeof v);
    return v;
}

template <class T>
std::string number_text(T v) {
    if constexpr (std::is_floating_point_v<T>) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*g", std::numeric_limits<T>::max_digits10, static_cast<double>(v));
        return buf;
    } else {
        return std::to_string(v);
    }
}

template <class T>
std::optional<std::string> scalar_text(const std::byte* data, std::size_t size) {
    auto v = read_as<T>(data, size);
    if (!v) return std::nullopt;
    return number_text(*v);
}

// Calls f.template operator()<T>() for the scalar type named `type`; false if not a scalar.
template <class F>
bool with_scalar(const std::string& type, F&& f) {
    if (type == "int8") return f(std::int8_t{}), true;
    if (type == "int16") return f(std::int16_t{}), true;
    if (type == "int32") return f(std::int32_t{}), true;
    if (type == "int64") return f(std::int64_t{}), true;
    if (type == "uint8") return f(std::uint8_t{}), true;
    if (type == "uint16") return f(std::uint16_t{}), true;
    if (type == "uint32") return f(std::uint32_t{}), true;
    if (type == "uint64") return f(std::uint64_t{}), true;
    if (type == "float32") return f(float{}), true;
    if (type == "float64") return f(double{}), true;
    return false;
}

template <class T>
std::string scalar_bytes(const std::string& type, const std::string& text) {
    const char* s = text.c_str();
    char* end = nullptr;
    errno = 0;
    T v{};
    if constexpr (std::is_floating_point_v<T>) {
        const double d = std::strtod(s, &end);
        v = static_cast<T>(d);
        if (std::isfinite(d) && !std::isfinite(v)) errno = ERANGE;
    } else if constexpr (std::is_signed_v<T>) {
        const long long x = std::strtoll(s, &end, 0);
        if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max()) errno = ERANGE;
        v = static_cast<T>(x);
    } else {
        if (text.find('-') != std::string::npos) errno = ERANGE;
        const unsigned long long x = std::strtoull(s, &end, 0);
        if (x > std::numeric_limits<T>::max()) errno = ERANGE;
        v = static_cast<T>(x);
    }
    if (text.empty() || end == s || *end != '\0') throw UsageError("'" + text + "' is not a " + type);
    if (errno == ERANGE) throw UsageError("'" + text + "' is out of range for " + type);
    std::string out(sizeof(T), '\0');
    std::memcpy(out.data(), &v, sizeof v);
    return out;
}

}  // namespace

bool is_builtin_type(const std::string& type) {
    return type == "string" || type == "bytes" || type == "bool" ||
           with_scalar(type, [](auto) {});
}

std::optional<std::string> builtin_to_text(const std::string& type, const std::byte* data, std::size_t size) {
    if (type == "string") return std::string(reinterpret_cast<const char*>(data), size);
    if (type == "bool") {
        auto v = read_as<std::uint8_t>(data, size);
        if (!v || *v > 1) return std::nullopt;
        return std::string(*v ? "true" : "false");
    }
    std::optional<std::string> result;
    with_scalar(type, [&](auto t) { result = scalar_text<decltype(t)>(data, size); });
    return result;
}

std::optional<std::string> builtin_to_json(const std::string& type, const std::byte* data, std::size_t size) {
    auto text = builtin_to_text(type, data, size);
    if (!text) return std::nullopt;
    if (type == "string") return json_escape(*text);
    if (type == "float32" || type == "float64") {
        if (*text == "nan" || *text == "-nan" || *text == "inf" || *text == "-inf") return json_escape(*text);
    }
    return text;
}

std::string builtin_from_text(const std::string& type, const std::string& value) {
    if (type == "string") return value;
    if (type == "bool") {
        if (value == "true" || value == "1") return std::string(1, '\1');
        if (value == "false" || value == "0") return std::string(1, '\0');
        throw UsageError("'" + value + "' is not a bool (true, false, 1, 0)");
    }
    if (type == "bytes") {
        std::string out;
        int nibble = -1;
        for (char c : value) {
            if (c == ' ' || c == ':') continue;
            int d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else throw UsageError("'" + value + "' is not hex bytes");
            if (nibble < 0) nibble = d;
            else {
                out += static_cast<char>(nibble * 16 + d);
                nibble = -1;
            }
        }
        if (nibble >= 0) throw UsageError("'" + value + "' has an odd number of hex digits");
        return out;
    }
    std::string out;
    if (!with_scalar(type, [&](auto t) { out = scalar_bytes<decltype(t)>(type, value); }))
        throw UsageError("'" + type + "' is not a built-in type");
    return out;
}

std::string hex_string(const std::byte* data, std::size_t size, std::size_t max) {
    std::string out;
    char buf[4];
    for (std::size_t i = 0; i < size && i < max; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(data[i]));
        out += buf;
    }
    return out;
}

std::string hex_preview(const std::byte* data, std::size_t size, std::size_t max) {
    std::string out;
    const std::size_t n = size < max ? size : max;
    for (std::size_t line = 0; line < n; line += 16) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "  %04zx  ", line);
        out += buf;
        std::string text;
        for (std::size_t i = line; i < line + 16; ++i) {
            if (i < n) {
                const auto b = static_cast<unsigned char>(data[i]);
                std::snprintf(buf, sizeof buf, "%02x ", b);
                out += buf;
                text += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
            } else {
                out += "   ";
            }
        }
        out += " |" + text + "|\n";
    }
    if (size > n) out += "  ... " + std::to_string(size - n) + " more bytes\n";
    return out;
}

}  // namespace ferry::cli
