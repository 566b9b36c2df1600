// ferry record: topics to MCAP. One drain thread per topic takes each message and queues it for
// the writer as it lies (on shm: the sample in the shared segment, no copy), as long as the
// subscription may hold more samples (max_held_samples, one kept free for taking); beyond that it
// copies the message into the topic's bounded buffer and releases the sample, so publishers never
// wait for the disk. A full buffer drops the message and counts it. One writer thread merges the
// queues in arrival order into chunked MCAP files and releases each held sample as soon as it is
// in the open chunk, before the chunk is compressed and written.
#include <fnmatch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include <ferry/introspection.hpp>

#include "bus.hpp"
#include "cli.hpp"
#include "json_schema.hpp"
#include "mcap.hpp"
#include "output.hpp"
#include "recording.hpp"
#include "topics.hpp"
#include "type_modules.hpp"

namespace ferry::cli {

namespace {

struct RecordOptions {
    std::vector<std::string> patterns;
    bool all = false;
    std::string output;
    std::string compression = "zstd";
    std::uint64_t chunk_size = 1 << 20;
    std::uint64_t max_size = 0;
    double max_duration = 0;
    double duration = 0;
    std::uint64_t buffer = 64ull << 20;
};

struct Item {
    bus::Meta meta;
    std::uint64_t log_time;
    std::string data;  // a copy, when `held` is empty
    bus::Held held;    // the message where the transport delivered it

    const std::byte* bytes() const {
        return held ? held.data() : reinterpret_cast<const std::byte*>(data.data());
    }
    std::size_t size() const { return held ? held.size() : data.size(); }
};

struct TopicState {
    std::string name, type, transport;
    std::unique_ptr<bus::Tap> tap;
    std::thread drain;

    std::mutex m;  // guards q, q_bytes
    std::deque<Item> q;
    std::size_t q_bytes = 0;               // copies only: held samples live in the transport's memory
    std::atomic<std::size_t> held{0};      // samples queued or being written, not yet released
    std::atomic<std::uint64_t> copied{0};  // messages copied because `held` was at its bound
    std::atomic<std::uint64_t> buffer_lost{0};
    std::atomic<std::uint64_t> transport_lost{0};

    // Writer thread only.
    std::uint64_t written = 0, bytes = 0;
};

std::string hex_id(std::uint64_t id) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
    return buf;
}

class Recorder {
public:
    Recorder(const Globals& g, const RecordOptions& o)
        : g_(g), o_(o), modules_(g.type_modules), bus_("ferry_record", g.domain) {
        if (!mcap::parse_compression(o.compression, wopts_.compression))
            throw UsageError("--compression must be zstd, lz4 or none, not '" + o.compression + "'");
        wopts_.chunk_size = o.chunk_size;
        wopts_.profile = kProfile;
        wopts_.library = "ferry record";
        split_ = o.max_size > 0 || o.max_duration > 0;
    }

    int run() {
        open_next();  // fails early (bad path) before anything is subscribed
        writer_ = std::thread([this] { write_loop(); });
        const auto start = std::chrono::steady_clock::now();
        const auto end = o_.duration > 0 ? start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                       std::chrono::duration<double>(o_.duration))
                                         : std::chrono::steady_clock::time_point::max();
        while (!g_interrupted.load() && !failed_.load() && std::chrono::steady_clock::now() < end) {
            discover();
            // Topics that appear later are found by the next look at the registry.
            const auto next = std::min(end, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
            if (!sleep_until_or_interrupted(next)) break;
        }
        stop_drains_.store(true);
        for (auto& t : topics_snapshot()) {
            if (t->drain.joinable()) t->drain.join();
            copy_held(*t);
            t->transport_lost.store(t->tap->lost());
            t->tap.reset();  // no longer a subscriber: a `block` publisher must not wait for us while we write
        }
        stop_writer_.store(true);
        cv_.notify_all();
        writer_.join();
        print_summary();
        if (failed_.load()) throw RuntimeError(error_);
        return kExitOk;
    }

private:
    bool wanted(const std::string& topic) const {
        if (o_.all) return true;
        for (const auto& p : o_.patterns)
            if (::fnmatch(p.c_str(), topic.c_str(), 0) == 0) return true;
        return false;
    }

