#include "mq_transport.hpp"

#include <mqueue.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/plugin.hpp>

namespace ferry::mq {

namespace {

// Kernel ceilings for privileged processes (ipc/mqueue.c, include/linux/ipc_namespace.h).
constexpr std::uint64_t kHardMsgMax = 65536;
constexpr std::uint64_t kHardMsgSizeMax = 16u << 20;
// Per-message bookkeeping the kernel charges to RLIMIT_MSGQUEUE besides the payload
// (struct msg_msg pointer and tree node): generous, so the check errs on the safe side.
constexpr std::uint64_t kKernelPerMessage = 64;
// Smallest unit create_reader falls back to when RLIMIT_MSGQUEUE cannot hold full-size units.
constexpr std::uint64_t kMinUnit = 1024;

bool read_u64(const char* path, std::uint64_t& value) {
    std::ifstream in(path);
    std::uint64_t v = 0;
    if (!(in >> v)) return false;
    value = v;
    return true;
}

bool has_cap_sys_resource() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("CapEff:", 0) == 0) {
            const std::uint64_t caps = std::stoull(line.substr(7), nullptr, 16);
            return (caps >> 24) & 1u;  // CAP_SYS_RESOURCE
        }
    }
    return false;
}

std::string str(std::uint64_t v) { return std::to_string(v); }

}  // namespace

MqLimits MqLimits::read() {
    MqLimits l;
    read_u64("/proc/sys/fs/mqueue/msg_max", l.msg_max);
    read_u64("/proc/sys/fs/mqueue/msgsize_max", l.msgsize_max);
    read_u64("/proc/sys/fs/mqueue/queues_max", l.queues_max);
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_MSGQUEUE, &rl) == 0) l.rlimit_bytes = rl.rlim_cur == RLIM_INFINITY ? 0 : rl.rlim_cur;
    l.privileged = has_cap_sys_resource();
    return l;
}

std::size_t unit_size_for(const TopicParams& params, const MqLimits& limits) noexcept {
    const std::uint64_t whole = kUnitHeaderSize + static_cast<std::uint64_t>(params.max_message_size);
    return static_cast<std::size_t>(std::min<std::uint64_t>(whole, std::max<std::uint64_t>(limits.msgsize_max, 128)));
}

std::uint32_t depth_for(const TopicParams& params, const MqLimits& limits) noexcept {
    if (params.depth_explicit) return params.depth;
    std::uint64_t allowed = limits.privileged ? kHardMsgMax : limits.msg_max;
    if (limits.rlimit_bytes != 0) {
        const std::uint64_t unit = unit_size_for(params, limits);
        allowed = std::min(allowed, limits.rlimit_bytes / (std::min(unit, kMinUnit) + kKernelPerMessage));
    }
    return static_cast<std::uint32_t>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(params.depth, allowed)));
}

Status check_limits(const TopicParams& params, const MqLimits& limits) {
    const std::uint64_t depth = params.depth;
    if (limits.privileged && depth > kHardMsgMax) {
        return Status(Errc::no_resources,
                      "mq: depth " + str(depth) + " exceeds the kernel's hard limit of " + str(kHardMsgMax) +
                          " messages per queue (HARD_MSGMAX; this process has CAP_SYS_RESOURCE, so "
                          "fs.mqueue.msg_max = " + str(limits.msg_max) + " does not apply to it); lower the topic's depth");
    }
    if (!limits.privileged && depth > limits.msg_max) {
        return Status(Errc::no_resources,
                      "mq: depth " + str(depth) + " exceeds fs.mqueue.msg_max = " + str(limits.msg_max) +
                          " (the most messages a POSIX queue may hold); raise it with `sysctl -w fs.mqueue.msg_max=" +
                          str(std::max<std::uint64_t>(depth, limits.msg_max)) +
                          "` (persist it in /etc/sysctl.d/), or lower the topic's depth; this process lacks "
                          "CAP_SYS_RESOURCE, which would lift the limit up to " + str(kHardMsgMax) +
                          " (root in a container usually lacks it too)");
    }
    const std::uint64_t unit = unit_size_for(params, limits);
    if (limits.msgsize_max > kHardMsgSizeMax) {
        return Status(Errc::invalid_argument, "mq: fs.mqueue.msgsize_max = " + str(limits.msgsize_max) +
                                                  " is above the kernel's own ceiling " + str(kHardMsgSizeMax));
    }
    // create_reader falls back to smaller units when the user's queues already use most of
    // RLIMIT_MSGQUEUE; refuse only when even the smallest cannot fit.
    const std::uint64_t bytes = depth * (std::min(unit, kMinUnit) + kKernelPerMessage);
    if (limits.rlimit_bytes != 0 && bytes > limits.rlimit_bytes) {
        return Status(Errc::no_resources,
                      "mq: a queue of depth " + str(depth) + " with " + str(unit) + "-byte units needs about " +
                          str(bytes) + " bytes of RLIMIT_MSGQUEUE, but the limit is " + str(limits.rlimit_bytes) +
                          " bytes for all queues of this user; raise it with `ulimit -q " + str(bytes * 4) +
                          "` (LimitMSGQUEUE= for a systemd service, msgqueue in /etc/security/limits.conf), "
                          "or lower the topic's depth (units are fs.mqueue.msgsize_max = " + str(limits.msgsize_max) +
                          " bytes)");
    }
    return Status::ok();
}

std::string queue_name(const TopicParams& params, std::uint64_t endpoint_id) {
    return "/" + object_name(params.domain, endpoint_id, "mq");
}

std::vector<OsObject> MqTransport::list_objects(const std::string& domain, const std::string&) const noexcept {
    return list_objects_in("/dev/mqueue", domain, "mq");
}

