#include "ipsan/base/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>

namespace ipsan {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kWarn};
}

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }
LogLevel log_level() { return g_level.load(std::memory_order_relaxed); }

bool parse_log_level(std::string_view t, LogLevel& out) {
  if (t == "debug") out = LogLevel::kDebug;
  else if (t == "info") out = LogLevel::kInfo;
  else if (t == "warn") out = LogLevel::kWarn;
  else if (t == "error") out = LogLevel::kError;
  else if (t == "off") out = LogLevel::kOff;
  else return false;
  return true;
}

void log_line(LogLevel level, std::string_view component, std::string_view message) {
  static constexpr const char* kNames[] = {"debug", "info", "warn", "error", "off"};
  auto now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  std::string line;
  char head[64];
  int n = std::snprintf(head, sizeof head, "[%.6f %s ", now, kNames[static_cast<int>(level)]);
  line.append(head, n > 0 ? static_cast<std::size_t>(n) : 0);
  line.append(component);
  line.append("] ");
  line.append(message);
  line.push_back('\n');
  // One write(2) per line keeps lines from different threads whole.
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
}

}  // namespace ipsan
