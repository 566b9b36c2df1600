// The `ferry` command against live processes: talker, listener and a typed helper, each test
// in its own domain. Output is parsed (JSON through a tiny reader, tables by regex).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <ferry/introspection.hpp>

#include "support/process.hpp"

using ferry::test::Child;
using namespace std::chrono_literals;

namespace {

// --- a tiny JSON reader (enough for the command's output) ---------------------------------
struct Json {
    enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
    bool b = false;
    double num = 0;
    std::string str;
    std::vector<Json> arr;
    std::vector<std::pair<std::string, Json>> obj;

    const Json& operator[](const std::string& key) const {
        static const Json missing;
        for (const auto& [k, v] : obj)
            if (k == key) return v;
        return missing;
    }
    bool has(const std::string& key) const {
        for (const auto& kv : obj)
            if (kv.first == key) return true;
        return false;
    }
};

class JsonReader {
public:
    explicit JsonReader(const std::string& s) : s_(s) {}
    Json parse() {
        Json v = value();
        ws();
        if (i_ != s_.size()) throw std::runtime_error("trailing characters in JSON");
        return v;
    }

private:
    void ws() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    char peek() {
        ws();
        if (i_ >= s_.size()) throw std::runtime_error("unexpected end of JSON");
        return s_[i_];
    }
    void expect(char c) {
        if (peek() != c) throw std::runtime_error(std::string("expected '") + c + "' in JSON at " + std::to_string(i_));
        ++i_;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (i_ < s_.size() && s_[i_] != '"') {
            char c = s_[i_++];
            if (c == '\\') {
                const char e = s_.at(i_++);
                switch (e) {
                    case 'n': out += '\n'; break;
                    case 't': out += '\t'; break;
                    case 'r': out += '\r'; break;
                    case 'u': out += static_cast<char>(std::stoi(s_.substr(i_, 4), nullptr, 16)); i_ += 4; break;
                    default: out += e;
                }
            } else {
                out += c;
            }
        }
        expect('"');
        return out;
    }
    Json value() {
        Json v;
        const char c = peek();
        if (c == '{') {
            v.kind = Json::Kind::object;
            ++i_;
            if (peek() == '}') return ++i_, v;
            while (true) {
                std::string k = string();
                expect(':');
                v.obj.emplace_back(k, value());
                if (peek() == ',') { ++i_; continue; }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.kind = Json::Kind::array;
            ++i_;
            if (peek() == ']') return ++i_, v;
            while (true) {
                v.arr.push_back(value());
                if (peek() == ',') { ++i_; continue; }
                expect(']');
                return v;
            }
        }
        if (c == '"') {
            v.kind = Json::Kind::string;
            v.str = string();
            return v;
        }
        for (const char* word : {"true", "false", "null"}) {
            if (s_.compare(i_, std::strlen(word), word) == 0) {
                i_ += std::strlen(word);
                v.kind = word[0] == 'n' ? Json::Kind::null : Json::Kind::boolean;
                v.b = word[0] == 't';
                return v;
            }
        }
        std::size_t used = 0;
        v.num = std::stod(s_.substr(i_), &used);
        if (used == 0) throw std::runtime_error("bad JSON value at " + std::to_string(i_));
        v.kind = Json::Kind::number;
        i_ += used;
        return v;
    }
    const std::string& s_;
    std::size_t i_ = 0;
};

// The first line of `out` that is a JSON document.
Json json_line(const std::string& out) {
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{') return JsonReader(line).parse();
    throw std::runtime_error("no JSON line in:\n" + out);
}

std::vector<std::string> lines(const std::string& out) {
    std::vector<std::string> v;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) v.push_back(line);
    return v;
}

// --- processes ---------------------------------------------------------------------------------
struct Domain {
    std::string name = ferry::test::unique_domain();
    std::map<std::string, std::string> env() const {
        return {{"FERRY_DOMAIN", name},
                {"FERRY_CONFIG", std::string(FERRY_TEST_SOURCE_DIR) + "/examples/configs/uds.toml"},
                {"FERRY_PLUGIN_PATH", FERRY_TEST_PLUGIN_DIR}};
    }
    Child spawn(const std::string& program, std::vector<std::string> args) const {
        return ferry::test::spawn_program(program, std::move(args), env());
    }
    using Result = ferry::test::ProgramResult;
    Result ferry(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) const {
        Result r = ferry::test::run_program("ferry", args, env(), timeout);
        UNSCOPED_INFO("ferry output (exit " << r.code << "):\n" << r.output);
        return r;
    }
    // Waits until the registry shows `pubs` publishers and `subs` subscribers on `topic`.
    bool wait_for_endpoints(const std::string& topic, std::size_t pubs, std::size_t subs) const {
        return ferry::test::wait_until(
            [&] {
                for (const auto& t : ferry::list_topics(name)) {
                    if (t.name != topic) continue;
                    std::size_t p = 0, s = 0;
                    for (const auto& e : t.endpoints) (e.publisher ? p : s)++;
                    if (p == pubs && s == subs) return true;
                }
                return false;
            },
            10s);
    }
    ~Domain() { ferry::clean_domain(name); }
};

bool output_has(Child& c, const std::string& text) { return c.output().find(text) != std::string::npos; }

std::string runtime_dir() {
    if (const char* d = std::getenv("FERRY_RUNTIME_DIR"); d && *d) return d;
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x && ::access(x, W_OK) == 0) return std::string(x) + "/ferry";
    return "/tmp/ferry-" + std::to_string(::geteuid());
}

// Paths of every OS object of `domain` except the registry file.
std::vector<std::string> objects_of(const std::string& domain) {
    std::vector<std::string> found;
    for (const std::string& dir : {std::string("/dev/shm"), std::string("/dev/mqueue"), runtime_dir()})
        for (const auto& n : ferry::test::leftovers(dir, domain))
            if (n.find("registry") == std::string::npos) found.push_back(dir + "/" + n);
    return found;
}

const std::string kTypes = FERRY_TEST_TYPES_MODULE;

}  // namespace

