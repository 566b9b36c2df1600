// The `ferry topic ...` commands, one file per group.
#pragma once

#include <chrono>
#include <cstdint>

#include <ferry/introspection.hpp>

#include "cli.hpp"
#include "output.hpp"

namespace ferry::cli {

void add_topic_list_info(CLI::App& topic, Globals& g);  // topic_list.cpp
void add_topic_echo_pub(CLI::App& topic, Globals& g);   // topic_echo_pub.cpp
void add_topic_stats(CLI::App& topic, Globals& g);      // topic_stats.cpp

Json qos_json(const Qos& q);
Json endpoint_json(const EndpointInfo& e);

// steady_clock now in ns: the clock of rate windows.
inline std::int64_t steady_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// system_clock now in ns: the clock of MessageInfo::timestamp_ns, for delays.
inline std::int64_t wall_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Sleeps until `t` in short steps so that Ctrl-C is seen; false if interrupted.
bool sleep_until_or_interrupted(std::chrono::steady_clock::time_point t);

}  // namespace ferry::cli
