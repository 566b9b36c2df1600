#include "json_schema.hpp"

#include <cctype>
#include <cstring>
#include <stdexcept>

#include "output.hpp"

namespace ferry::cli {

namespace {

class SchemaOf {
public:
    explicit SchemaOf(const std::string& s) : s_(s) {}

    std::string document() {
        std::string v = value(0);
        ws();
        if (i_ != s_.size()) throw std::runtime_error("trailing characters");
        return v;
    }

private:
    void ws() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    char peek() {
        ws();
        if (i_ >= s_.size()) throw std::runtime_error("unexpected end");
        return s_[i_];
    }
    void expect(char c) {
        if (peek() != c) throw std::runtime_error("unexpected character");
        ++i_;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (i_ < s_.size() && s_[i_] != '"') {
            if (s_[i_] == '\\') {
                if (++i_ >= s_.size()) break;
                out += s_[i_] == 'u' ? '?' : s_[i_];
                if (s_[i_] == 'u') i_ += 4;
                ++i_;
            } else {
                out += s_[i_++];
            }
        }
        expect('"');
        return out;
    }
    std::string value(int depth) {
        if (depth > 64) throw std::runtime_error("nested too deeply");
        const char c = peek();
        if (c == '{') {
            ++i_;
            std::string props, required;
            if (peek() != '}') {
                while (true) {
                    const std::string key = string();
                    expect(':');
                    const std::string k = json_escape(key);
                    props += (props.empty() ? "" : ",") + k + ":" + value(depth + 1);
                    required += (required.empty() ? "" : ",") + k;
                    if (peek() == ',') {
                        ++i_;
                        continue;
                    }
                    break;
                }
            }
            expect('}');
            return R"({"type":"object","properties":{)" + props + R"(},"required":[)" + required + "]}";
        }
        if (c == '[') {
            ++i_;
            std::string items;
            if (peek() != ']') {
                while (true) {
                    std::string item = value(depth + 1);
                    if (items.empty()) items = item;  // the first element stands for all
                    if (peek() == ',') {
                        ++i_;
                        continue;
                    }
                    break;
                }
            }
            expect(']');
            return items.empty() ? std::string(R"({"type":"array"})") : R"({"type":"array","items":)" + items + "}";
        }
        if (c == '"') {
            string();
            return R"({"type":"string"})";
        }
        for (const char* word : {"true", "false", "null"}) {
            if (s_.compare(i_, std::char_traits<char>::length(word), word) == 0) {
                i_ += std::char_traits<char>::length(word);
                return word[0] == 'n' ? R"({"type":"null"})" : R"({"type":"boolean"})";
            }
        }
        const std::size_t start = i_;
        bool fraction = false;
        while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || std::strchr("+-.eE", s_[i_]))) {
            fraction = fraction || std::strchr(".eE", s_[i_]) != nullptr;
            ++i_;
        }
        if (i_ == start) throw std::runtime_error("not a JSON value");
        return fraction ? R"({"type":"number"})" : R"({"type":"integer"})";
    }

    const std::string& s_;
    std::size_t i_ = 0;
};

}  // namespace

std::string json_schema_from_sample(const std::string& type, const std::string& sample_json) {
    std::string body;
    try {
        body = SchemaOf(sample_json).document();
    } catch (const std::exception&) {
        return "";
    }
    // body starts with '{': splice the document keywords in front of its own.
    return R"({"$schema":"https://json-schema.org/draft/2020-12/schema","title":)" + json_escape(type) +
           R"(,"description":"ferry type (cereal binary on the wire); derived from its type-support module's JSON",)" +
           body.substr(1);
}

}  // namespace ferry::cli
