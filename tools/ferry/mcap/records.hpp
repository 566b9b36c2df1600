// MCAP record layout: opcodes, little-endian encoding, and a bounds-checked decoder.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "mcap.hpp"

namespace ferry::mcap {

inline constexpr char kMagic[8] = {'\x89', 'M', 'C', 'A', 'P', '0', '\r', '\n'};

namespace op {
inline constexpr std::uint8_t kHeader = 0x01, kFooter = 0x02, kSchema = 0x03, kChannel = 0x04, kMessage = 0x05,
                              kChunk = 0x06, kMessageIndex = 0x07, kChunkIndex = 0x08, kAttachment = 0x09,
                              kAttachmentIndex = 0x0A, kStatistics = 0x0B, kMetadata = 0x0C, kMetadataIndex = 0x0D,
                              kSummaryOffset = 0x0E, kDataEnd = 0x0F;
}

inline void put_u8(std::string& b, std::uint8_t v) { b.push_back(static_cast<char>(v)); }
template <class T>
inline void put_le(std::string& b, T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline void put_u16(std::string& b, std::uint16_t v) { put_le(b, v); }
inline void put_u32(std::string& b, std::uint32_t v) { put_le(b, v); }
inline void put_u64(std::string& b, std::uint64_t v) { put_le(b, v); }
inline void put_string(std::string& b, const std::string& s) {
    put_u32(b, static_cast<std::uint32_t>(s.size()));
    b += s;
}
inline void put_map(std::string& b, const KeyValues& m) {
    std::string body;
    for (const auto& [k, v] : m) {
        put_string(body, k);
        put_string(body, v);
    }
    put_u32(b, static_cast<std::uint32_t>(body.size()));
    b += body;
}

inline std::string encode_schema(const Schema& s) {
    std::string b;
    put_u16(b, s.id);
    put_string(b, s.name);
    put_string(b, s.encoding);
    put_string(b, s.data);  // bytes: uint32 length prefix, as a string
    return b;
}

inline std::string encode_channel(const Channel& c) {
    std::string b;
    put_u16(b, c.id);
    put_u16(b, c.schema_id);
    put_string(b, c.topic);
    put_string(b, c.message_encoding);
    put_map(b, c.metadata);
    return b;
}

// Reads fields of one record body; any read past its end throws FormatError naming the offset
// in the file (`base` is the file offset of data[0]).
class Cursor {
public:
    Cursor(const std::uint8_t* data, std::size_t size, std::uint64_t base, const std::string& file)
        : data_(data), size_(size), base_(base), file_(file) {}

    std::uint64_t offset() const { return base_ + pos_; }
    std::size_t remaining() const { return size_ - pos_; }
    bool done() const { return pos_ == size_; }

    void need(std::uint64_t n, const char* what) const {
        if (n > size_ - pos_)
            throw FormatError(file_, offset(),
                              std::string(what) + " needs " + std::to_string(n) + " bytes, record has " +
                                  std::to_string(size_ - pos_) + " left");
    }
    template <class T>
    T le(const char* what) {
        need(sizeof(T), what);
        T v = 0;
        for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(data_[pos_ + i]) << (8 * i));
        pos_ += sizeof(T);
        return v;
    }
    std::uint8_t u8(const char* w) { return le<std::uint8_t>(w); }
    std::uint16_t u16(const char* w) { return le<std::uint16_t>(w); }
    std::uint32_t u32(const char* w) { return le<std::uint32_t>(w); }
    std::uint64_t u64(const char* w) { return le<std::uint64_t>(w); }
    const std::uint8_t* bytes(std::uint64_t n, const char* what) {
        need(n, what);
        const auto* p = data_ + pos_;
        pos_ += static_cast<std::size_t>(n);
        return p;
    }
    std::string string(const char* what) {
        const std::uint32_t n = u32(what);
        const auto* p = bytes(n, what);
        return std::string(reinterpret_cast<const char*>(p), n);
    }
    // A uint32-prefixed region as a sub-cursor.
    Cursor sub(const char* what) {
        const std::uint32_t n = u32(what);
        const std::uint64_t at = offset();
        const auto* p = bytes(n, what);
        return Cursor(p, n, at, file_);
    }
    KeyValues map(const char* what) {
        Cursor c = sub(what);
        KeyValues m;
        while (!c.done()) {
            std::string k = c.string(what);
            m[std::move(k)] = c.string(what);
        }
        return m;
    }
    const std::uint8_t* rest() {
        const auto* p = data_ + pos_;
        pos_ = size_;
        return p;
    }
    [[noreturn]] void fail(const std::string& what) const { throw FormatError(file_, offset(), what); }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    std::uint64_t base_;
    const std::string& file_;
};

}  // namespace ferry::mcap
