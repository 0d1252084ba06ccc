// ipsan/base/progress.h: THE progress line of long runs (`ipsan bench --progress`, `ipsan replay
// --progress`, and any other command that runs long): one line at most every `interval`, on
// stderr so stdout (text or --json) stays clean.
//
// Shown when the user asked for it (--progress) or stderr is a terminal. On a terminal the line is
// rewritten in place ("\r...") and finished with a newline; elsewhere (CI logs, pipes) every
// update is its own line. The caller passes `now`, so tests drive it with a VirtualClock.
//
// Not thread-safe: one owner (the thread that runs the loop being reported).
#pragma once

#include <cstdio>
#include <string>

#include "ipsan/base/clock.h"

namespace ipsan {

class ProgressLine {
 public:
  // `out` receives the lines (not owned); `tty` selects the in-place form.
  ProgressLine(std::FILE* out, bool enabled, bool tty, Duration interval);
  // stderr; enabled when `requested` or stderr is a terminal; one line per second.
  static ProgressLine for_stderr(bool requested, Duration interval = std::chrono::seconds(1));

  bool enabled() const { return enabled_; }
  // Prints `text` if enabled and `interval` has passed since the last printed line (the first
  // update only starts the clock unless `force`). Returns whether it printed.
  bool update(TimePoint now, const std::string& text, bool force = false);
  // Ends an in-place line (newline) if one is showing; idempotent.
  void finish();
  ~ProgressLine();

  ProgressLine(ProgressLine&& other) noexcept;
  ProgressLine& operator=(ProgressLine&&) = delete;
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

 private:
  std::FILE* out_;
  bool enabled_;
  bool tty_;
  Duration interval_;
  bool started_ = false;
  bool showing_ = false;  // an in-place line without its newline yet
  TimePoint last_{};
};

}  // namespace ipsan
