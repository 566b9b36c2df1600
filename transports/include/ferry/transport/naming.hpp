// Names of OS objects. Every segment, socket, FIFO and queue of ferry is named
//   ferry.<domain>.<endpoint id, 16 hex digits>.<suffix>
// and the endpoint id carries the creating process's pid in its high bits, so that stale
// objects of a dead process can be found and removed without any registry (ferry clean).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <ferry/transport/transport.hpp>

namespace ferry::transport {

inline constexpr int kEndpointPidShift = 24;

// An endpoint id for the calling process; `serial` must be unique within the process.
inline std::uint64_t make_endpoint_id(pid_t pid, std::uint32_t serial) noexcept {
    return (static_cast<std::uint64_t>(pid) << kEndpointPidShift) | (serial & 0xFFFFFFu);
}

inline pid_t endpoint_pid(std::uint64_t endpoint_id) noexcept {
    return static_cast<pid_t>(endpoint_id >> kEndpointPidShift);
}

// "ferry.<domain>.<id>.<suffix>", no leading slash.
std::string object_name(const std::string& domain, std::uint64_t endpoint_id, const char* suffix);

// Full path of a file-system object (socket, FIFO) in the runtime directory.
std::string runtime_path(const std::string& runtime_dir,
                         const std::string& domain,
                         std::uint64_t endpoint_id,
                         const char* suffix);

// $FERRY_RUNTIME_DIR, else $XDG_RUNTIME_DIR/ferry, else /tmp/ferry-<uid>; created 0700 if
// missing. Returns an empty string and fills `error` when it cannot be created or is unsafe
// (not a directory, owned by someone else).
std::string default_runtime_dir(std::string& error);

// Parses "ferry.<domain>.<16 hex>.<...>" and returns the endpoint id, or 0 if `name` is not
// an endpoint object of `domain`.
std::uint64_t parse_object_name(const std::string& name, const std::string& domain) noexcept;

// The entries of directory `dir` named "ferry.<domain>.<16 hex id>.<suffix>..." (the name after
// the id starting with `suffix`), as objects of that one endpoint with path dir + "/" + name.
// Never throws: an unreadable directory or no memory gives what was found so far.
std::vector<OsObject> list_objects_in(const std::string& dir, const std::string& domain, const char* suffix) noexcept;

// A process as ferry tells processes apart: pids are reused, so the process's start time (clock
// ticks since boot, field 22 of /proc/<pid>/stat) goes with its pid. start_time 0: not known.
struct ProcessId {
    std::int32_t pid = 0;
    std::uint64_t start_time = 0;
};
// This process (re-read after fork()).
ProcessId this_process() noexcept;
// Its start time as /proc says, or 0 if the process does not exist (or /proc is not readable).
std::uint64_t process_start_time(pid_t pid) noexcept;

// The one liveness rule of ferry, used by the core and every plugin. A process lives if a
// process of this pid exists here, is not a zombie (a zombie takes, reads and answers nothing)
// and, when `p.start_time` is known, started then (not a newer process that reused the pid);
// or, failing that, if a ferry process of that pid lives in another pid namespace (its liveness
// token, see peer_alive, is held). One read of /proc/<pid>/stat; one scan of /dev/shm when the
// process is not found here.
bool process_alive(const ProcessId& p) noexcept;
inline bool process_alive(pid_t pid) noexcept { return process_alive(ProcessId{pid, 0}); }

// True if the process that created `endpoint_id` still lives, in whatever pid namespace it
// runs (containers sharing /dev/shm): every process taking part in a domain holds an exclusive
// flock on /dev/shm/ferry.<domain>.alive.<token>, with token = pid << 24 | random bits, which
// the kernel releases at its death. Looks up the tokens of the id's pid (one directory scan;
// for a check on a timeout or an error, not per message). Conservative: an unreadable token,
// or two processes of one pid in different namespaces, count as alive.
bool peer_alive(const std::string& domain, std::uint64_t endpoint_id) noexcept;

// The pids (as in endpoint ids) of every live token of `domain`: for checking many objects.
std::vector<pid_t> live_token_pids(const std::string& domain) noexcept;

}  // namespace ferry::transport
