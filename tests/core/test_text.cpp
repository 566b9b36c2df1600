// User text in messages: control characters are escaped where errors are made, where log lines
// are written and (tests/tools) where the ferry command prints.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <string>

#include <ferry/error.hpp>
#include <ferry/transport/text.hpp>

#include "log/log.hpp"
#include "support/process.hpp"

using ferry::transport::escape_control;
using namespace std::chrono_literals;

TEST_CASE("escape_control shows control characters and keeps everything else", "[text]") {
    CHECK(escape_control("camera/front") == "camera/front");
    CHECK(escape_control("a\nb\rc\td") == "a\\nb\\rc\\td");
    CHECK(escape_control("\x1b[2J\x07\x7f") == "\\x1b[2J\\x07\\x7f");
    CHECK(escape_control(std::string("nul\0end", 7)) == "nul\\x00end");
    CHECK(escape_control("C1 \xc2\x9b" "31m") == "C1 \\u009b31m");
    CHECK(escape_control("caf\xc3\xa9 \xc2\xa0 back\\slash") == "caf\xc3\xa9 \xc2\xa0 back\\slash");
    CHECK(escape_control("") == "");
}

TEST_CASE("ferry::Error keeps its message on one line", "[text]") {
    const ferry::Error sut(ferry::Errc::invalid_argument, "topic 'x\ny\x1b[31m' is not valid");
    CHECK(std::string(sut.what()) == "topic 'x\\ny\\x1b[31m' is not valid");
    CHECK(sut.code() == ferry::Errc::invalid_argument);
}

TEST_CASE("a log line with a newline or ESC in a name stays one escaped line", "[text]") {
    int out[2];
    REQUIRE(::pipe(out) == 0);
    auto child = ferry::test::Child::fork([&] {
        ::dup2(out[1], STDERR_FILENO);
        ferry::detail::log_warn("domain 'a\nb' topic 'c\x1b]0;owned\x07'");
        ferry::detail::log_from_plugin(4, "mq: queue /ferry.x\r\n.1.mq gone");
        return 0;
    });
    ::close(out[1]);
    REQUIRE(child.wait(5000ms) == 0);
    std::string text;
    char buf[512];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    INFO(text);
    CHECK(text.find("domain 'a\\nb' topic 'c\\x1b]0;owned\\x07'\n") != std::string::npos);
    CHECK(text.find("mq: queue /ferry.x\\r\\n.1.mq gone\n") != std::string::npos);
    // Two messages, two lines; the logger's own colour codes aside, no raw ESC from the text.
    CHECK(std::count(text.begin(), text.end(), '\n') == 2);
    CHECK(text.find("\x07") == std::string::npos);
}
