// ferry bag info / ferry bag echo: look into an MCAP recording.
#include <algorithm>
#include <map>
#include <cstdio>
#include <optional>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "mcap.hpp"
#include "output.hpp"
#include "recording.hpp"
#include "schema_decode.hpp"
#include "type_modules.hpp"
#include "values.hpp"

namespace ferry::cli {

namespace {

std::string channel_type(const mcap::FileInfo& info, const mcap::Channel& c) {
    auto it = c.metadata.find(kTypeKey);
    if (it != c.metadata.end()) return it->second;
    auto s = info.schemas.find(c.schema_id);
    return s != info.schemas.end() ? s->second.name : "";
}

std::string status_text(const mcap::FileInfo& info) {
    if (info.finished) return "finished";
    return "NOT FINISHED (recorder stopped before closing the file): recovered " +
           std::to_string(info.message_count) + " message(s) in " + std::to_string(info.chunk_count) +
           " complete chunk(s); " + info.unfinished_reason;
}

int run_info(const Globals& g, const std::string& path) {
    mcap::Reader reader(path);
    const auto& info = reader.scan();
    const double duration = info.message_count ? (info.end_time - info.start_time) * 1e-9 : 0.0;
    std::string compression;
    for (const auto& [name, n] : info.chunks_by_compression)
        compression += (compression.empty() ? "" : ", ") + name + " " + std::to_string(n);
    if (g.json) {
        auto topics = Json::array();
        for (const auto& [id, c] : info.channels) {
            const auto n = info.channel_messages.count(id) ? info.channel_messages.at(id) : 0;
            const auto b = info.channel_bytes.count(id) ? info.channel_bytes.at(id) : 0;
            topics.push(Json::object()
                            .add("topic", Json::string(c.topic))
                            .add("type", Json::string(channel_type(info, c)))
                            .add("channel_id", Json::unsigned_integer(id))
                            .add("message_encoding", Json::string(c.message_encoding))
                            .add("messages", Json::unsigned_integer(n))
                            .add("bytes", Json::unsigned_integer(b)));
        }
        auto compressions = Json::object();
        for (const auto& [name, n] : info.chunks_by_compression) compressions.add(name, Json::unsigned_integer(n));
        auto metadata = Json::array();
        for (const auto& [name, kv] : info.metadata) {
            auto entries = Json::object();
            for (const auto& [k, v] : kv) entries.add(k, Json::string(v));
            metadata.push(Json::object().add("name", Json::string(name)).add("entries", entries));
        }
        auto j = Json::object()
                     .add("file", Json::string(path))
                     .add("size", Json::unsigned_integer(info.file_size))
                     .add("finished", Json::boolean(info.finished))
                     .add("library", Json::string(info.library))
                     .add("profile", Json::string(info.profile))
                     .add("messages", Json::unsigned_integer(info.message_count))
                     .add("start_ns", Json::unsigned_integer(info.start_time))
                     .add("end_ns", Json::unsigned_integer(info.end_time))
                     .add("duration_s", Json::number(duration))
                     .add("chunks", Json::unsigned_integer(info.chunk_count))
                     .add("compression", compressions)
                     .add("topics", topics)
                     .add("metadata", metadata);
        if (!info.finished)
            j.add("recovered_bytes", Json::unsigned_integer(info.recovered_up_to))
                .add("unfinished", Json::string(info.unfinished_reason));
        out(to_string(j) + "\n");
        return kExitOk;
    }
    std::string text;
    text += "file:        " + shown(path) + " (" + human_bytes(static_cast<double>(info.file_size)) + ")\n";
    text += "status:      " + shown(status_text(info)) + "\n";
    text += "library:     " + shown(info.library) + (info.profile.empty() ? "" : ", profile " + shown(info.profile)) + "\n";
    text += "messages:    " + std::to_string(info.message_count) + "\n";
    if (info.message_count) {
        text += "duration:    " + fixed(duration, 3) + " s\n";
        text += "start:       " + utc_time_ns(info.start_time) + " UTC\n";
        text += "end:         " + utc_time_ns(info.end_time) + " UTC\n";
    }
    text += "chunks:      " + std::to_string(info.chunk_count) + (compression.empty() ? "" : " (" + compression + ")") + "\n";
    Table t({"topic", "type", "messages", "bytes", "encoding"}, {false, false, true, true, false});
    for (const auto& [id, c] : info.channels) {
        const auto n = info.channel_messages.count(id) ? info.channel_messages.at(id) : 0;
        const auto b = info.channel_bytes.count(id) ? info.channel_bytes.at(id) : 0;
        t.add_row({c.topic, channel_type(info, c), std::to_string(n), human_bytes(static_cast<double>(b)),
                   c.message_encoding});
    }
    if (!t.empty()) text += "\n" + t.str();
    for (const auto& [name, kv] : info.metadata) {
        text += "\nmetadata " + shown(name) + ":\n";
        for (const auto& [k, v] : kv) text += "  " + shown(k) + " = " + shown(v) + "\n";
    }
    out(text);
    return kExitOk;
}

struct EchoOptions {
    std::string path;
    std::vector<std::string> topics;
    std::uint64_t count = 0;
    std::size_t max_bytes = 64;
};

int run_echo(const Globals& g, const EchoOptions& o) {
    TypeModules modules(g.type_modules);
    mcap::Reader reader(o.path);
    std::uint64_t shown_count = 0;
    const mcap::FileInfo* infop = &reader.info();
    // A user type's schema says how its fields travel: decode with it when no module is given.
    std::map<std::uint16_t, std::pair<std::unique_ptr<SchemaDecoder>, std::string>> decoders;
    auto decoder_for = [&](std::uint16_t schema_id, std::string& error) -> const SchemaDecoder* {
        auto it = decoders.find(schema_id);
        if (it == decoders.end()) {
            std::string why;
            std::unique_ptr<SchemaDecoder> d;
            auto s = infop->schemas.find(schema_id);
            if (s != infop->schemas.end() && s->second.encoding == "jsonschema") d = SchemaDecoder::make(s->second.data, why);
            it = decoders.emplace(schema_id, std::make_pair(std::move(d), why)).first;
        }
        if (!it->second.first && !it->second.second.empty()) error = it->second.second;
        return it->second.first.get();
    };
    const auto& info = reader.scan([&](const mcap::Channel& c, const mcap::Message& m) {
        if (!o.topics.empty() && std::find(o.topics.begin(), o.topics.end(), c.topic) == o.topics.end()) return true;
        const std::string type = channel_type(*infop, c);
        std::optional<std::string> decoded;
        std::string error;
        if (c.message_encoding == kMessageEncoding) {
            if (is_builtin_type(type)) {
                decoded = g.json ? builtin_to_json(type, m.data, m.size) : builtin_to_text(type, m.data, m.size);
                if (!decoded && type != "bytes") error = std::to_string(m.size) + " bytes are not a " + type;
            } else if (modules.supports(type)) {
                decoded = modules.to_json(type, m.data, m.size, error);
            } else if (const SchemaDecoder* d = decoder_for(c.schema_id, error)) {
                decoded = d->to_json(m.data, m.size, error);
            }
        }
        if (g.json) {
            auto j = Json::object()
                         .add("topic", Json::string(c.topic))
                         .add("type", Json::string(type))
                         .add("sequence", Json::unsigned_integer(m.sequence))
                         .add("publish_time_ns", Json::unsigned_integer(m.publish_time))
                         .add("log_time_ns", Json::unsigned_integer(m.log_time))
                         .add("size", Json::unsigned_integer(m.size))
                         .add("data", decoded ? Json::raw(*decoded) : Json::null());
            if (!decoded) j.add("hex", Json::string(hex_string(m.data, m.size, o.max_bytes)));
            if (!error.empty()) j.add("error", Json::string(error));
            out(to_string(j) + "\n");
        } else {
            std::string text = "[" + utc_time_ns(m.log_time) + "] " + shown(c.topic) + " #" +
                               std::to_string(m.sequence) + " (" + shown(type) + ", " + std::to_string(m.size) +
                               " bytes" + (error.empty() ? "" : ", " + shown(error)) + ")\n";
            text += decoded ? shown(*decoded) + "\n" : hex_preview(m.data, m.size, o.max_bytes);
            out(text);
        }
        ++shown_count;
        return o.count == 0 || shown_count < o.count;
    });
    if (!info.finished && o.count == 0)
        std::fprintf(stderr, "ferry: %s: %s\n", shown(o.path).c_str(), shown(status_text(info)).c_str());
    return kExitOk;
}

}  // namespace

void add_bag_commands(CLI::App& parent, Globals& g) {
    auto* bag = parent.add_subcommand("bag", "look into MCAP recordings made by ferry record");
    bag->require_subcommand(1);
    bag->fallthrough();

    auto path = std::make_shared<std::string>();
    auto* info = bag->add_subcommand("info", "duration, topics with types, counts, sizes, compression, finished or recovered");
    info->fallthrough();
    info->add_option("file", *path, "MCAP file")->required();
    info->callback([&g, path] { g.action = [&g, path] { return run_info(g, *path); }; });

    auto eo = std::make_shared<EchoOptions>();
    auto* echo = bag->add_subcommand("echo", "print the recorded messages in file order (user types as JSON with --types)");
    echo->fallthrough();
    echo->add_option("file", eo->path, "MCAP file")->required();
    echo->add_option("-t,--topic", eo->topics, "only this topic (repeatable)");
    echo->add_option("-n,--count", eo->count, "stop after N messages");
    echo->add_option("--max-bytes", eo->max_bytes, "bytes shown of messages that do not decode (default 64)");
    echo->callback([&g, eo] { g.action = [&g, eo] { return run_echo(g, *eo); }; });
}

}  // namespace ferry::cli
