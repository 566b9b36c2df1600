// A JSON Schema of a message type, generated from its cereal serialize (or save) function.
//
//   struct Pose { std::string frame; double x; std::vector<double> cov;
//                 template <class A> void serialize(A& a) { a(CEREAL_NVP(frame), CEREAL_NVP(x), CEREAL_NVP(cov)); } };
//   std::string schema = ferry::json_schema<Pose>();   // one line of JSON
//
// The schema describes the JSON that cereal's JSON archive (and so `ferry topic echo` and
// `ferry bag echo`) prints for the type: members named with CEREAL_NVP keep their names, others
// are "value0", "value1", ... in order; arithmetic types are "integer", "number" or "boolean",
// strings "string", std::vector "array" with the schema of its element as "items", any other type
// with a serialize function a nested "object" whose "required" lists the members in serialization
// order. It is built by running serialize on a default-constructed value, so a container that is
// not a std::vector is an "array" without "items" (its element type is not visible from an empty
// one).
//
// Next to the standard keywords, each schema says how the message travels, so a tool holding
// only the schema can decode the bytes (`ferry bag echo` does):
//   "ferryEncoding" (root): "cereal" (cereal's binary archive, what Publisher<T> sends for a type
//                   that is not trivially copyable) or "memcpy" (the object's bytes, with
//                   "ferrySize" = sizeof(T));
//   "ferryWire"     (leaves): "bool", "int8".."int64", "uint8".."uint64", "float32", "float64",
//                   "string" (cereal: a uint64 length, then the bytes); (arrays) "sequence" (a uint64
//                   count, then the elements);
//   "ferryOffset"   (members of a "memcpy" type): byte offset inside the enclosing object.
//
// Include this header only where cereal may be included (a type-support module, a test).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <type_traits>
#include <vector>

#include <ferry/cereal.hpp>
#include <ferry/codec.hpp>

namespace ferry::schema_detail {

struct Node {
    enum class Kind { object, array, leaf } kind = Kind::object;
    std::string name;
    std::string type;  // leaf: "integer", "number", "boolean", "string"
    std::string wire;  // leaf: "float64", ...; array: "sequence" ("" when unknown)
    std::ptrdiff_t offset = -1;
    std::vector<Node> children;  // object: members in order; array: at most one, the items
    std::size_t unnamed = 0;     // object: the next "valueN"
    const void* address = nullptr;
};

inline void append_escaped(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            static const char* hex = "0123456789abcdef";
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
}

// The schema keywords of `n` without the braces.
inline void write_body(std::string& out, const Node& n) {
    if (n.kind == Node::Kind::leaf) {
        out += "\"type\":\"" + n.type + "\",\"ferryWire\":\"" + n.wire + "\"";
    } else if (n.kind == Node::Kind::array) {
        out += "\"type\":\"array\"";
        if (!n.wire.empty()) out += ",\"ferryWire\":\"" + n.wire + "\"";
        if (!n.children.empty()) {
            out += ",\"items\":{";
            write_body(out, n.children.front());
            out += '}';
        }
    } else {
        out += "\"type\":\"object\",\"properties\":{";
        for (std::size_t i = 0; i < n.children.size(); ++i) {
            if (i) out += ',';
            append_escaped(out, n.children[i].name);
            out += ":{";
            write_body(out, n.children[i]);
            out += '}';
        }
        out += "},\"required\":[";
        for (std::size_t i = 0; i < n.children.size(); ++i) {
            if (i) out += ',';
            append_escaped(out, n.children[i].name);
        }
        out += ']';
    }
    if (n.offset >= 0) out += ",\"ferryOffset\":" + std::to_string(n.offset);
}

}  // namespace ferry::schema_detail

namespace ferry {

// A cereal output archive that writes no data: it records the shape of what is serialized.
class SchemaArchive : public cereal::OutputArchive<SchemaArchive, cereal::AllowEmptyClassElision> {
public:
    using Node = schema_detail::Node;

    SchemaArchive() : cereal::OutputArchive<SchemaArchive, cereal::AllowEmptyClassElision>(this) {
        root_.kind = Node::Kind::array;  // a holder: its one child is the value serialized
        stack_.push_back(&root_);
    }

    // The node of the value serialized (call after `ar(value)`); nullptr if nothing was.
    const Node* result() const { return root_.children.empty() ? nullptr : &root_.children.front(); }

    // Offsets of members are recorded relative to their enclosing object (for memcpy types).
    void record_offsets(bool on) { offsets_ = on; }