    std::vector<TopicState*> topics_snapshot() {
        std::lock_guard<std::mutex> lock(topics_m_);
        std::vector<TopicState*> v;
        for (auto& t : topics_) v.push_back(t.get());
        return v;
    }

    void discover() {
        for (const auto& info : list_topics(g_.domain)) {
            if (!wanted(info.name) || known_.count(info.name)) continue;
            known_.insert(info.name);
            auto t = std::make_unique<TopicState>();
            t->name = info.name;
            t->transport = info.qos.transport;
            try {
                t->tap = std::make_unique<bus::Tap>(bus_.tap(info.name));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "ferry: record: cannot subscribe to '%s': %s\n", shown(info.name).c_str(),
                             shown(e.what()).c_str());
                continue;
            }
            t->type = t->tap->type();
            TopicState* p = t.get();
            {
                std::lock_guard<std::mutex> lock(topics_m_);
                topics_.push_back(std::move(t));
            }
            p->drain = std::thread([this, p] { drain(*p); });
            if (!g_.json)
                std::fprintf(stderr, "ferry: recording '%s' (%s on %s)\n", shown(p->name).c_str(), shown(p->type).c_str(),
                             shown(p->transport).c_str());
        }
    }

    void drain(TopicState& t) {
        // One held sample is always left to take the next message with.
        const std::size_t max_queued_held = t.tap->max_held() > 0 ? t.tap->max_held() - 1 : 0;
        const auto keep = [&](bus::Held h) {
            const std::uint64_t log_time = static_cast<std::uint64_t>(wall_now_ns());
            {
                std::lock_guard<std::mutex> lock(t.m);
                if (t.held.load() < max_queued_held) {
                    t.held.fetch_add(1);
                    const bus::Meta meta = h.meta();
                    t.q.push_back(Item{meta, log_time, {}, std::move(h)});
                } else {
                    if (t.q_bytes + h.size() + sizeof(Item) > o_.buffer) {
                        t.buffer_lost.fetch_add(1);
                    } else {
                        t.copied.fetch_add(1);
                        t.q.push_back(Item{h.meta(), log_time,
                                           std::string(reinterpret_cast<const char*>(h.data()), h.size()), {}});
                        t.q_bytes += h.size() + sizeof(Item);
                    }
                }
            }
            cv_.notify_one();  // `h`, if copied, is released on return, outside the lock
        };
        while (!stop_drains_.load())
            if (bus::Held h = t.tap->take_held(std::chrono::milliseconds(50))) keep(std::move(h));
        // Whatever arrived before the stop is still taken, without waiting.
        while (bus::Held h = t.tap->take_held(std::chrono::nanoseconds(0))) keep(std::move(h));
    }

    // Before the subscription goes: the samples still queued become copies.
    static void copy_held(TopicState& t) {
        std::lock_guard<std::mutex> lock(t.m);
        for (auto& i : t.q) {
            if (!i.held) continue;
            i.data.assign(reinterpret_cast<const char*>(i.held.data()), i.held.size());
            i.held.reset();
            t.held.fetch_sub(1);
        }
    }

