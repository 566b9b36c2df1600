// A JSON Schema for a user type, derived from the JSON its type-support module prints for one
// message (cereal's JSON archive mirrors the `serialize` function: member names, nesting,
// numbers vs strings vs arrays). Used by `ferry record --types MODULE` for MCAP schema records.
#pragma once

#include <string>

namespace ferry::cli {

// The schema (one line), or "" when `sample_json` is not valid JSON.
std::string json_schema_from_sample(const std::string& type, const std::string& sample_json);

}  // namespace ferry::cli
