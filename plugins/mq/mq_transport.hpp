// The POSIX message-queue transport. Each reader owns one queue,
//   /ferry.<domain>.<reader id>.mq
// created with mq_maxmsg = depth (when the config did not set it, at most what the system allows)
// and mq_msgsize = the unit size (fs.mqueue.msgsize_max, or
// less for small topics); every writer of the topic opens it write-only. Messages larger
// than a unit travel as several units (fragment.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ferry/transport/fragment.hpp>
#include <ferry/transport/posix.hpp>
#include <ferry/transport/transport.hpp>

namespace ferry::mq {

using namespace ferry::transport;

// The host's limits, from /proc/sys/fs/mqueue and RLIMIT_MSGQUEUE.
struct MqLimits {
    std::uint64_t msg_max = 10;
    std::uint64_t msgsize_max = 8192;
    std::uint64_t queues_max = 256;
    std::uint64_t rlimit_bytes = 819200;  // 0 = unlimited
    bool privileged = false;              // CAP_SYS_RESOURCE: msg_max/msgsize_max/queues_max do not apply
    static MqLimits read();
};

// Largest unit for a topic: the whole message when it fits, else msgsize_max.
std::size_t unit_size_for(const TopicParams& params, const MqLimits& limits) noexcept;
// The queue depth for `params`: its depth when explicit, else at most what `limits` allow.
std::uint32_t depth_for(const TopicParams& params, const MqLimits& limits) noexcept;
// Checks depth and unit size against `limits`; the message names the limit and how to raise it.
Status check_limits(const TopicParams& params, const MqLimits& limits);
std::string queue_name(const TopicParams& params, std::uint64_t endpoint_id);

class MqTransport final : public Transport {
public:
    explicit MqTransport(const Host& host) : host_(host) {}

    const char* name() const noexcept override { return "mq"; }
    Capabilities capabilities() const noexcept override;
    Status validate(const TopicParams& params) const noexcept override;
    Status create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept override;
    Status create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept override;
    // Its objects: each reader's queue, /ferry.<domain>.<reader>.mq (listed in /dev/mqueue).
    std::vector<OsObject> list_objects(const std::string& domain, const std::string& runtime_dir) const noexcept override;
    bool remove_object(const std::string& path) const noexcept override;

private:
    const Host& host_;
};

class MqWriter final : public FragmentingWriter {
public:
    MqWriter(const Host& host, const TopicParams& params);

protected:
    Status open_receiver(const PeerInfo& reader,
                         UniqueFd& fd,
                         std::size_t& unit_size,
                         std::string& object) noexcept override;
    void reclaim_receiver(const PeerInfo& reader) noexcept override;
    // drop_oldest: the writer itself discards the oldest units of a full queue, so the newest
    // message always gets in even when the reader's drain thread lags.
    ReceiverHooks hooks() const noexcept override;
};

class MqReader final : public FragmentingReader {
public:
    // Takes over the queue `name` (unlinked on destruction), opened O_RDWR and blocking.
    MqReader(const Host& host, const TopicParams& params, std::string name, UniqueFd queue, std::size_t unit_size);
    ~MqReader() override;

protected:
    Status receive(Message& out, std::uint64_t& pin, Clock::time_point deadline) noexcept override;
    void unpin(std::uint64_t) noexcept override {}
    void wake() noexcept override;

private:
    std::string name_;
    UniqueFd queue_;
    std::size_t unit_size_;
    ByteBuffer unit_;  // receive buffer; handed out with a single-unit message
    bool expect_empty_ = false;  // the last take found the queue empty: start by waiting
};

}  // namespace ferry::mq