bool MqTransport::remove_object(const std::string& path) const noexcept {
    // "/dev/mqueue/<name>" is the queue "/<name>".
    const std::size_t slash = path.rfind('/');
    return slash != std::string::npos && ::mq_unlink(path.c_str() + slash) == 0;
}

Capabilities MqTransport::capabilities() const noexcept {
    return Capabilities{false, kMaxFragmentedMessage,
                        "POSIX message queues: one per reader, units of mq_msgsize, fragments above"};
}

Status MqTransport::validate(const TopicParams& params) const noexcept {
    try {
        if (params.max_message_size > kMaxFragmentedMessage) {
            return Status(Errc::invalid_argument, "mq: max_message_size " + str(params.max_message_size) +
                                                      " exceeds the 4 GiB the unit header can describe");
        }
        if (params.depth == 0) return Status(Errc::invalid_argument, "mq: depth must be at least 1");
        const MqLimits limits = MqLimits::read();
        TopicParams p = params;
        p.depth = depth_for(params, limits);
        return check_limits(p, limits);
    } catch (...) {
        return Status(Errc::internal, "mq: cannot read the message-queue limits");
    }
}

Status MqTransport::create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept {
    if (params.max_message_size > kMaxFragmentedMessage) return validate(params);
    try {
        out = std::make_unique<MqWriter>(host_, params);
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "mq: cannot create writer: out of memory");
    }
}

Status MqTransport::create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept {
    try {
        if (Status st = validate(params); !st) return st;
        const MqLimits limits = MqLimits::read();
        const std::string name = queue_name(params, params.endpoint_id);
        TopicParams actual_params = params;
        actual_params.depth = depth_for(params, limits);
        if (actual_params.depth != params.depth) {
            log(host_, LogLevel::info,
                "mq: topic '" + params.topic + "': depth " + str(params.depth) +
                    ", not set in the config, exceeds what this system allows (fs.mqueue.msg_max = " + str(limits.msg_max) +
                    ", RLIMIT_MSGQUEUE = " + str(limits.rlimit_bytes) + " bytes" +
                    (limits.privileged ? "" : ", no CAP_SYS_RESOURCE") + "); queue " + name + " holds " +
                    str(actual_params.depth) + " messages (set depth in the config to require more)");
        }
        struct mq_attr attr {};
        attr.mq_maxmsg = static_cast<long>(actual_params.depth);
        attr.mq_msgsize = static_cast<long>(unit_size_for(params, limits));
        const int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC;
        mqd_t q = ::mq_open(name.c_str(), flags, static_cast<mode_t>(params.mode), &attr);
        if (q == static_cast<mqd_t>(-1) && errno == EEXIST) {
            // The id is ours: a queue of that name is a leftover of a dead process that had our pid.
            ::mq_unlink(name.c_str());
            q = ::mq_open(name.c_str(), flags, static_cast<mode_t>(params.mode), &attr);
        }
        // EMFILE here is mostly RLIMIT_MSGQUEUE, shared by all queues of the user: smaller units
        // (more fragments per message) may still fit.
        while (q == static_cast<mqd_t>(-1) && errno == EMFILE && attr.mq_msgsize / 2 >= static_cast<long>(kMinUnit)) {
            attr.mq_msgsize /= 2;
            q = ::mq_open(name.c_str(), flags, static_cast<mode_t>(params.mode), &attr);
            if (q != static_cast<mqd_t>(-1)) {
                log(host_, LogLevel::info,
                    "mq: RLIMIT_MSGQUEUE is nearly used up; queue " + name + " uses " + str(attr.mq_msgsize) +
                        "-byte units (raise it with `ulimit -q` for fewer fragments)");
            }
        }
        if (q == static_cast<mqd_t>(-1)) {
            const int err = errno;
            std::string why;
            if (err == EINVAL) {
                why = " (depth " + str(actual_params.depth) + ", unit " + str(attr.mq_msgsize) +
                      " bytes; limits fs.mqueue.msg_max = " + str(limits.msg_max) +
                      ", fs.mqueue.msgsize_max = " + str(limits.msgsize_max) + ")";
            } else if (err == EMFILE) {
                why = " (either the open-file limit, or RLIMIT_MSGQUEUE = " + str(limits.rlimit_bytes) +
                      " bytes is used up by this user's queues: raise it with `ulimit -q`)";
            } else if (err == ENOSPC) {
                why = " (fs.mqueue.queues_max = " + str(limits.queues_max) +
                      " queues exist already: raise it with `sysctl -w fs.mqueue.queues_max=...`)";
            }
            return Status(err == EINVAL || err == ENOSPC ? Errc::no_resources : errc_from_errno(err),
                          "mq: cannot create queue " + name + ": " + std::strerror(err) + why);
        }
        UniqueFd queue(static_cast<int>(q));
        if (::fchmod(queue.get(), static_cast<mode_t>(params.mode)) != 0) {
            const int err = errno;
            ::mq_unlink(name.c_str());
            return os_error(errc_from_errno(err), "mq: cannot set mode of queue " + name, err);
        }
        struct mq_attr actual {};
        ::mq_getattr(q, &actual);
        if (actual.mq_maxmsg > 0) actual_params.depth = static_cast<std::uint32_t>(actual.mq_maxmsg);
        out = std::make_unique<MqReader>(host_, actual_params, name, std::move(queue),
                                         static_cast<std::size_t>(actual.mq_msgsize));
        return Status::ok();
    } catch (...) {
        return Status(Errc::no_resources, "mq: cannot create reader: out of memory");
    }
}

}  // namespace ferry::mq

FERRY_TRANSPORT_PLUGIN(ferry::mq::MqTransport)
