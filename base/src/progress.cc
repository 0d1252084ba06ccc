// The progress line of long runs (ipsan/base/progress.h).
#include "ipsan/base/progress.h"

#include <unistd.h>

namespace ipsan {

ProgressLine::ProgressLine(std::FILE* out, bool enabled, bool tty, Duration interval)
    : out_(out), enabled_(enabled && out != nullptr), tty_(tty), interval_(interval) {}

ProgressLine ProgressLine::for_stderr(bool requested, Duration interval) {
  const bool tty = isatty(STDERR_FILENO) == 1;
  return ProgressLine(stderr, requested || tty, tty, interval);
}

ProgressLine::ProgressLine(ProgressLine&& other) noexcept
    : out_(other.out_),
      enabled_(other.enabled_),
      tty_(other.tty_),
      interval_(other.interval_),
      started_(other.started_),
      showing_(other.showing_),
      last_(other.last_) {
  other.showing_ = false;
  other.enabled_ = false;
}

bool ProgressLine::update(TimePoint now, const std::string& text, bool force) {
  if (!enabled_) return false;
  if (!started_) {
    started_ = true;
    last_ = now;
    if (!force) return false;
  } else if (!force && now - last_ < interval_) {
    return false;
  }
  last_ = now;
  if (tty_) {
    // Clear the rest of a longer previous line (ANSI "erase to end of line").
    std::fprintf(out_, "\r%s\x1b[K", text.c_str());
    showing_ = true;
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
  return true;
}

void ProgressLine::finish() {
  if (showing_) {
    std::fputc('\n', out_);
    std::fflush(out_);
    showing_ = false;
  }
}

ProgressLine::~ProgressLine() { finish(); }

}  // namespace ipsan
