#include "config/config.hpp"

#include <fnmatch.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include <ferry/error.hpp>

namespace ferry::detail {

namespace {

constexpr const char* kRuleKeys = "transport, depth, overflow, max_message_size, block_timeout_ms, mode, reader_buffer_budget";

[[noreturn]] void fail_at(const std::string& source, const toml::source_region& where, const std::string& what) {
    std::ostringstream os;
    os << source << ':' << where.begin.line << ':' << where.begin.column << ": " << what;
    throw Error(Errc::invalid_argument, os.str());
}

std::int64_t require_int(const std::string& source, const toml::node& n, const char* key, std::int64_t min, std::int64_t max) {
    const auto v = n.value<std::int64_t>();
    if (!n.is_integer() || !v || *v < min || *v > max) {
        fail_at(source, n.source(),
                std::string("'") + key + "' must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return *v;
}

ConfigRule parse_rule(const std::string& source, const toml::table& table, bool is_default) {
    ConfigRule rule;
    rule.line = static_cast<int>(table.source().begin.line);
    for (const auto& [k, node] : table) {
        const std::string key(k.str());
        if (key == "match" && !is_default) {
            if (!node.is_string() || node.value<std::string>()->empty())
                fail_at(source, node.source(), "'match' must be a non-empty string pattern such as \"camera/*\"");
            rule.pattern = *node.value<std::string>();
        } else if (key == "transport") {
            if (!node.is_string()) fail_at(source, node.source(), "'transport' must be a string such as \"shm\"");
            rule.transport = *node.value<std::string>();
            rule.transport_line = static_cast<int>(node.source().begin.line);
        } else if (key == "depth") {
            rule.depth = static_cast<std::uint32_t>(require_int(source, node, "depth", 1, 1 << 20));
        } else if (key == "overflow") {
            const auto s = node.value<std::string>();
            if (!node.is_string() || !s || (*s != "block" && *s != "drop_oldest" && *s != "fail"))
                fail_at(source, node.source(), "'overflow' must be one of: block, drop_oldest, fail");
            rule.overflow = *s == "block" ? Overflow::block : *s == "fail" ? Overflow::fail : Overflow::drop_oldest;
        } else if (key == "max_message_size") {
            std::optional<std::size_t> size;
            if (node.is_integer() && *node.value<std::int64_t>() >= 0)
                size = static_cast<std::size_t>(*node.value<std::int64_t>());
            else if (node.is_string())
                size = parse_size(*node.value<std::string>());
            if (!size || *size > (std::size_t{1} << 32))
                fail_at(source, node.source(), "'max_message_size' must be a size up to 4GiB, e.g. 65536 or \"16MiB\"");
            rule.max_message_size = size;
        } else if (key == "block_timeout_ms") {
            rule.block_timeout = std::chrono::milliseconds(require_int(source, node, "block_timeout_ms", 0, 3600 * 1000));
        } else if (key == "reader_buffer_budget") {
            std::optional<std::size_t> size;
            if (node.is_integer() && *node.value<std::int64_t>() >= 0)
                size = static_cast<std::size_t>(*node.value<std::int64_t>());
            else if (node.is_string())
                size = parse_size(*node.value<std::string>());
            if (!size || *size > (std::size_t{1} << 40))
                fail_at(source, node.source(),
                        "'reader_buffer_budget' must be a size up to 1TiB, e.g. \"64MiB\" (0: the default)");
            rule.reader_buffer_budget = size;
        } else if (key == "mode") {
            std::optional<std::string> s = node.value<std::string>();
            if (!node.is_string() || !s || (*s != "0600" && *s != "0660" && *s != "0640"))
                fail_at(source, node.source(), "'mode' must be \"0600\" (owner only), \"0640\" or \"0660\" (owner's group too)");
            rule.mode = static_cast<std::uint32_t>(std::strtoul(s->c_str(), nullptr, 8));
        } else {
            fail_at(source, node.source(),
                    "unknown key '" + key + "' in " + (is_default ? "[defaults]" : "[[topic]]") + "; allowed: " +
                        (is_default ? "" : "match, ") + kRuleKeys);
        }
    }
    if (!is_default && rule.pattern.empty()) fail_at(source, table.source(), "[[topic]] needs a 'match' pattern");
    return rule;
}

void apply(const ConfigRule& rule, Config::Resolved& out, const std::string& source) {
    if (rule.transport) {
        out.qos.transport = *rule.transport;
        out.transport_explicit = true;
        out.where = source + ":" + std::to_string(rule.transport_line);
    }
    if (rule.depth) out.qos.depth = *rule.depth;
    if (rule.overflow) out.qos.overflow = *rule.overflow;
    if (rule.max_message_size) out.qos.max_message_size = *rule.max_message_size;
    if (rule.block_timeout) out.qos.block_timeout = *rule.block_timeout;
    if (rule.mode) out.qos.mode = *rule.mode;
    if (rule.reader_buffer_budget) out.qos.reader_buffer_budget = *rule.reader_buffer_budget;
}

}  // namespace

std::optional<std::size_t> parse_size(std::string_view text) {
    std::size_t i = 0;
    unsigned long long value = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        value = value * 10 + static_cast<unsigned>(text[i] - '0');
        if (value > (1ull << 40)) return std::nullopt;
        ++i;
    }
    if (i == 0) return std::nullopt;
    std::string unit(text.substr(i));
    for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    unsigned long long mult = 1;
    if (unit.empty() || unit == "b") mult = 1;
    else if (unit == "k" || unit == "kib" || unit == "kb") mult = 1ull << 10;
    else if (unit == "m" || unit == "mib" || unit == "mb") mult = 1ull << 20;
    else if (unit == "g" || unit == "gib" || unit == "gb") mult = 1ull << 30;
    else return std::nullopt;
    return static_cast<std::size_t>(value * mult);
}

Config Config::parse(std::string_view text, const std::string& source) {
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        fail_at(source, e.source(), std::string("malformed TOML: ") + std::string(e.description()));
    }
    Config cfg;
    cfg.source_ = source;
    for (const auto& [k, node] : root) {
        const std::string key(k.str());
        if (key == "defaults") {
            if (!node.is_table()) fail_at(source, node.source(), "'defaults' must be a table: [defaults]");
            cfg.defaults_ = parse_rule(source, *node.as_table(), true);
        } else if (key == "topic") {
            if (!node.is_array_of_tables()) fail_at(source, node.source(), "'topic' must be an array of tables: [[topic]]");
            for (const auto& entry : *node.as_array()) cfg.rules_.push_back(parse_rule(source, *entry.as_table(), false));
        } else {
            fail_at(source, node.source(), "unknown key '" + key + "' at top level; allowed: [defaults], [[topic]]");
        }
    }
    return cfg;
}

Config Config::load_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Errc::invalid_argument, "config: cannot open " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return parse(ss.str(), path);
}

