// ipsan/base/clock.h: time as ipsan's protocol cores see it.
//
// Sans-I/O state machines never read a clock: callers pass `TimePoint now`. Production passes
// steady_clock time; tests pass a VirtualClock they advance by hand, so timing tests are exact and
// never sleep.
#pragma once

#include <chrono>
#include <cstdint>

namespace ipsan {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

inline TimePoint steady_now() { return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now()); }

class VirtualClock {
 public:
  explicit VirtualClock(TimePoint start = TimePoint{} + std::chrono::seconds(1000)) : now_(start) {}
  TimePoint now() const { return now_; }
  void advance(Duration d) { now_ += d; }
  void advance_to(TimePoint t) {
    if (t > now_) now_ = t;
  }

 private:
  TimePoint now_;
};

inline double to_seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
inline double to_micros(Duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

}  // namespace ipsan
