// Impairment engine: statistics with fixed seeds, determinism, ordering, rate, MTU, partitions.
#include "ipsan/netem/impairment.h"

#include <gtest/gtest.h>
#include "ipsan/base/log.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <set>

namespace ipsan::netem {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::uint64_t kSeed = 0x5EED'0001;

// A datagram carrying its sequence number in the first 8 bytes.
Bytes numbered(std::uint64_t seq, std::size_t size = 100) {
  Bytes b(std::max<std::size_t>(size, 8), 0xAB);
  store_be64(b.data(), seq);
  return b;
}
std::uint64_t number_of(const Bytes& b) { return load_be64(b.data()); }

struct Delivery {
  TimePoint at;
  Bytes data;
};

// Submits `n` datagrams, one every `gap`, and collects every delivery with its release time.
std::vector<Delivery> run(Impairment& eng, std::size_t n, Duration gap, std::size_t size = 100) {
  VirtualClock clock;
  std::vector<Delivery> out;
  auto drain = [&](TimePoint now) {
    while (auto d = eng.poll_release(now)) out.push_back({now, std::move(*d)});
  };
  for (std::size_t i = 0; i < n; ++i) {
    // Deliver everything due before this submission, at its exact release time.
    while (auto t = eng.next_release()) {
      if (*t > clock.now()) break;
      drain(*t);
    }
    eng.submit(numbered(i, size), clock.now());
    while (auto t = eng.next_release()) {
      if (*t > clock.now() + gap) break;
      drain(*t);
    }
    clock.advance(gap);
  }
  while (auto t = eng.next_release()) drain(*t);
  return out;
}

TEST(Impairment, NoImpairmentDeliversEverythingImmediatelyInOrder) {
  Impairment eng({}, kSeed);
  VirtualClock clock;
  eng.submit(numbered(1), clock.now());
  eng.submit(numbered(2), clock.now());
  ASSERT_EQ(eng.next_release(), clock.now());
  EXPECT_EQ(number_of(*eng.poll_release(clock.now())), 1u);
  EXPECT_EQ(number_of(*eng.poll_release(clock.now())), 2u);
  EXPECT_FALSE(eng.poll_release(clock.now()));
  EXPECT_FALSE(eng.next_release());
  EXPECT_EQ(eng.counters().entered, 2u);
  EXPECT_EQ(eng.counters().delivered, 2u);
}

TEST(Impairment, RandomLossRateWithinTolerance) {
  std::printf("seed %llu\n", static_cast<unsigned long long>(kSeed));
  ImpairmentConfig c;
  c.loss = 0.01;
  Impairment eng(c, kSeed);
  const auto out = run(eng, 100'000, microseconds(10));
  const double rate = static_cast<double>(eng.counters().dropped_random) / 100'000.0;
  EXPECT_GT(rate, 0.008);
  EXPECT_LT(rate, 0.012);
  EXPECT_EQ(out.size() + eng.counters().dropped_random, 100'000u);
  EXPECT_EQ(eng.counters().delivered, out.size());
}

TEST(Impairment, SameSeedSameFates) {
  ImpairmentConfig c;
  c.loss = 0.05;
  c.burst = {0.02, 0.3, 0.0, 1.0};
  c.delay = milliseconds(5);
  c.jitter = milliseconds(3);
  c.jitter_reorders = true;
  c.duplicate = 0.02;
  c.corrupt = 0.02;
  c.reorder = 0.1;
  auto fates = [&c](std::uint64_t seed) {
    Impairment eng(c, seed);
    std::vector<std::string> log;
    eng.set_observer([&log](const Event& ev) {
      log.push_back(str_cat(static_cast<int>(ev.kind), ":", ev.index, ":", ev.copy, ":",
                            ev.time.time_since_epoch().count(), ":", to_string(ev.reason), ":",
                            ev.corrupted, ":", to_hex(ev.data)));
    });
    run(eng, 3000, microseconds(500));
    return log;
  };
  const auto a = fates(kSeed);
  const auto b = fates(kSeed);
  const auto other = fates(kSeed + 1);
  ASSERT_GT(a.size(), 6000u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
}

TEST(Impairment, FixedDelayIsExact) {
  ImpairmentConfig c;
  c.delay = milliseconds(10);
  Impairment eng(c, kSeed);
  VirtualClock clock;
  eng.submit(numbered(0), clock.now());
  EXPECT_EQ(eng.next_release(), clock.now() + milliseconds(10));
  EXPECT_FALSE(eng.poll_release(clock.now() + milliseconds(10) - Duration(1)));
  EXPECT_TRUE(eng.poll_release(clock.now() + milliseconds(10)));
}

TEST(Impairment, JitterWithoutReorderKeepsFifo) {
  for (const auto dist : {JitterDistribution::kUniform, JitterDistribution::kNormal}) {
    ImpairmentConfig c;
    c.delay = milliseconds(10);
    c.jitter = milliseconds(8);
    c.jitter_distribution = dist;
    Impairment eng(c, kSeed);
    const auto out = run(eng, 5000, microseconds(100));
    ASSERT_EQ(out.size(), 5000u);
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(number_of(out[i].data), i);
    EXPECT_EQ(eng.counters().reordered, 0u);
  }
}

TEST(Impairment, JitterWithReorderReordersAndHasRightSpread) {
  ImpairmentConfig c;
  c.delay = milliseconds(10);
  c.jitter = milliseconds(2);
  c.jitter_reorders = true;
  c.jitter_distribution = JitterDistribution::kNormal;
  Impairment eng(c, kSeed);
  VirtualClock clock;
  const TimePoint t0 = clock.now();
  // All submitted at once: each release time is t0 + delay + N(0, jitter).
  for (std::uint64_t i = 0; i < 20'000; ++i) eng.submit(numbered(i), t0);
  double sum = 0, sum2 = 0;
  std::size_t n = 0, out_of_order = 0;
  std::uint64_t prev = 0;
  while (auto t = eng.next_release()) {
    auto d = eng.poll_release(*t);
    const double ms = to_micros(*t - t0) / 1000.0;
    sum += ms;
    sum2 += ms * ms;
    if (n > 0 && number_of(*d) < prev) ++out_of_order;
    prev = number_of(*d);
    ++n;
  }
  ASSERT_EQ(n, 20'000u);
  const double mean = sum / n;
  const double sd = std::sqrt(sum2 / n - mean * mean);
  EXPECT_NEAR(mean, 10.0, 0.1);
  EXPECT_NEAR(sd, 2.0, 0.1);
  EXPECT_GT(out_of_order, 1000u);
  EXPECT_GT(eng.counters().reordered, 1000u);
}

TEST(Impairment, UniformJitterStaysInRange) {
  ImpairmentConfig c;
  c.delay = milliseconds(10);
  c.jitter = milliseconds(3);
  c.jitter_reorders = true;
  Impairment eng(c, kSeed);
  const TimePoint t0 = VirtualClock().now();
  for (std::uint64_t i = 0; i < 10'000; ++i) eng.submit(numbered(i), t0);
  Duration lo = Duration::max(), hi = Duration::min();
  while (auto t = eng.next_release()) {
    eng.poll_release(*t);
    lo = std::min(lo, *t - t0);
    hi = std::max(hi, *t - t0);
  }
  EXPECT_GE(lo, milliseconds(7));
  EXPECT_LE(hi, milliseconds(13));
  EXPECT_LT(lo, milliseconds(7) + microseconds(50));
  EXPECT_GT(hi, milliseconds(13) - microseconds(50));
}

TEST(Impairment, ExplicitReorderSendsSomeImmediately) {
  ImpairmentConfig c;
  c.delay = milliseconds(10);
  c.reorder = 0.10;
  Impairment eng(c, kSeed);
  const auto out = run(eng, 20'000, milliseconds(1));
  ASSERT_EQ(out.size(), 20'000u);
  std::size_t immediate = 0;
  for (const auto& d : out) {
    const TimePoint sent = VirtualClock().now() + milliseconds(1) * number_of(d.data);
    const Duration latency = d.at - sent;
    ASSERT_TRUE(latency == Duration::zero() || latency == milliseconds(10));
    if (latency == Duration::zero()) ++immediate;
  }
  const double frac = static_cast<double>(immediate) / 20'000.0;
  EXPECT_GT(frac, 0.09);
  EXPECT_LT(frac, 0.11);
  // An immediate datagram overtakes the (up to 10) delayed ones before it.
  EXPECT_GT(eng.counters().reordered, 1000u);
}

TEST(Impairment, DuplicationRate) {
  ImpairmentConfig c;
  c.duplicate = 0.01;
  Impairment eng(c, kSeed);
  const auto out = run(eng, 100'000, microseconds(10));
  const auto dup = eng.counters().duplicated;
  EXPECT_GT(dup, 800u);
  EXPECT_LT(dup, 1200u);
  EXPECT_EQ(out.size(), 100'000u + dup);
  std::map<std::uint64_t, int> seen;
  for (const auto& d : out) ++seen[number_of(d.data)];
  std::size_t twice = 0;
  for (const auto& [seq, count] : seen) {
    ASSERT_LE(count, 2);
    if (count == 2) ++twice;
  }
  EXPECT_EQ(twice, dup);
}

TEST(Impairment, CorruptionFlipsOneToNBits) {
  ImpairmentConfig c;
  c.corrupt = 0.05;
  c.corrupt_max_bits = 3;
  Impairment eng(c, kSeed);
  VirtualClock clock;
  std::size_t corrupted = 0;
  std::set<int> flip_counts;
  for (std::uint64_t i = 0; i < 20'000; ++i) {
    const Bytes sent(64, 0x00);
    eng.submit(sent, clock.now());
    const auto got = eng.poll_release(clock.now());
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), sent.size());
    int flips = 0;
    for (auto byte : *got) flips += std::popcount(byte);
    if (flips > 0) {
      ++corrupted;
      flip_counts.insert(flips);
    }
  }
  EXPECT_EQ(corrupted, eng.counters().corrupted);
  EXPECT_GT(corrupted, 800u);
  EXPECT_LT(corrupted, 1200u);
  EXPECT_EQ(flip_counts, (std::set<int>{1, 2, 3}));
}

TEST(Impairment, RateLimitThroughputAndTailDrop) {
  ImpairmentConfig c;
  c.rate_bps = 8'000'000;  // 1 MB/s: a 1000-byte datagram takes exactly 1 ms
  c.queue_limit = 10;
  Impairment eng(c, kSeed);
  VirtualClock clock;
  const TimePoint t0 = clock.now();
  // A burst of 100 at once: 10 fit in the queue (the first is being sent), 90 are tail-dropped.
  for (std::uint64_t i = 0; i < 100; ++i) eng.submit(numbered(i, 1000), t0);
  EXPECT_EQ(eng.counters().dropped_queue, 90u);
  std::vector<TimePoint> times;
  while (auto t = eng.next_release()) {
    auto d = eng.poll_release(*t);
    EXPECT_EQ(number_of(*d), times.size());
    times.push_back(*t);
  }
  ASSERT_EQ(times.size(), 10u);
  for (std::size_t i = 0; i < times.size(); ++i) EXPECT_EQ(times[i], t0 + milliseconds(i + 1));

  // Offered 2 MB/s for 1 s: about 1 MB/s gets through.
  Impairment eng2(c, kSeed);
  const auto out = run(eng2, 2000, microseconds(500), 1000);
  const Duration span = out.back().at - out.front().at;
  const double mbps = static_cast<double>(out.size()) * 8000.0 / to_seconds(span) / 1e6;
  EXPECT_NEAR(mbps, 8.0, 0.1);
  EXPECT_GT(eng2.counters().dropped_queue, 900u);
  EXPECT_EQ(eng2.counters().delivered + eng2.counters().dropped_queue, 2000u);
}

TEST(Impairment, RateLimitWithoutOverloadDropsNothing) {
  ImpairmentConfig c;
  c.rate_bps = 8'000'000;
  c.queue_limit = 2;
  c.delay = milliseconds(5);
  Impairment eng(c, kSeed);
  const auto out = run(eng, 1000, milliseconds(2), 1000);  // 50 % load
  EXPECT_EQ(out.size(), 1000u);
  EXPECT_EQ(eng.counters().dropped_queue, 0u);
  // 1 ms serialisation + 5 ms propagation.
  EXPECT_EQ(out[10].at - (VirtualClock().now() + milliseconds(2) * 10), milliseconds(6));
}

TEST(Impairment, MtuDropOrTruncate) {
  ImpairmentConfig c;
  c.mtu = 1500;
  Impairment drop(c, kSeed);
  VirtualClock clock;
  drop.submit(Bytes(1500, 1), clock.now());
  drop.submit(Bytes(1501, 1), clock.now());
  EXPECT_EQ(drop.poll_release(clock.now())->size(), 1500u);
  EXPECT_FALSE(drop.poll_release(clock.now()));
  EXPECT_EQ(drop.counters().dropped_mtu, 1u);

  c.mtu_truncate = true;
  Impairment cut(c, kSeed);
  cut.submit(Bytes(9000, 2), clock.now());
  const auto got = cut.poll_release(clock.now());
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, Bytes(1500, 2));
  EXPECT_EQ(cut.counters().truncated, 1u);
  EXPECT_EQ(cut.counters().dropped_mtu, 0u);
}

TEST(Impairment, PartitionExactlyInScheduledWindow) {
  ImpairmentConfig c;
  c.partitions = {{seconds(2), milliseconds(500), Duration::zero()}};
  Impairment eng(c, kSeed);
  const TimePoint epoch = VirtualClock().now();
  eng.set_epoch(epoch);
  // One datagram every millisecond for 4 s.
  std::vector<bool> delivered;
  for (int ms = 0; ms < 4000; ++ms) {
    const TimePoint now = epoch + milliseconds(ms);
    eng.submit(numbered(static_cast<std::uint64_t>(ms)), now);
    delivered.push_back(eng.poll_release(now).has_value());
  }
  for (int ms = 0; ms < 4000; ++ms) {
    const bool down = ms >= 2000 && ms < 2500;
    ASSERT_EQ(delivered[static_cast<std::size_t>(ms)], !down) << "at " << ms << " ms";
  }
  EXPECT_EQ(eng.counters().dropped_partition, 500u);
  EXPECT_FALSE(eng.partitioned(epoch + milliseconds(2000) - Duration(1)));
  EXPECT_TRUE(eng.partitioned(epoch + milliseconds(2000)));
  EXPECT_TRUE(eng.partitioned(epoch + milliseconds(2500) - Duration(1)));
  EXPECT_FALSE(eng.partitioned(epoch + milliseconds(2500)));
}

TEST(Impairment, RepeatingPartition) {
  ImpairmentConfig c;
  c.partitions = {{seconds(1), milliseconds(100), seconds(1)}};
  Impairment eng(c, kSeed);
  const TimePoint epoch = VirtualClock().now();
  eng.set_epoch(epoch);
  EXPECT_FALSE(eng.partitioned(epoch + milliseconds(999)));
  for (int k = 1; k <= 5; ++k) {
    EXPECT_TRUE(eng.partitioned(epoch + seconds(k)));
    EXPECT_TRUE(eng.partitioned(epoch + seconds(k) + milliseconds(99)));
    EXPECT_FALSE(eng.partitioned(epoch + seconds(k) + milliseconds(100)));
  }
}

TEST(Impairment, EpochDefaultsToFirstSubmit) {
  ImpairmentConfig c;
  c.partitions = {{Duration::zero(), milliseconds(10), Duration::zero()}};
  Impairment eng(c, kSeed);
  const TimePoint t = VirtualClock().now() + seconds(50);
  eng.submit(numbered(0), t);
  eng.submit(numbered(1), t + milliseconds(10));
  EXPECT_EQ(eng.counters().dropped_partition, 1u);
  EXPECT_EQ(number_of(*eng.poll_release(t + milliseconds(10))), 1u);
}

TEST(Impairment, GilbertElliottBurstLengthAndLossRate) {
  ImpairmentConfig c;
  c.burst = {0.01, 0.25, 0.0, 1.0};  // mean burst 4, loss 0.01/0.26 = 3.85 %
  Impairment eng(c, kSeed);
  VirtualClock clock;
  std::vector<bool> lost;
  for (std::uint64_t i = 0; i < 200'000; ++i) {
    eng.submit(numbered(i), clock.now());
    lost.push_back(!eng.poll_release(clock.now()).has_value());
  }
  std::size_t bursts = 0, lost_total = 0;
  for (std::size_t i = 0; i < lost.size(); ++i) {
    if (lost[i]) {
      ++lost_total;
      if (i == 0 || !lost[i - 1]) ++bursts;
    }
  }
  EXPECT_EQ(lost_total, eng.counters().dropped_burst);
  const double mean_burst = static_cast<double>(lost_total) / static_cast<double>(bursts);
  EXPECT_NEAR(mean_burst, 4.0, 0.3);
  const double rate = static_cast<double>(lost_total) / 200'000.0;
  EXPECT_NEAR(rate, 0.01 / 0.26, 0.004);

  // Same loss rate without bursts: random loss gives mean run length ~1.04.
  ImpairmentConfig r;
  r.loss = rate;
  Impairment uni(r, kSeed);
  std::size_t runs = 0, total = 0;
  bool prev = false;
  for (std::uint64_t i = 0; i < 200'000; ++i) {
    uni.submit(numbered(i), clock.now());
    const bool l = !uni.poll_release(clock.now()).has_value();
    if (l) {
      ++total;
      if (!prev) ++runs;
    }
    prev = l;
  }
  EXPECT_LT(static_cast<double>(total) / static_cast<double>(runs), 1.2);
}

TEST(Impairment, GilbertElliottPartialLossInBadState) {
  ImpairmentConfig c;
  c.burst = {0.1, 0.1, 0.5, 0.9};  // half the time bad (50 % loss), half good (10 % loss)
  Impairment eng(c, kSeed);
  VirtualClock clock;
  for (std::uint64_t i = 0; i < 100'000; ++i) {
    eng.submit(numbered(i), clock.now());
    eng.poll_release(clock.now());
  }
  const double rate = static_cast<double>(eng.counters().dropped_burst) / 100'000.0;
  EXPECT_NEAR(rate, 0.30, 0.02);
}

TEST(Impairment, ValidateRejectsOutOfRange) {
  ImpairmentConfig c;
  EXPECT_EQ(validate(c), "");
  c.loss = 1.5;
  EXPECT_NE(validate(c).find("loss"), std::string::npos);
  c.loss = std::nan("");
  EXPECT_NE(validate(c), "");
  c = {};
  c.partitions = {{seconds(1), Duration::zero(), Duration::zero()}};
  EXPECT_NE(validate(c), "");
  c = {};
  c.burst = {0.5, 0.0, 0.0, 1.0};
  EXPECT_NE(validate(c), "");
  // Out-of-range values are clamped by the engine instead of misbehaving.
  c = {};
  c.loss = 7.0;
  Impairment eng(c, kSeed);
  eng.submit(numbered(0), VirtualClock().now());
  EXPECT_EQ(eng.counters().dropped_random, 1u);
}

TEST(Impairment, SetConfigAppliesToLaterDatagramsOnly) {
  ImpairmentConfig c;
  c.delay = milliseconds(10);
  Impairment eng(c, kSeed);
  const TimePoint t0 = VirtualClock().now();
  eng.submit(numbered(0), t0);
  c.delay = milliseconds(1);
  c.loss = 1.0;
  eng.set_config(c);
  eng.submit(numbered(1), t0);  // lost
  c.loss = 0.0;
  eng.set_config(c);
  eng.submit(numbered(2), t0);  // 1 ms, but FIFO behind the 10 ms one
  EXPECT_EQ(eng.counters().dropped_random, 1u);
  EXPECT_EQ(eng.next_release(), t0 + milliseconds(10));
  EXPECT_EQ(number_of(*eng.poll_release(t0 + milliseconds(10))), 0u);
  EXPECT_EQ(number_of(*eng.poll_release(t0 + milliseconds(10))), 2u);
}

TEST(Impairment, DeriveSeedGivesDistinctStreams) {
  EXPECT_NE(derive_seed(1, 0), derive_seed(1, 1));
  EXPECT_NE(derive_seed(1, 0), derive_seed(2, 0));
  EXPECT_EQ(derive_seed(42, 1), derive_seed(42, 1));
}

}  // namespace
}  // namespace ipsan::netem