TEST_CASE("topic list shows type, transport, endpoint counts and rates of live topics", "[tools][ferry]") {
    Domain d;
    Child listener = d.spawn("listener", {"--topic", "chatter", "--count", "100000", "--timeout", "60", "--quiet"});
    Child talker = d.spawn("talker", {"--topic", "chatter", "--count", "100000", "--rate", "100", "--quiet"});
    REQUIRE(d.wait_for_endpoints("chatter", 1, 1));

    auto r = d.ferry({"topic", "list", "--json"});
    REQUIRE(r.code == 0);
    const Json doc = json_line(r.output);
    CHECK(doc["domain"].str == d.name);
    REQUIRE(doc["topics"].arr.size() == 1);
    const Json& t = doc["topics"].arr[0];
    CHECK(t["name"].str == "chatter");
    CHECK(t["type"].str == "bytes");
    CHECK(t["transport"].str == "uds");
    CHECK(t["publishers"].num == 1);
    CHECK(t["subscribers"].num == 1);
    CHECK(t["messages_per_s"].num > 50);   // talker sends 100/s
    CHECK(t["messages_per_s"].num < 200);
    CHECK(t["bytes_per_s"].num == Approx(t["messages_per_s"].num * 64).epsilon(0.01));  // 64-byte messages
    CHECK(t["qos"]["depth"].num == 8);  // examples/configs/uds.toml
    CHECK(t["endpoints"].arr.size() == 2);

    r = d.ferry({"topic", "list"});
    REQUIRE(r.code == 0);
    CHECK(std::regex_search(r.output, std::regex(R"(\nchatter\s+bytes\s+uds\s+1\s+1\s+\d+\.\d)")));

    r = d.ferry({"topic", "info", "chatter", "--json"});
    REQUIRE(r.code == 0);
    const Json info = json_line(r.output);
    CHECK(info["qos"]["transport"].str == "uds");
    std::map<std::string, std::string> roles;
    for (const auto& e : info["endpoints"].arr) {
        roles[e["node"].str] = e["role"].str;
        CHECK(e["pid"].num == (e["node"].str == "talker" ? talker.pid() : listener.pid()));
    }
    CHECK(roles == std::map<std::string, std::string>{{"listener", "subscriber"}, {"talker", "publisher"}});

    r = d.ferry({"node", "list", "--json"});
    REQUIRE(r.code == 0);
    const Json nodes = json_line(r.output);
    REQUIRE(nodes["nodes"].arr.size() == 2);
    for (const auto& n : nodes["nodes"].arr) {
        const bool is_talker = n["name"].str == "talker";
        CHECK(n["publishers"].num == (is_talker ? 1 : 0));
        CHECK(n["subscribers"].num == (is_talker ? 0 : 1));
    }

    r = d.ferry({"plugin", "list", "--json"});
    REQUIRE(r.code == 0);
    bool uds_loaded = false;
    const Json plugins = json_line(r.output);
    for (const auto& p : plugins["plugins"].arr)
        if (p["name"].str == "uds") uds_loaded = p["loaded"].b && p["abi_version"].num >= 1 && !p["version"].str.empty() && p["version"].str != "unknown";
    CHECK(uds_loaded);
}

