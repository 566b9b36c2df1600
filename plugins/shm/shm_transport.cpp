// The shm transport: one shared-memory segment per writer holding a pool of message-sized
// chunks, per-reader rings of chunk indices, and futex wake-ups. loan() hands out a chunk,
// so a message of any size reaches every reader without a copy. See README.md.
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <new>
#include <string>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/plugin.hpp>
#include <ferry/transport/transport.hpp>

#include "layout.hpp"
#include "segment.hpp"
#include "shm_reader.hpp"
#include "shm_writer.hpp"

namespace ferry::shm {

using transport::Errc;
using transport::Status;

class ShmTransport final : public transport::Transport {
public:
    explicit ShmTransport(const transport::Host& host) : host_(host) {}

    const char* name() const noexcept override { return "shm"; }

    transport::Capabilities capabilities() const noexcept override {
        transport::Capabilities c;
        c.zero_copy = true;
        c.max_message_size = kMaxChunkPayload;
        c.summary = "shared memory: zero-copy loans from a per-publisher chunk pool, futex wake-ups";
        c.max_readers = kSlotCount;
        return c;
    }

    Status validate(const transport::TopicParams& p) const noexcept override {
        try {
            if (p.domain.empty()) return Status(Errc::invalid_argument, "shm: empty domain");
            if (p.depth < 1 || p.depth > kMaxDepth) {
                return Status(Errc::invalid_argument, "shm: depth " + std::to_string(p.depth) + " of topic " + p.topic +
                                                          " is outside 1.." + std::to_string(kMaxDepth));
            }
            if (p.max_message_size > kMaxChunkPayload) {
                return Status(Errc::invalid_argument, "shm: max_message_size " + std::to_string(p.max_message_size) +
                                                          " of topic " + p.topic + " is above the 1 GiB limit of shm");
            }
            return Status::ok();
        } catch (...) {
            return Status(Errc::internal, "shm: out of memory");
        }
    }

    Status create_writer(const transport::TopicParams& p, std::unique_ptr<transport::Writer>& out) noexcept override {
        try {
            if (auto st = validate(p); !st) return st;
            Layout layout;
            compute_layout(p.depth, p.max_message_size, layout);
            const std::string name = transport::object_name(p.domain, p.endpoint_id, "shm");
            Mapping segment;
            if (auto st = create_segment(name, layout.total_size, p.mode, segment, "lower the topic's depth or enlarge /dev/shm");
                !st) {
                return st;
            }
            auto* h = reinterpret_cast<SegmentHeader*>(segment.data());
            h->version = kLayoutVersion;
            h->slot_count = kSlotCount;
            h->depth = layout.depth;
            h->chunk_count = layout.chunk_count;
            h->max_message_size = layout.max_message_size;
            h->slots_offset = layout.slots_offset;
            h->rings_offset = layout.rings_offset;
            h->chunks_offset = layout.chunks_offset;
            h->total_size = layout.total_size;
            h->writer_id = p.endpoint_id;
            h->writer_pid = static_cast<std::int32_t>(::getpid());
            h->magic.store(kSegmentMagic, std::memory_order_release);  // last: the header is complete
            out = std::make_unique<ShmWriter>(host_, p, name, std::move(segment), layout);
            return Status::ok();
        } catch (const std::bad_alloc&) {
            return Status(Errc::no_resources, "shm: out of memory creating a writer for topic " + p.topic);
        } catch (...) {
            return Status(Errc::internal, "shm: unexpected exception creating a writer for topic " + p.topic);
        }
    }

    Status create_reader(const transport::TopicParams& p, std::unique_ptr<transport::Reader>& out) noexcept override {
        try {
            if (auto st = validate(p); !st) return st;
            const std::string name = transport::object_name(p.domain, p.endpoint_id, "sig");
            Mapping bell;
            if (auto st = create_segment(name, kDoorbellSegmentSize, p.mode, bell); !st) return st;
            reinterpret_cast<Doorbell*>(bell.data())->magic.store(kDoorbellMagic, std::memory_order_release);
            out = std::make_unique<ShmReader>(host_, p, name, std::move(bell));
            return Status::ok();
        } catch (const std::bad_alloc&) {
            return Status(Errc::no_resources, "shm: out of memory creating a reader for topic " + p.topic);
        } catch (...) {
            return Status(Errc::internal, "shm: unexpected exception creating a reader for topic " + p.topic);
        }
    }

    // Its objects: each writer's segment (ferry.<domain>.<writer>.shm) and each reader's doorbell
    // (ferry.<domain>.<reader>.sig), in /dev/shm.
    std::vector<transport::OsObject> list_objects(const std::string& domain,
                                                  const std::string&) const noexcept override {
        auto out = transport::list_objects_in("/dev/shm", domain, "shm");
        auto bells = transport::list_objects_in("/dev/shm", domain, "sig");
        try {
            out.insert(out.end(), std::make_move_iterator(bells.begin()), std::make_move_iterator(bells.end()));
        } catch (...) {
        }
        return out;
    }
    bool remove_object(const std::string& path) const noexcept override {
        // "/dev/shm/<name>" is the shared-memory object "/<name>".
        const std::size_t slash = path.rfind('/');
        return slash != std::string::npos && ::shm_unlink(path.c_str() + slash) == 0;
    }

private:
    const transport::Host& host_;
};

}  // namespace ferry::shm

FERRY_TRANSPORT_PLUGIN(ferry::shm::ShmTransport)
