#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <lz4frame.h>
#include <zstd.h>

#include "mcap.hpp"
#include "records.hpp"

namespace ferry::mcap {

namespace {

// Random access to the bytes of a file or a buffer.
class Source {
public:
    virtual ~Source() = default;
    virtual std::uint64_t size() const = 0;
    // Reads exactly n bytes at off (the caller checked off + n <= size()).
    virtual void read(std::uint64_t off, std::size_t n, std::uint8_t* dst) = 0;
};

class FileSource : public Source {
public:
    FileSource(const std::string& path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw FormatError(path, 0, std::string("cannot open: ") + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd_);
            throw FormatError(path, 0, "not a regular file");
        }
        size_ = static_cast<std::uint64_t>(st.st_size);
    }
    ~FileSource() override { ::close(fd_); }
    std::uint64_t size() const override { return size_; }
    void read(std::uint64_t off, std::size_t n, std::uint8_t* dst) override {
        std::size_t done = 0;
        while (done < n) {
            const ssize_t r = ::pread(fd_, dst + done, n - done, static_cast<off_t>(off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                throw FormatError(path_, off + done,
                                  r == 0 ? "file shrank while reading" : std::string("cannot read: ") + std::strerror(errno));
            done += static_cast<std::size_t>(r);
        }
    }

private:
    std::string path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

class MemorySource : public Source {
public:
    MemorySource(const std::byte* data, std::size_t size) : data_(data), size_(size) {}
    std::uint64_t size() const override { return size_; }
    void read(std::uint64_t off, std::size_t n, std::uint8_t* dst) override {
        if (n) std::memcpy(dst, data_ + off, n);
    }

private:
    const std::byte* data_;
    std::size_t size_;
};

const char* opcode_name(std::uint8_t op) {
    static const char* const names[] = {"unknown",    "Header",   "Footer",          "Schema",     "Channel",
                                        "Message",    "Chunk",    "MessageIndex",    "ChunkIndex", "Attachment",
                                        "AttachmentIndex", "Statistics", "Metadata", "MetadataIndex",
                                        "SummaryOffset", "DataEnd"};
    return op < 16 ? names[op] : "unknown";
}

class Scanner {
public:
    Scanner(Source& src, const std::string& name, ReaderOptions options, FileInfo& info)
        : src_(src), name_(name), options_(options), info_(info) {}

    void run(const Reader::OnMessage& on_message) {
        on_message_ = &on_message;
        info_ = FileInfo{};
        const std::uint64_t size = src_.size();
        info_.file_size = size;
        std::uint8_t magic[8];
        if (size < sizeof magic) throw FormatError(name_, 0, "not an MCAP file (only " + std::to_string(size) + " bytes)");
        src_.read(0, sizeof magic, magic);
        if (std::memcmp(magic, kMagic, sizeof magic) != 0) throw FormatError(name_, 0, "not an MCAP file (bad magic)");

        std::uint64_t pos = sizeof magic;
        bool in_data = true;
        bool header_seen = false;
        std::uint64_t summary_start = 0;
        while (true) {
            if (pos == size) {
                unfinished(pos, "file ends without " + std::string(in_data ? "DataEnd" : "Footer"));
                break;
            }
            if (size - pos < 9) {
                unfinished(pos, "record header cut short");
                break;
            }
            std::uint8_t head[9];
            src_.read(pos, 9, head);
            const std::uint8_t opcode = head[0];
            std::uint64_t len = 0;
            for (int i = 0; i < 8; ++i) len |= std::uint64_t{head[1 + i]} << (8 * i);
            if (!header_seen && opcode != op::kHeader) throw FormatError(name_, pos, "first record is not a Header");
            if (len > size - pos - 9) {
                unfinished(pos, std::string(opcode_name(opcode)) + " record of " + std::to_string(len) +
                                    " bytes cut short by the end of the file");
                break;
            }
            if (len > options_.max_record_bytes)
                throw FormatError(name_, pos, std::string(opcode_name(opcode)) + " record of " + std::to_string(len) +
                                                  " bytes exceeds the reader's limit of " +
                                                  std::to_string(options_.max_record_bytes));
            body_.resize(static_cast<std::size_t>(len));
            src_.read(pos + 9, body_.size(), body_.data());
            Cursor c(body_.data(), body_.size(), pos + 9, name_);
            if (opcode == op::kFooter) {
                footer(c, pos, summary_start);
                break;
            }
            if (opcode == op::kHeader) {
                if (header_seen) throw FormatError(name_, pos, "second Header record");
                header_seen = true;
                info_.profile = c.string("Header.profile");
                info_.library = c.string("Header.library");
            } else if (opcode == op::kDataEnd) {
                if (!in_data) throw FormatError(name_, pos, "second DataEnd record");
                c.u32("DataEnd.data_section_crc");
                in_data = false;
                summary_start = pos + 9 + len;
            } else if (in_data) {
                data_record(opcode, c, pos);
            } else {
                summary_record(opcode, c);
            }
            pos += 9 + len;
        }
    }

private:
    void unfinished(std::uint64_t pos, const std::string& why) {
        info_.finished = false;
        info_.recovered_up_to = pos;
        info_.unfinished_reason = why + " at byte " + std::to_string(pos);
    }

    void footer(Cursor& c, std::uint64_t pos, std::uint64_t summary_start_seen) {
        const std::uint64_t summary_start = c.u64("Footer.summary_start");
        const std::uint64_t summary_offset_start = c.u64("Footer.summary_offset_start");
        const std::uint32_t summary_crc = c.u32("Footer.summary_crc");
        if (summary_start != 0 && summary_start != summary_start_seen)
            throw FormatError(name_, pos + 9, "Footer.summary_start " + std::to_string(summary_start) +
                                                   " is not where the summary begins (" +
                                                   std::to_string(summary_start_seen) + ")");
        if (summary_offset_start != 0 && (summary_offset_start < summary_start || summary_offset_start > pos))
            throw FormatError(name_, pos + 17, "Footer.summary_offset_start out of range");
        if (!c.done()) c.fail("Footer longer than 20 bytes");
        const std::uint64_t magic_at = pos + 9 + 20;
        if (src_.size() < magic_at + 8) {
            unfinished(pos, "trailing magic missing");
            return;
        }
        std::uint8_t magic[8];
        src_.read(magic_at, 8, magic);
        if (std::memcmp(magic, kMagic, 8) != 0) throw FormatError(name_, magic_at, "bad trailing magic");
        if (src_.size() != magic_at + 8) throw FormatError(name_, magic_at + 8, "bytes after the trailing magic");
        if (summary_start != 0 && summary_crc != 0) {
            std::uint32_t crc = 0;
            std::vector<std::uint8_t> buf;
            for (std::uint64_t at = summary_start; at < pos + 9 + 16;) {
                const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(1 << 16, pos + 9 + 16 - at));
                buf.resize(n);
                src_.read(at, n, buf.data());
                crc = crc32(buf.data(), n, crc);
                at += n;
            }
            if (crc != summary_crc) throw FormatError(name_, pos + 9 + 16, "summary CRC mismatch");
        }
        info_.finished = true;
        info_.recovered_up_to = src_.size();
    }

    void data_record(std::uint8_t opcode, Cursor& c, std::uint64_t pos) {
        switch (opcode) {
            case op::kSchema:
            case op::kChannel:
            case op::kMessage: content_record(opcode, c); break;
            case op::kChunk: chunk(c, pos); break;
            case op::kMessageIndex: {
                c.u16("MessageIndex.channel_id");
                Cursor a = c.sub("MessageIndex.records");
                if (a.remaining() % 16 != 0) a.fail("MessageIndex.records is not a whole number of entries");
                break;
            }
            case op::kMetadata: {
                std::string name = c.string("Metadata.name");
                info_.metadata.emplace_back(std::move(name), c.map("Metadata.metadata"));
                break;
            }
            default: break;  // attachments and unknown records are skipped
        }
    }

    void summary_record(std::uint8_t opcode, Cursor& c) {
        switch (opcode) {
            case op::kSchema: parse_schema(c); break;
            case op::kChannel: parse_channel(c); break;
            case op::kStatistics:
                c.u64("Statistics.message_count");
                c.u16("Statistics.schema_count");
                c.u32("Statistics.channel_count");
                c.u32("Statistics.attachment_count");
                c.u32("Statistics.metadata_count");
                c.u32("Statistics.chunk_count");
                c.u64("Statistics.message_start_time");
                c.u64("Statistics.message_end_time");
                c.sub("Statistics.channel_message_counts");
                break;
            case op::kChunkIndex: {
                c.u64("ChunkIndex.message_start_time");
                c.u64("ChunkIndex.message_end_time");
                const std::uint64_t off = c.u64("ChunkIndex.chunk_start_offset");
                const std::uint64_t len = c.u64("ChunkIndex.chunk_length");
                if (off > info_.file_size || len > info_.file_size - off) c.fail("ChunkIndex points outside the file");
                c.sub("ChunkIndex.message_index_offsets");
                c.u64("ChunkIndex.message_index_length");
                c.string("ChunkIndex.compression");
                c.u64("ChunkIndex.compressed_size");
                c.u64("ChunkIndex.uncompressed_size");
                break;
            }
            default: break;
        }
    }

    Schema parse_schema(Cursor& c) {
        Schema s;
        s.id = c.u16("Schema.id");
        s.name = c.string("Schema.name");
        s.encoding = c.string("Schema.encoding");
        s.data = c.string("Schema.data");
        if (s.id == 0) c.fail("Schema id 0 is reserved");
        return s;
    }

    Channel parse_channel(Cursor& c) {
        Channel ch;
        ch.id = c.u16("Channel.id");
        ch.schema_id = c.u16("Channel.schema_id");
        ch.topic = c.string("Channel.topic");
        ch.message_encoding = c.string("Channel.message_encoding");
        ch.metadata = c.map("Channel.metadata");
        return ch;
    }

    void content_record(std::uint8_t opcode, Cursor& c) {
        if (opcode == op::kSchema) {
            const std::uint64_t at = c.offset();
            Schema s = parse_schema(c);
            auto it = info_.schemas.find(s.id);
            if (it != info_.schemas.end() && (it->second.name != s.name || it->second.data != s.data))
                throw FormatError(name_, at, "Schema " + std::to_string(s.id) + " redefined differently");
            info_.schemas[s.id] = std::move(s);
        } else if (opcode == op::kChannel) {
            const std::uint64_t at = c.offset();
            Channel ch = parse_channel(c);
            if (ch.schema_id != 0 && info_.schemas.count(ch.schema_id) == 0)
                throw FormatError(name_, at, "Channel " + std::to_string(ch.id) + " uses unknown schema " +
                                                 std::to_string(ch.schema_id));
            info_.channels[ch.id] = std::move(ch);
        } else if (opcode == op::kMessage) {
            const std::uint64_t at = c.offset();
            Message m;
            m.channel_id = c.u16("Message.channel_id");
            m.sequence = c.u32("Message.sequence");
            m.log_time = c.u64("Message.log_time");
            m.publish_time = c.u64("Message.publish_time");
            m.size = c.remaining();
            m.data = reinterpret_cast<const std::byte*>(c.rest());
            auto it = info_.channels.find(m.channel_id);
            if (it == info_.channels.end())
                throw FormatError(name_, at, "Message on unknown channel " + std::to_string(m.channel_id));
            if (info_.message_count == 0 || m.log_time < info_.start_time) info_.start_time = m.log_time;
            if (info_.message_count == 0 || m.log_time > info_.end_time) info_.end_time = m.log_time;
            ++info_.message_count;
            ++info_.channel_messages[m.channel_id];
            info_.channel_bytes[m.channel_id] += m.size;
            if (*on_message_ && !stopped_ && !(*on_message_)(it->second, m)) stopped_ = true;
        }
    }

    void chunk(Cursor& c, std::uint64_t pos) {
        c.u64("Chunk.message_start_time");
        c.u64("Chunk.message_end_time");
        const std::uint64_t usize = c.u64("Chunk.uncompressed_size");
        const std::uint32_t crc = c.u32("Chunk.uncompressed_crc");
        const std::string compression = c.string("Chunk.compression");
        const std::uint64_t csize = c.u64("Chunk.records length");
        const std::uint64_t records_at = c.offset();
        const std::uint8_t* records = c.bytes(csize, "Chunk.records");
        if (!c.done()) c.fail("Chunk has bytes after its records");
        if (usize > options_.max_record_bytes)
            throw FormatError(name_, pos, "Chunk of " + std::to_string(usize) + " uncompressed bytes exceeds the reader's limit of " +
                                              std::to_string(options_.max_record_bytes));
        const std::uint8_t* plain = records;
        if (compression.empty()) {
            if (csize != usize) throw FormatError(name_, records_at, "uncompressed Chunk size does not match its records");
        } else if (compression == "zstd") {
            // A frame that states its size must state this one: checked before allocating it.
            const unsigned long long stated = ZSTD_getFrameContentSize(records, static_cast<std::size_t>(csize));
            if (stated == ZSTD_CONTENTSIZE_ERROR) throw FormatError(name_, records_at, "zstd: not a zstd frame");
            if (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated != usize)
                throw FormatError(name_, records_at, "zstd frame holds " + std::to_string(stated) + " bytes, Chunk says " +
                                                         std::to_string(usize));
            plain_.resize(static_cast<std::size_t>(usize));
            const std::size_t n = ZSTD_decompress(plain_.data(), plain_.size(), records, static_cast<std::size_t>(csize));
            if (ZSTD_isError(n)) throw FormatError(name_, records_at, std::string("zstd: ") + ZSTD_getErrorName(n));
            if (n != usize) throw FormatError(name_, records_at, "zstd Chunk decompresses to " + std::to_string(n) +
                                                                     " bytes, not " + std::to_string(usize));
            plain = plain_.data();
        } else if (compression == "lz4") {
            plain_.resize(static_cast<std::size_t>(usize));
            lz4(records, static_cast<std::size_t>(csize), records_at);
            plain = plain_.data();
        } else {
            throw FormatError(name_, records_at, "unknown Chunk compression '" + compression + "'");
        }
        if (crc != 0 && crc32(plain, static_cast<std::size_t>(usize)) != crc)
            throw FormatError(name_, pos, "Chunk CRC mismatch");
        ++info_.chunk_count;
        ++info_.chunks_by_compression[compression.empty() ? "none" : compression];
        // Offsets inside a chunk are reported as the chunk's file offset: there is no other.
        Cursor in(plain, static_cast<std::size_t>(usize), pos, name_);
        while (!in.done()) {
            const std::uint8_t opcode = in.u8("Chunk record opcode");
            const std::uint64_t len = in.u64("Chunk record length");
            Cursor r(in.bytes(len, "Chunk record"), static_cast<std::size_t>(len), pos, name_);
            if (opcode == op::kSchema || opcode == op::kChannel || opcode == op::kMessage) content_record(opcode, r);
        }
    }

    void lz4(const std::uint8_t* src, std::size_t n, std::uint64_t at) {
        LZ4F_dctx* ctx = nullptr;
        if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION))) throw FormatError(name_, at, "lz4: no context");
        std::size_t in_done = 0, out_done = 0;
        std::string error;
        while (true) {
            std::size_t in_n = n - in_done, out_n = plain_.size() - out_done;
            const std::size_t r = LZ4F_decompress(ctx, plain_.data() + out_done, &out_n, src + in_done, &in_n, nullptr);
            if (LZ4F_isError(r)) {
                error = std::string("lz4: ") + LZ4F_getErrorName(r);
                break;
            }
            in_done += in_n;
            out_done += out_n;
            if (r == 0) break;  // frame complete
            if (in_n == 0 && out_n == 0) {
                error = out_done == plain_.size() ? "lz4 Chunk decompresses to more than its uncompressed size"
                                                  : "lz4 frame cut short";
                break;
            }
        }
        LZ4F_freeDecompressionContext(ctx);
        if (error.empty() && (out_done != plain_.size() || in_done != n))
            error = "lz4 Chunk decompresses to " + std::to_string(out_done) + " bytes, not " +
                    std::to_string(plain_.size());
        if (!error.empty()) throw FormatError(name_, at, error);
    }