TEST_CASE("topic echo prints a user type as JSON through its type-support module", "[tools][ferry]") {
    Domain d;
    Child pub = d.spawn("ferry_tool_helper", {"pub-pose", "pose"});
    REQUIRE(d.wait_for_endpoints("pose", 1, 0));

    auto r = d.ferry({"topic", "echo", "pose", "-n", "1", "--types", kTypes, "--timeout", "20"});
    REQUIRE(r.code == 0);
    CHECK(lines(r.output).at(0) ==
          R"({"frame":"map","x":1.5,"y":-2.25,"theta":0.125,"covariance":[0.5,0.0,0.5]})");

    r = d.ferry({"topic", "echo", "pose", "-n", "1", "--types", kTypes, "--json", "--timeout", "20"});
    REQUIRE(r.code == 0);
    const Json msg = json_line(r.output);
    CHECK(msg["type"].str == "demo/Pose");
    CHECK(msg["sequence"].num >= 1);
    CHECK(msg["latency_ns"].num > 0);
    CHECK(msg["data"]["frame"].str == "map");
    CHECK(msg["data"]["x"].num == 1.5);
    CHECK(msg["data"]["y"].num == -2.25);
    CHECK(msg["data"]["covariance"].arr.size() == 3);

    SECTION("without type support: a header line and a hex preview") {
        r = d.ferry({"topic", "echo", "pose", "-n", "1", "--timeout", "20"});
        REQUIRE(r.code == 0);
        CHECK(std::regex_search(r.output, std::regex(R"(#\d+ from [0-9a-f]{16}, 67 bytes, latency [0-9.]+ [mun]?s)")));
        CHECK(r.output.find("|........map.....|") != std::string::npos);
    }
}

TEST_CASE("topic pub reaches a subscriber: a string, and JSON of a user type", "[tools][ferry]") {
    Domain d;
    Child sub = d.spawn("ferry_tool_helper", {"sub-string", "greeting", "1"});
    REQUIRE(ferry::test::wait_until([&] { return output_has(sub, "ready"); }, 10s));
    auto r = d.ferry({"topic", "pub", "greeting", "hello ferry"});
    CHECK(r.code == 0);
    CHECK(r.output.find("published #1 on 'greeting' (string, 11 bytes, 1 subscriber(s))") != std::string::npos);
    REQUIRE(sub.wait(10s) == 0);
    CHECK(sub.output().find("got: hello ferry\n") != std::string::npos);

    Child pose_sub = d.spawn("ferry_tool_helper", {"sub-pose", "pose", "2"});
    REQUIRE(ferry::test::wait_until([&] { return output_has(pose_sub, "ready"); }, 10s));
    r = d.ferry({"topic", "pub", "pose", "--types", kTypes, "-n", "2", "--rate", "50", "--json",
                 R"({"frame":"odom","x":3.5,"y":-1,"theta":0.5,"covariance":[1,2]})"});
    CHECK(r.code == 0);
    CHECK(json_line(r.output)["published"].num == 2);
    REQUIRE(pose_sub.wait(10s) == 0);
    CHECK(pose_sub.output().find("pose: odom 3.5 -1 0.5 [ 1 2 ]\npose: odom 3.5 -1 0.5 [ 1 2 ]\n") != std::string::npos);

    SECTION("JSON that is not the type is a runtime error") {
        r = d.ferry({"topic", "pub", "pose2", "--type", "demo/Pose", "--types", kTypes, R"({"frame":"odom","x":"x"})"});
        CHECK(r.code == 1);
        CHECK(std::regex_match(r.output, std::regex("ferry: cannot convert JSON to demo/Pose: [^\n]+\n")));
    }
    SECTION("a number that is not the topic's type is a usage error") {
        r = d.ferry({"topic", "pub", "counter", "--type", "int8", "300"});
        CHECK(r.code == 2);
        CHECK(r.output == "ferry: '300' is out of range for int8\n");
    }
}

