// The TOML config: defaults plus rules matched by topic-name pattern (first match wins).
//
//   [defaults]
//   transport = "uds"          # uds | shm | mq | pipe | any installed plugin
//   depth = 16
//   overflow = "block"         # block | drop_oldest | fail
//   max_message_size = "16MiB"
//   block_timeout_ms = 1000
//   mode = "0600"              # "0660" lets the file's group in
//   linger_ms = 2000           # closing a publisher waits this long for undelivered messages
//   max_held_samples = 4       # samples one subscriber may hold at once
//   reader_buffer_budget = "64MiB"  # incomplete messages one subscriber may hold (0: default)
//   wait = "adaptive"          # adaptive | sleep | spin: how a subscriber waits (shm)
//   spin_us = 50               # adaptive: poll this long before sleeping (0..10000)
//
//   [[topic]]
//   match = "camera/*"         # fnmatch pattern
//   transport = "shm"
//
//   [dds]                      # settings of the dds plugin (plugins/dds/README.md)
//   domain_id = 0
//   interfaces = ["lo"]
//
//   [bridge]                   # what `ferry bridge` forwards (README.md, "The bridge")
//   out = ["chatter", "camera/*"]   # local topics republished on dds
//   in = ["cmd/*"]                  # dds topics republished locally
//   network_domain = "net"          # the ferry domain of the dds side
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ferry/qos.hpp>

namespace ferry::detail {

struct ConfigRule {
    std::string pattern;  // empty for [defaults]
    int line = 0;
    std::optional<std::string> transport;
    int transport_line = 0;
    std::optional<std::uint32_t> depth;
    std::optional<Overflow> overflow;
    std::optional<std::size_t> max_message_size;
    std::optional<std::chrono::milliseconds> block_timeout;
    std::optional<std::uint32_t> mode;
    std::optional<std::chrono::milliseconds> linger;
    std::optional<std::uint32_t> max_held_samples;
    std::optional<std::size_t> reader_buffer_budget;
    std::optional<std::string> wait;
    std::optional<std::uint32_t> spin_us;
};

// A plugin's table of the config ([dds]), validated here, handed to the plugin as key -> value
// text in TopicParams::options.
using PluginOptions = std::vector<std::pair<std::string, std::string>>;

// The [bridge] table.
struct BridgeRules {
    std::vector<std::string> out;  // fnmatch patterns of local topics sent to the network
    std::vector<std::string> in;   // fnmatch patterns of network topics brought in
    std::string network_domain = "net";
};

class Config {
public:
    // Built-in defaults only.
    Config() = default;

    // Throws ferry::Error("<source>:<line>:<column>: ...") on malformed TOML, an unknown key,
    // or a bad value.
    static Config parse(std::string_view text, const std::string& source);
    static Config load_file(const std::string& path);
    // FERRY_CONFIG if set (must exist), else ./ferry.toml if present, else built-in defaults.
    static Config load_for_node(const std::optional<std::string>& explicit_path);

    struct Resolved {
        Qos qos;
        bool transport_explicit = false;  // set by the file, not the built-in default
        std::string where;                // "file:line" of the transport setting
        bool depth_explicit = false;      // depth set by the file, not the built-in default
    };
    Resolved resolve(const std::string& topic) const;
    // [defaults] over the built-in defaults (what applies to the domain as a whole).
    Qos defaults() const;

    // Throws if a rule names a transport not in `available` (file:line, and the list).
    void check_transports(const std::vector<std::string>& available) const;

    const std::string& source() const noexcept { return source_; }

    // The table named after `transport` ([dds]), empty when the file has none.
    const PluginOptions& plugin_options(const std::string& transport) const;
    const std::map<std::string, PluginOptions>& all_plugin_options() const noexcept { return plugin_options_; }

    // The [bridge] table (empty patterns when the file has none).
    const BridgeRules& bridge() const noexcept { return bridge_; }

private:
    std::string source_ = "<built-in defaults>";
    ConfigRule defaults_;
    std::vector<ConfigRule> rules_;
    std::map<std::string, PluginOptions> plugin_options_;
    BridgeRules bridge_;
};

// "4096", "64KiB", "16MiB", "1GiB", "4k", "2M": bytes, or nullopt if not a size.
std::optional<std::size_t> parse_size(std::string_view text);

}  // namespace ferry::detail
