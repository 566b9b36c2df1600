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
    ShmReader(const transport::Host& host, transport::TopicParams params, std::string name, Mapping doorbell);
    ~ShmReader() override;

    transport::Status take(transport::SampleBuffer& out, transport::Clock::time_point deadline) noexcept override;
    void release(transport::SampleBuffer& sample) noexcept override;
    void sync_writers(const std::vector<transport::PeerInfo>& writers) noexcept override;
    std::uint64_t lost() const noexcept override;
    void interrupt() noexcept override;

private:
    // Our read-only mapping of one chunk's data segment.
    struct ChunkMap {
        Mapping map;
        std::uint64_t segment = 0;
    };
    struct Attachment {
        std::uint64_t writer_id = 0;
        std::string name;          // of the writer's segment; its data segments are "<name>.<serial>"
        std::uint32_t serial = 0;  // names the attachment in sample handles
        Mapping map;
        SegmentView view;
        int slot = -1;             // our slot in the writer's table, once the writer made it
        bool gone = false;         // writer no longer registered: drain, then unmap
        std::uint32_t held = 0;    // samples taken and not yet released
        std::vector<std::uint64_t> held_bits;
        std::vector<ChunkMap> chunk_maps;  // by chunk index
        std::uint64_t rebind_epoch = 0;    // the writer's, when we last dropped stale maps
        std::uint64_t mapped = 0;          // bytes of the data segments in chunk_maps
        bool warned = false;
    };

    // Opens, validates and maps a writer's segment. Null if it is not there (yet) or refused.
    std::unique_ptr<Attachment> attach(std::uint64_t writer_id, bool& refused) noexcept;
    bool try_take_locked(transport::SampleBuffer& out) noexcept;
    // wait = adaptive or spin: polls until a message, `until`, or interrupt(). True if taken.
    bool poll(transport::SampleBuffer& out, transport::Clock::time_point until) noexcept;
    bool find_slot(Attachment& a) noexcept;
    bool pop(Attachment& a, transport::SampleBuffer& out) noexcept;
    // The bytes of chunk idx (queued for us, not held), mapping its data segment if it is new
    // to us; null with the reason in `bad` if the chunk header names no valid segment.
    const std::byte* chunk_data(Attachment& a, std::uint32_t idx, std::uint64_t size, std::string& bad) noexcept;
    // Unmaps data segments the writer has replaced, unless we hold a sample in them.
    void unmap_replaced(Attachment& a) noexcept;
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
    // Most bytes of data segments we map per writer: a full pool of our topic's chunks.
    const std::uint64_t map_budget_;

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
