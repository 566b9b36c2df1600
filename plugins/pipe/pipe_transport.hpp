// The named-pipe transport. Each reader owns one FIFO,
//   <runtime_dir>/ferry.<domain>.<reader id>.fifo
// and every writer of the topic opens it for writing. A write of at most PIPE_BUF bytes to a
// FIFO is atomic, so messages travel as units of at most PIPE_BUF bytes (fragment.hpp) and
// several writers never interleave inside a unit.
#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ferry/transport/fragment.hpp>
#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::pipe {

using namespace ferry::transport;

inline constexpr std::size_t kUnitSize = PIPE_BUF;

class PipeTransport final : public Transport {
public:
    explicit PipeTransport(const Host& host) : host_(host) {}

    const char* name() const noexcept override { return "pipe"; }
    Capabilities capabilities() const noexcept override;
    Status validate(const TopicParams& params) const noexcept override;
    Status create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept override;
    Status create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept override;

private:
    const Host& host_;
};

class PipeWriter final : public FragmentingWriter {
public:
    PipeWriter(const Host& host, const TopicParams& params);

protected:
    Status open_receiver(const PeerInfo& reader,
                         UniqueFd& fd,
                         std::size_t& unit_size,
                         std::string& object) noexcept override;
    void reclaim_receiver(const PeerInfo& reader) noexcept override;
    ReceiverHooks hooks() const noexcept override;
};

class PipeReader final : public FragmentingReader {
public:
    // Takes over the FIFO at `path` (unlinked on destruction), its read end, a write end that
    // keeps the FIFO from ever reporting end-of-file, and an eventfd for interrupt().
    PipeReader(const Host& host, const TopicParams& params, std::string path, UniqueFd read_fd, UniqueFd self_fd, UniqueFd wake_fd);
    ~PipeReader() override;

protected:
    Status receive(Message& out, std::uint64_t& pin, Clock::time_point deadline) noexcept override;
    void unpin(std::uint64_t pin) noexcept override;
    void wake() noexcept override;

private:
    // The FIFO is a byte stream: units are parsed out of a stream buffer. A single-unit
    // message is handed out as a view into that buffer, which is then pinned until released.
    struct Stream {
        ByteBuffer buffer;
        std::size_t pins = 0;
    };
    bool parse_next(Message& out, std::uint64_t& pin);
    // Bytes read, 0 when the FIFO is empty, -errno on failure.
    long fill() noexcept;

    std::string path_;
    UniqueFd read_fd_;
    UniqueFd self_fd_;
    UniqueFd wake_fd_;
    std::vector<Stream> streams_;
    std::size_t current_ = 0;
    std::size_t pos_ = 0;
    std::size_t end_ = 0;
    bool in_garbage_ = false;
    bool last_fill_full_ = false;
};

}  // namespace ferry::pipe
