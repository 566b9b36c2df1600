#include <array>
#include <cerrno>
#include <cstring>

#include <lz4frame.h>
#include <zstd.h>

#include "mcap.hpp"
#include "records.hpp"

namespace ferry::mcap {

struct Writer::ChunkIndexEntry {
    std::uint64_t start_time, end_time, chunk_offset, chunk_length;
    std::map<std::uint16_t, std::uint64_t> message_index_offsets;
    std::uint64_t message_index_length;
    std::string compression;
    std::uint64_t compressed_size, uncompressed_size;
};

const char* compression_name(Compression c) {
    switch (c) {
        case Compression::zstd: return "zstd";
        case Compression::lz4: return "lz4";
        case Compression::none: break;
    }
    return "none";
}

bool parse_compression(const std::string& text, Compression& out) {
    if (text == "none") out = Compression::none;
    else if (text == "zstd") out = Compression::zstd;
    else if (text == "lz4") out = Compression::lz4;
    else return false;
    return true;
}

// Slicing-by-8: 4 MiB camera frames are checksummed twice per chunk (chunk and data section), so
// the byte-at-a-time loop (~0.4 GB/s) would cap recording below the disk's speed.
std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc) {
    static const auto tables = [] {
        std::array<std::array<std::uint32_t, 256>, 8> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (std::uint32_t i = 0; i < 256; ++i)
            for (std::size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
        return t;
    }();
    const auto* p = static_cast<const std::uint8_t*>(data);
    crc = ~crc;
    while (size >= 8) {
        const std::uint32_t lo = crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                                        std::uint32_t{p[3]} << 24);
        crc = tables[7][lo & 0xFF] ^ tables[6][(lo >> 8) & 0xFF] ^ tables[5][(lo >> 16) & 0xFF] ^ tables[4][lo >> 24] ^
              tables[3][p[4]] ^ tables[2][p[5]] ^ tables[1][p[6]] ^ tables[0][p[7]];
        p += 8;
        size -= 8;
    }
    while (size--) crc = tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

FormatError::FormatError(const std::string& file, std::uint64_t off, const std::string& what)
    : std::runtime_error(file + ": byte " + std::to_string(off) + ": " + what), offset(off) {}

Writer::Writer(const std::string& path, WriterOptions options) : path_(path), options_(std::move(options)) {
    file_ = std::fopen(path.c_str(), "wb");
    if (!file_) throw WriteError("cannot create " + path + ": " + std::strerror(errno));
    start_file();
}

Writer::~Writer() {
    try {
        close();
    } catch (...) {
    }
}

void Writer::start_file() {
    put(kMagic, sizeof kMagic);
    std::string body;
    put_string(body, options_.profile);
    put_string(body, options_.library);
    put_record(op::kHeader, body);
    // The header reaches the file at once: a recording exists (and is readable) from the start.
    if (std::fflush(file_) != 0) throw WriteError("cannot write " + path_ + ": " + std::strerror(errno));
}

void Writer::put(const void* data, std::size_t size) {
    if (size == 0) return;
    if (std::fwrite(data, 1, size, file_) != size)
        throw WriteError("cannot write " + path_ + ": " + std::strerror(errno));
    data_crc_ = crc32(data, size, data_crc_);
    offset_ += size;
}

void Writer::put_record(std::uint8_t opcode, const std::string& body) {
    std::string head;
    put_u8(head, opcode);
    put_u64(head, body.size());
    put(head.data(), head.size());
    put(body.data(), body.size());
}

std::uint16_t Writer::add_schema(const std::string& name, const std::string& encoding, const std::string& data) {
    if (schemas_.size() >= 0xFFFE) throw WriteError("too many schemas for one MCAP file: " + path_);
    Schema s{static_cast<std::uint16_t>(schemas_.size() + 1), name, encoding, data};
    put_record(op::kSchema, encode_schema(s));
    schemas_.push_back(std::move(s));
    return schemas_.back().id;
}

std::uint16_t Writer::add_channel(std::uint16_t schema_id, const std::string& topic, const std::string& message_encoding,
                                  const KeyValues& metadata) {
    if (channels_.size() >= 0xFFFE) throw WriteError("too many channels for one MCAP file: " + path_);
    Channel c{static_cast<std::uint16_t>(channels_.size()), schema_id, topic, message_encoding, metadata};
    put_record(op::kChannel, encode_channel(c));
    channels_.push_back(std::move(c));
    return channels_.back().id;
}

void Writer::write(const Message& m) {
    append(m);
    if (chunk_full()) flush_chunk();
}

void Writer::append(const Message& m) {
    if (closed_) throw WriteError("write to closed file " + path_);
    if (chunk_.empty() || m.log_time < chunk_start_) chunk_start_ = m.log_time;
    if (chunk_.empty() || m.log_time > chunk_end_) chunk_end_ = m.log_time;
    chunk_index_[m.channel_id].emplace_back(m.log_time, chunk_.size());
    put_u8(chunk_, op::kMessage);
    put_u64(chunk_, 2 + 4 + 8 + 8 + m.size);
    put_u16(chunk_, m.channel_id);
    put_u32(chunk_, m.sequence);
    put_u64(chunk_, m.log_time);
    put_u64(chunk_, m.publish_time);
    chunk_.append(reinterpret_cast<const char*>(m.data), m.size);
    if (message_count_ == 0 || m.log_time < start_time_) start_time_ = m.log_time;
    if (message_count_ == 0 || m.log_time > end_time_) end_time_ = m.log_time;
    ++message_count_;
    ++channel_counts_[m.channel_id];
}

void Writer::flush_chunk() {
    if (chunk_.empty() || closed_) return;
    const std::uint32_t crc = crc32(chunk_.data(), chunk_.size());
    const char* name = "";
    const std::string* payload = &chunk_;
    if (options_.compression == Compression::zstd) {
        name = "zstd";
        compressed_.resize(ZSTD_compressBound(chunk_.size()));
        const std::size_t n =
            ZSTD_compress(compressed_.data(), compressed_.size(), chunk_.data(), chunk_.size(), options_.zstd_level);
        if (ZSTD_isError(n)) throw WriteError("zstd compression failed for " + path_ + ": " + ZSTD_getErrorName(n));
        compressed_.resize(n);
        payload = &compressed_;
    } else if (options_.compression == Compression::lz4) {
        name = "lz4";
        LZ4F_preferences_t prefs{};
        prefs.frameInfo.contentSize = chunk_.size();
        compressed_.resize(LZ4F_compressFrameBound(chunk_.size(), &prefs));
        const std::size_t n =
            LZ4F_compressFrame(compressed_.data(), compressed_.size(), chunk_.data(), chunk_.size(), &prefs);
        if (LZ4F_isError(n)) throw WriteError("lz4 compression failed for " + path_ + ": " + LZ4F_getErrorName(n));
        compressed_.resize(n);
        payload = &compressed_;
    }
    std::string head;
    put_u64(head, chunk_start_);
    put_u64(head, chunk_end_);
    put_u64(head, chunk_.size());
    put_u32(head, crc);
    put_string(head, name);
    put_u64(head, payload->size());
    ChunkIndexEntry ci{chunk_start_, chunk_end_, offset_, 0, {}, 0, name, payload->size(), chunk_.size()};
    std::string rec;
    put_u8(rec, op::kChunk);
    put_u64(rec, head.size() + payload->size());
    put(rec.data(), rec.size());
    put(head.data(), head.size());
    put(payload->data(), payload->size());
    ci.chunk_length = offset_ - ci.chunk_offset;
    const std::uint64_t index_start = offset_;
    for (const auto& [channel, entries] : chunk_index_) {
        ci.message_index_offsets[channel] = offset_;
        std::string body;
        put_u16(body, channel);
        put_u32(body, static_cast<std::uint32_t>(entries.size() * 16));
        for (const auto& [t, off] : entries) {
            put_u64(body, t);
            put_u64(body, off);
        }
        put_record(op::kMessageIndex, body);
    }
    ci.message_index_length = offset_ - index_start;
    chunk_indexes_.push_back(std::move(ci));
    chunk_.clear();
    chunk_index_.clear();
    // To the kernel now: a recorder killed after this point leaves the chunk readable.
    if (std::fflush(file_) != 0) throw WriteError("cannot write " + path_ + ": " + std::strerror(errno));
}

void Writer::write_metadata(const std::string& name, const KeyValues& entries) {
    flush_chunk();
    std::string body;
    put_string(body, name);
    put_map(body, entries);
    metadata_indexes_.push_back({offset_, 9 + body.size(), name});
    put_record(op::kMetadata, body);
}

std::uint64_t Writer::approximate_size() const { return offset_ + chunk_.size(); }

void Writer::close() {
    if (closed_ || !file_) return;
    flush_chunk();
    closed_ = true;
    std::string body;
    put_u32(body, data_crc_);
    put_record(op::kDataEnd, body);

    const std::uint64_t summary_start = offset_;
    std::uint32_t summary_crc = 0;
    struct Group {
        std::uint8_t opcode;
        std::uint64_t start, length;
    };
    std::vector<Group> groups;
    auto summary_record = [&](std::uint8_t opcode, const std::string& b) {
        if (groups.empty() || groups.back().opcode != opcode) groups.push_back({opcode, offset_, 0});
        const std::uint64_t before = offset_;
        put_record(opcode, b);
        groups.back().length += offset_ - before;
    };
    // The CRC of the summary covers everything from here to the footer's CRC field.
    data_crc_ = 0;
    for (const auto& s : schemas_) summary_record(op::kSchema, encode_schema(s));
    for (const auto& c : channels_) summary_record(op::kChannel, encode_channel(c));
    {
        std::string b;
        put_u64(b, message_count_);
        put_u16(b, static_cast<std::uint16_t>(schemas_.size()));
        put_u32(b, static_cast<std::uint32_t>(channels_.size()));
        put_u32(b, 0);  // attachments
        put_u32(b, static_cast<std::uint32_t>(metadata_indexes_.size()));
        put_u32(b, static_cast<std::uint32_t>(chunk_indexes_.size()));
        put_u64(b, start_time_);
        put_u64(b, end_time_);
        std::string counts;
        for (const auto& [ch, n] : channel_counts_) {
            put_u16(counts, ch);
            put_u64(counts, n);
        }
        put_u32(b, static_cast<std::uint32_t>(counts.size()));
        b += counts;
        summary_record(op::kStatistics, b);
    }
    for (const auto& ci : chunk_indexes_) {
        std::string b;
        put_u64(b, ci.start_time);
        put_u64(b, ci.end_time);
        put_u64(b, ci.chunk_offset);
        put_u64(b, ci.chunk_length);
        std::string offs;
        for (const auto& [ch, off] : ci.message_index_offsets) {
            put_u16(offs, ch);
            put_u64(offs, off);
        }
        put_u32(b, static_cast<std::uint32_t>(offs.size()));
        b += offs;
        put_u64(b, ci.message_index_length);
        put_string(b, ci.compression);
        put_u64(b, ci.compressed_size);
        put_u64(b, ci.uncompressed_size);
        summary_record(op::kChunkIndex, b);
    }
    for (const auto& mi : metadata_indexes_) {
        std::string b;
        put_u64(b, mi.offset);
        put_u64(b, mi.length);
        put_string(b, mi.name);
        summary_record(op::kMetadataIndex, b);
    }
    const std::uint64_t summary_offset_start = offset_;
    for (const auto& g : groups) {
        std::string b;
        put_u8(b, g.opcode);
        put_u64(b, g.start);
        put_u64(b, g.length);
        put_record(op::kSummaryOffset, b);
    }
    std::string footer;
    put_u8(footer, op::kFooter);
    put_u64(footer, 8 + 8 + 4);
    put_u64(footer, summary_start);
    put_u64(footer, summary_offset_start);
    put(footer.data(), footer.size());
    summary_crc = data_crc_;
    std::string tail;
    put_u32(tail, summary_crc);
    put(tail.data(), tail.size());
    put(kMagic, sizeof kMagic);
    const bool ok = std::fflush(file_) == 0;
    const int err = errno;
    std::fclose(file_);
    file_ = nullptr;
    if (!ok) throw WriteError("cannot write " + path_ + ": " + std::strerror(err));
}

}  // namespace ferry::mcap