TEST_CASE("topic hz reports a rate near the talker's", "[tools][ferry]") {
    Domain d;
    Child talker = d.spawn("talker", {"--topic", "chatter", "--count", "100000", "--rate", "100", "--quiet"});
    REQUIRE(d.wait_for_endpoints("chatter", 1, 0));
    auto r = d.ferry({"topic", "hz", "chatter", "--duration", "2", "--json"});
    REQUIRE(r.code == 0);
    const Json s = json_line(r.output);
    CHECK(s["rate_hz"].num > 70);
    CHECK(s["rate_hz"].num < 130);
    CHECK(s["messages"].num > 100);
    CHECK(s["period_min_s"].num <= s["period_mean_s"].num);
    CHECK(s["period_mean_s"].num <= s["period_max_s"].num);
    CHECK(s["period_std_s"].num >= 0);

    r = d.ferry({"topic", "bw", "chatter", "--duration", "1", "--json"});
    REQUIRE(r.code == 0);
    CHECK(json_line(r.output)["size_mean"].num == 64);

    r = d.ferry({"topic", "delay", "chatter", "--duration", "1", "--json"});
    REQUIRE(r.code == 0);
    const Json delay = json_line(r.output);
    CHECK(delay["delay_min_s"].num > 0);
    CHECK(delay["delay_mean_s"].num < 0.5);
}

TEST_CASE("clean removes what a SIGKILLed process left behind", "[tools][ferry]") {
    Domain d;
    Child victim = d.spawn("listener", {"--topic", "doomed", "--count", "1", "--timeout", "60"});
    REQUIRE(d.wait_for_endpoints("doomed", 0, 1));
    const auto left = objects_of(d.name);
    REQUIRE_FALSE(left.empty());  // the listener's socket (uds) in the runtime directory
    victim.kill(SIGKILL);
    REQUIRE(victim.wait(10s) == 128 + SIGKILL);
    for (const auto& path : left) CHECK(std::filesystem::exists(path));  // nobody else cleaned yet

    auto r = d.ferry({"clean", "--json"});
    REQUIRE(r.code == 0);
    const Json doc = json_line(r.output);
    std::vector<std::string> removed;
    for (const auto& x : doc["removed"].arr) removed.push_back(x.str);
    for (const auto& path : left) {
        CHECK(std::find(removed.begin(), removed.end(), path) != removed.end());
        CHECK_FALSE(std::filesystem::exists(path));
    }
    CHECK(ferry::test::leftovers("/dev/shm", d.name).empty());  // the registry went with its last user

    r = d.ferry({"clean"});
    CHECK(r.code == 0);
    CHECK(r.output == "nothing to clean in domain " + d.name + "\n");
}

TEST_CASE("clean leaves a live process alone", "[tools][ferry]") {
    Domain d;
    Child listener = d.spawn("listener", {"--topic", "chatter", "--count", "5", "--timeout", "30"});
    REQUIRE(d.wait_for_endpoints("chatter", 0, 1));
    const auto live = objects_of(d.name);
    REQUIRE_FALSE(live.empty());

    auto r = d.ferry({"clean", "--json"});
    REQUIRE(r.code == 0);
    CHECK(json_line(r.output)["removed"].arr.empty());
    for (const auto& path : live) CHECK(std::filesystem::exists(path));

    Child talker = d.spawn("talker", {"--topic", "chatter", "--count", "5", "--rate", "50", "--wait-subscribers", "1"});
    CHECK(talker.wait(20s) == 0);
    REQUIRE(listener.wait(20s) == 0);
    CHECK(listener.output().find("received 5 corrupt 0") != std::string::npos);
}

