// In-process emulated link and virtual-time event loop (ipsan/netem/link.h).
#include "ipsan/netem/link.h"

#include <algorithm>

#include "ipsan/base/log.h"

namespace ipsan::netem {

Link::Link(const ImpairmentConfig& config, std::uint64_t seed, TimePoint epoch)
    : Link(config, config, seed, epoch) {}

Link::Link(const ImpairmentConfig& a_to_b, const ImpairmentConfig& b_to_a, std::uint64_t seed,
           TimePoint epoch)
    : a_to_b_(a_to_b, derive_seed(seed, 0)), b_to_a_(b_to_a, derive_seed(seed, 1)) {
  a_to_b_.set_epoch(epoch);
  b_to_a_.set_epoch(epoch);
}

void Link::attach_capture(Capture& capture, const NetAddr& a, const NetAddr& b) {
  a_to_b_.set_observer(capture.observer(Direction::kUp, a, b));
  b_to_a_.set_observer(capture.observer(Direction::kDown, b, a));
}

std::optional<TimePoint> Link::next_event() const {
  const auto a = a_to_b_.next_release();
  const auto b = b_to_a_.next_release();
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

EventLoop::TimerId EventLoop::add_deadline(TimePoint at, std::function<void(TimePoint)> fire) {
  const TimerId id = next_id_++;
  deadlines_.emplace(id, Deadline{at, std::move(fire)});
  return id;
}

void EventLoop::add_source(std::function<std::optional<TimePoint>()> next,
                           std::function<void(TimePoint)> fire) {
  sources_.push_back(Source{std::move(next), std::move(fire)});
}

std::optional<TimePoint> EventLoop::next_time() const {
  std::optional<TimePoint> best = link_.next_event();
  auto consider = [&best](TimePoint t) {
    if (!best || t < *best) best = t;
  };
  for (const auto& [id, d] : deadlines_) consider(d.at);
  for (const auto& s : sources_) {
    if (auto t = s.next()) consider(*t);
  }
  return best;
}

bool EventLoop::step() {
  const auto t = next_time();
  if (!t) return false;
  clock_.advance_to(*t);
  const TimePoint now = clock_.now();
  while (auto d = link_.poll_a(now)) {
    if (on_a_) on_a_(std::move(*d), now);
  }
  while (auto d = link_.poll_b(now)) {
    if (on_b_) on_b_(std::move(*d), now);
  }
  // Due deadlines in (time, registration) order; a handler may add or cancel others.
  for (;;) {
    auto due = deadlines_.end();
    for (auto it = deadlines_.begin(); it != deadlines_.end(); ++it) {
      if (it->second.at <= now && (due == deadlines_.end() || it->second.at < due->second.at)) {
        due = it;
      }
    }
    if (due == deadlines_.end()) break;
    auto fire = std::move(due->second.fire);
    deadlines_.erase(due);
    fire(now);
  }
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    const auto next = sources_[i].next();
    if (next && *next <= now) sources_[i].fire(now);
  }
  return true;
}

bool EventLoop::stuck(TimePoint before) {
  if (clock_.now() != before) {
    steps_at_same_time_ = 0;
    return false;
  }
  if (++steps_at_same_time_ < kMaxStepsWithoutProgress) return false;
  IPSAN_LOG(LogLevel::kError, "netem", "event loop made ", kMaxStepsWithoutProgress,
            " steps without time advancing (a deadline source that never moves?); stopping");
  steps_at_same_time_ = 0;
  return true;
}

std::size_t EventLoop::run_until(TimePoint limit) {
  std::size_t steps = 0;
  for (;;) {
    const auto t = next_time();
    if (!t || *t > limit) break;
    const TimePoint before = clock_.now();
    step();
    ++steps;
    if (stuck(before)) break;
  }
  return steps;
}

bool EventLoop::run_until(const std::function<bool()>& done, TimePoint limit) {
  while (!done()) {
    const auto t = next_time();
    if (!t || *t > limit) return done();
    const TimePoint before = clock_.now();
    step();
    if (stuck(before)) return done();
  }
  return true;
}

}  // namespace ipsan::netem
