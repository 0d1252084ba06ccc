// ipsan/netem/impairment.h: the datagram impairment engine (one direction of an emulated link).
//
// Sans-I/O and deterministic: the engine never reads a clock or does I/O. Callers pass `now` to
// submit() and poll_release(); every random decision draws from one Rng seeded at construction, so
// the same config, seed and call sequence give the same fates, byte for byte. It knows datagrams
// (bytes), never ipsan's protocol.
//
// Pipeline for each submitted datagram, in this order (docs/NETEM.md explains each stage):
//   MTU (drop or truncate) -> partition schedule -> random loss -> Gilbert-Elliott loss ->
//   duplication (the copy runs the rest of the pipeline on its own) -> bit corruption ->
//   rate limiter with tail-drop queue -> delay + jitter (FIFO unless reordering is allowed) or,
//   with the reorder probability, no delay at all -> released by poll_release().
//
// Threading: not thread-safe; one owner drives it (the Link, the UdpProxy's io_context thread).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/rng.h"

namespace ipsan::netem {

enum class JitterDistribution { kUniform, kNormal };

// Gilbert-Elliott two-state loss model (the same parameters as Linux netem's "loss gemodel").
// The chain moves once per datagram, before the loss decision:
//   p: P(good -> bad)             r: P(bad -> good)        (mean burst length = 1/r when h = 0)
//   h: P(delivered | bad state)   k: P(delivered | good state)
// Defaults (h = 0, k = 1) are the "simple Gilbert" model: every datagram in the bad state is lost,
// none in the good state. Steady-state loss = (p*(1-h) + r*(1-k)) / (p + r). Disabled when p = 0.
struct GilbertElliott {
  double p = 0.0;
  double r = 1.0;
  double h = 0.0;
  double k = 1.0;

  bool operator==(const GilbertElliott&) const = default;
};

// A timed outage: down at `at` (measured from the engine's epoch) for `length`, then, if `period`
// is non-zero, again at at + period, at + 2*period, ... Datagrams entering while down are dropped.
struct Partition {
  Duration at{};
  Duration length{};
  Duration period{};  // 0 = once

  bool operator==(const Partition&) const = default;
};

struct ImpairmentConfig {
  double loss = 0.0;  // probability in [0, 1] that a datagram is dropped (independently)
  GilbertElliott burst;
  Duration delay{};   // fixed one-way delay
  Duration jitter{};  // uniform: delay +- jitter; normal: standard deviation jitter
  JitterDistribution jitter_distribution = JitterDistribution::kUniform;
  // With jitter: false keeps FIFO order (a datagram is never released before an earlier one,
  // like a real serial link); true lets jitter reorder datagrams.
  bool jitter_reorders = false;
  // Probability that a datagram skips the delay (sent at once, overtaking delayed ones), as
  // Linux netem "reorder". Has no visible effect without delay.
  double reorder = 0.0;
  double duplicate = 0.0;              // probability that a second copy is emitted
  double corrupt = 0.0;                // probability that a datagram gets bits flipped
  std::uint32_t corrupt_max_bits = 1;  // flips a uniform 1..corrupt_max_bits random bits
  std::uint64_t rate_bps = 0;          // serialisation rate in bits/s; 0 = unlimited
  // Datagrams waiting for the rate limiter (its queue); more are tail-dropped. Only with rate_bps.
  std::uint32_t queue_limit = 1000;
  std::uint32_t mtu = 0;      // largest datagram in bytes; 0 = unlimited
  bool mtu_truncate = false;  // larger datagrams truncated to mtu instead of dropped
  std::vector<Partition> partitions;

  bool operator==(const ImpairmentConfig&) const = default;
};

// Checks ranges (probabilities in [0, 1], positive partition lengths, ...).
// Returns an empty string when valid, else a message naming the bad field.
std::string validate(const ImpairmentConfig& config);

struct Counters {
  std::uint64_t entered = 0;    // datagrams submitted
  std::uint64_t delivered = 0;  // datagrams released (copies included)
  std::uint64_t dropped_random = 0;
  std::uint64_t dropped_burst = 0;
  std::uint64_t dropped_queue = 0;
  std::uint64_t dropped_partition = 0;
  std::uint64_t dropped_mtu = 0;
  std::uint64_t duplicated = 0;  // extra copies made
  std::uint64_t corrupted = 0;   // datagrams (or copies) with flipped bits
  std::uint64_t reordered = 0;   // released after a datagram that entered later had been released
  std::uint64_t truncated = 0;   // cut to the MTU

