// The measured path: ferry's public API. Topic "bench/ping" carries ping -> peer, "bench/pong"
// the answers. Every message is a RawPublisher loan of the full size with only the Header
// written into it, published; received with RawSubscriber::take and read in place.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "channel.hpp"

namespace bench {

// Throws ferry::Error if the node, publisher or subscriber cannot be set up.
// `ping_side`: publishes on bench/ping and subscribes to bench/pong (else the reverse).
std::unique_ptr<Channel> make_ferry_channel(const std::string& domain,
                                            const std::string& config_path,
                                            std::size_t size,
                                            bool ping_side);

// Waits (blocking, up to 10 s) until this side's publisher has `subscribers` subscribers.
bool ferry_wait_connected(Channel& ch, std::string& error, std::size_t subscribers = 1);

}  // namespace bench
