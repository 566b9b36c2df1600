// MCAP (https://mcap.dev/spec) writer and reader for `ferry record`, `ferry play` and `ferry bag`.
// Private to the tools: applications never see it.
//
// The writer puts Schema and Channel records into the data section as they are added (outside
// chunks, so that a reader of a file cut short knows them before the chunks that use them), and
// messages into chunks (zstd, lz4 frame or none, CRC-32 of the uncompressed records). Each chunk
// is followed by its MessageIndex records and flushed to the kernel, so a recorder killed with
// SIGKILL leaves every complete chunk readable. close() writes DataEnd, the summary section
// (Schema, Channel, Statistics, ChunkIndex, MetadataIndex, SummaryOffset) and the Footer.
//
// The reader validates every length against the file size and the end of its enclosing record,
// caps the memory a chunk may take, checks chunk and summary CRCs, and recovers the messages of
// every complete chunk of a file without a summary. Failures throw FormatError, whose message is
// one line: "<file>: byte <offset>: <what>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferry::mcap {

enum class Compression { none, zstd, lz4 };
// "none" / "zstd" / "lz4"; the name MCAP uses in Chunk records is "" for none.
const char* compression_name(Compression c);
// Parses "none" / "zstd" / "lz4"; false if unknown.
bool parse_compression(const std::string& text, Compression& out);

using KeyValues = std::map<std::string, std::string>;

struct Schema {
    std::uint16_t id = 0;
    std::string name;
    std::string encoding;
    std::string data;
};

struct Channel {
    std::uint16_t id = 0;
    std::uint16_t schema_id = 0;
    std::string topic;
    std::string message_encoding;
    KeyValues metadata;
};

struct Message {
    std::uint16_t channel_id = 0;
    std::uint32_t sequence = 0;
    std::uint64_t log_time = 0;
    std::uint64_t publish_time = 0;
    const std::byte* data = nullptr;
    std::size_t size = 0;
};

// A write failure (disk full, closed file): names the file and the OS reason.
struct WriteError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A malformed file: "<file>: byte <offset>: <what>".
struct FormatError : std::runtime_error {
    FormatError(const std::string& file, std::uint64_t offset, const std::string& what);
    std::uint64_t offset;
};

std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc = 0);

struct WriterOptions {
    Compression compression = Compression::zstd;
    std::uint64_t chunk_size = 1 << 20;  // uncompressed bytes that close a chunk
    int zstd_level = 1;
    std::string profile;                 // MCAP header profile ("" = none)
    std::string library = "ferry";
};

// Not thread-safe: one thread writes.
class Writer {
public:
    // Creates (truncates) `path` and writes the magic and the Header; throws WriteError.
    Writer(const std::string& path, WriterOptions options);
    ~Writer();  // closes the file properly if close() was not called (errors ignored)
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // Returns the new id (1, 2, ...). The record goes to the data section at once.
    std::uint16_t add_schema(const std::string& name, const std::string& encoding, const std::string& data);
    std::uint16_t add_channel(std::uint16_t schema_id, const std::string& topic, const std::string& message_encoding,
                              const KeyValues& metadata);
    // Appends to the open chunk; a full chunk is compressed, written and flushed.
    void write(const Message& m);
    // Appends to the open chunk and leaves it open even when full: the message's bytes are no
    // longer needed once it returns, so the caller can give them back before it pays for
    // compressing and writing the chunk (flush_chunk() when chunk_full()).
    void append(const Message& m);
    bool chunk_full() const { return chunk_.size() >= options_.chunk_size; }
    // A Metadata record (indexed in the summary). Ends the open chunk first.
    void write_metadata(const std::string& name, const KeyValues& entries);
    // Writes the open chunk now.
    void flush_chunk();
    // Writes the open chunk, DataEnd, the summary and the Footer; closes the file. Throws WriteError.
    void close();

    // Bytes in the file so far plus the open chunk's uncompressed bytes: what splitting compares.
    std::uint64_t approximate_size() const;
    std::uint64_t message_count() const { return message_count_; }
    const std::string& path() const { return path_; }

private:
    struct ChunkIndexEntry;
    void put(const void* data, std::size_t size);
    void put_record(std::uint8_t opcode, const std::string& body);
    void start_file();

    std::string path_;
    WriterOptions options_;
    std::FILE* file_ = nullptr;
    std::uint64_t offset_ = 0;
    std::uint32_t data_crc_ = 0;
    bool closed_ = false;

    std::vector<Schema> schemas_;
    std::vector<Channel> channels_;
    std::string chunk_;  // uncompressed records of the open chunk
    std::uint64_t chunk_start_ = 0, chunk_end_ = 0;
    std::map<std::uint16_t, std::vector<std::pair<std::uint64_t, std::uint64_t>>> chunk_index_;
    std::vector<ChunkIndexEntry> chunk_indexes_;
    struct MetadataIndexEntry {
        std::uint64_t offset, length;
        std::string name;
    };
    std::vector<MetadataIndexEntry> metadata_indexes_;
    std::map<std::uint16_t, std::uint64_t> channel_counts_;
    std::uint64_t message_count_ = 0;
    std::uint64_t start_time_ = 0, end_time_ = 0;
    std::string compressed_;  // reused buffer
};

struct ReaderOptions {
    // Largest uncompressed chunk (and any single record) the reader accepts; larger is a FormatError.
    std::uint64_t max_record_bytes = std::uint64_t{1} << 30;
};

// What a scan found. Counts are of what was read, not what the summary claims.
struct FileInfo {
    std::string profile, library;
    std::map<std::uint16_t, Schema> schemas;
    std::map<std::uint16_t, Channel> channels;
    std::map<std::uint16_t, std::uint64_t> channel_messages;
    std::map<std::uint16_t, std::uint64_t> channel_bytes;
    std::vector<std::pair<std::string, KeyValues>> metadata;
    std::map<std::string, std::uint64_t> chunks_by_compression;  // "none"/"zstd"/"lz4"
    std::uint64_t chunk_count = 0;
    std::uint64_t message_count = 0;
    std::uint64_t start_time = 0, end_time = 0;  // log_time range; 0/0 without messages
    std::uint64_t file_size = 0;
    bool finished = false;           // DataEnd, summary and Footer present and valid
    std::uint64_t recovered_up_to = 0;  // unfinished: bytes of complete records
    std::string unfinished_reason;      // unfinished: what was cut short, and where
};

class Reader {
public:
    // Opens and checks the leading magic and Header; throws FormatError (also for I/O errors).
    explicit Reader(const std::string& path, ReaderOptions options = {});
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    using OnMessage = std::function<bool(const Channel&, const Message&)>;  // false stops the scan
    // Reads the whole file in order, validating every record, and calls `on_message` for each
    // message (data valid during the call). A file cut short is scanned up to its last complete
    // record: info().finished is false then. Throws FormatError for anything malformed.
    const FileInfo& scan(const OnMessage& on_message = {});
    const FileInfo& info() const { return info_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    FileInfo info_;
};

// Reads from memory (the fuzz target): same checks as Reader::scan.
FileInfo scan_buffer(const std::byte* data, std::size_t size, const std::string& name, ReaderOptions options,
                     const Reader::OnMessage& on_message = {});

}  // namespace ferry::mcap
