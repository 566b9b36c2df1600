#include "channel.hpp"

#include <algorithm>
#include <cstdio>

namespace bench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kBursts = 5;

// The answers of `peers` peers to ping `seq`.
bool replies(Channel& ch, std::uint64_t seq, std::size_t peers, std::string& error) {
    for (std::size_t i = 0; i < peers; ++i) {
        Header r{};
        if (!ch.receive(r, error)) return false;
        if (r.op != Op::echo_reply || r.sequence != seq) {
            error = "peer answered ping " + std::to_string(seq) + " with op " +
                    std::to_string(static_cast<unsigned>(r.op)) + " sequence " + std::to_string(r.sequence);
            return false;
        }
    }
    return true;
}

bool round_trip(Channel& ch, std::uint64_t seq, std::size_t peers, std::string& error) {
    return ch.send(Header{Op::echo, 0, seq, 0}, error) && replies(ch, seq, peers, error);
}

// `messages` one way, the last asking for an ack; true once every peer confirms it got them all.
bool burst(Channel& ch, std::uint64_t first_seq, std::size_t messages, std::size_t peers, std::string& error) {
    for (std::size_t i = 0; i + 1 < messages; ++i) {
        if (!ch.send(Header{Op::data, 0, first_seq + i, 0}, error)) return false;
    }
    if (!ch.send(Header{Op::last, 0, first_seq + messages - 1, messages}, error)) return false;
    for (std::size_t i = 0; i < peers; ++i) {
        Header r{};
        if (!ch.receive(r, error)) return false;
        if (r.op != Op::ack || r.count != messages) {
            error = "peer acknowledged " + std::to_string(r.count) + " of " + std::to_string(messages) + " messages";
            return false;
        }
    }
    return true;
}

}  // namespace

Measurement measure(Channel& ch, std::size_t round_trips, std::size_t messages, std::size_t peers) {
    Measurement m;
    std::uint64_t seq = 1;
    // Warm-up: fault in buffers and pages on both sides, let the scheduler settle.
    const std::size_t warm_trips = std::max<std::size_t>(20, round_trips / 10);
    for (std::size_t i = 0; i < warm_trips; ++i) {
        if (!round_trip(ch, seq++, peers, m.error)) return m;
    }
    if (!burst(ch, seq, std::max<std::size_t>(1, messages / 10), peers, m.error)) return m;
    seq += messages;

    m.one_way_us.reserve(round_trips);
    m.send_us.reserve(round_trips);
    for (std::size_t i = 0; i < round_trips; ++i) {
        const auto t0 = Clock::now();
        Header h{Op::echo, 0, seq, 0};
        if (!ch.send(h, m.error)) return m;
        const auto t1 = Clock::now();
        if (!replies(ch, seq, peers, m.error)) return m;
        const auto t2 = Clock::now();
        ++seq;
        m.one_way_us.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count() / 2);
        m.send_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::sort(m.one_way_us.begin(), m.one_way_us.end());
    std::sort(m.send_us.begin(), m.send_us.end());

    // Throughput: the median of kBursts bursts, so that one preemption does not decide it.
    std::vector<double> rates;
    const std::size_t per_burst = std::max<std::size_t>(1, messages / kBursts);
    for (std::size_t b = 0; b < kBursts; ++b) {
        const auto t0 = Clock::now();
        if (!burst(ch, seq, per_burst, peers, m.error)) return m;
        const auto t1 = Clock::now();
        seq += per_burst;
        rates.push_back(static_cast<double>(per_burst) / std::chrono::duration<double>(t1 - t0).count());
    }
    std::sort(rates.begin(), rates.end());
    m.msgs_per_s = rates[rates.size() / 2];

    std::string ignored;
    ch.send(Header{Op::quit, 0, 0, 0}, ignored);
    m.ok = true;
    return m;
}

int serve(Channel& ch) {
    std::uint64_t counted = 0;
    std::string error;
    bool ok = true;
    while (ok) {
        Header h{};
        if (!ch.receive(h, error)) break;
        switch (h.op) {
            case Op::echo:
                ok = ch.send(Header{Op::echo_reply, 0, h.sequence, 0}, error);
                break;
            case Op::data:
                ++counted;
                break;
            case Op::last:
                ok = ch.send(Header{Op::ack, 0, h.sequence, ++counted}, error);
                counted = 0;
                break;
            case Op::quit:
                return 0;
            default:
                error = "unexpected op " + std::to_string(static_cast<unsigned>(h.op));
                ok = false;
        }
    }
    std::fprintf(stderr, "ferry-bench peer: %s\n", error.c_str());
    return 1;
}

}  // namespace bench