    Source& src_;
    const std::string& name_;
    ReaderOptions options_;
    FileInfo& info_;
    const Reader::OnMessage* on_message_ = nullptr;
    bool stopped_ = false;
    std::vector<std::uint8_t> body_;
    std::vector<std::uint8_t> plain_;
};

}  // namespace

struct Reader::Impl {
    std::string path;
    ReaderOptions options;
    FileSource source;
    Impl(const std::string& p, ReaderOptions o) : path(p), options(o), source(p) {}
};

Reader::Reader(const std::string& path, ReaderOptions options)
    : impl_(std::make_unique<Impl>(path, options)) {
    std::uint8_t magic[8];
    if (impl_->source.size() < sizeof magic)
        throw FormatError(path, 0, "not an MCAP file (only " + std::to_string(impl_->source.size()) + " bytes)");
    impl_->source.read(0, sizeof magic, magic);
    if (std::memcmp(magic, kMagic, sizeof magic) != 0) throw FormatError(path, 0, "not an MCAP file (bad magic)");
}

Reader::~Reader() = default;

const FileInfo& Reader::scan(const OnMessage& on_message) {
    Scanner(impl_->source, impl_->path, impl_->options, info_).run(on_message);
    return info_;
}

FileInfo scan_buffer(const std::byte* data, std::size_t size, const std::string& name, ReaderOptions options,
                     const Reader::OnMessage& on_message) {
    MemorySource src(data, size);
    FileInfo info;
    Scanner(src, name, options, info).run(on_message);
    return info;
}

}  // namespace ferry::mcap