    std::string file_name() const {
        if (!split_) return o_.output;
        std::string stem = o_.output, ext;
        const auto dot = stem.rfind('.');
        const auto slash = stem.rfind('/');
        if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) {
            ext = stem.substr(dot);
            stem = stem.substr(0, dot);
        }
        return stem + "_" + std::to_string(file_index_) + ext;
    }

    void open_next() {
        if (writer_file_) finish_file();
        writer_file_ = std::make_unique<mcap::Writer>(file_name(), wopts_);
        files_.push_back(writer_file_->path());
        ++file_index_;
        channels_.clear();
        schemas_.clear();
        file_start_ns_ = 0;
    }

    void finish_file() {
        mcap::KeyValues lost;
        for (auto* t : topics_snapshot()) {
            lost["lost." + t->name] = std::to_string(t->buffer_lost.load() + t->transport_lost.load());
            lost["recorded." + t->name] = std::to_string(t->written);
        }
        writer_file_->write_metadata("ferry.recording", lost);
        writer_file_->close();
        writer_file_.reset();
    }

    std::uint16_t channel_for(TopicState& t, std::uint64_t publisher, const Item& first) {
        const auto key = std::make_pair(&t, publisher);
        auto it = channels_.find(key);
        if (it != channels_.end()) return it->second;
        auto s = schemas_.find(t.type);
        std::uint16_t schema;
        if (s != schemas_.end()) {
            schema = s->second;
        } else {
            std::string data = builtin_json_schema(t.type);
            if (data.empty() && modules_.supports(t.type)) {
                std::string error;
                if (auto generated = modules_.json_schema(t.type, error))
                    data = *generated;  // from the serialize function: every field, however empty
                else if (auto json = modules_.to_json(t.type, first.bytes(), first.size(), error))
                    data = json_schema_from_sample(t.type, *json);  // a module built before schemas
            }
            if (data.empty())
                data = R"({"$schema":"https://json-schema.org/draft/2020-12/schema","title":)" + json_escape(t.type) +
                       R"(,"description":"ferry user type (cereal binary); record with --types MODULE for its fields"})";
            schema = writer_file_->add_schema(t.type, "jsonschema", data);
            schemas_[t.type] = schema;
        }
        const auto id = writer_file_->add_channel(
            schema, t.name, kMessageEncoding,
            {{kTypeKey, t.type}, {kTransportKey, t.transport}, {"ferry.publisher", hex_id(publisher)}});
        channels_[key] = id;
        return id;
    }

    void write_loop() {
        struct Entry {
            TopicState* topic;
            Item item;
        };
        std::vector<Entry> batch;
        try {
            while (true) {
                const bool stopping = stop_writer_.load();
                batch.clear();
                for (auto* t : topics_snapshot()) {
                    std::deque<Item> q;
                    {
                        std::lock_guard<std::mutex> lock(t->m);
                        q.swap(t->q);
                        t->q_bytes = 0;
                    }
                    for (auto& i : q) batch.push_back(Entry{t, std::move(i)});
                }
                if (batch.empty()) {
                    if (stopping) break;
                    std::unique_lock<std::mutex> lock(cv_m_);
                    cv_.wait_for(lock, std::chrono::milliseconds(50));
                    continue;
                }
                std::stable_sort(batch.begin(), batch.end(),
                                 [](const Entry& a, const Entry& b) { return a.item.log_time < b.item.log_time; });
                for (auto& e : batch) {
                    write_one(*e.topic, e.item);  // into the open chunk: the bytes are not needed after
                    if (e.item.held) {
                        e.item.held.reset();  // the transport may reuse the memory now
                        e.topic->held.fetch_sub(1);
                    }
                    if (writer_file_->chunk_full()) writer_file_->flush_chunk();  // compress, write
                }
            }
            finish_file();
        } catch (const std::exception& e) {
            error_ = e.what();
            failed_.store(true);
        }
    }

    void write_one(TopicState& t, const Item& item) {
        if (file_start_ns_ == 0) file_start_ns_ = item.log_time;
        // Split before this message, so it opens the next file: nothing lost at the seam.
        const bool too_big = o_.max_size > 0 && writer_file_->message_count() > 0 &&
                             writer_file_->approximate_size() + item.size() > o_.max_size;
        const bool too_long = o_.max_duration > 0 && writer_file_->message_count() > 0 &&
                              static_cast<double>(item.log_time - file_start_ns_) * 1e-9 >= o_.max_duration;
        if (too_big || too_long) {
            open_next();
            file_start_ns_ = item.log_time;
        }
        mcap::Message m;
        m.channel_id = channel_for(t, item.meta.publisher_id, item);
        m.sequence = static_cast<std::uint32_t>(item.meta.sequence);
        m.log_time = item.log_time;
        m.publish_time = static_cast<std::uint64_t>(item.meta.timestamp_ns);
        m.data = item.bytes();
        m.size = item.size();
        writer_file_->append(m);
        ++t.written;
        t.bytes += item.size();
    }

    void print_summary() {
        const auto topics = topics_snapshot();
        if (g_.json) {
            auto arr = Json::array();
            for (auto* t : topics)
                arr.push(Json::object()
                             .add("topic", Json::string(t->name))
                             .add("type", Json::string(t->type))
                             .add("messages", Json::unsigned_integer(t->written))
                             .add("bytes", Json::unsigned_integer(t->bytes))
                             .add("copied", Json::unsigned_integer(t->copied.load()))
                             .add("lost", Json::unsigned_integer(t->buffer_lost.load() + t->transport_lost.load())));
            auto files = Json::array();
            for (const auto& f : files_) files.push(Json::string(f));
            out(to_string(Json::object().add("files", files).add("topics", arr)) + "\n");
            return;
        }
        Table table({"topic", "type", "messages", "bytes", "copied", "lost"}, {false, false, true, true, true, true});
        for (auto* t : topics)
            table.add_row({t->name, t->type, std::to_string(t->written), human_bytes(static_cast<double>(t->bytes)),
                           std::to_string(t->copied.load()),
                           std::to_string(t->buffer_lost.load() + t->transport_lost.load())});
        std::string text = "recorded " + std::to_string(files_.size()) + " file(s):";
        for (const auto& f : files_) text += " " + shown(f);
        text += "\n";
        if (!table.empty()) text += table.str();
        else text += "no topic matched\n";
        out(text);
    }

    const Globals& g_;
    const RecordOptions& o_;
    TypeModules modules_;  // user types' JSON, for their schemas
    bus::Bus bus_;
    mcap::WriterOptions wopts_;
    bool split_ = false;

    std::mutex topics_m_;
    std::vector<std::unique_ptr<TopicState>> topics_;
    std::set<std::string> known_;  // main thread only

    std::atomic<bool> stop_drains_{false}, stop_writer_{false}, failed_{false};
    std::string error_;
    std::mutex cv_m_;
    std::condition_variable cv_;
    std::thread writer_;

    // Writer thread only (and the main thread before it starts).
    std::unique_ptr<mcap::Writer> writer_file_;
    std::vector<std::string> files_;
    int file_index_ = 0;
    std::map<std::pair<TopicState*, std::uint64_t>, std::uint16_t> channels_;
    std::map<std::string, std::uint16_t> schemas_;
    std::uint64_t file_start_ns_ = 0;
};

}  // namespace

