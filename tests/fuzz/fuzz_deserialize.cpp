// Fuzz target: decoding a user type (cereal, bounded archive) from bytes another process wrote.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <cereal/types/map.hpp>

#include <ferry/cereal.hpp>

namespace {
struct Nested {
    std::string name;
    std::vector<std::vector<double>> rows;
    std::map<std::string, std::int32_t> tags;
    template <class A>
    void serialize(A& ar) {
        ar(name, rows, tags);
    }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Nested out;
    ferry::Codec<Nested>::decode(reinterpret_cast<const std::byte*>(data), size, out);
    std::string s;
    ferry::Codec<std::string>::decode(reinterpret_cast<const std::byte*>(data), size, s);
    return 0;
}
