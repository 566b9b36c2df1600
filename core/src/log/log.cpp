#include "log/log.hpp"

#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <ferry/transport/text.hpp>

namespace ferry::detail {

namespace {

spdlog::logger& logger() {
    static std::shared_ptr<spdlog::logger> instance = [] {
        auto l = std::make_shared<spdlog::logger>("ferry", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
        l->set_pattern("[%H:%M:%S.%e] [ferry] [%^%l%$] %v");
        spdlog::level::level_enum level = spdlog::level::warn;
        if (const char* env = std::getenv("FERRY_LOG_LEVEL"); env && *env) level = spdlog::level::from_str(env);
        l->set_level(level);
        return l;
    }();
    return *instance;
}

}  // namespace

// Every line is one line: names in messages may hold any byte.
void log_debug(const std::string& m) {
    if (logger().should_log(spdlog::level::debug)) logger().debug(transport::escape_control(m));
}
void log_info(const std::string& m) {
    if (logger().should_log(spdlog::level::info)) logger().info(transport::escape_control(m));
}
void log_warn(const std::string& m) { logger().warn(transport::escape_control(m)); }
void log_error(const std::string& m) { logger().error(transport::escape_control(m)); }

void log_from_plugin(int level, const char* message) {
    static constexpr spdlog::level::level_enum kMap[] = {spdlog::level::trace, spdlog::level::debug,
                                                         spdlog::level::info, spdlog::level::warn,
                                                         spdlog::level::err};
    const int i = level < 0 ? 0 : level > 4 ? 4 : level;
    if (logger().should_log(kMap[i])) logger().log(kMap[i], transport::escape_control(message ? message : ""));
}

}  // namespace ferry::detail
