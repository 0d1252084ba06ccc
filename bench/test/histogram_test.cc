// Unit tests of the log-linear latency histogram.
#include "ipsan/bench/histogram.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "ipsan/base/rng.h"

namespace ipsan::bench {
namespace {

TEST(Histogram, EmptyReportsZeroes) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.percentile(99.9), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (std::uint64_t v = 0; v < 100; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 99u);
  EXPECT_EQ(h.percentile(50), 49u);  // 50th of 0..99
  EXPECT_EQ(h.percentile(90), 89u);
  EXPECT_EQ(h.percentile(1), 0u);
  EXPECT_EQ(h.percentile(100), 99u);
  EXPECT_DOUBLE_EQ(h.mean(), 49.5);
}

TEST(Histogram, BucketsTileTheWholeRange) {
  EXPECT_EQ(Histogram::bucket_of(0), 0u);
  EXPECT_EQ(Histogram::bucket_of(127), 127u);
  EXPECT_EQ(Histogram::bucket_of(128), 128u);
  EXPECT_EQ(Histogram::bucket_of(std::numeric_limits<std::uint64_t>::max()),
            Histogram::kBuckets - 1);
  EXPECT_EQ(Histogram::bucket_high(Histogram::kBuckets - 1),
            std::numeric_limits<std::uint64_t>::max());
  for (std::size_t i = 1; i < Histogram::kBuckets; ++i) {
    ASSERT_EQ(Histogram::bucket_low(i), Histogram::bucket_high(i - 1) + 1) << i;
    ASSERT_EQ(Histogram::bucket_of(Histogram::bucket_low(i)), i);
    ASSERT_EQ(Histogram::bucket_of(Histogram::bucket_high(i)), i);
  }
}

TEST(Histogram, RelativeErrorBelowTwoPercent) {
  Rng rng(7);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t v = rng.next() >> rng.below(64);
    const auto b = Histogram::bucket_of(v);
    const double lo = static_cast<double>(Histogram::bucket_low(b));
    const double hi = static_cast<double>(Histogram::bucket_high(b));
    ASSERT_LE(lo, static_cast<double>(v));
    ASSERT_GE(hi, static_cast<double>(v));
    if (v >= Histogram::kSubCount) {
      ASSERT_LT((hi - lo) / static_cast<double>(v), 1.0 / 64 + 1e-12);
    }
  }
}

TEST(Histogram, PercentilesOfALatencyMix) {
  // 990 fast requests near 10 us, 9 at 1 ms, one at 50 ms: p99 must see the slow tail.
  Histogram h;
  for (int i = 0; i < 990; ++i) h.record(10'000 + static_cast<std::uint64_t>(i));
  for (int i = 0; i < 9; ++i) h.record(1'000'000);
  h.record(50'000'000);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(static_cast<double>(h.percentile(50)), 10'500, 10'500 * 0.02);
  EXPECT_NEAR(static_cast<double>(h.percentile(99.5)), 1'000'000, 1'000'000 * 0.02);
  EXPECT_EQ(h.percentile(99.95), 50'000'000u);
  EXPECT_EQ(h.percentile(100), 50'000'000u);
  std::uint64_t last = 0;
  for (double p = 0; p <= 100; p += 0.5) {
    ASSERT_GE(h.percentile(p), last);
    last = h.percentile(p);
  }
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  Histogram a, b, all;
  Rng rng(3);
  for (int i = 0; i < 5000; ++i) {
    const std::uint64_t v = rng.below(10'000'000);
    (i % 2 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9}) EXPECT_EQ(a.percentile(p), all.percentile(p));
  a.reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.percentile(50), 0u);
}

TEST(Histogram, RecordWithCountAndOddPercentiles) {
  Histogram h;
  h.record(1000, 3);
  h.record(5, 0);  // no-op
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_EQ(h.percentile(-5), 1000u);
  EXPECT_EQ(h.percentile(250), 1000u);
  EXPECT_EQ(h.percentile(std::numeric_limits<double>::quiet_NaN()), 1000u);
}

}  // namespace
}  // namespace ipsan::bench
