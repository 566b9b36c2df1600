#include "schema_decode.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "output.hpp"

namespace ferry::cli {

namespace {

// Just enough JSON for a schema: objects keep their key order.
struct Value {
    enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
    std::string text;  // string; number as written
    std::vector<Value> items;
    std::vector<std::pair<std::string, Value>> members;

    const Value* get(const std::string& key) const {
        for (const auto& [k, v] : members)
            if (k == key) return &v;
        return nullptr;
    }
    std::string str(const std::string& key) const {
        const Value* v = get(key);
        return v && v->kind == Kind::string ? v->text : "";
    }
};

class Parser {
public:
    explicit Parser(const std::string& s) : s_(s) {}
    Value document() {
        Value v = value(0);
        ws();
        if (i_ != s_.size()) throw std::runtime_error("trailing characters");
        return v;
    }

private:
    void ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
    }
    char peek() {
        ws();
        if (i_ >= s_.size()) throw std::runtime_error("unexpected end");
        return s_[i_];
    }
    void expect(char c) {
        if (peek() != c) throw std::runtime_error(std::string("expected '") + c + "'");
        ++i_;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (true) {
            if (i_ >= s_.size()) throw std::runtime_error("unterminated string");
            const char c = s_[i_++];
            if (c == '"') break;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) throw std::runtime_error("unterminated string");
            const char e = s_[i_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    if (i_ + 4 > s_.size()) throw std::runtime_error("bad escape");
                    const unsigned long cp = std::stoul(s_.substr(i_, 4), nullptr, 16);
                    i_ += 4;
                    if (cp < 0x80) {
                        out += static_cast<char>(cp);
                    } else if (cp < 0x800) {
                        out += static_cast<char>(0xC0 | (cp >> 6));
                        out += static_cast<char>(0x80 | (cp & 0x3F));
                    } else {
                        out += static_cast<char>(0xE0 | (cp >> 12));
                        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
                        out += static_cast<char>(0x80 | (cp & 0x3F));
                    }
                    break;
                }
                default: out += e;
            }
        }
        return out;
    }
    Value value(int depth) {
        if (depth > 64) throw std::runtime_error("nested too deeply");
        Value v;
        const char c = peek();
        if (c == '{') {
            ++i_;
            v.kind = Value::Kind::object;
            if (peek() != '}') {
                while (true) {
                    std::string key = string();
                    expect(':');
                    v.members.emplace_back(std::move(key), value(depth + 1));
                    if (peek() != ',') break;
                    ++i_;
                }
            }
            expect('}');
        } else if (c == '[') {
            ++i_;
            v.kind = Value::Kind::array;
            if (peek() != ']') {
                while (true) {
                    v.items.push_back(value(depth + 1));
                    if (peek() != ',') break;
                    ++i_;
                }
            }
            expect(']');
        } else if (c == '"') {
            v.kind = Value::Kind::string;
            v.text = string();
        } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
            v.kind = Value::Kind::boolean;
            v.text = s_[i_] == 't' ? "true" : "false";
            i_ += v.text.size();
        } else if (s_.compare(i_, 4, "null") == 0) {
            i_ += 4;
        } else {
            const std::size_t start = i_;
            while (i_ < s_.size() && std::strchr("0123456789+-.eE", s_[i_]) && s_[i_] != '\0') ++i_;
            if (i_ == start) throw std::runtime_error("not a JSON value");
            v.kind = Value::Kind::number;
            v.text = s_.substr(start, i_ - start);
        }
        return v;
    }

    const std::string& s_;
    std::size_t i_ = 0;
};

}  // namespace

struct SchemaDecoder::Node {
    enum class Kind { object, array, leaf } kind = Kind::object;
    std::string wire;
    std::size_t offset = 0;
    bool has_offset = false;
    std::vector<std::pair<std::string, Node>> members;  // object, in serialization order
    std::unique_ptr<Node> items;                        // array
};