void add_record_command(CLI::App& parent, Globals& g) {
    auto o = std::make_shared<RecordOptions>();
    auto* rec = parent.add_subcommand("record", "record topics to an MCAP file until Ctrl-C (or --duration)");
    rec->fallthrough();
    rec->add_option("patterns", o->patterns, "topic names or shell patterns ('/camera/*')");
    rec->add_flag("-a,--all", o->all, "record every topic");
    rec->add_option("-o,--output", o->output, "output file (FILE.mcap; FILE_<n>.mcap when splitting)")->required();
    rec->add_option("--compression", o->compression, "chunk compression: zstd (default), lz4 or none");
    rec->add_option("--chunk-size", o->chunk_size, "uncompressed bytes per chunk (default 1 MiB)")
        ->check(CLI::PositiveNumber);
    rec->add_option("--max-size", o->max_size, "start a new numbered file at this many bytes");
    rec->add_option("--max-duration", o->max_duration, "start a new numbered file after this many seconds")
        ->check(CLI::NonNegativeNumber);
    rec->add_option("--duration", o->duration, "stop after this many seconds")->check(CLI::NonNegativeNumber);
    rec->add_option("--buffer", o->buffer, "bytes each topic may queue for the writer before dropping (default 64 MiB)")
        ->check(CLI::PositiveNumber);
    rec->callback([&g, o] {
        g.action = [&g, o] {
            if (o->patterns.empty() && !o->all) throw UsageError("record: name topics or patterns, or pass --all");
            Recorder r(g, *o);
            return r.run();
        };
    });
}

}  // namespace ferry::cli
