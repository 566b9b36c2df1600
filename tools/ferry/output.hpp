// Output of the ferry command: aligned tables for people, one-line JSON for scripts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cli {

// A JSON value written in one line. Build objects and arrays with add()/push().
class Json {
public:
    static Json object();
    static Json array();
    static Json string(const std::string& s);
    static Json number(double v);
    static Json integer(std::int64_t v);
    static Json unsigned_integer(std::uint64_t v);
    static Json boolean(bool v);
    static Json null();
    // Already-serialized JSON (from a type-support module).
    static Json raw(std::string text);

    Json& add(const std::string& key, const Json& value);  // objects
    Json& push(const Json& value);                          // arrays
    const std::string& str() const { return text_; }

private:
    enum class Kind { object, array, scalar };
    Kind kind_ = Kind::scalar;
    bool empty_ = true;
    std::string text_;  // without the closing bracket while open
    std::string close_;
    friend std::string to_string(const Json& j);
};

std::string to_string(const Json& j);
// User text (names, paths, messages) for a human-readable line: control characters escaped, so a
// name cannot split the line or drive the terminal. Table cells and errors go through it.
std::string shown(const std::string& s);
std::string json_escape(const std::string& s);

// Columns aligned to the widest cell; numeric columns right-aligned.
class Table {
public:
    explicit Table(std::vector<std::string> headers, std::vector<bool> right_aligned = {});
    void add_row(std::vector<std::string> cells);
    bool empty() const { return rows_.empty(); }
    std::string str() const;

private:
    std::vector<std::string> headers_;
    std::vector<bool> right_;
    std::vector<std::vector<std::string>> rows_;
};

// 1536 -> "1.5 KiB", 3.2e6 -> "3.1 MiB" (with "/s" appended by the caller where needed).
std::string human_bytes(double bytes);
// Fixed-point with `decimals` digits.
std::string fixed(double v, int decimals);
// A duration in seconds shown with a fitting unit: "850 ns", "12.3 us", "4.56 ms", "1.20 s".
std::string human_seconds(double s);

}  // namespace ferry::cli
