// The impairment engine: see ipsan/netem/impairment.h for the pipeline.
#include "ipsan/netem/impairment.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ipsan/base/log.h"

namespace ipsan::netem {
namespace {

bool valid_probability(double p) { return std::isfinite(p) && p >= 0.0 && p <= 1.0; }

double clamp_probability(double p) {
  if (!std::isfinite(p)) return 0.0;
  return std::clamp(p, 0.0, 1.0);
}

}  // namespace

std::string validate(const ImpairmentConfig& c) {
  const std::pair<const char*, double> probabilities[] = {
      {"loss", c.loss},           {"burst p", c.burst.p}, {"burst r", c.burst.r},
      {"burst h", c.burst.h},     {"burst k", c.burst.k}, {"reorder", c.reorder},
      {"duplicate", c.duplicate}, {"corrupt", c.corrupt}};
  for (const auto& [name, value] : probabilities) {
    if (!valid_probability(value)) {
      return str_cat(name, " must be a probability between 0 and 1 (0% to 100%), got ", value);
    }
  }
  if (c.burst.p > 0.0 && c.burst.r <= 0.0)
    return "burst r must be > 0 (else the bad state never ends)";
  if (c.delay < Duration::zero()) return "delay must not be negative";
  if (c.jitter < Duration::zero()) return "jitter must not be negative";
  if (c.corrupt_max_bits == 0) return "corrupt bits must be at least 1";
  for (const auto& p : c.partitions) {
    if (p.at < Duration::zero()) return "partition start must not be negative";
    if (p.length <= Duration::zero()) return "partition length must be positive";
    if (p.period < Duration::zero()) return "partition period must not be negative";
    if (p.period != Duration::zero() && p.period < p.length) {
      return "partition period must be at least the partition length";
    }
  }
  return {};
}

Counters& Counters::operator+=(const Counters& o) {
  entered += o.entered;
  delivered += o.delivered;
  dropped_random += o.dropped_random;
  dropped_burst += o.dropped_burst;
  dropped_queue += o.dropped_queue;
  dropped_partition += o.dropped_partition;
  dropped_mtu += o.dropped_mtu;
  duplicated += o.duplicated;
  corrupted += o.corrupted;
  reordered += o.reordered;
  truncated += o.truncated;
  return *this;
}

std::string_view to_string(DropReason reason) {
  switch (reason) {
    case DropReason::kNone: return "none";
    case DropReason::kRandom: return "random";
    case DropReason::kBurst: return "burst";
    case DropReason::kQueue: return "queue";
    case DropReason::kPartition: return "partition";
    case DropReason::kMtu: return "mtu";
  }
  return "unknown";
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t state = seed ^ (0xA0761D6478BD642Full * (stream + 1));
  splitmix64(state);
  return splitmix64(state);
}

Impairment::Impairment(const ImpairmentConfig& config, std::uint64_t seed) : rng_(seed) {
  set_config(config);
}

void Impairment::set_config(const ImpairmentConfig& config) {
  config_ = config;
  config_.loss = clamp_probability(config_.loss);
  config_.burst.p = clamp_probability(config_.burst.p);
  config_.burst.r = clamp_probability(config_.burst.r);
  config_.burst.h = clamp_probability(config_.burst.h);
  config_.burst.k = clamp_probability(config_.burst.k);
  config_.reorder = clamp_probability(config_.reorder);
  config_.duplicate = clamp_probability(config_.duplicate);
  config_.corrupt = clamp_probability(config_.corrupt);
  config_.corrupt_max_bits = std::max<std::uint32_t>(config_.corrupt_max_bits, 1);
  config_.delay = std::max(config_.delay, Duration::zero());
  config_.jitter = std::max(config_.jitter, Duration::zero());
  std::erase_if(config_.partitions, [](const Partition& p) {
    return p.length <= Duration::zero() || p.at < Duration::zero() || p.period < Duration::zero();
  });
}

bool Impairment::partitioned(TimePoint t) const {
  if (!epoch_ || config_.partitions.empty()) return false;
  const Duration offset = t - *epoch_;
  for (const auto& p : config_.partitions) {
    if (offset < p.at) continue;
    Duration rel = offset - p.at;
    if (p.period > Duration::zero()) rel %= p.period;
    if (rel < p.length) return true;
  }
  return false;
}

void Impairment::drop(DropReason reason, ByteSpan data, TimePoint now, std::uint64_t index,
                      std::uint32_t copy, std::uint64_t tag, bool truncated) {
  switch (reason) {
    case DropReason::kRandom: ++counters_.dropped_random; break;
    case DropReason::kBurst: ++counters_.dropped_burst; break;
    case DropReason::kQueue: ++counters_.dropped_queue; break;
    case DropReason::kPartition: ++counters_.dropped_partition; break;
    case DropReason::kMtu: ++counters_.dropped_mtu; break;
    case DropReason::kNone: break;
  }
  if (observer_) {
    Event ev;
    ev.kind = Event::Kind::kDropped;
    ev.index = index;
    ev.copy = copy;
    ev.tag = tag;
    ev.entered = now;
    ev.time = now;
    ev.reason = reason;
    ev.truncated = truncated;
    ev.data = data;
    observer_(ev);
  }
}

void Impairment::submit(Bytes datagram, TimePoint now, std::uint64_t tag) {
  if (!epoch_) epoch_ = now;
  const std::uint64_t index = next_index_++;
  ++counters_.entered;
  if (observer_) {
    Event ev;
    ev.kind = Event::Kind::kEntered;
    ev.index = index;
    ev.tag = tag;
    ev.entered = now;
    ev.time = now;
    ev.data = datagram;
    observer_(ev);
  }

  bool truncated = false;
  if (config_.mtu != 0 && datagram.size() > config_.mtu) {
    if (!config_.mtu_truncate) {
      drop(DropReason::kMtu, datagram, now, index, 0, tag, false);
      return;
    }
    datagram.resize(config_.mtu);
    truncated = true;
    ++counters_.truncated;
  }
  if (partitioned(now)) {
    drop(DropReason::kPartition, datagram, now, index, 0, tag, truncated);
    return;
  }
  if (config_.loss > 0.0 && rng_.chance(config_.loss)) {
    drop(DropReason::kRandom, datagram, now, index, 0, tag, truncated);
    return;
  }
  if (config_.burst.p > 0.0) {
    if (ge_bad_) {
      if (rng_.chance(config_.burst.r)) ge_bad_ = false;
    } else if (rng_.chance(config_.burst.p)) {
      ge_bad_ = true;
    }
    const double deliver = ge_bad_ ? config_.burst.h : config_.burst.k;
    if (!rng_.chance(deliver)) {
      drop(DropReason::kBurst, datagram, now, index, 0, tag, truncated);
      return;
    }
  }
  const bool duplicate = config_.duplicate > 0.0 && rng_.chance(config_.duplicate);
  if (duplicate) {
    ++counters_.duplicated;
    Bytes copy = datagram;
    schedule(std::move(datagram), now, index, 0, tag, truncated);
    schedule(std::move(copy), now, index, 1, tag, truncated);
  } else {
    schedule(std::move(datagram), now, index, 0, tag, truncated);
  }
}

double Impairment::normal() {
  // Box-Muller; written out (not std::normal_distribution) so results match across standard
  // libraries.
  const double u1 = 1.0 - rng_.uniform();  // (0, 1]
  const double u2 = rng_.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

Duration Impairment::draw_delay() {
  if (config_.jitter == Duration::zero()) return config_.delay;
  const double jitter = static_cast<double>(config_.jitter.count());
  const double offset = config_.jitter_distribution == JitterDistribution::kNormal
                            ? normal() * jitter
                            : (rng_.uniform() * 2.0 - 1.0) * jitter;
  const double total = static_cast<double>(config_.delay.count()) + offset;
  return Duration(total <= 0.0 ? 0 : std::llround(total));
}

void Impairment::schedule(Bytes data, TimePoint now, std::uint64_t index, std::uint32_t copy,
                          std::uint64_t tag, bool truncated) {
  bool corrupted = false;
  if (config_.corrupt > 0.0 && !data.empty() && rng_.chance(config_.corrupt)) {
    const std::uint64_t bits = data.size() * 8;
    const std::uint64_t flips =
        std::min<std::uint64_t>(1 + rng_.below(config_.corrupt_max_bits), bits);
    std::vector<std::uint64_t> chosen;
    while (chosen.size() < flips) {
      const std::uint64_t bit = rng_.below(bits);
      if (std::find(chosen.begin(), chosen.end(), bit) != chosen.end()) continue;
      chosen.push_back(bit);
      data[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    }
    corrupted = true;
    ++counters_.corrupted;
  }

  TimePoint departure = now;
  if (config_.rate_bps > 0) {
    while (!rate_queue_.empty() && rate_queue_.front() <= now) rate_queue_.pop_front();
    if (config_.queue_limit != 0 && rate_queue_.size() >= config_.queue_limit) {
      drop(DropReason::kQueue, data, now, index, copy, tag, truncated);
      return;
    }
    // Serialisation time, rounded up to whole nanoseconds.
    __extension__ using U128 = unsigned __int128;
    const U128 bit_ns = static_cast<U128>(data.size()) * 8u * 1'000'000'000u;
    const auto tx_ns =
        static_cast<std::int64_t>((bit_ns + config_.rate_bps - 1) / config_.rate_bps);
    departure = std::max(now, link_free_at_) + Duration(tx_ns);
    link_free_at_ = departure;
    rate_queue_.push_back(departure);
  }

  TimePoint release = departure;
  if (!(config_.reorder > 0.0 && rng_.chance(config_.reorder))) {
    release = departure + draw_delay();
    if (!config_.jitter_reorders) {
      release = std::max(release, last_fifo_release_);
      last_fifo_release_ = release;
    }
  }
  pending_.push_back(Pending{release, next_order_++, index, copy, tag, now, corrupted, truncated,
                             std::move(data)});
  std::push_heap(pending_.begin(), pending_.end(), Later{});
}

std::optional<TimePoint> Impairment::next_release() const {
  if (pending_.empty()) return std::nullopt;
  return pending_.front().release;
}

std::optional<Bytes> Impairment::poll_release(TimePoint now) {
  auto r = poll_release_tagged(now);
  if (!r) return std::nullopt;
  return std::move(r->data);
}

std::optional<Released> Impairment::poll_release_tagged(TimePoint now) {
  if (pending_.empty() || pending_.front().release > now) return std::nullopt;
  std::pop_heap(pending_.begin(), pending_.end(), Later{});
  Pending p = std::move(pending_.back());
  pending_.pop_back();
  bool reordered = false;
  if (max_released_index_ && p.index < *max_released_index_) {
    reordered = true;
    ++counters_.reordered;
  } else {
    max_released_index_ = p.index;
  }
  ++counters_.delivered;
  if (observer_) {
    Event ev;
    ev.kind = Event::Kind::kDelivered;
    ev.index = p.index;
    ev.copy = p.copy;
    ev.tag = p.tag;
    ev.entered = p.entered;
    ev.time = p.release;
    ev.corrupted = p.corrupted;
    ev.truncated = p.truncated;
    ev.reordered = reordered;
    ev.data = p.data;
    observer_(ev);
  }
  return Released{std::move(p.data), p.tag};
}

}  // namespace ipsan::netem
