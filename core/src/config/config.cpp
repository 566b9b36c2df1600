#include "config/config.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include <ferry/error.hpp>

namespace ferry::detail {

namespace {

// A ferry config is a few dozen lines two levels deep: anything far beyond is not one, and toml++
// parses (and frees) nested tables and arrays recursively, so depth must be bounded before it runs.
constexpr std::size_t kMaxConfigBytes = std::size_t{1} << 20;
constexpr int kMaxNesting = 64;

constexpr const char* kRuleKeys =
    "transport, depth, overflow, max_message_size, block_timeout_ms, mode, linger_ms, max_held_samples, "
    "reader_buffer_budget, wait, spin_us";

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

// A byte count: an integer, or a string such as "16MiB".
std::size_t require_size(const std::string& source, const toml::node& n, std::size_t max, const char* what) {
    std::optional<std::size_t> size;
    if (n.is_integer() && *n.value<std::int64_t>() >= 0)
        size = static_cast<std::size_t>(*n.value<std::int64_t>());
    else if (n.is_string())
        size = parse_size(*n.value<std::string>());
    if (!size || *size > max) fail_at(source, n.source(), what);
    return *size;
}

// [dds]: the settings the dds plugin reads (plugins/dds/README.md), as key -> value text.
PluginOptions parse_dds(const std::string& source, const toml::table& table) {
    PluginOptions out;
    for (const auto& [k, node] : table) {
        const std::string key(k.str());
        if (key == "domain_id") {
            // DDS domain ids 0..232 map to UDP ports below 65536 (RTPS port mapping).
            out.emplace_back(key, std::to_string(require_int(source, node, "domain_id", 0, 232)));
        } else if (key == "interfaces") {
            const auto* arr = node.as_array();
            if (arr == nullptr) fail_at(source, node.source(), "'interfaces' must be an array of interface names, e.g. [\"lo\"]");
            std::string list;
            for (const auto& item : *arr) {
                const auto name = item.value<std::string>();
                const bool ok = item.is_string() && name && !name->empty() && name->size() < 64 &&
                                std::all_of(name->begin(), name->end(), [](char c) {
                                    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
                                           c == ':' || c == '@';
                                });
                if (!ok) fail_at(source, item.source(), "'interfaces' entries must be interface names or addresses, e.g. \"lo\"");
                list += (list.empty() ? "" : ",") + *name;
            }
            out.emplace_back(key, list);
        } else {
            fail_at(source, node.source(), "unknown key '" + key + "' in [dds]; allowed: domain_id, interfaces");
        }
    }
    return out;
}

// [bridge]: topic patterns `ferry bridge` forwards, and the domain of its network side.
BridgeRules parse_bridge(const std::string& source, const toml::table& table) {
    BridgeRules out;
    auto patterns = [&](const toml::node& node, const char* key) {
        const auto* arr = node.as_array();
        if (arr == nullptr)
            fail_at(source, node.source(), std::string("'") + key + "' must be an array of topic patterns, e.g. [\"camera/*\"]");
        std::vector<std::string> list;
        for (const auto& item : *arr) {
            const auto p = item.value<std::string>();
            if (!item.is_string() || !p || p->empty() || p->size() > 255)
                fail_at(source, item.source(), std::string("'") + key + "' entries must be topic names or fnmatch patterns (1 to 255 characters)");
            list.push_back(*p);
        }
        return list;
    };
    for (const auto& [k, node] : table) {
        const std::string key(k.str());
        if (key == "out") {
            out.out = patterns(node, "out");
        } else if (key == "in") {
            out.in = patterns(node, "in");
        } else if (key == "network_domain") {
            const auto d = node.value<std::string>();
            const bool ok = node.is_string() && d && !d->empty() && d->size() <= 32 &&
                            std::all_of(d->begin(), d->end(), [](char c) {
                                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
                            });
            if (!ok) fail_at(source, node.source(), "'network_domain' must be a ferry domain: 1 to 32 characters of A-Z a-z 0-9 _ -");
            out.network_domain = *d;
        } else {
            fail_at(source, node.source(), "unknown key '" + key + "' in [bridge]; allowed: out, in, network_domain");
        }
    }
    return out;
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
            rule.max_message_size = require_size(source, node, std::size_t{1} << 32,
                                                 "'max_message_size' must be a size up to 4GiB, e.g. 65536 or \"16MiB\"");
        } else if (key == "block_timeout_ms") {
            rule.block_timeout = std::chrono::milliseconds(require_int(source, node, "block_timeout_ms", 0, 3600 * 1000));
        } else if (key == "linger_ms") {
            rule.linger = std::chrono::milliseconds(require_int(source, node, "linger_ms", 0, 3600 * 1000));
        } else if (key == "max_held_samples") {
            rule.max_held_samples = static_cast<std::uint32_t>(require_int(source, node, "max_held_samples", 1, 1024));
        } else if (key == "reader_buffer_budget") {
            rule.reader_buffer_budget = require_size(source, node, std::size_t{1} << 40,
                                                     "'reader_buffer_budget' must be a size up to 1TiB, e.g. \"64MiB\" (0: the default)");
        } else if (key == "wait") {
            const auto s = node.value<std::string>();
            if (!node.is_string() || !s || (*s != "adaptive" && *s != "sleep" && *s != "spin"))
                fail_at(source, node.source(), "'wait' must be one of: adaptive, sleep, spin");
            rule.wait = *s;
        } else if (key == "spin_us") {
            rule.spin_us = static_cast<std::uint32_t>(require_int(source, node, "spin_us", 0, 10000));
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
    if (rule.depth) {
        out.qos.depth = *rule.depth;
        out.depth_explicit = true;
    }
    if (rule.overflow) out.qos.overflow = *rule.overflow;
    if (rule.max_message_size) out.qos.max_message_size = *rule.max_message_size;
    if (rule.block_timeout) out.qos.block_timeout = *rule.block_timeout;
    if (rule.mode) out.qos.mode = *rule.mode;
    if (rule.linger) out.qos.linger = *rule.linger;
    if (rule.max_held_samples) out.qos.max_held_samples = *rule.max_held_samples;
    if (rule.reader_buffer_budget) out.qos.reader_buffer_budget = *rule.reader_buffer_budget;
    if (rule.wait) out.qos.wait = *rule.wait;
    if (rule.spin_us) out.qos.spin_us = *rule.spin_us;
}

[[noreturn]] void fail_line(const std::string& source, int line, const std::string& what) {
    throw Error(Errc::invalid_argument, source + ":" + std::to_string(line) + ": " + what);
}

// Walks the text as TOML lexes it (strings, comments, keys, values) and refuses it at the first
// place where tables, arrays, inline tables and dotted keys nest deeper than kMaxNesting.
void check_nesting(std::string_view text, const std::string& source) {
    enum class Ctx : char { key, value };
    std::vector<char> open;  // '[' array, '{' inline table, innermost last
    Ctx ctx = Ctx::key;
    int header = 0;    // levels opened by the current [table] header
    int key_dots = 0;  // dots of the key being read
    int line = 1;
    bool in_header = false;
    auto check = [&](int depth) {
        if (depth > kMaxNesting)
            fail_line(source, line, "tables, arrays and dotted keys nest deeper than " + std::to_string(kMaxNesting) +
                                        " levels; a ferry config needs two");
    };
    const std::size_t n = text.size();
    for (std::size_t i = 0; i < n; ++i) {
        const char c = text[i];
        if (c == '\n') {
            ++line;
            if (open.empty()) {
                ctx = Ctx::key;
                key_dots = 0;
                in_header = false;
            }
            continue;
        }
        if (c == '#') {
            while (i + 1 < n && text[i + 1] != '\n') ++i;
            continue;
        }
        if (c == '"' || c == '\'') {
            const bool multi = i + 2 < n && text[i + 1] == c && text[i + 2] == c;
            const std::string_view close = multi ? std::string_view(c == '"' ? "\"\"\"" : "'''") : std::string_view(&text[i], 1);
            i += multi ? 3 : 1;
            while (i < n && text.substr(i, close.size()) != close) {
                if (text[i] == '\n') ++line;
                if (c == '"' && text[i] == '\\') ++i;
                ++i;
            }
            i += close.size() - 1;
            continue;
        }
        if (ctx == Ctx::key) {
            if (open.empty() && !in_header && c == '[' && key_dots == 0) {
                in_header = true;
                header = 1;
                if (i + 1 < n && text[i + 1] == '[') ++i;
            } else if (c == '.') {
                if (in_header) {
                    check(++header);
                } else {
                    check(header + static_cast<int>(open.size()) + ++key_dots + 1);
                }
            } else if (c == '=') {
                ctx = Ctx::value;
                key_dots = 0;
            } else if (c == '}' && !open.empty() && open.back() == '{') {
                open.pop_back();
                ctx = Ctx::value;
            }
            continue;
        }
        if (c == '[' || c == '{') {
            open.push_back(c);
            check(header + static_cast<int>(open.size()) + 1);
            ctx = c == '{' ? Ctx::key : Ctx::value;
            key_dots = 0;
        } else if ((c == ']' || c == '}') && !open.empty()) {
            open.pop_back();
        } else if (c == ',' && !open.empty() && open.back() == '{') {
            ctx = Ctx::key;
            key_dots = 0;
        }
    }
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
    check_nesting(text, source);
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
        } else if (key == "dds") {
            if (!node.is_table()) fail_at(source, node.source(), "'dds' must be a table: [dds]");
            cfg.plugin_options_["dds"] = parse_dds(source, *node.as_table());
        } else if (key == "bridge") {
            if (!node.is_table()) fail_at(source, node.source(), "'bridge' must be a table: [bridge]");
            cfg.bridge_ = parse_bridge(source, *node.as_table());
        } else {
            fail_at(source, node.source(), "unknown key '" + key + "' at top level; allowed: [defaults], [[topic]], [dds], [bridge]");
        }
    }
    return cfg;
}

