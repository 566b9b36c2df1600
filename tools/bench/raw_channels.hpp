// The baselines: the OS mechanism under each transport, driven directly with the least code
// that does the job, so "ferry / raw" shows what ferry adds on top of the kernel.
//
//   pipe  a pair of named pipes (FIFOs), blocking read/write of the whole message
//   uds   a connected AF_UNIX stream socket pair, blocking read/write of the whole message
//   mq    a pair of POSIX message queues; messages above fs.mqueue.msgsize_max are sent as
//         several queue messages of that size (ferry's mq transport fragments the same way)
//   shm   a memfd with one ring of `depth` message slots per direction and a futex wake-up;
//         only the Header is written into a slot (zero copy, like ferry's loans)
//   shm-spin  the same rings, both sides polling instead of sleeping: no system call at all,
//         the lower bound of a hand-over between two CPUs (kind "raw-spin")
//
// The ping side creates the OS objects (prepare), spawns the peer with peer_args(), then
// connects. The peer rebuilds its end from those arguments.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "channel.hpp"

namespace bench {

class RawPing : public Channel {
public:
    // Arguments that let the peer open its end (appended to its command line).
    virtual std::vector<std::string> peer_args() const = 0;
    // After the peer was spawned: finishes opening this side (waits up to 10 s for the peer).
    virtual bool connect(std::string& error) = 0;
};

// "pipe", "uds", "mq", "shm" or "shm-spin"; null with `error` set if the objects cannot be created.
std::unique_ptr<RawPing> make_raw_ping(const std::string& mechanism,
                                       std::size_t size,
                                       std::uint32_t depth,
                                       std::string& error);

// The peer's end, from the arguments peer_args() produced.
std::unique_ptr<Channel> make_raw_peer(const std::string& mechanism,
                                       std::size_t size,
                                       std::uint32_t depth,
                                       const std::string& a,
                                       const std::string& b,
                                       std::string& error);

#ifdef FERRY_BENCH_DDS
// dds: Cyclone DDS's C API with ferry's wire type and the QoS of a `block` topic, on lo
// (dds_channel.cpp).
std::unique_ptr<RawPing> make_dds_ping(std::size_t size, std::string& error);
std::unique_ptr<Channel> make_dds_peer(std::size_t size, const std::string& prefix, std::string& error);
#endif

// /proc/sys/fs/mqueue/msgsize_max and msg_max (defaults 8192 and 10 if unreadable).
std::size_t mq_msgsize_max();
std::size_t mq_msg_max();

}  // namespace bench
