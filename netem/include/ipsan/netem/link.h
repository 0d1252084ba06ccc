// ipsan/netem/link.h: an in-process emulated link between endpoints A and B, and a small
// virtual-time event loop to drive sans-I/O protocol engines through it.
//
// Link = two Impairment engines (A->B and B->A) with seeds derived from one seed. Nothing here
// reads a clock: callers pass `now` (normally VirtualClock::now()). EventLoop advances a
// VirtualClock straight to the next thing that happens (a datagram due at either side, a one-shot
// deadline, or a polled deadline source such as a protocol engine's next timeout), so a test runs
// minutes of protocol time in milliseconds and identically every time.
//
// Threading: not thread-safe; one thread owns a Link and its EventLoop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/netem/impairment.h"
#include "ipsan/netem/pcap.h"

namespace ipsan::netem {

class Link {
 public:
  // Both directions get `config`; partition schedules count from `epoch`.
  Link(const ImpairmentConfig& config, std::uint64_t seed, TimePoint epoch);
  Link(const ImpairmentConfig& a_to_b, const ImpairmentConfig& b_to_a, std::uint64_t seed,
       TimePoint epoch);

  void send_a_to_b(Bytes datagram, TimePoint now) { a_to_b_.submit(std::move(datagram), now); }
  void send_b_to_a(Bytes datagram, TimePoint now) { b_to_a_.submit(std::move(datagram), now); }
  // Next datagram arriving at B (sent by A) / at A (sent by B) that is due at `now`.
  std::optional<Bytes> poll_b(TimePoint now) { return a_to_b_.poll_release(now); }
  std::optional<Bytes> poll_a(TimePoint now) { return b_to_a_.poll_release(now); }
  // Earliest time either side has something to receive.
  std::optional<TimePoint> next_event() const;

  // Records both directions into `capture` (which must outlive the link's use): A->B as "up"
  // from `a` to `b`, B->A as "down". Replaces any observers.
  void attach_capture(Capture& capture, const NetAddr& a, const NetAddr& b);

  Impairment& a_to_b() { return a_to_b_; }
  Impairment& b_to_a() { return b_to_a_; }
  const Impairment& a_to_b() const { return a_to_b_; }
  const Impairment& b_to_a() const { return b_to_a_; }

 private:
  Impairment a_to_b_;
  Impairment b_to_a_;
};

class EventLoop {
 public:
  using DatagramHandler = std::function<void(Bytes datagram, TimePoint now)>;
  using TimerId = std::uint64_t;

  EventLoop(VirtualClock& clock, Link& link) : clock_(clock), link_(link) {}

  // Called for each datagram arriving at A / at B.
  void on_receive_a(DatagramHandler handler) { on_a_ = std::move(handler); }
  void on_receive_b(DatagramHandler handler) { on_b_ = std::move(handler); }

  // One-shot deadline; `fire(now)` runs once the clock reaches `at`.
  TimerId add_deadline(TimePoint at, std::function<void(TimePoint now)> fire);
  void cancel(TimerId id) { deadlines_.erase(id); }
  // A polled deadline: `next()` is asked before every step (e.g. an engine's next timeout) and
  // `fire(now)` runs whenever it is due. Stays registered for the loop's lifetime.
  void add_source(std::function<std::optional<TimePoint>()> next,
                  std::function<void(TimePoint now)> fire);

  // When the next thing happens, or nullopt when nothing is pending.
  std::optional<TimePoint> next_time() const;
  // Advances the clock to next_time() (never backwards) and dispatches everything due then:
  // deliveries to A, deliveries to B, deadlines, sources. False when nothing was pending.
  bool step();
  // Both run_until() forms also stop (logging an error) after kMaxStepsWithoutProgress steps
  // in a row that leave the clock where it was, so a source whose deadline never moves fails a
  // test instead of hanging it.
  static constexpr std::size_t kMaxStepsWithoutProgress = 100'000;

  // Steps until nothing is pending or the next event lies after `limit`; returns steps taken.
  // Never advances the clock past `limit`.
  std::size_t run_until(TimePoint limit);
  // Steps until `done()` holds, nothing is pending, or `limit` is reached; returns done().
  bool run_until(const std::function<bool()>& done, TimePoint limit);

 private:
  struct Deadline {
    TimePoint at;
    std::function<void(TimePoint)> fire;
  };
  struct Source {
    std::function<std::optional<TimePoint>()> next;
    std::function<void(TimePoint)> fire;
  };

  bool stuck(TimePoint before);

  VirtualClock& clock_;
  Link& link_;
  std::size_t steps_at_same_time_ = 0;
  DatagramHandler on_a_;
  DatagramHandler on_b_;
  TimerId next_id_ = 1;
  std::map<TimerId, Deadline> deadlines_;
  std::vector<Source> sources_;
};

}  // namespace ipsan::netem