  std::uint64_t dropped() const {
    return dropped_random + dropped_burst + dropped_queue + dropped_partition + dropped_mtu;
  }
  Counters& operator+=(const Counters& o);
};

enum class DropReason { kNone, kRandom, kBurst, kQueue, kPartition, kMtu };
std::string_view to_string(DropReason reason);

// What happened to a datagram, reported to the observer (capture, tests).
struct Event {
  enum class Kind { kEntered, kDropped, kDelivered };
  Kind kind = Kind::kEntered;
  std::uint64_t index = 0;  // 0-based order of submission to this engine
  std::uint32_t copy = 0;   // 0 = original, 1 = duplicate
  std::uint64_t tag = 0;    // the caller's tag from submit()
  TimePoint entered{};      // when it was submitted
  TimePoint time{};         // when this event happened (submit time for drops, release time)
  DropReason reason = DropReason::kNone;
  bool corrupted = false;
  bool truncated = false;
  bool reordered = false;
  ByteSpan data;  // the bytes as they entered / were dropped / are released; valid during the call
};
using Observer = std::function<void(const Event&)>;

struct Released {
  Bytes data;
  std::uint64_t tag = 0;
};

class Impairment {
 public:
  // `config` must be valid (validate() returns ""); invalid values are clamped into range.
  Impairment(const ImpairmentConfig& config, std::uint64_t seed);

  // Partition schedules count from the epoch; if never set, the first submit() sets it.
  void set_epoch(TimePoint epoch) { epoch_ = epoch; }
  // Called synchronously for every event; keep it cheap. Empty by default.
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  // Takes a datagram entering the link at `now`. `tag` travels with it (the proxy stores the
  // client there) and comes back in poll_release_tagged().
  void submit(Bytes datagram, TimePoint now, std::uint64_t tag = 0);
  // Earliest time a held datagram is due, or nullopt when nothing is held.
  std::optional<TimePoint> next_release() const;
  // The next datagram due at or before `now` (in release order), or nullopt.
  std::optional<Bytes> poll_release(TimePoint now);
  std::optional<Released> poll_release_tagged(TimePoint now);

  // Replaces the settings for datagrams submitted from now on (held ones keep their schedule);
  // lets a test worsen or heal a link mid-run. Counters, epoch and random stream carry on.
  void set_config(const ImpairmentConfig& config);

  Counters counters() const { return counters_; }
  std::size_t held() const { return pending_.size(); }
  const ImpairmentConfig& config() const { return config_; }
  // True when the partition schedule says the link is down at `t`.
  bool partitioned(TimePoint t) const;

 private:
  struct Pending {
    TimePoint release;
    std::uint64_t order;  // tie-break: FIFO among equal release times
    std::uint64_t index;
    std::uint32_t copy;
    std::uint64_t tag;
    TimePoint entered;
    bool corrupted;
    bool truncated;
    Bytes data;
  };
  struct Later {
    bool operator()(const Pending& a, const Pending& b) const {
      return a.release != b.release ? a.release > b.release : a.order > b.order;
    }
  };

  void schedule(Bytes data, TimePoint now, std::uint64_t index, std::uint32_t copy,
                std::uint64_t tag, bool truncated);
  void drop(DropReason reason, ByteSpan data, TimePoint now, std::uint64_t index,
            std::uint32_t copy, std::uint64_t tag, bool truncated);
  Duration draw_delay();
  double normal();

  ImpairmentConfig config_;
  Rng rng_;
  Observer observer_;
  std::optional<TimePoint> epoch_;
  Counters counters_;
  bool ge_bad_ = false;
  std::uint64_t next_index_ = 0;
  std::uint64_t next_order_ = 0;
  TimePoint link_free_at_{};          // rate limiter: when the last queued datagram is sent
  std::deque<TimePoint> rate_queue_;  // departure times of datagrams still in the rate queue
  TimePoint last_fifo_release_{};     // FIFO clamp for delayed datagrams
  std::optional<std::uint64_t> max_released_index_;
  std::vector<Pending> pending_;  // a heap ordered by Later
};

// Derives an independent seed for stream `stream` (e.g. 0 = A->B / up, 1 = B->A / down).
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);

}  // namespace ipsan::netem
