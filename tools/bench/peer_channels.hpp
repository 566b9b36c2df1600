// Other middleware, measured by the same protocol as ferry and the raw baselines, in the same run:
//
//   zmq              ZeroMQ pub/sub over ipc:// (Unix sockets): a PUB socket per direction,
//                    high-water mark `depth` with ZMQ_XPUB_NODROP (the sender waits rather than
//                    drops, like ferry's `block`); each message is the full size, copied.
//   iceoryx-poll     iceoryx 2 (POSH) untyped publisher/subscriber, zero copy (only the Header is
//                    written into the loaned chunk), the subscriber busy-polls take().
//   iceoryx-waitset  the same, the subscriber sleeps in a WaitSet until data arrives.
//
// iceoryx queues hold `depth` samples; publishers wait for a full subscriber
// (WAIT_FOR_CONSUMER / BLOCK_PRODUCER). Its daemon, RouDi, is started by ferry-bench itself
// with mempools for the sizes measured (Roudi below) and stopped at the end.
//
// Each is compiled in when its Debian package is installed when ferry-bench is built
// (libzmq3-dev; libiceoryx-posh-dev and iceoryx); otherwise available() says so.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "raw_channels.hpp"

namespace bench {

// Whether `kind` ("zmq", "iceoryx-poll", "iceoryx-waitset") is built in; else `why` says what to install.
bool other_available(const std::string& kind, std::string& why);

std::unique_ptr<RawPing> make_other_ping(const std::string& kind, std::size_t size, std::uint32_t depth,
                                         std::string& error);
std::unique_ptr<Channel> make_other_peer(const std::string& kind, std::size_t size, std::uint32_t depth,
                                         const std::string& a, const std::string& b, std::string& error);

// iceoryx's daemon for the run: started with mempools for `sizes` (each 2·depth + 16 chunks),
// stopped (SIGTERM) by stop() or the destructor.
class Roudi {
public:
    Roudi() = default;
    Roudi(const Roudi&) = delete;
    Roudi& operator=(const Roudi&) = delete;
    ~Roudi() { stop(); }
    bool start(const std::vector<std::size_t>& sizes, std::uint32_t depth, std::string& error);
    void stop();
    bool running() const { return pid_ > 0; }

private:
    pid_t pid_ = -1;
    std::string dir_;
};

}  // namespace bench