Config Config::load_file(const std::string& path) {
    auto refuse = [&](const std::string& why) { throw Error(Errc::invalid_argument, "config: " + path + ": " + why); };
    // O_NONBLOCK: opening a FIFO without a writer must not wait for one.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) refuse(std::string("cannot open: ") + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) refuse(std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) {
        const char* kind = S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                           : S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device"
                           : S_ISSOCK(st.st_mode) ? "a socket" : "not a regular file";
        refuse(std::string("is ") + kind + "; a config must be a regular file");
    }
    auto too_large = [&](std::uint64_t size) {
        refuse("is " + std::to_string(size) + " bytes; a config may be at most " + std::to_string(kMaxConfigBytes) +
               " bytes (1 MiB)");
    };
    if (static_cast<std::uint64_t>(st.st_size) > kMaxConfigBytes) too_large(static_cast<std::uint64_t>(st.st_size));
    std::string text(static_cast<std::size_t>(st.st_size) + 1, '\0');
    std::size_t got = 0;
    while (true) {
        if (got == text.size()) {
            if (text.size() > kMaxConfigBytes) too_large(text.size());  // grew while being read
            text.resize(std::min(text.size() * 2, kMaxConfigBytes + 1));
        }
        const ssize_t r = ::read(fd, &text[got], text.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) refuse(std::string("cannot read: ") + std::strerror(errno));
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    text.resize(got);
    return parse(text, path);
}

Config Config::load_for_node(const std::optional<std::string>& explicit_path) {
    if (explicit_path) return load_file(*explicit_path);
    if (const char* env = std::getenv("FERRY_CONFIG"); env && *env) return load_file(env);
    // stat, not open: a FIFO named ferry.toml must be refused by load_file, not waited on.
    if (struct stat st {}; ::stat("ferry.toml", &st) == 0) return load_file("ferry.toml");
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

const PluginOptions& Config::plugin_options(const std::string& transport) const {
    static const PluginOptions kNone;
    const auto it = plugin_options_.find(transport);
    return it == plugin_options_.end() ? kNone : it->second;
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
