// The codec for any type with a cereal serialize (or save/load) function: cereal's binary
// format on the way out, and on the way in an archive that never trusts a length it reads
// (a size larger than the bytes left is refused before anything is allocated).
//
//   struct Pose { double x, y; std::string frame;
//                 template <class A> void serialize(A& a) { a(x, y, frame); } };
//   auto pub = node.advertise<Pose>("pose");
#pragma once

#include <cstring>
#include <sstream>
#include <string>

#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <ferry/codec.hpp>

namespace ferry::detail {

// A cereal input archive over a byte range that refuses impossible sizes.
class BoundedInputArchive : public cereal::InputArchive<BoundedInputArchive, cereal::AllowEmptyClassElision> {
public:
    BoundedInputArchive(const std::byte* data, std::size_t size)
        : cereal::InputArchive<BoundedInputArchive, cereal::AllowEmptyClassElision>(this),
          data_(data),
          left_(size) {}

    void loadBinary(void* out, std::size_t n) {
        if (n > left_) throw cereal::Exception("message truncated");
        if (n == 0) return;  // an empty vector's data() may be null: memcpy must not see it
        std::memcpy(out, data_, n);
        data_ += n;
        left_ -= n;
    }
    std::size_t left() const noexcept { return left_; }

private:
    const std::byte* data_;
    std::size_t left_;
};

template <class T>
inline std::enable_if_t<std::is_arithmetic<T>::value> CEREAL_LOAD_FUNCTION_NAME(BoundedInputArchive& ar, T& t) {
    ar.loadBinary(std::addressof(t), sizeof(t));
}
template <class T>
inline void CEREAL_SERIALIZE_FUNCTION_NAME(BoundedInputArchive& ar, cereal::NameValuePair<T>& t) {
    ar(t.value);
}
template <class T>
inline void CEREAL_SERIALIZE_FUNCTION_NAME(BoundedInputArchive& ar, cereal::SizeTag<T>& t) {
    ar(t.size);
    // Every element takes at least one byte: a larger count is a lie from the sender.
    if (static_cast<unsigned long long>(t.size) > ar.left())
        throw cereal::Exception("element count larger than the message");
}
template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(BoundedInputArchive& ar, cereal::BinaryData<T>& bd) {
    ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace ferry::detail

CEREAL_REGISTER_ARCHIVE(ferry::detail::BoundedInputArchive)
namespace cereal::traits::detail {
template <>
struct get_output_from_input<ferry::detail::BoundedInputArchive> {
    using type = cereal::BinaryOutputArchive;
};
}  // namespace cereal::traits::detail

namespace ferry {

template <class T, class Enable>
struct Codec {
    static constexpr bool kDirect = false;
    static void encode(const T& msg, std::string& out) {
        std::ostringstream os(std::ios::binary);
        {
            cereal::BinaryOutputArchive ar(os);
            ar(msg);
        }
        out = std::move(os).str();
    }
    static bool decode(const std::byte* data, std::size_t size, T& out) {
        try {
            detail::BoundedInputArchive ar(data, size);
            ar(out);
            return true;
        } catch (const std::exception&) {
            return false;
        }
    }
};

}  // namespace ferry
