// Results: one record per (transport, ferry|raw, size), the table, the JSON and the targets.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace bench {

struct Record {
    std::string transport;
    std::string kind;  // "ferry", "raw", or for shm also "ferry-spin", "raw-spin", "iceoryx-poll", "iceoryx-waitset", "zmq"
    std::size_t size = 0;
    bool ok = false;
    std::string error;  // when !ok
    double p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0;
    double send_p50_us = 0;  // of that, the p50 time the sending call itself took (breakdown)
    double msgs_per_s = 0;
    double gb_per_s = 0;  // msgs_per_s * size / 1e9
    std::size_t round_trips = 0, messages = 0;
    std::size_t subscribers = 1;  // --fanout: subscriber processes each message reached
};

// Nearest-rank percentile of sorted values, q in (0, 1].
double percentile(const std::vector<double>& sorted, double q);

// "64 B", "4 KiB", "16 MiB".
std::string size_label(std::size_t size);

void print_table(std::ostream& os, const std::vector<Record>& records);
// shm next to the spinning ring, ZeroMQ and iceoryx (nothing when none of them was measured).
void print_others(std::ostream& os, const std::vector<Record>& records);
void write_json(std::ostream& os, const std::vector<Record>& records);
// The project's performance targets, each "met", "MISSED" or "n/a" with the numbers.
void print_targets(std::ostream& os, const std::vector<Record>& records);

}  // namespace bench
