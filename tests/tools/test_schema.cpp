// JSON Schemas generated from cereal serialize functions (<ferry/json_schema.hpp>), and the
// `ferry` tool's decoder that prints a message as JSON from its schema alone: for each type the
// schema is exact, and the decoder's JSON equals what the type-support module prints.
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <ferry/type_support.hpp>

#include "pose.hpp"
#include "pose_schema.hpp"
#include "schema_decode.hpp"

namespace test_schema {

struct Point {
    double x = 0;
    float y = 0;
    template <class A>
    void serialize(A& a) {
        a(CEREAL_NVP(x), CEREAL_NVP(y));
    }
};

// Nesting, vectors of structs and of vectors, and members without a name (value0, value1).
struct Path {
    std::string name;
    std::vector<Point> points;
    std::vector<std::vector<std::int32_t>> grid;
    bool closed = false;
    std::uint8_t flags = 0;
    std::int64_t stamp = 0;
    std::vector<bool> mask;
    template <class A>
    void serialize(A& a) {
        a(CEREAL_NVP(name), CEREAL_NVP(points), CEREAL_NVP(grid), CEREAL_NVP(closed), flags, stamp, CEREAL_NVP(mask));
    }
};

// Trivially copyable: travels by memcpy, padding included.
struct Imu {
    std::uint8_t id = 0;
    double ax = 0;
    std::int16_t temp = 0;
    Point p;  // double + float: trivially copyable too
    template <class A>
    void serialize(A& a) {
        a(CEREAL_NVP(id), CEREAL_NVP(ax), CEREAL_NVP(temp), CEREAL_NVP(p));
    }
};
static_assert(std::is_trivially_copyable_v<Imu>);

}  // namespace test_schema

FERRY_TYPE_NAME(test_schema::Path, "test/Path")
FERRY_TYPE_NAME(test_schema::Imu, "test/Imu")

namespace {

template <class T>
std::string bytes_of(const T& v) {
    if constexpr (ferry::Codec<T>::kDirect) {
        std::string out(ferry::Codec<T>::size(v), '\0');
        ferry::Codec<T>::write(v, reinterpret_cast<std::byte*>(out.data()));
        return out;
    } else {
        std::string out;
        ferry::Codec<T>::encode(v, out);
        return out;
    }
}

// The decoder's JSON for `v` from the schema of T, checked against the module's own JSON.
template <class T>
std::string decode_with_schema(const T& v) {
    std::string error;
    auto d = ferry::cli::SchemaDecoder::make(ferry::json_schema<T>(), error);
    INFO(error);
    REQUIRE(d);
    const std::string bytes = bytes_of(v);
    auto json = d->to_json(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), error);
    INFO(error);
    REQUIRE(json);
    CHECK(*json == ferry::type_support::detail::to_json<T>(bytes.data(), bytes.size()));
    return *json;
}

}  // namespace

TEST_CASE("json_schema: demo::Pose from its serialize function, exactly", "[tools][schema]") {
    CHECK(ferry::json_schema<demo::Pose>() == kPoseJsonSchema);
}

TEST_CASE("json_schema: nested structs, vectors of structs and of vectors, unnamed members", "[tools][schema]") {
    CHECK(ferry::json_schema<test_schema::Path>() ==
          R"({"$schema":"https://json-schema.org/draft/2020-12/schema","title":"test/Path","ferryEncoding":"cereal",)"
          R"("type":"object","properties":{"name":{"type":"string","ferryWire":"string"},)"
          R"("points":{"type":"array","ferryWire":"sequence","items":{"type":"object","properties":{)"
          R"("x":{"type":"number","ferryWire":"float64"},"y":{"type":"number","ferryWire":"float32"}},)"
          R"("required":["x","y"]}},)"
          R"("grid":{"type":"array","ferryWire":"sequence","items":{"type":"array","ferryWire":"sequence",)"
          R"("items":{"type":"integer","ferryWire":"int32"}}},)"
          R"("closed":{"type":"boolean","ferryWire":"bool"},"value0":{"type":"integer","ferryWire":"uint8"},)"
          R"("value1":{"type":"integer","ferryWire":"int64"},)"
          R"("mask":{"type":"array","ferryWire":"sequence","items":{"type":"boolean","ferryWire":"bool"}}},)"
          R"("required":["name","points","grid","closed","value0","value1","mask"]})");
}

