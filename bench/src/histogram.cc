// Log-linear histogram (see histogram.h).
#include "ipsan/bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ipsan::bench {

std::size_t Histogram::bucket_of(std::uint64_t value) {
  if (value < kSubCount) return static_cast<std::size_t>(value);
  const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - kSubBits;  // >= 1
  return shift * kHalf + static_cast<std::size_t>(value >> shift);  // value >> shift in [64, 128)
}

std::uint64_t Histogram::bucket_low(std::size_t index) {
  if (index < kSubCount) return index;
  const std::size_t shift = index / kHalf - 1;
  const std::uint64_t m = index % kHalf + kHalf;
  return m << shift;
}

std::uint64_t Histogram::bucket_high(std::size_t index) {
  if (index < kSubCount) return index;
  const std::size_t shift = index / kHalf - 1;
  const std::uint64_t m = index % kHalf + kHalf;
  // The top bucket ends at 2^64 - 1: compute (m + 1) << shift - 1 without overflow.
  return (m << shift) + ((std::uint64_t{1} << shift) - 1);
}

void Histogram::record(std::uint64_t value, std::uint64_t count) {
  if (count == 0) return;
  counts_[bucket_of(value)] += count;
  total_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * static_cast<long double>(count);
}

void Histogram::merge(const Histogram& other) {
  if (other.total_ == 0) return;
  for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  min_ = ~std::uint64_t{0};
  max_ = 0;
  sum_ = 0;
}

std::uint64_t Histogram::percentile(double p) const {
  if (total_ == 0) return 0;
  if (!(p > 0)) return min_;  // also catches NaN
  if (p >= 100) return max_;
  // Rank of the value wanted (1-based): the smallest r with r >= p% of total.
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
  rank = std::clamp<std::uint64_t>(rank, 1, total_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(bucket_high(i), min_, max_);
  }
  return max_;
}

}  // namespace ipsan::bench
