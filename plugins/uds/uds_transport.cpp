#include "uds_transport.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <ferry/transport/naming.hpp>
#include <ferry/transport/plugin.hpp>

namespace ferry::uds {

std::string socket_path(const TopicParams& params, std::uint64_t reader_id) {
    return transport::runtime_path(params.runtime_dir, params.domain, reader_id, "sock");
}

Status UnixAddress::init(const std::string& path) {
    addr_ = sockaddr_un{};
    addr_.sun_family = AF_UNIX;
    std::string target = path;
    if (target.size() >= sizeof(addr_.sun_path)) {
        const auto slash = path.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
        dir_.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!dir_.valid()) {
            return transport::os_error(transport::errc_from_errno(errno), "uds: cannot open directory " + dir, errno);
        }
        target = "/proc/self/fd/" + std::to_string(dir_.get()) + "/" + path.substr(slash + 1);
        if (target.size() >= sizeof(addr_.sun_path)) {
            return Status(Errc::invalid_argument, "uds: socket name too long: " + path);
        }
    }
    std::memcpy(addr_.sun_path, target.c_str(), target.size() + 1);
    len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() + 1);
    return Status::ok();
}

transport::Capabilities UdsTransport::capabilities() const noexcept {
    transport::Capabilities caps;
    caps.zero_copy = false;
    caps.max_message_size = 0;
    caps.summary = "Unix domain stream sockets: one connection per writer and reader, one copy each side";
    return caps;
}

Status UdsTransport::validate(const TopicParams& params) const noexcept {
    try {
        if (params.domain.empty()) return Status(Errc::invalid_argument, "uds: empty domain");
        if (params.runtime_dir.empty()) return Status(Errc::invalid_argument, "uds: no runtime directory");
        if (params.depth == 0) return Status(Errc::invalid_argument, "uds: depth must be at least 1");
        struct stat st {};
        if (::stat(params.runtime_dir.c_str(), &st) != 0) {
            return transport::os_error(transport::errc_from_errno(errno),
                                       "uds: cannot use runtime directory " + params.runtime_dir, errno);
        }
        if (!S_ISDIR(st.st_mode)) {
            return Status(Errc::invalid_argument, "uds: runtime directory " + params.runtime_dir + " is not a directory");
        }
        return Status::ok();
    } catch (...) {
        return Status(Errc::internal, "uds: validate failed");
    }
}

Status UdsTransport::create_writer(const TopicParams& params, std::unique_ptr<transport::Writer>& out) noexcept {
    try {
        if (auto st = validate(params); !st) return st;
        out = std::make_unique<UdsWriter>(*host_, params);
        return Status::ok();
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("uds: cannot create writer: ") + e.what());
    }
}

Status UdsTransport::create_reader(const TopicParams& params, std::unique_ptr<transport::Reader>& out) noexcept {
    try {
        if (auto st = validate(params); !st) return st;
        return UdsReader::create(*host_, params, out);
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("uds: cannot create reader: ") + e.what());
    }
}

}  // namespace ferry::uds

FERRY_TRANSPORT_PLUGIN(ferry::uds::UdsTransport)