TEST_CASE("usage errors exit 2, runtime errors 1, each with one line on stderr", "[tools][ferry]") {
    Domain d;
    const std::vector<std::vector<std::string>> usage = {
        {},
        {"topic"},
        {"topic", "hz"},
        {"topic", "frobnicate"},
        {"topic", "list", "--window", "abc"},
        {"topic", "pub", "x", "1", "--rate", "-5"},
        {"topic", "echo", "x", "--no-such-flag"},
        {"topic", "pub", "x", "--type", "int32", "12abc"},
    };
    for (const auto& args : usage) {
        auto r = d.ferry(args);
        CHECK(r.code == 2);
        CHECK(std::regex_match(r.output, std::regex("ferry: [^\n]+\n")));
    }

    auto r = d.ferry({"topic", "info", "nosuch"});
    CHECK(r.code == 1);
    CHECK(r.output == "ferry: topic 'nosuch' does not exist in domain " + d.name + "\n");

    r = d.ferry({"topic", "echo", "nosuch", "--timeout", "0.2"});
    CHECK(r.code == 1);
    CHECK(std::regex_match(r.output, std::regex("ferry: [^\n]+\n")));

    r = d.ferry({"--help"});
    CHECK(r.code == 0);
    CHECK(r.output.find("topic") != std::string::npos);
}

TEST_CASE("config check validates a file and shows what topics resolve to", "[tools][ferry]") {
    Domain d;
    char tmpl[] = "/tmp/ferry-cli-config-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    {
        std::ofstream good(dir + "/good.toml");
        good << "[defaults]\ntransport = \"uds\"\ndepth = 8\n\n[[topic]]\nmatch = \"camera/*\"\ndepth = 2\n"
                "overflow = \"drop_oldest\"\n";
        std::ofstream bad(dir + "/bad.toml");
        bad << "[defaults]\ntransport = \"uds\"\ndepth = \"many\"\n";
        std::ofstream waits(dir + "/wait.toml");
        waits << "[defaults]\ntransport = \"shm\"\nwait = \"adaptive\"\nspin_us = 20\n\n[[topic]]\nmatch = \"imu\"\n"
                 "wait = \"spin\"\n";
        std::ofstream bad_wait(dir + "/bad_wait.toml");
        bad_wait << "[defaults]\ntransport = \"shm\"\n\n[[topic]]\nmatch = \"imu\"\nwait = \"often\"\n";
    }
    CHECK(d.ferry({"config", "check", dir + "/wait.toml", "--topic", "imu"}).code == 0);
    const auto bad_wait = d.ferry({"config", "check", dir + "/bad_wait.toml"});
    CHECK(bad_wait.code == 1);
    CHECK_THAT(bad_wait.output, Catch::Contains(dir + "/bad_wait.toml:6") && Catch::Contains("adaptive, sleep, spin"));
    auto r = d.ferry({"config", "check", dir + "/good.toml", "--topic", "camera/front", "--topic", "imu", "--json"});
    CHECK(r.code == 0);
    if (r.code == 0) {
        const Json doc = json_line(r.output);
        CHECK(doc["valid"].b);
        REQUIRE(doc["topics"].arr.size() == 2);
        CHECK(doc["topics"].arr[0]["qos"]["transport"].str == "uds");
        CHECK(doc["topics"].arr[0]["qos"]["depth"].num == 2);
        CHECK(doc["topics"].arr[0]["qos"]["overflow"].str == "drop_oldest");
        CHECK(doc["topics"].arr[1]["qos"]["depth"].num == 8);
    }

    r = d.ferry({"config", "check", dir + "/bad.toml"});
    CHECK(r.code == 1);
    CHECK(std::regex_match(r.output, std::regex("ferry: " + dir + "/bad\\.toml:3[^\n]*\n")));
    std::filesystem::remove_all(dir);
}

