#include "segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace ferry::shm {

using transport::Errc;
using transport::Status;
using transport::UniqueFd;

Mapping& Mapping::operator=(Mapping&& o) noexcept {
    if (this != &o) {
        reset();
        addr_ = std::exchange(o.addr_, nullptr);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

void Mapping::reset() noexcept {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
}

std::size_t shm_free_bytes() noexcept {
    struct statvfs st {};
    if (::statvfs("/dev/shm", &st) != 0) return SIZE_MAX;
    const unsigned long long bytes = static_cast<unsigned long long>(st.f_bavail) * st.f_frsize;
    return bytes > SIZE_MAX ? SIZE_MAX : static_cast<std::size_t>(bytes);
}

namespace {

// "5 MiB", "4.3 MiB", "12 KiB": rounded up, so that it never understates what was needed.
std::string mib(std::size_t bytes) {
    if (bytes < (std::size_t{1} << 20)) return std::to_string((bytes + 1023) >> 10) + " KiB";
    const std::size_t tenths = (bytes * 10 + (std::size_t{1} << 20) - 1) >> 20;
    return std::to_string(tenths / 10) + (tenths % 10 != 0 ? "." + std::to_string(tenths % 10) : "") + " MiB";
}

// "/dev/shm (64 MiB, 12 MiB free)"
std::string shm_space() {
    struct statvfs st {};
    if (::statvfs("/dev/shm", &st) != 0) return "/dev/shm";
    const auto total = static_cast<std::size_t>(static_cast<unsigned long long>(st.f_blocks) * st.f_frsize);
    const auto free = static_cast<std::size_t>(static_cast<unsigned long long>(st.f_bavail) * st.f_frsize);
    return "/dev/shm (" + std::to_string(total >> 20) + " MiB, " + std::to_string(free >> 20) + " MiB free)";
}

}  // namespace

Status create_segment(const std::string& name,
                      std::size_t size,
                      std::uint32_t mode,
                      Mapping& out,
                      const std::string& advice) noexcept {
    try {
        const std::string path = "/" + name;
        if (const std::size_t free = shm_free_bytes(); size > free) {
            return Status(Errc::no_resources, "shm: cannot reserve " + mib(size) + " for segment " + name + " in " +
                                                  shm_space() + "; " + advice);
        }
        UniqueFd fd(::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode & 0777));
        if (!fd.valid() && errno == EEXIST) {
            // Our names carry our own pid and a per-process serial: an existing object is left
            // over by a dead process that had the same pid.
            ::shm_unlink(path.c_str());
            fd.reset(::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode & 0777));
        }
        if (!fd.valid()) {
            const int err = errno;
            return transport::os_error(transport::errc_from_errno(err), "shm: cannot create segment " + name, err);
        }
        auto fail = [&](const std::string& action, int err) {
            ::shm_unlink(path.c_str());
            Errc code = transport::errc_from_errno(err);
            if (err == ENOMEM || err == ENOSPC || err == EFBIG || err == EINVAL) code = Errc::no_resources;
            return transport::os_error(code, "shm: cannot " + action + " segment " + name + " (" + mib(size) + ")", err);
        };
        if (::fchmod(fd.get(), mode & 0777) != 0) return fail("set the mode of", errno);
        if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return fail("size", errno);
        // Every page reserved before anyone touches one: a full /dev/shm is this error here,
        // never a SIGBUS at some later write (of ours or of a reader's).
        if (const int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); err != 0) {
            const std::string space = shm_space();  // before the unlink gives the pages back
            ::shm_unlink(path.c_str());
            const Errc code = err == ENOSPC || err == ENOMEM || err == EFBIG ? Errc::no_resources
                                                                             : transport::errc_from_errno(err);
            return transport::os_error(code, "shm: cannot reserve " + mib(size) + " for segment " + name + " in " + space +
                                                 " (" + advice + ")",
                                       err);
        }
        void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        if (addr == MAP_FAILED) return fail("map", errno);
        out = Mapping(addr, size);
        return Status::ok();
    } catch (...) {
        return Status(Errc::internal, "shm: out of memory creating segment " + name);
    }
}

Status open_segment(const std::string& name, std::size_t max_size, Mapping& out, bool writable) noexcept {
    try {
        const std::string path = "/" + name;
        UniqueFd fd(::shm_open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0));
        if (!fd.valid()) {
            const int err = errno;
            return transport::os_error(transport::errc_from_errno(err), "shm: cannot open segment " + name, err);
        }
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) {
            const int err = errno;
            return transport::os_error(Errc::io_error, "shm: cannot stat segment " + name, err);
        }
        if (st.st_size == 0) {
            // Created but not sized yet: the creator is between shm_open and ftruncate.
            return Status(Errc::would_block, "shm: segment " + name + " is not initialised yet");
        }
        if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > max_size) {
            return Status(Errc::invalid_argument,
                          "shm: segment " + name + " has an implausible size of " + std::to_string(st.st_size) + " bytes");
        }
        const auto size = static_cast<std::size_t>(st.st_size);
        void* addr = ::mmap(nullptr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd.get(), 0);
        if (addr == MAP_FAILED) {
            const int err = errno;
            return transport::os_error(transport::errc_from_errno(err), "shm: cannot map segment " + name, err);
        }
        out = Mapping(addr, size);
        return Status::ok();
    } catch (...) {
        return Status(Errc::internal, "shm: out of memory opening segment " + name);
    }
}

}  // namespace ferry::shm
