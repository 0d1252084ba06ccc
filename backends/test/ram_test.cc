#include "ipsan/backends/ram.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <thread>
#include <vector>

#include "ipsan/base/pattern.h"
#include "ipsan/base/rng.h"
#include "test_util.h"

namespace ipsan::backends {
namespace {

using testing::read_sync;
using testing::trim_sync;
using testing::write_sync;
using testing::zeroes_sync;

std::shared_ptr<RamBackend> make(std::uint64_t size, std::uint32_t bs = 512) {
  auto r = RamBackend::create(size, RamOptions{bs, false});
  EXPECT_TRUE(r.has_value());
  return *r;
}

bool all_zero(std::span<const std::uint8_t> s) {
  for (auto b : s) {
    if (b != 0) return false;
  }
  return true;
}

TEST(RamBackend, RejectsBadGeometry) {
  EXPECT_FALSE(RamBackend::create(0).has_value());
  EXPECT_FALSE(RamBackend::create(1000).has_value());
  EXPECT_FALSE(RamBackend::create(1 << 20, RamOptions{1024, false}).has_value());
  EXPECT_FALSE(RamBackend::create(512 * 3, RamOptions{4096, false}).has_value());
  auto ok = RamBackend::create(4096 * 3, RamOptions{4096, false});
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ((*ok)->geometry().block_count, 3u);
}

TEST(RamBackend, NeverWrittenReadsZeroes) {
  auto b = make(4 << 20);
  std::vector<std::uint8_t> buf(8192, 0xAA);
  ASSERT_EQ(read_sync(*b, 100, buf), Errc::kOk);
  EXPECT_TRUE(all_zero(buf));
  EXPECT_EQ(b->allocated_bytes(), 0u);
}

TEST(RamBackend, RoundTripsAcrossChunkBoundaries) {
  for (std::uint32_t bs : {512u, 4096u}) {
    auto b = make(8 << 20, bs);
    const std::uint64_t per_chunk = RamBackend::kChunkBytes / bs;
    // lba, blocks: inside a chunk, ending at a boundary, spanning one and several boundaries,
    // the very last block.
    const std::pair<std::uint64_t, std::uint64_t> cases[] = {{0, 1},
                                                             {3, 5},
                                                             {per_chunk - 2, 2},
                                                             {per_chunk - 1, 2},
                                                             {per_chunk - 3, 2 * per_chunk + 7},
                                                             {b->geometry().block_count - 1, 1}};
    std::uint64_t gen = 1;
    for (auto [lba, blocks] : cases) {
      std::vector<std::uint8_t> w(blocks * bs), r(blocks * bs);
      fill_pattern_blocks(w, bs, 7, lba, gen);
      ASSERT_EQ(write_sync(*b, lba, w), Errc::kOk) << "bs " << bs << " lba " << lba;
      ASSERT_EQ(read_sync(*b, lba, r), Errc::kOk);
      EXPECT_EQ(w, r) << "bs " << bs << " lba " << lba << " blocks " << blocks;
      ++gen;
    }
  }
}

TEST(RamBackend, OutOfRangeAndMisaligned) {
  auto b = make(1 << 20);
  const std::uint64_t n = b->geometry().block_count;
  std::vector<std::uint8_t> buf(1024);
  EXPECT_EQ(read_sync(*b, n - 1, buf), Errc::kLbaOutOfRange);
  EXPECT_EQ(write_sync(*b, n, std::span<const std::uint8_t>(buf).first(512)), Errc::kLbaOutOfRange);
  EXPECT_EQ(write_sync(*b, ~0ull, buf), Errc::kLbaOutOfRange);
  EXPECT_EQ(trim_sync(*b, n - 1, 2), Errc::kLbaOutOfRange);
  EXPECT_EQ(read_sync(*b, 0, std::span<std::uint8_t>(buf).first(100)), Errc::kInvalidArgument);
  EXPECT_EQ(b->allocated_bytes(), 0u);
}

TEST(RamBackend, TrimFreesChunksAndZeroesPartialRanges) {
  auto b = make(4 << 20);
  const std::uint64_t per_chunk = RamBackend::kChunkBytes / 512;
  std::vector<std::uint8_t> w(3 * per_chunk * 512, 0x5A);
  ASSERT_EQ(write_sync(*b, 0, w), Errc::kOk);
  EXPECT_EQ(b->allocated_bytes(), 3 * RamBackend::kChunkBytes);
  // Trim from the middle of chunk 0 to the end of chunk 1: chunk 1 freed, chunk 0 half zeroed.
  ASSERT_EQ(trim_sync(*b, per_chunk / 2, per_chunk + per_chunk / 2), Errc::kOk);
  EXPECT_EQ(b->allocated_bytes(), 2 * RamBackend::kChunkBytes);
  std::vector<std::uint8_t> r(w.size());
  ASSERT_EQ(read_sync(*b, 0, r), Errc::kOk);
  const std::size_t half = per_chunk / 2 * 512, chunk = per_chunk * 512;
  EXPECT_TRUE(std::all_of(r.begin(), r.begin() + half, [](auto v) { return v == 0x5A; }));
  EXPECT_TRUE(all_zero(std::span(r).subspan(half, 2 * chunk - half)));
  EXPECT_TRUE(std::all_of(r.begin() + 2 * chunk, r.end(), [](auto v) { return v == 0x5A; }));
  ASSERT_EQ(zeroes_sync(*b, 2 * per_chunk + 1, 1, false), Errc::kOk);
  ASSERT_EQ(read_sync(*b, 0, r), Errc::kOk);
  EXPECT_TRUE(all_zero(std::span(r).subspan(2 * chunk + 512, 512)));
  EXPECT_EQ(r[2 * chunk], 0x5A);
}

TEST(RamBackend, SparseLargeRamdiskCostsNothingUntilWritten) {
  auto b = make(std::uint64_t{64} << 30);
  EXPECT_EQ(b->geometry().block_count, (std::uint64_t{64} << 30) / 512);
  std::vector<std::uint8_t> w(4096, 0x11), r(4096);
  const std::uint64_t last = b->geometry().block_count - 8;
  ASSERT_EQ(write_sync(*b, last, w), Errc::kOk);
  ASSERT_EQ(write_sync(*b, 0, w), Errc::kOk);
  EXPECT_EQ(b->allocated_bytes(), 2 * RamBackend::kChunkBytes);
  ASSERT_EQ(read_sync(*b, last, r), Errc::kOk);
  EXPECT_EQ(r, w);
  EXPECT_EQ(b->describe(), "ram:64GiB/512");
}

TEST(RamBackend, ReadOnlyRefusesWrites) {
  auto b = *RamBackend::create(1 << 20, RamOptions{512, true});
  std::vector<std::uint8_t> w(512, 1);
  EXPECT_EQ(write_sync(*b, 0, w), Errc::kWriteProtected);
  EXPECT_EQ(trim_sync(*b, 0, 1), Errc::kWriteProtected);
  EXPECT_TRUE(b->capabilities().read_only);
}

TEST(RamBackend, AtomicWritesAcrossChunksAreNeverSeenTorn) {
  // 2.5 MiB starting mid-chunk: three chunks, the write and every read cross two boundaries.
  auto b = make(8 << 20);
  EXPECT_EQ(b->atomic_write_max_blocks(), ~std::uint32_t{0});
  int reads = 0;
  EXPECT_EQ(testing::torn_reads_under_atomic_writes(*b, 1024, 5120, 60, 3, &reads), 0);
  std::printf("%d concurrent reads\n", reads);
  EXPECT_GT(reads, 0);
  std::vector<std::uint8_t> back(5120 * 512);
  ASSERT_EQ(read_sync(*b, 1024, back), Errc::kOk);
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](std::uint8_t x) { return x == 60; }));
  // Range and read-only checks as for write().
  EXPECT_EQ(testing::atomic_write_sync(*b, 16383, std::vector<std::uint8_t>(1024)),
            Errc::kLbaOutOfRange);
  auto ro = RamBackend::create(1 << 20, RamOptions{512, true});
  ASSERT_TRUE(ro.has_value());
  EXPECT_EQ(testing::atomic_write_sync(**ro, 0, std::vector<std::uint8_t>(512)),
            Errc::kWriteProtected);
}

TEST(RamBackend, ConcurrentWritersKeepEveryBlock) {
  auto b = make(16 << 20);
  const std::uint64_t seed = 0xC0FFEE;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  constexpr int kThreads = 4;
  constexpr std::uint64_t kBlocksPerThread = 2048;  // interleaved 8-block runs, crossing chunks
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::uint8_t> buf(8 * 512);
      for (std::uint64_t run = 0; run < kBlocksPerThread / 8; ++run) {
        const std::uint64_t lba = (run * kThreads + static_cast<std::uint64_t>(t)) * 8;
        fill_pattern_blocks(buf, 512, seed, lba, 1);
        EXPECT_EQ(write_sync(*b, lba, buf), Errc::kOk);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::uint8_t> r(kThreads * kBlocksPerThread * 512);
  ASSERT_EQ(read_sync(*b, 0, r), Errc::kOk);
  for (std::uint64_t i = 0; i < kThreads * kBlocksPerThread; ++i) {
    ASSERT_TRUE(check_pattern(std::span(r).subspan(i * 512, 512), seed, i, 1)) << "lba " << i;
  }
}

}  // namespace
}  // namespace ipsan::backends
