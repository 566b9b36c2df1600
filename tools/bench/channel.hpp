// The one protocol every measurement speaks, through ferry or through a raw OS mechanism.
//
// A Channel carries fixed-size messages (the size under test) in both directions between the
// ping process and its echo peer. Only the first bytes of a message are written and read (a
// Header), like iceoryx's benchmark: through a zero-copy transport the cost must not grow with
// the size; through a copying one the OS moves all `size` bytes anyway.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bench {

enum class Op : std::uint32_t {
    echo = 1,   // ping -> peer: answer with echo_reply, same sequence
    echo_reply,
    data,       // ping -> peer: count it, no answer (throughput)
    last,       // ping -> peer: count it, answer with ack carrying the count
    ack,
    quit,       // ping -> peer: end the peer
};

struct Header {
    Op op;
    std::uint32_t reserved;
    std::uint64_t sequence;
    std::uint64_t count;
};

inline constexpr std::size_t kMinSize = sizeof(Header);
inline constexpr auto kReceiveTimeout = std::chrono::seconds(10);

class Channel {
public:
    virtual ~Channel() = default;
    // Sends one message of the channel's size starting with `h`. False with `error` set on failure.
    virtual bool send(const Header& h, std::string& error) = 0;
    // Waits up to kReceiveTimeout for one message and copies its header into `h`.
    virtual bool receive(Header& h, std::string& error) = 0;
};

// What the ping side measured over one channel.
struct Measurement {
    bool ok = false;
    std::string error;
    std::vector<double> one_way_us;  // round trip / 2, one per iteration, sorted
    std::vector<double> send_us;     // time inside send() (the sender's own cost), sorted
    double msgs_per_s = 0;
};

// Latency (`round_trips` pings, after warm-up), then throughput (`messages` one-way in five
// bursts, each confirmed by an ack; the median burst rate counts), then tells the peer to quit.
// `peers` > 1: fan-out, every message reaches that many peers; a ping completes when all of them
// answered, a burst when all of them acknowledged every message.
Measurement measure(Channel& ch, std::size_t round_trips, std::size_t messages, std::size_t peers = 1);

// The echo loop of the peer process. Returns the process exit code.
int serve(Channel& ch);

}  // namespace bench
