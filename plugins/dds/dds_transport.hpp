// The dds transport: a ferry topic is one DDS topic on Eclipse Cyclone DDS (its C API), carrying
// the opaque type ferry::dds::Frame (ferry_frame.idl). DDS does discovery, reliability and flow
// control; the registry's sync_readers/sync_writers are not needed and ignored. One DDS
// participant per process, created with the first endpoint from the config's [dds] table and
// CYCLONEDDS_URI. Names, wire format and QoS mapping: README.md.
#pragma once

#include <dds/dds.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ferry/transport/transport.hpp>

#include "ferry_frame.h"

namespace ferry::dds {

using namespace ferry::transport;

// The DDS topic name of ferry topic `topic` in ferry domain `domain`:
//   "ferry_" + escape(domain) + "/" + escape(topic)
// where escape keeps [A-Za-z0-9/] and writes any other byte as '_' and two upper-case hex
// digits ("imu.raw" -> "imu_2Eraw", "a_b" -> "a_5Fb"). Cyclone accepts only [A-Za-z0-9_/].
std::string topic_name(const std::string& domain, const std::string& topic);
// The inverse: false when `name` is not a ferry topic name.
bool parse_topic_name(const std::string& name, std::string& domain, std::string& topic);

// What the config's [dds] table says (TopicParams::options).
struct Settings {
    dds_domainid_t domain_id = 0;
    std::vector<std::string> interfaces;  // empty: Cyclone's default (or CYCLONEDDS_URI's)
    static Settings from(const TopicParams& params);
};

// The Cyclone configuration string for `s`: ferry's defaults, then CYCLONEDDS_URI, then the
// interfaces of the ferry config (a later source overrides an earlier one).
std::string cyclone_config(const Settings& s);

// Turns a Cyclone return code into a Status naming the action.
Status dds_status(dds_return_t rc, Errc code, const std::string& what);

class DdsTransport final : public Transport {
public:
    explicit DdsTransport(const Host& host);
    ~DdsTransport() override;

    const char* name() const noexcept override { return "dds"; }
    Capabilities capabilities() const noexcept override;
    Status validate(const TopicParams& params) const noexcept override;
    Status create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept override;
    Status create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept override;
    Status discover(const std::string& domain,
                    const std::vector<std::pair<std::string, std::string>>& options,
                    std::chrono::milliseconds wait,
                    std::vector<RemoteEndpoint>& out) noexcept override;

private:
    // The process's participant in the DDS domain `wanted` names, joined on first use. Holds mu_.
    Status participant_for(const Settings& wanted, const std::string& topic, dds_entity_t& participant);
    // The process's participant in the DDS domain `params` asks for, created on first use; the
    // topic entity for `params`.
    Status topic_for(const TopicParams& params, dds_entity_t& participant, dds_entity_t& topic) noexcept;

    const Host& host_;
    std::mutex mu_;
    struct Joined {
        dds_entity_t domain = 0;  // 0: the application created the domain, not us
        dds_entity_t participant = 0;
        Settings settings;
    };
    std::map<dds_domainid_t, Joined> domains_;
    std::int64_t pid_ = 0;  // the process that created the participants (a fork child never uses them)
};

class DdsWriter final : public Writer {
public:
    DdsWriter(const Host& host, const TopicParams& params, dds_entity_t topic, dds_entity_t writer);
    ~DdsWriter() override;

    Status loan(std::size_t size, LoanBuffer& out) noexcept override;
    Status commit(LoanBuffer& buf, std::size_t size) noexcept override;
    void release(LoanBuffer& buf) noexcept override;
    void sync_readers(const std::vector<PeerInfo>&) noexcept override {}
    std::size_t reader_count() const noexcept override;
    Status flush(Clock::time_point deadline) noexcept override;
    std::uint64_t undelivered() const noexcept override { return undelivered_.load(std::memory_order_relaxed); }

private:
    const Host& host_;
    TopicParams params_;
    dds_entity_t topic_;  // this writer's handle on the topic, deleted after the writer
    dds_entity_t writer_;
    std::uint64_t sequence_ = 0;
    std::atomic<std::uint64_t> undelivered_{0};
    std::vector<std::unique_ptr<std::byte[]>> spare_;  // freed loan buffers of max size, reused
    std::size_t spare_size_ = 0;                       // size of the buffers in spare_
};

class DdsReader final : public Reader {
public:
    DdsReader(const Host& host, const TopicParams& params, dds_entity_t participant, dds_entity_t topic, dds_entity_t reader);
    ~DdsReader() override;

    Status take(SampleBuffer& out, Clock::time_point deadline) noexcept override;
    void release(SampleBuffer& sample) noexcept override;
    void sync_writers(const std::vector<PeerInfo>&) noexcept override {}
    std::uint64_t lost() const noexcept override { return lost_.load(std::memory_order_relaxed); }
    void interrupt() noexcept override;

private:
    struct Slot {
        ferry_dds_Frame frame{};
        bool in_use = false;
    };
    Slot* free_slot();
    void free(Slot* slot) noexcept;
    // One sample from the DDS reader into a free slot; false when its cache is empty.
    bool try_take_one(SampleBuffer& out, Status& error) noexcept;
    // drop_oldest: Cyclone's listener thread moves every arriving sample into ring_, which keeps
    // the newest `depth` and counts what it drops (a DDS KEEP_LAST history would drop uncounted).
    static void on_data_available(dds_entity_t reader, void* self);
    void drain_into_ring() noexcept;
    Status take_from_ring(SampleBuffer& out, Clock::time_point deadline) noexcept;

    const Host& host_;
    TopicParams params_;
    dds_entity_t topic_;  // this reader's handle on the topic, deleted after the reader
    dds_entity_t reader_;
    dds_entity_t waitset_ = 0;
    dds_entity_t readcond_ = 0;
    dds_entity_t guard_ = 0;
    std::atomic<bool> interrupted_{false};
    std::atomic<std::uint64_t> lost_{0};
    std::map<dds_instance_handle_t, std::uint64_t> last_sequence_;  // per DDS writer
    std::mutex slots_mu_;                                           // release() may run on any thread
    std::vector<std::unique_ptr<Slot>> slots_;
    bool ring_mode_ = false;
    std::mutex drain_mu_;  // the listener and the constructor's first drain
    std::mutex ring_mu_;
    std::condition_variable ring_cv_;
    std::deque<SampleBuffer> ring_;  // drop_oldest: taken from DDS, not yet handed out
};

}  // namespace ferry::dds
