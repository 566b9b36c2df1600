// Codecs: built-in types by memcpy, user types by cereal, and hostile bytes refused without
// a large allocation.
#include <catch2/catch.hpp>

#include <cstring>
#include <map>

#include <ferry/ferry.hpp>

namespace {
struct Plain {
    int a;
    double b;
};
struct Rich {
    std::string name;
    std::vector<std::int32_t> values;
    template <class A>
    void serialize(A& ar) {
        ar(name, values);
    }
};

template <class T>
T round_trip(const T& in) {
    std::string bytes;
    if constexpr (ferry::Codec<T>::kDirect) {
        bytes.resize(ferry::Codec<T>::size(in));
        ferry::Codec<T>::write(in, reinterpret_cast<std::byte*>(bytes.data()));
    } else {
        ferry::Codec<T>::encode(in, bytes);
    }
    T out{};
    REQUIRE(ferry::Codec<T>::decode(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), out));
    return out;
}
}  // namespace

TEST_CASE("built-in and user types round-trip", "[codec]") {
    CHECK(round_trip(std::string("hello ferry")) == "hello ferry");
    CHECK(round_trip(std::string()).empty());
    CHECK(round_trip(ferry::Bytes{1, 2, 3}) == ferry::Bytes{1, 2, 3});
    CHECK(round_trip(42) == 42);
    const auto p = round_trip(Plain{7, 2.5});
    CHECK(p.a == 7);
    CHECK(p.b == 2.5);
    const auto r = round_trip(Rich{"imu", {1, -2, 3}});
    CHECK(r.name == "imu");
    CHECK(r.values == std::vector<std::int32_t>{1, -2, 3});
}

TEST_CASE("type names are stable for built-ins", "[codec]") {
    CHECK(ferry::type_name<std::string>() == "string");
    CHECK(ferry::type_name<ferry::Bytes>() == "bytes");
    CHECK(ferry::type_name<double>() == "float64");
    CHECK(ferry::type_name<std::int32_t>() == "int32");
    CHECK_THAT(ferry::type_name<Rich>(), Catch::Contains("Rich"));
}

TEST_CASE("a trivially copyable type of the wrong size does not decode", "[codec]") {
    const char bytes[3] = {1, 2, 3};
    Plain out{};
    CHECK_FALSE(ferry::Codec<Plain>::decode(reinterpret_cast<const std::byte*>(bytes), 3, out));
}

TEST_CASE("a hostile element count is refused before anything is allocated", "[codec][hostile]") {
    // name length 2^60, then nothing: a naive reader would try to allocate an exabyte.
    std::string bytes(8, '\0');
    const std::uint64_t huge = 1ull << 60;
    std::memcpy(bytes.data(), &huge, 8);
    Rich out;
    CHECK_FALSE(ferry::Codec<Rich>::decode(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), out));

    std::string truncated;
    ferry::Codec<Rich>::encode(Rich{"imu", {1, 2, 3}}, truncated);
    truncated.resize(truncated.size() - 1);
    CHECK_FALSE(ferry::Codec<Rich>::decode(reinterpret_cast<const std::byte*>(truncated.data()), truncated.size(), out));
}
