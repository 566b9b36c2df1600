// The reader side of the shm transport: owns a tiny doorbell segment that writers ring, maps
// each writer's segment and pops chunk indices from its own slot there. Samples point straight
// into those mappings.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ferry/transport/transport.hpp>

#include "layout.hpp"
#include "segment.hpp"

namespace ferry::shm {

class ShmReader final : public transport::Reader {
public:
    // `doorbell` is the freshly created and initialised segment `name` (no leading slash).
    ShmReader(const transport::Host& host, transport::TopicParams params, std::string name, Mapping doorbell,
              std::chrono::nanoseconds spin);
    ~ShmReader() override;

    transport::Status take(transport::SampleBuffer& out, transport::Clock::time_point deadline) noexcept override;
    void release(transport::SampleBuffer& sample) noexcept override;
    void sync_writers(const std::vector<transport::PeerInfo>& writers) noexcept override;
    std::uint64_t lost() const noexcept override;
    void interrupt() noexcept override;

private:
    struct Attachment {
        std::uint64_t writer_id = 0;
        std::uint32_t serial = 0;  // names the attachment in sample handles
        Mapping map;
        SegmentView view;
        int slot = -1;             // our slot in the writer's table, once the writer made it
        bool gone = false;         // writer no longer registered: drain, then unmap
        std::uint32_t held = 0;    // samples taken and not yet released
        std::vector<std::uint64_t> held_bits;
        bool warned = false;
    };

    // Opens, validates and maps a writer's segment. Null if it is not there (yet) or refused.
    std::unique_ptr<Attachment> attach(std::uint64_t writer_id, bool& refused) noexcept;
    bool try_take_locked(transport::SampleBuffer& out) noexcept;
    bool find_slot(Attachment& a) noexcept;
    bool pop(Attachment& a, transport::SampleBuffer& out) noexcept;
    bool slot_is_ours(const Attachment& a) const noexcept;
    bool ring_empty(const Attachment& a) const noexcept;
    void give_back(Attachment& a, std::uint32_t idx) noexcept;
    void drop_corrupt(Attachment& a, const std::string& what) noexcept;
    void remove_finished_locked() noexcept;

    const transport::Host& host_;
    const transport::TopicParams params_;
    const std::string name_;
    Mapping doorbell_map_;
    Doorbell* doorbell_;
    const std::chrono::nanoseconds spin_;

    mutable std::mutex mu_;
    std::vector<std::unique_ptr<Attachment>> attachments_;
    std::vector<std::uint64_t> refused_;
    std::uint32_t next_serial_ = 1;
    std::size_t next_attachment_ = 0;
    std::uint64_t lost_retired_ = 0;  // drop counts of writers already unmapped
    std::atomic<std::uint64_t> lost_corrupt_{0};
    std::atomic<bool> closed_{false};
};

}  // namespace ferry::shm