namespace {

using Node = SchemaDecoder::Node;

std::size_t wire_size(const std::string& wire) {
    if (wire == "bool" || wire == "int8" || wire == "uint8") return 1;
    if (wire == "int16" || wire == "uint16") return 2;
    if (wire == "int32" || wire == "uint32" || wire == "float32") return 4;
    if (wire == "int64" || wire == "uint64" || wire == "float64") return 8;
    return 0;
}

Node build(const Value& schema, bool memcpy, int depth) {
    if (depth > 64) throw std::runtime_error("schema nested too deeply");
    if (schema.kind != Value::Kind::object) throw std::runtime_error("a schema that is not an object");
    Node n;
    const std::string type = schema.str("type");
    if (const Value* off = schema.get("ferryOffset"); off && off->kind == Value::Kind::number) {
        n.offset = std::stoull(off->text);
        n.has_offset = true;
    }
    if (type == "object") {
        n.kind = Node::Kind::object;
        const Value* props = schema.get("properties");
        if (props && props->kind == Value::Kind::object)
            for (const auto& [name, sub] : props->members) n.members.emplace_back(name, build(sub, memcpy, depth + 1));
        if (memcpy)
            for (const auto& [name, m] : n.members)
                if (!m.has_offset) throw std::runtime_error("member '" + name + "' has no ferryOffset");
        return n;
    }
    if (type == "array") {
        n.kind = Node::Kind::array;
        n.wire = schema.str("ferryWire");
        if (memcpy) throw std::runtime_error("a memcpy type with an array member");
        if (n.wire != "sequence") throw std::runtime_error("an array that does not say how it travels");
        const Value* items = schema.get("items");
        if (!items) throw std::runtime_error("an array whose element type is unknown");
        n.items = std::make_unique<Node>(build(*items, memcpy, depth + 1));
        return n;
    }
    n.kind = Node::Kind::leaf;
    n.wire = schema.str("ferryWire");
    if (n.wire != "string" && wire_size(n.wire) == 0)
        throw std::runtime_error("a field that does not say how it travels ('" + n.wire + "')");
    if (memcpy && n.wire == "string") throw std::runtime_error("a memcpy type with a string member");
    return n;
}

std::string number_text(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    std::string s(buf, r.ptr);
    // cereal's JSON (rapidjson) writes a double with a fraction: 1.0, not 1.
    if (s.find_first_of(".e") == std::string::npos) s += ".0";
    return s;
}

template <class T>
T load(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

std::string leaf_text(const std::string& wire, const std::byte* p) {
    if (wire == "bool") return load<std::uint8_t>(p) ? "true" : "false";
    if (wire == "int8") return std::to_string(load<std::int8_t>(p));
    if (wire == "uint8") return std::to_string(load<std::uint8_t>(p));
    if (wire == "int16") return std::to_string(load<std::int16_t>(p));
    if (wire == "uint16") return std::to_string(load<std::uint16_t>(p));
    if (wire == "int32") return std::to_string(load<std::int32_t>(p));
    if (wire == "uint32") return std::to_string(load<std::uint32_t>(p));
    if (wire == "int64") return std::to_string(load<std::int64_t>(p));
    if (wire == "uint64") return std::to_string(load<std::uint64_t>(p));
    if (wire == "float32") return number_text(static_cast<double>(load<float>(p)));
    return number_text(load<double>(p));
}

// cereal's binary archive: values in order, sizes as uint64.
class CerealWalk {
public:
    CerealWalk(const std::byte* data, std::size_t size) : p_(data), left_(size) {}

    void value(const Node& n, std::string& out) {
        switch (n.kind) {
            case Node::Kind::leaf:
                if (n.wire == "string") {
                    const std::uint64_t len = load<std::uint64_t>(take(8));
                    if (len > left_) throw std::runtime_error("string longer than the message");
                    out += json_escape(std::string(reinterpret_cast<const char*>(take(len)), len));
                } else {
                    out += leaf_text(n.wire, take(wire_size(n.wire)));
                }
                return;
            case Node::Kind::array: {
                const std::uint64_t count = load<std::uint64_t>(take(8));
                if (count > left_) throw std::runtime_error("element count larger than the message");
                out += '[';
                for (std::uint64_t i = 0; i < count; ++i) {
                    if (i) out += ',';
                    value(*n.items, out);
                }
                out += ']';
                return;
            }
            case Node::Kind::object:
                out += '{';
                for (std::size_t i = 0; i < n.members.size(); ++i) {
                    if (i) out += ',';
                    out += json_escape(n.members[i].first) + ":";
                    value(n.members[i].second, out);
                }
                out += '}';
                return;
        }
    }
    std::size_t left() const { return left_; }

private:
    const std::byte* take(std::uint64_t n) {
        if (n > left_) throw std::runtime_error("message truncated");
        const std::byte* p = p_;
        p_ += n;
        left_ -= static_cast<std::size_t>(n);
        return p;
    }
    const std::byte* p_;
    std::size_t left_;
};

void memcpy_value(const Node& n, const std::byte* base, std::size_t size, std::size_t at, std::string& out) {
    if (n.kind == Node::Kind::leaf) {
        const std::size_t w = wire_size(n.wire);
        if (at > size || w > size - at) throw std::runtime_error("field past the end of the message");
        out += leaf_text(n.wire, base + at);
        return;
    }
    out += '{';
    for (std::size_t i = 0; i < n.members.size(); ++i) {
        if (i) out += ',';
        out += json_escape(n.members[i].first) + ":";
        memcpy_value(n.members[i].second, base, size, at + n.members[i].second.offset, out);
    }
    out += '}';
}

}  // namespace

SchemaDecoder::SchemaDecoder() = default;
SchemaDecoder::~SchemaDecoder() = default;

std::unique_ptr<SchemaDecoder> SchemaDecoder::make(const std::string& schema, std::string& error) {
    try {
        const Value doc = Parser(schema).document();
        if (doc.kind != Value::Kind::object) throw std::runtime_error("not a JSON object");
        const std::string encoding = doc.str("ferryEncoding");
        if (encoding != "cereal" && encoding != "memcpy")
            throw std::runtime_error("the schema does not say how the type travels (no ferryEncoding)");
        std::unique_ptr<SchemaDecoder> d(new SchemaDecoder);
        d->memcpy_ = encoding == "memcpy";
        if (d->memcpy_) {
            const Value* size = doc.get("ferrySize");
            if (!size || size->kind != Value::Kind::number) throw std::runtime_error("a memcpy type without ferrySize");
            d->size_ = std::stoull(size->text);
        }
        d->root_ = std::make_unique<Node>(build(doc, d->memcpy_, 0));
        return d;
    } catch (const std::exception& e) {
        error = std::string("schema: ") + e.what();
        return nullptr;
    }
}

std::optional<std::string> SchemaDecoder::to_json(const std::byte* data, std::size_t size, std::string& error) const {
    std::string out;
    try {
        if (memcpy_) {
            if (size != size_)
                throw std::runtime_error(std::to_string(size) + " bytes, the type has " + std::to_string(size_));
            memcpy_value(*root_, data, size, 0, out);
        } else {
            CerealWalk walk(data, size);
            walk.value(*root_, out);
            if (walk.left() != 0) throw std::runtime_error(std::to_string(walk.left()) + " bytes left over");
        }
    } catch (const std::exception& e) {
        error = std::string("cannot decode with the schema: ") + e.what();
        return std::nullopt;
    }
    return out;
}

}  // namespace ferry::cli