TEST_CASE("config check and ferry bridge report a bad [bridge] table with file and line", "[tools][ferry][bridge]") {
    Domain d;
    char tmpl[] = "/tmp/ferry-cli-bridge-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    {
        std::ofstream bad(dir + "/bad.toml");
        bad << "[defaults]\ntransport = \"uds\"\n\n[bridge]\nout = [\"chatter\"]\nin = \"chatter\"\n";
        std::ofstream empty(dir + "/empty.toml");
        empty << "[defaults]\ntransport = \"uds\"\n";
    }
    auto r = d.ferry({"config", "check", dir + "/bad.toml"});
    CHECK(r.code == 1);
    CHECK(std::regex_match(r.output, std::regex("ferry: " + dir + "/bad\\.toml:6:[^\n]*'in' must be an array[^\n]*\n")));
    r = d.ferry({"bridge", "--config", dir + "/bad.toml"});
    CHECK(r.code == 1);
    CHECK(std::regex_match(r.output, std::regex("ferry: " + dir + "/bad\\.toml:6:[^\n]*\n")));
    r = d.ferry({"bridge", "--config", dir + "/empty.toml"});
    CHECK(r.code == 2);
    CHECK_THAT(r.output, Catch::Contains("no [bridge] table"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("names with control characters are printed escaped, on one line", "[tools][ferry]") {
    Domain d;
    auto r = d.ferry({"topic", "info", "no\nsuch\x1b[2J"});
    CHECK(r.code == 1);
    CHECK(r.output == "ferry: topic 'no\\nsuch\\x1b[2J' does not exist in domain " + d.name + "\n");

    r = d.ferry({"topic", "pub", "bad\nname", "--type", "string", "hi", "-n", "1"});
    CHECK(r.code == 1);
    CHECK(std::regex_match(r.output, std::regex("ferry: [^\n\x1b]+\n")));
    CHECK(r.output.find("topic name 'bad\\nname' is not valid") != std::string::npos);

    r = d.ferry({"--domain", "evil\r\n\x1b]0;title\x07", "topic", "list"});
    CHECK(r.code == 1);
    CHECK(std::regex_match(r.output, std::regex("ferry: [^\n\r\x1b\x07]+\n")));
    CHECK(r.output.find("evil\\r\\n\\x1b]0;title\\x07") != std::string::npos);
}

TEST_CASE("topic echo --types refuses a world-writable, missing or non-module file, saying which", "[tools][ferry][security]") {
    Domain d;
    char tmpl[] = "/tmp/ferry-types-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    const std::string dir = tmpl;
    const std::string module = dir + "/demo_types.so";
    std::filesystem::copy_file(kTypes, module);
    auto echo = [&](const std::string& types) {
        return d.ferry({"topic", "echo", "pose", "-n", "1", "--timeout", "0.2", "--types", types});
    };
    auto one_error_line = [](const std::string& out) { return std::regex_match(out, std::regex("ferry: [^\n]+\n")); };

    // The copy is accepted where the original is: it gets past loading to the missing topic.
    auto r = echo(module);
    CHECK(r.code == 1);
    CHECK(r.output.find("did not appear") != std::string::npos);

    REQUIRE(::chmod(module.c_str(), 0666) == 0);
    r = echo(module);
    CHECK(r.code == 1);
    CHECK(one_error_line(r.output));
    CHECK(r.output.find("cannot load type support " + module + ": the file is world-writable") != std::string::npos);

    REQUIRE(::chmod(module.c_str(), 0644) == 0);
    REQUIRE(::chmod(dir.c_str(), 0777) == 0);
    r = echo(module);
    CHECK(r.code == 1);
    CHECK(r.output.find("its directory " + dir + " is world-writable") != std::string::npos);
    REQUIRE(::chmod(dir.c_str(), 0700) == 0);

    r = echo(dir + "/missing.so");
    CHECK(r.code == 1);
    CHECK(one_error_line(r.output));
    CHECK(r.output.find("cannot load type support " + dir + "/missing.so: no such file") != std::string::npos);
    CHECK(r.output.find("Bad file descriptor") == std::string::npos);

    const std::string text = dir + "/notes.so";
    { std::ofstream(text) << "not a module\n"; }
    r = echo(text);
    CHECK(r.code == 1);
    CHECK(one_error_line(r.output));
    CHECK(r.output.find("cannot load type support " + text + ": not a shared library") != std::string::npos);

    std::filesystem::remove_all(dir);
}
