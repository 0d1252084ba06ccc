// ipsan/bench/histogram.h: a log-linear latency histogram (HdrHistogram-style) for `ipsan bench`.
//
// Values (nanoseconds, or any unsigned count) below 2^kSubBits are counted exactly; above that each
// power-of-two range is split into 2^(kSubBits-1) equal buckets, so a recorded value is known to
// within 1/64 (< 1.6 %) of itself over the whole 64-bit range, in a fixed 3 776-bucket table (30
// KiB). Recording is a few instructions and never allocates; percentiles walk the table.
//
// Threading: plain value; one writer at a time. Merge per-thread histograms with merge().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ipsan::bench {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 7;
  static constexpr std::size_t kSubCount = std::size_t{1} << kSubBits;  // exact range [0, 128)
  static constexpr std::size_t kHalf = kSubCount / 2;
  static constexpr std::size_t kBuckets = (64 - kSubBits) * kHalf + kSubCount;

  Histogram() : counts_(kBuckets, 0) {}

  void record(std::uint64_t value, std::uint64_t count = 1);
  void merge(const Histogram& other);
  void reset();

  std::uint64_t count() const { return total_; }
  std::uint64_t min() const { return total_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const {
    return total_ ? static_cast<double>(sum_ / static_cast<long double>(total_)) : 0;
  }
  // The value at or below which `p` percent of the recorded values lie (0 <= p <= 100): the
  // highest value equivalent to that bucket, clamped to [min(), max()]. 0 when empty.
  std::uint64_t percentile(double p) const;

  // Bucket arithmetic, exposed for tests.
  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t bucket_low(std::size_t index);
  static std::uint64_t bucket_high(std::size_t index);

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
  long double sum_ = 0;  // exact enough for a mean; __int128 is not ISO C++
};

}  // namespace ipsan::bench
