// Messages of a user type as JSON from the type's schema alone (no type-support module): the
// JSON Schema that <ferry/json_schema.hpp> generates says how each field travels ("ferryEncoding",
// "ferryWire", "ferryOffset"), which is enough to walk cereal's binary form or a memcpy'd struct.
// Used by `ferry bag echo` for files recorded with --types.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace ferry::cli {

class SchemaDecoder {
public:
    // Nullptr (and `error` set) when `schema` is not JSON or does not say how its type travels.
    static std::unique_ptr<SchemaDecoder> make(const std::string& schema, std::string& error);
    ~SchemaDecoder();

    // The message as one line of JSON, in cereal's JSON form (what a type-support module prints);
    // nullopt and `error` set when the bytes do not fit the schema.
    std::optional<std::string> to_json(const std::byte* data, std::size_t size, std::string& error) const;

    struct Node;

private:
    SchemaDecoder();
    std::unique_ptr<Node> root_;
    bool memcpy_ = false;
    std::size_t size_ = 0;
};

}  // namespace ferry::cli
