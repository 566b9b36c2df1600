// How a message type becomes bytes and back, and what it is called in the registry.
//
// Out of the box: trivially copyable types (by memcpy), std::string (its UTF-8 bytes) and
// ferry::Bytes (raw bytes). Any other type needs a cereal serialize function and
// <ferry/cereal.hpp> (included by <ferry/ferry.hpp>).
//
// The registry records each topic's type name; a subscriber with another type is refused.
// Names are stable across processes: "string", "bytes", "int32", "float64", ... for the
// built-ins, the demangled C++ name for user types, or what FERRY_TYPE_NAME(T, "name") says.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <ferry/export.hpp>

namespace ferry {

using Bytes = std::vector<std::uint8_t>;

namespace detail {
FERRY_API std::string demangle(const char* mangled);
// FNV-1a of the type name; carried in every frame header.
constexpr std::uint64_t type_hash(std::string_view name) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : name) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}
}  // namespace detail

// Specialize (or use FERRY_TYPE_NAME) to give a type a stable name of your choosing.
template <class T, class Enable = void>
struct TypeName {
    static std::string get() { return detail::demangle(typeid(T).name()); }
};

#define FERRY_DETAIL_BUILTIN_NAME(T, N) \
    template <>                         \
    struct TypeName<T> {                \
        static std::string get() { return N; } \
    };
FERRY_DETAIL_BUILTIN_NAME(std::string, "string")
FERRY_DETAIL_BUILTIN_NAME(Bytes, "bytes")
FERRY_DETAIL_BUILTIN_NAME(bool, "bool")
FERRY_DETAIL_BUILTIN_NAME(std::int8_t, "int8")
FERRY_DETAIL_BUILTIN_NAME(std::int16_t, "int16")
FERRY_DETAIL_BUILTIN_NAME(std::int32_t, "int32")
FERRY_DETAIL_BUILTIN_NAME(std::int64_t, "int64")
FERRY_DETAIL_BUILTIN_NAME(std::uint8_t, "uint8")
FERRY_DETAIL_BUILTIN_NAME(std::uint16_t, "uint16")
FERRY_DETAIL_BUILTIN_NAME(std::uint32_t, "uint32")
FERRY_DETAIL_BUILTIN_NAME(std::uint64_t, "uint64")
FERRY_DETAIL_BUILTIN_NAME(float, "float32")
FERRY_DETAIL_BUILTIN_NAME(double, "float64")
#undef FERRY_DETAIL_BUILTIN_NAME

// Gives T the registry name N, e.g. FERRY_TYPE_NAME(demo::Pose, "demo/Pose"). At namespace scope.
#define FERRY_TYPE_NAME(T, N)                    \
    template <>                                  \
    struct ferry::TypeName<T> {                  \
        static std::string get() { return N; }   \
    };

template <class T>
std::string type_name() {
    return TypeName<T>::get();
}

// Codec<T>: either direct (kDirect: size() and write() straight into the loaned buffer) or
// through a scratch buffer (encode()). decode() returns false for bytes that are not a T.
// The primary template (cereal) is defined in <ferry/cereal.hpp>.
template <class T, class Enable = void>
struct Codec;

template <class T>
struct Codec<T, std::enable_if_t<std::is_trivially_copyable_v<T>>> {
    static constexpr bool kDirect = true;
    static std::size_t size(const T&) noexcept { return sizeof(T); }
    static void write(const T& msg, std::byte* out) noexcept { std::memcpy(out, &msg, sizeof(T)); }
    static bool decode(const std::byte* data, std::size_t size, T& out) noexcept {
        if (size != sizeof(T)) return false;
        std::memcpy(static_cast<void*>(&out), data, sizeof(T));
        return true;
    }
};

template <>
struct Codec<std::string> {
    static constexpr bool kDirect = true;
    static std::size_t size(const std::string& s) noexcept { return s.size(); }
    static void write(const std::string& s, std::byte* out) noexcept {
        if (!s.empty()) std::memcpy(out, s.data(), s.size());
    }
    static bool decode(const std::byte* data, std::size_t size, std::string& out) {
        out.assign(reinterpret_cast<const char*>(data), size);
        return true;
    }
};

template <>
struct Codec<Bytes> {
    static constexpr bool kDirect = true;
    static std::size_t size(const Bytes& b) noexcept { return b.size(); }
    static void write(const Bytes& b, std::byte* out) noexcept {
        if (!b.empty()) std::memcpy(out, b.data(), b.size());
    }
    static bool decode(const std::byte* data, std::size_t size, Bytes& out) {
        const auto* p = reinterpret_cast<const std::uint8_t*>(data);
        out.assign(p, p + size);
        return true;
    }
};

}  // namespace ferry
