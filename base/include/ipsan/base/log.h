// ipsan/base/log.h: minimal leveled logging to stderr. Thread-safe (one write per line).
// Usage: IPSAN_LOG(LogLevel::kWarn, "server", "dropped datagram from ", peer, ": ", reason);
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace ipsan {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error", "off"; false on anything else.
bool parse_log_level(std::string_view text, LogLevel& out);
void log_line(LogLevel level, std::string_view component, std::string_view message);

template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace ipsan

#define IPSAN_LOG(level, component, ...)                                                   \
  do {                                                                                     \
    if (::ipsan::log_level() <= (level))                                                   \
      ::ipsan::log_line((level), (component), ::ipsan::str_cat(__VA_ARGS__));              \
  } while (0)
