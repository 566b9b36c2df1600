#include <mqueue.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <new>

#include "mq_transport.hpp"

namespace ferry::mq {

namespace {

int send_unit(int fd, const std::byte* unit, std::size_t len) noexcept {
    if (::mq_send(static_cast<mqd_t>(fd), reinterpret_cast<const char*>(unit), len, 0) == 0) return 0;
    return errno;
}

std::size_t discard_oldest(int fd, std::uint32_t units) noexcept {
    struct mq_attr attr {};
    if (::mq_getattr(static_cast<mqd_t>(fd), &attr) != 0) return 0;
    const long want = std::min<long>(units, attr.mq_maxmsg) - (attr.mq_maxmsg - attr.mq_curmsgs);
    thread_local std::unique_ptr<char[]> scratch;
    thread_local std::size_t scratch_size = 0;
    const auto need = static_cast<std::size_t>(attr.mq_msgsize);
    if (scratch_size < need) {
        scratch.reset(new (std::nothrow) char[need]);
        scratch_size = scratch ? need : 0;
        if (!scratch) return 0;
    }
    std::size_t removed = 0;
    for (long i = 0; i < want; ++i) {
        if (::mq_receive(static_cast<mqd_t>(fd), scratch.get(), scratch_size, nullptr) < 0) break;
        ++removed;
    }
    return removed;
}

std::size_t free_units(int fd) noexcept {
    struct mq_attr attr {};
    if (::mq_getattr(static_cast<mqd_t>(fd), &attr) != 0 || attr.mq_curmsgs >= attr.mq_maxmsg) return 0;
    return static_cast<std::size_t>(attr.mq_maxmsg - attr.mq_curmsgs);
}

bool queue_exists(const char* name) noexcept {
    const mqd_t q = ::mq_open(name, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (q == static_cast<mqd_t>(-1)) return errno != ENOENT;
    ::mq_close(q);
    return true;
}

}  // namespace

ReceiverHooks MqWriter::hooks() const noexcept {
    ReceiverHooks h;
    h.free_units = &free_units;
    if (params_.overflow == Overflow::drop_oldest) h.make_room = &discard_oldest;
    h.still_there = &queue_exists;
    return h;
}

MqWriter::MqWriter(const Host& host, const TopicParams& params)
    : FragmentingWriter(host, params, &send_unit, "mq") {}

Status MqWriter::open_receiver(const PeerInfo& reader,
                               UniqueFd& fd,
                               std::size_t& unit_size,
                               std::string& object) noexcept {
    try {
        const std::string name = queue_name(params_, reader.endpoint_id);
        // A Linux mqd_t is a file descriptor: poll() reports POLLOUT when the queue has room.
        // drop_oldest also reads, to discard the oldest units of a full queue.
        const int access = params_.overflow == Overflow::drop_oldest ? O_RDWR : O_WRONLY;
        const mqd_t q = ::mq_open(name.c_str(), access | O_NONBLOCK | O_CLOEXEC);
        if (q == static_cast<mqd_t>(-1)) {
            const int err = errno;
            return os_error(err == ENOENT ? Errc::closed : errc_from_errno(err), "mq: cannot open queue " + name, err);
        }
        UniqueFd f(static_cast<int>(q));
        struct mq_attr attr {};
        if (::mq_getattr(q, &attr) != 0) return os_error(Errc::io_error, "mq: cannot read attributes of " + name, errno);
        if (attr.mq_msgsize <= static_cast<long>(kUnitHeaderSize)) {
            return Status(Errc::invalid_argument, "mq: queue " + name + " takes only " +
                                                      std::to_string(attr.mq_msgsize) + "-byte messages");
        }
        fd = std::move(f);
        unit_size = static_cast<std::size_t>(attr.mq_msgsize);
        object = name;
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "mq: out of memory");
    }
}

void MqWriter::reclaim_receiver(const PeerInfo& reader) noexcept {
    try {
        ::mq_unlink(queue_name(params_, reader.endpoint_id).c_str());
    } catch (...) {
    }
}

}  // namespace ferry::mq