TEST_CASE("json_schema: a trivially copyable type travels by memcpy, with each member's offset", "[tools][schema]") {
    CHECK(ferry::json_schema<test_schema::Imu>() ==
          R"({"$schema":"https://json-schema.org/draft/2020-12/schema","title":"test/Imu","ferryEncoding":"memcpy",)"
          R"("ferrySize":40,"type":"object","properties":{)"
          R"("id":{"type":"integer","ferryWire":"uint8","ferryOffset":0},)"
          R"("ax":{"type":"number","ferryWire":"float64","ferryOffset":8},)"
          R"("temp":{"type":"integer","ferryWire":"int16","ferryOffset":16},)"
          R"("p":{"type":"object","properties":{"x":{"type":"number","ferryWire":"float64","ferryOffset":0},)"
          R"("y":{"type":"number","ferryWire":"float32","ferryOffset":8}},"required":["x","y"],"ferryOffset":24}},)"
          R"("required":["id","ax","temp","p"]})");
}

TEST_CASE("schema decoder: prints what the type-support module prints, from the schema alone", "[tools][schema]") {
    SECTION("demo::Pose") {
        CHECK(decode_with_schema(demo::Pose{"map", 1.5, -2.25, 0.125, {0.5, 0.0, 0.5}}) ==
              R"({"frame":"map","x":1.5,"y":-2.25,"theta":0.125,"covariance":[0.5,0.0,0.5]})");
        CHECK(decode_with_schema(demo::Pose{"", 0, 0, 0, {}}) ==
              R"({"frame":"","x":0.0,"y":0.0,"theta":0.0,"covariance":[]})");
    }
    SECTION("nested and vectors") {
        test_schema::Path p;
        p.name = "a \"quoted\"\nname";
        p.points = {{1.0, 0.5f}, {-3.0, 2.0f}};
        p.grid = {{1, -2}, {}, {2147483647}};
        p.closed = true;
        p.flags = 200;
        p.stamp = -1234567890123;
        p.mask = {true, false, true};
        CHECK(decode_with_schema(p) ==
              R"({"name":"a \"quoted\"\nname","points":[{"x":1.0,"y":0.5},{"x":-3.0,"y":2.0}],)"
              R"("grid":[[1,-2],[],[2147483647]],"closed":true,"value0":200,"value1":-1234567890123,)"
              R"("mask":[true,false,true]})");
    }
    SECTION("memcpy with padding") {
        test_schema::Imu imu;
        imu.id = 7;
        imu.ax = 9.81;
        imu.temp = -40;
        imu.p = {0.25, -1.5f};
        CHECK(decode_with_schema(imu) == R"({"id":7,"ax":9.81,"temp":-40,"p":{"x":0.25,"y":-1.5}})");
    }
}

TEST_CASE("schema decoder: bytes that do not fit, and schemas that cannot decode, are errors", "[tools][schema]") {
    std::string error;
    auto d = ferry::cli::SchemaDecoder::make(ferry::json_schema<demo::Pose>(), error);
    REQUIRE(d);
    std::string bytes = bytes_of(demo::Pose{"map", 1, 2, 3, {4}});
    CHECK_FALSE(d->to_json(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size() - 1, error));
    CHECK(error.find("truncated") != std::string::npos);
    bytes += "x";
    CHECK_FALSE(d->to_json(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), error));
    CHECK(error.find("1 bytes left over") != std::string::npos);
    // A huge count is refused before anything is allocated.
    std::string lie(16, '\xff');
    CHECK_FALSE(d->to_json(reinterpret_cast<const std::byte*>(lie.data()), lie.size(), error));

    CHECK_FALSE(ferry::cli::SchemaDecoder::make("not json", error));
    CHECK(error.rfind("schema: ", 0) == 0);
    CHECK_FALSE(ferry::cli::SchemaDecoder::make(R"({"type":"object","title":"x"})", error));
    CHECK(error.find("ferryEncoding") != std::string::npos);
    CHECK_FALSE(ferry::cli::SchemaDecoder::make(
        R"({"ferryEncoding":"cereal","type":"object","properties":{"m":{"type":"array","ferryWire":"sequence"}}})",
        error));
    CHECK(error.find("element type is unknown") != std::string::npos);
}
