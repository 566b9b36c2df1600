#include <mqueue.h>

#include <cerrno>

#include "mq_transport.hpp"

namespace ferry::mq {

namespace {

int send_unit(int fd, const std::byte* unit, std::size_t len) noexcept {
    if (::mq_send(static_cast<mqd_t>(fd), reinterpret_cast<const char*>(unit), len, 0) == 0) return 0;
    return errno;
}

}  // namespace

MqWriter::MqWriter(const Host& host, const TopicParams& params)
    : FragmentingWriter(host, params, &send_unit, "mq", false) {}

Status MqWriter::open_receiver(const PeerInfo& reader, UniqueFd& fd, std::size_t& unit_size) noexcept {
    try {
        const std::string name = queue_name(params_, reader.endpoint_id);
        // A Linux mqd_t is a file descriptor: poll() reports POLLOUT when the queue has room.
        const mqd_t q = ::mq_open(name.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
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
