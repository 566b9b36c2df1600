// The spellings deprecated by the second edition of the API still compile and work for one
// release (this file is built with -Wno-deprecated-declarations).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <ferry/ferry.hpp>

#include "support/domain_guard.hpp"

using namespace std::chrono_literals;

namespace {
struct Point {
    int x, y;
};
}  // namespace

TEST_CASE("deprecated spellings still compile and behave as before", "[api][deprecated]") {
    ferry::test::DomainGuard domain;
    char tmpl[] = "/tmp/ferry-api-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    std::ofstream(dir + "/ferry.toml") << "[defaults]\ntransport = \"uds\"\n";
    {
        ferry::NodeOptions options;
        options.domain = domain.name;
        options.config_path = dir + "/ferry.toml";
        ferry::Node node("old", options);
        auto sub = node.subscribe_raw("p", ferry::type_name<Point>());
        auto pub = node.advertise<Point>("p");
        REQUIRE(pub.wait_for_subscribers(1, 5000ms));

        ferry::Status st;
        auto loan = pub.loan(&st);  // Loan<T> loan(Status*)
        REQUIRE(loan.valid());
        CHECK(st.is_ok());
        loan->x = 1;
        loan->y = 2;
        REQUIRE(loan.publish());

        std::optional<ferry::RawSample> s = sub.take(5s);  // RawSubscriber::take -> optional
        REQUIRE(s);
        CHECK(s->size() == sizeof(Point));
        CHECK_FALSE(sub.try_take());

        auto raw = node.advertise_raw("r", "bytes");
        auto refused = raw.loan(raw.qos().max_message_size + 1, &st);  // RawLoan loan(size, Status*)
        CHECK_FALSE(refused.valid());
        CHECK(st.code() == ferry::Errc::too_large);
    }
    std::filesystem::remove_all(dir);
}
