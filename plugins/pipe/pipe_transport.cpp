#include "pipe_transport.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/plugin.hpp>

namespace ferry::pipe {

namespace {

std::size_t pipe_max_size() {
    std::ifstream in("/proc/sys/fs/pipe-max-size");
    std::size_t v = 0;
    if (in >> v) return v;
    return 1u << 20;
}

std::size_t round_to_pages(std::size_t bytes) {
    std::size_t size = 4096;
    while (size < bytes) size <<= 1;
    return size;
}

// What depth asks for: depth pages (the kernel rounds to a power of two pages).
std::size_t depth_pipe_size(std::uint32_t depth) { return round_to_pages(static_cast<std::size_t>(depth) * 4096); }

}  // namespace

std::string fifo_suffix(std::uint64_t reader_id) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "to-%016llx.fifo", static_cast<unsigned long long>(reader_id));
    return buf;
}

std::string fifo_path(const TopicParams& params, std::uint64_t writer_id, std::uint64_t reader_id) {
    return transport::runtime_path(params.runtime_dir, params.domain, writer_id, fifo_suffix(reader_id).c_str());
}

// Never less than 128 KiB, so that a 64 KiB message and its header go in one write();
// drop_oldest asks for 1 MiB so that a writer rarely finds the FIFO full while the drain
// thread is descheduled. Pages are only allocated when written.
std::size_t wanted_pipe_size(const TopicParams& params) {
    const std::size_t floor = params.overflow == transport::Overflow::drop_oldest ? (1u << 20) : (128u << 10);
    return std::max(depth_pipe_size(params.depth), round_to_pages(std::min(floor, pipe_max_size())));
}

transport::Capabilities PipeTransport::capabilities() const noexcept {
    return transport::Capabilities{false, kMaxMessage,
                                   "named pipes (FIFOs): one per writer and reader, one framed write per message"};
}

Status PipeTransport::validate(const TopicParams& params) const noexcept {
    try {
        if (params.max_message_size > kMaxMessage) {
            return Status(Errc::invalid_argument, "pipe: max_message_size " + std::to_string(params.max_message_size) +
                                                      " exceeds the 4 GiB this transport allows");
        }
        if (params.depth == 0) return Status(Errc::invalid_argument, "pipe: depth must be at least 1");
        if (params.runtime_dir.empty()) return Status(Errc::invalid_argument, "pipe: no runtime directory");
        const std::size_t size = depth_pipe_size(params.depth);
        const std::size_t max = pipe_max_size();
        if (size > max) {
            return Status(Errc::no_resources,
                          "pipe: depth " + std::to_string(params.depth) + " needs a pipe of " + std::to_string(size) +
                              " bytes (depth x 4096) but fs.pipe-max-size is " + std::to_string(max) +
                              "; raise it with `sysctl -w fs.pipe-max-size=" + std::to_string(size) +
                              "` or lower the topic's depth");
        }
        return Status::ok();
    } catch (...) {
        return Status(Errc::internal, "pipe: validate failed");
    }
}

Status PipeTransport::create_writer(const TopicParams& params, std::unique_ptr<transport::Writer>& out) noexcept {
    if (Status st = validate(params); !st) return st;
    try {
        out = std::make_unique<PipeWriter>(*host_, params);
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "pipe: cannot create writer: out of memory");
    }
}

Status PipeTransport::create_reader(const TopicParams& params, std::unique_ptr<transport::Reader>& out) noexcept {
    if (Status st = validate(params); !st) return st;
    try {
        return PipeReader::create(*host_, params, out);
    } catch (...) {
        return Status(Errc::no_resources, "pipe: cannot create reader: out of memory");
    }
}

std::vector<transport::OsObject> PipeTransport::list_objects(const std::string& domain,
                                                           const std::string& runtime_dir) const noexcept {
    auto out = transport::list_objects_in(runtime_dir, domain, "to-");
    // The reader's id follows "to-" in the name: a FIFO is needed while both ends live.
    for (auto& o : out) {
        const std::size_t at = o.path.rfind(".to-");
        if (at == std::string::npos || o.path.size() < at + 4 + 16) continue;
        const std::uint64_t reader = std::strtoull(o.path.substr(at + 4, 16).c_str(), nullptr, 16);
        try {
            if (reader != 0) o.endpoints.push_back(reader);
        } catch (...) {
        }
    }
    return out;
}

bool PipeTransport::remove_object(const std::string& path) const noexcept { return ::unlink(path.c_str()) == 0; }

}  // namespace ferry::pipe

FERRY_TRANSPORT_PLUGIN(ferry::pipe::PipeTransport)
