// The core's logging, through spdlog (kept out of every header). Level from FERRY_LOG_LEVEL:
// trace, debug, info, warn, error, off. Default: warn (quiet unless something is wrong).
// Control characters in a message are escaped (transport::escape_control): one line each.
#pragma once

#include <string>

namespace ferry::detail {

void log_debug(const std::string& message);
void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_error(const std::string& message);
// Level numbers as in transport::LogLevel.
void log_from_plugin(int level, const char* message);

}  // namespace ferry::detail