    // Implementation hooks for the prologue/save functions below.
    void set_next_name(const char* name) { next_name_ = name; }
    void start_object(const void* address) { stack_.push_back(&add(Node::Kind::object, address)); }
    void finish_object() {
        if (stack_.size() > 1) stack_.pop_back();
    }
    void leaf(const char* type, const char* wire, const void* address) {
        Node& n = add(Node::Kind::leaf, address);
        n.type = type;
        n.wire = wire;
    }
    // The current node (an object just started for a container) becomes an array.
    void make_array(const char* wire) {
        Node* n = stack_.back();
        if (n == &root_) return;
        n->kind = Node::Kind::array;
        n->wire = wire;
    }
    template <class T>
    void items_of() {
        make_array("sequence");
        T item{};
        (*this)(item);
    }

private:
    Node& add(Node::Kind kind, const void* address) {
        Node* parent = stack_.back();
        Node* n;
        if (parent->kind == Node::Kind::array) {
            // Only the first element describes the items; later ones are shaped the same.
            if (!parent->children.empty()) {
                discard_.emplace_back();
                n = &discard_.back();
            } else {
                parent->children.emplace_back();
                n = &parent->children.back();
            }
        } else {
            parent->children.emplace_back();
            n = &parent->children.back();
            n->name = next_name_ ? std::string(next_name_) : "value" + std::to_string(parent->unnamed++);
            if (offsets_ && parent->address && address)
                n->offset = static_cast<const char*>(address) - static_cast<const char*>(parent->address);
        }
        next_name_ = nullptr;
        n->kind = kind;
        n->address = address;
        return *n;
    }

    Node root_;
    std::vector<Node*> stack_;
    std::deque<Node> discard_;
    const char* next_name_ = nullptr;
    bool offsets_ = false;
};

// Values (arithmetic, strings) and wrappers (names, size tags) start no node of their own.
template <class T>
void prologue(SchemaArchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void epilogue(SchemaArchive&, const cereal::NameValuePair<T>&) {}
template <class T>
void prologue(SchemaArchive& ar, const cereal::SizeTag<T>&) {
    ar.make_array("sequence");
}
template <class T>
void epilogue(SchemaArchive&, const cereal::SizeTag<T>&) {}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void prologue(SchemaArchive&, const T&) {}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void epilogue(SchemaArchive&, const T&) {}
template <class C, class Tr, class A>
void prologue(SchemaArchive&, const std::basic_string<C, Tr, A>&) {}
template <class C, class Tr, class A>
void epilogue(SchemaArchive&, const std::basic_string<C, Tr, A>&) {}

// Anything else with a serialize/save function is an object (a container turns it into an array):
// not a number and not a type cereal saves as one value (minimal serialization).
template <class T>
constexpr bool is_schema_object() {
    return !std::is_arithmetic<T>::value &&
           !cereal::traits::has_minimal_base_class_serialization<T, cereal::traits::has_minimal_output_serialization,
                                                                 SchemaArchive>::value &&
           !cereal::traits::has_minimal_output_serialization<T, SchemaArchive>::value;
}
template <class T, cereal::traits::EnableIf<is_schema_object<T>()> = cereal::traits::sfinae>
void prologue(SchemaArchive& ar, const T& t) {
    ar.start_object(&t);
}
template <class T, cereal::traits::EnableIf<is_schema_object<T>()> = cereal::traits::sfinae>
void epilogue(SchemaArchive& ar, const T&) {
    ar.finish_object();
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(SchemaArchive& ar, const cereal::NameValuePair<T>& t) {
    ar.set_next_name(t.name);
    ar(t.value);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(SchemaArchive&, const cereal::SizeTag<T>&) {}

template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void CEREAL_SAVE_FUNCTION_NAME(SchemaArchive& ar, const T& t) {
    if constexpr (std::is_same<T, bool>::value) {
        ar.leaf("boolean", "bool", &t);
    } else if constexpr (std::is_floating_point<T>::value) {
        ar.leaf("number", sizeof(T) == 4 ? "float32" : sizeof(T) == 8 ? "float64" : "float128", &t);
    } else {
        constexpr bool s = std::is_signed<T>::value;
        ar.leaf("integer",
                sizeof(T) == 1   ? (s ? "int8" : "uint8")
                : sizeof(T) == 2 ? (s ? "int16" : "uint16")
                : sizeof(T) == 4 ? (s ? "int32" : "uint32")
                                 : (s ? "int64" : "uint64"),
                &t);
    }
}
template <class C, class Tr, class A>
void CEREAL_SAVE_FUNCTION_NAME(SchemaArchive& ar, const std::basic_string<C, Tr, A>& s) {
    ar.leaf("string", sizeof(C) == 1 ? "string" : "", &s);
}
// A vector's elements are described from a default-constructed one (the vector is empty).
template <class T, class A>
void CEREAL_SAVE_FUNCTION_NAME(SchemaArchive& ar, const std::vector<T, A>&) {
    ar.items_of<T>();
}
template <class A>
void CEREAL_SAVE_FUNCTION_NAME(SchemaArchive& ar, const std::vector<bool, A>&) {
    ar.items_of<bool>();
}

// The JSON Schema (one line) of T under the registry name ferry::type_name<T>().
template <class T>
std::string json_schema() {
    T value{};
    SchemaArchive ar;
    constexpr bool memcpy = Codec<T>::kDirect && std::is_trivially_copyable<T>::value;
    ar.record_offsets(memcpy);
    ar(value);
    std::string out = "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"title\":";
    schema_detail::append_escaped(out, type_name<T>());
    out += memcpy ? ",\"ferryEncoding\":\"memcpy\",\"ferrySize\":" + std::to_string(sizeof(T))
                  : std::string(",\"ferryEncoding\":\"cereal\"");
    if (const auto* n = ar.result()) {
        out += ',';
        schema_detail::write_body(out, *n);
    }
    out += '}';
    return out;
}

}  // namespace ferry

CEREAL_REGISTER_ARCHIVE(ferry::SchemaArchive)