Config Config::load_for_node(const std::optional<std::string>& explicit_path) {
    if (explicit_path) return load_file(*explicit_path);
    if (const char* env = std::getenv("FERRY_CONFIG"); env && *env) return load_file(env);
    if (std::ifstream("ferry.toml").good()) return load_file("ferry.toml");
    return Config();
}

Config::Resolved Config::resolve(const std::string& topic) const {
    Resolved out;
    apply(defaults_, out, source_);
    for (const auto& rule : rules_) {
        if (::fnmatch(rule.pattern.c_str(), topic.c_str(), 0) == 0) {
            apply(rule, out, source_);
            break;
        }
    }
    return out;
}

Qos Config::defaults() const {
    Resolved out;
    apply(defaults_, out, source_);
    return out.qos;
}

void Config::check_transports(const std::vector<std::string>& available) const {
    auto check = [&](const ConfigRule& rule) {
        if (!rule.transport) return;
        for (const auto& a : available)
            if (a == *rule.transport) return;
        std::string list;
        for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
        throw Error(Errc::invalid_argument, source_ + ":" + std::to_string(rule.transport_line) + ": unknown transport '" +
                                                *rule.transport + "'; available: " + (list.empty() ? "(none found)" : list));
    };
    check(defaults_);
    for (const auto& r : rules_) check(r);
}

}  // namespace ferry::detail
