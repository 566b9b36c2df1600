#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

namespace bench {

namespace {

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string us(double v) { return v >= 100 ? fmt("%.0f", v) : v >= 10 ? fmt("%.1f", v) : fmt("%.2f", v); }
std::string rate(double v) { return v >= 1e6 ? fmt("%.2f M", v / 1e6) : fmt("%.1f k", v / 1e3); }
std::string gbs(double v) { return v >= 10 ? fmt("%.0f", v) : fmt("%.2f", v); }
std::string ratio(double v) { return fmt("%.2f", v); }

const Record* find(const std::vector<Record>& rs, const std::string& t, const std::string& kind, std::size_t size) {
    for (const auto& r : rs)
        if (r.ok && r.transport == t && r.kind == kind && r.size == size) return &r;
    return nullptr;
}

bool has_row(const std::vector<std::pair<std::string, std::size_t>>& rows, const Record& r) {
    for (const auto& [t, s] : rows)
        if (t == r.transport && s == r.size) return true;
    return false;
}

std::string json_number(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt("\\u%04x", static_cast<unsigned char>(c));
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace

double percentile(const std::vector<double>& sorted, double q) {
    if (sorted.empty()) return 0;
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    return sorted[rank == 0 ? 0 : std::min(rank, sorted.size()) - 1];
}

std::string size_label(std::size_t size) {
    if (size >= (1u << 20) && size % (1u << 20) == 0) return std::to_string(size >> 20) + " MiB";
    if (size >= (1u << 10) && size % (1u << 10) == 0) return std::to_string(size >> 10) + " KiB";
    return std::to_string(size) + " B";
}

void print_table(std::ostream& os, const std::vector<Record>& records) {
    std::vector<std::pair<std::string, std::size_t>> rows;
    for (const auto& r : records)
        if (!has_row(rows, r)) rows.emplace_back(r.transport, r.size);

    auto cell = [](const Record* r, const std::function<std::string(const Record&)>& f) {
        return r ? f(*r) : std::string("n/a");
    };
    char line[512];
    os << "One-way latency (round trip / 2), microseconds\n\n";
    os << "| transport | size | ferry p50 | p90 | p99 | max | raw p50 | p90 | p99 | max | ferry/raw p50 |\n";
    os << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& [t, s] : rows) {
        const Record* f = find(records, t, "ferry", s);
        const Record* r = find(records, t, "raw", s);
        std::snprintf(line, sizeof line, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.c_str(),
                      size_label(s).c_str(), cell(f, [](auto& x) { return us(x.p50_us); }).c_str(),
                      cell(f, [](auto& x) { return us(x.p90_us); }).c_str(),
                      cell(f, [](auto& x) { return us(x.p99_us); }).c_str(),
                      cell(f, [](auto& x) { return us(x.max_us); }).c_str(),
                      cell(r, [](auto& x) { return us(x.p50_us); }).c_str(),
                      cell(r, [](auto& x) { return us(x.p90_us); }).c_str(),
                      cell(r, [](auto& x) { return us(x.p99_us); }).c_str(),
                      cell(r, [](auto& x) { return us(x.max_us); }).c_str(),
                      f && r ? ratio(f->p50_us / r->p50_us).c_str() : "n/a");
        os << line;
    }
    os << "\nThroughput, one direction (GB/s = messages/s x size; for shm only a header is written)\n\n";
    os << "| transport | size | ferry msgs/s | ferry GB/s | raw msgs/s | raw GB/s | ferry/raw |\n";
    os << "|---|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& [t, s] : rows) {
        const Record* f = find(records, t, "ferry", s);
        const Record* r = find(records, t, "raw", s);
        std::snprintf(line, sizeof line, "| %s | %s | %s | %s | %s | %s | %s |\n", t.c_str(), size_label(s).c_str(),
                      cell(f, [](auto& x) { return rate(x.msgs_per_s); }).c_str(),
                      cell(f, [](auto& x) { return gbs(x.gb_per_s); }).c_str(),
                      cell(r, [](auto& x) { return rate(x.msgs_per_s); }).c_str(),
                      cell(r, [](auto& x) { return gbs(x.gb_per_s); }).c_str(),
                      f && r ? ratio(f->msgs_per_s / r->msgs_per_s).c_str() : "n/a");
        os << line;
    }
    for (const auto& r : records)
        if (!r.ok) os << "\nFAILED " << r.transport << ' ' << r.kind << ' ' << size_label(r.size) << ": " << r.error;
    os << '\n';
}

void print_others(std::ostream& os, const std::vector<Record>& records) {
    const std::vector<std::string> kinds = {"ferry", "ferry-spin", "raw", "raw-spin", "iceoryx-poll", "iceoryx-waitset", "zmq"};
    std::vector<std::string> present;
    bool others = false;
    for (const auto& k : kinds) {
        const bool any = std::any_of(records.begin(), records.end(),
                                     [&](const Record& r) { return r.ok && r.transport == "shm" && r.kind == k; });
        if (!any) continue;
        present.push_back(k);
        others = others || (k != "ferry" && k != "raw");
    }
    if (!others) return;
    std::vector<std::size_t> sizes;
    for (const auto& r : records)
        if (r.transport == "shm" && std::find(sizes.begin(), sizes.end(), r.size) == sizes.end()) sizes.push_back(r.size);
    os << "shm next to other mechanisms: one-way p50 / p99 in microseconds, one-direction msgs/s\n\n| size |";
    for (const auto& k : present) os << ' ' << k << " |";
    os << "\n|---:|";
    for (std::size_t i = 0; i < present.size(); ++i) os << "---:|";
    os << '\n';
    for (std::size_t s : sizes) {
        os << "| " << size_label(s) << " |";
        for (const auto& k : present) {
            const Record* r = find(records, "shm", k, s);
            os << ' ' << (r ? us(r->p50_us) + " / " + us(r->p99_us) + " us, " + rate(r->msgs_per_s) : std::string("n/a"))
               << " |";
        }
        os << '\n';
    }
    os << '\n';
}

void write_json(std::ostream& os, const std::vector<Record>& records) {
    os << "[\n";
    for (std::size_t i = 0; i < records.size(); ++i) {
        const Record& r = records[i];
        os << "  {\"transport\": " << json_string(r.transport) << ", \"kind\": " << json_string(r.kind)
           << ", \"size\": " << r.size << ", \"subscribers\": " << r.subscribers;
        if (r.ok) {
            os << ", \"p50_us\": " << json_number(r.p50_us) << ", \"p90_us\": " << json_number(r.p90_us)
               << ", \"p99_us\": " << json_number(r.p99_us) << ", \"max_us\": " << json_number(r.max_us)
               << ", \"send_p50_us\": " << json_number(r.send_p50_us)
               << ", \"msgs_per_s\": " << json_number(r.msgs_per_s) << ", \"gb_per_s\": " << json_number(r.gb_per_s)
               << ", \"round_trips\": " << r.round_trips << ", \"messages\": " << r.messages;
        } else {
            os << ", \"p50_us\": null, \"p90_us\": null, \"p99_us\": null, \"max_us\": null"
               << ", \"msgs_per_s\": null, \"gb_per_s\": null, \"error\": " << json_string(r.error);
        }
        os << (i + 1 < records.size() ? "},\n" : "}\n");
    }
    os << "]\n";
}

void print_targets(std::ostream& os, const std::vector<Record>& records) {
    os << "Targets (reported, not asserted)\n\n";
    auto p50 = [&](const char* t, const char* kind, std::size_t s) {
        const Record* r = find(records, t, kind, s);
        return r ? r->p50_us : NAN;
    };
    // `value` compared with `limit`; "n/a" when a number is missing.
    auto line = [&](const std::string& what, double value, bool at_most, double limit, const std::string& detail) {
        std::string verdict = "n/a  ";
        if (std::isfinite(value)) verdict = (at_most ? value <= limit : value >= limit) ? "met  " : "MISSED";
        os << "- " << verdict << ' ' << what << ": " << (std::isfinite(value) ? detail : "not measured") << '\n';
    };
    const std::size_t k64 = 64, k64k = 64 << 10, k4m = 4 << 20, k16m = 16 << 20;
    // A fan-out run (--fanout N) has its own target; the others are about one subscriber.
    const auto fan = std::find_if(records.begin(), records.end(), [](const Record& r) { return r.subscribers > 1; });
    if (fan != records.end()) {
        const double v = p50("shm", "ferry", k4m) / p50("shm", "ferry", k64);
        line("fan-out to " + std::to_string(fan->subscribers) + " subscribers: shm p50 at 4 MiB within 2x of 64 B", v,
             true, 2.0, ratio(v) + "x (" + us(p50("shm", "ferry", k4m)) + " us vs " + us(p50("shm", "ferry", k64)) + " us)");
        return;
    }

    double v = p50("shm", "ferry", k4m) / p50("shm", "ferry", k64);
    line("shm p50 at 4 MiB within 2x of shm at 64 B", v, true, 2.0,
         ratio(v) + "x (" + us(p50("shm", "ferry", k4m)) + " us vs " + us(p50("shm", "ferry", k64)) + " us)");
    v = p50("shm", "ferry", k64) / p50("shm", "raw", k64);
    line("shm p50 at 64 B within 1.5x of raw shm+futex", v, true, 1.5,
         ratio(v) + "x (" + us(p50("shm", "ferry", k64)) + " us vs " + us(p50("shm", "raw", k64)) + " us)");
    v = p50("uds", "ferry", k16m) / p50("shm", "ferry", k16m);
    line("shm at 16 MiB at least 10x faster than uds (p50)", v, false, 10.0,
         ratio(v) + "x (uds " + us(p50("uds", "ferry", k16m)) + " us, shm " + us(p50("shm", "ferry", k16m)) + " us)");
    const Record* s64 = find(records, "shm", "ferry", k64);
    v = s64 ? s64->msgs_per_s : NAN;
    line(">= 1 M 64-byte messages/s through shm", v, false, 1e6, rate(v) + " msgs/s");
    // Issue targets of the shm transport against the other mechanisms, when they were measured.
    v = p50("shm", "ferry", k64) / p50("shm", "iceoryx-poll", k64);
    line("shm (default config) p50 at 64 B at or below iceoryx's busy-polling subscriber", v, true, 1.0,
         ratio(v) + "x (" + us(p50("shm", "ferry", k64)) + " us vs " + us(p50("shm", "iceoryx-poll", k64)) + " us)");
    v = p50("shm", "ferry-spin", k64) / p50("shm", "raw-spin", k64);
    line("shm with wait = \"spin\" p50 at 64 B within 2x of a raw spinning ring", v, true, 2.0,
         ratio(v) + "x (" + us(p50("shm", "ferry-spin", k64)) + " us vs " + us(p50("shm", "raw-spin", k64)) + " us)");
    const Record* raw64 = find(records, "shm", "raw", k64);
    const Record* zmq64 = find(records, "shm", "zmq", k64);
    v = s64 && raw64 ? s64->msgs_per_s / raw64->msgs_per_s : NAN;
    line("shm 64 B throughput at least 0.8x the raw shm ring", v, false, 0.8,
         ratio(v) + "x (" + (s64 ? rate(s64->msgs_per_s) : "n/a") + " vs " + (raw64 ? rate(raw64->msgs_per_s) : "n/a") +
             " msgs/s)");
    v = s64 && zmq64 ? s64->msgs_per_s / zmq64->msgs_per_s : NAN;
    line("shm 64 B throughput above ZeroMQ ipc pub/sub", v, false, 1.0 + 1e-9,
         ratio(v) + "x (" + (s64 ? rate(s64->msgs_per_s) : "n/a") + " vs " + (zmq64 ? rate(zmq64->msgs_per_s) : "n/a") +
             " msgs/s)");
    for (const char* t : {"uds", "mq", "pipe", "dds"}) {
        for (std::size_t s : {k64, k64k}) {
            v = p50(t, "ferry", s) / p50(t, "raw", s);
            line(std::string(t) + " p50 at " + size_label(s) + " within 1.3x of raw", v, true, 1.3,
                 ratio(v) + "x (" + us(p50(t, "ferry", s)) + " us vs " + us(p50(t, "raw", s)) + " us)");
        }
    }
    // dds: throughput next to raw Cyclone DDS with the same wire type and QoS.
    for (std::size_t s : {k64, k64k}) {
        const Record* f = find(records, "dds", "ferry", s);
        const Record* r = find(records, "dds", "raw", s);
        v = f && r ? f->msgs_per_s / r->msgs_per_s : NAN;
        line("dds throughput at " + size_label(s) + " at least 0.8x of raw", v, false, 0.8,
             ratio(v) + "x (" + rate(f ? f->msgs_per_s : NAN) + " vs " + rate(r ? r->msgs_per_s : NAN) + " msgs/s)");
    }
}

}  // namespace bench
