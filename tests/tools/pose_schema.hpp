// The JSON schema demo::Pose's serialize function gives, written out by hand: what
// ferry::json_schema<demo::Pose>() must return and what `ferry record --types` must store.
#pragma once

inline constexpr const char* kPoseJsonSchema =
    R"({"$schema":"https://json-schema.org/draft/2020-12/schema","title":"demo/Pose","ferryEncoding":"cereal",)"
    R"("type":"object","properties":{"frame":{"type":"string","ferryWire":"string"},)"
    R"("x":{"type":"number","ferryWire":"float64"},"y":{"type":"number","ferryWire":"float64"},)"
    R"("theta":{"type":"number","ferryWire":"float64"},)"
    R"("covariance":{"type":"array","ferryWire":"sequence","items":{"type":"number","ferryWire":"float64"}}},)"
    R"("required":["frame","x","y","theta","covariance"]})";
