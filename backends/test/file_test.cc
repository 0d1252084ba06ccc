#include "ipsan/backends/file.h"
#include "ipsan/testing/skip.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "ipsan/base/pattern.h"
#include "ipsan/testing/temp_dir.h"
#include "test_util.h"

namespace ipsan::backends {
namespace {

using ipsan::testing::TempDir;
using testing::flush_sync;
using testing::read_sync;
using testing::trim_sync;
using testing::Waiter;
using testing::write_sync;
using testing::zeroes_sync;

std::shared_ptr<FileBackend> open_ok(const std::filesystem::path& p, FileOptions o) {
  auto r = FileBackend::open(p, o);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r ? *r : nullptr;
}

bool all_zero(std::span<const std::uint8_t> s) {
  for (auto b : s) {
    if (b != 0) return false;
  }
  return true;
}

TEST(FileBackend, AtomicWritesAreNeverSeenTornByConcurrentReads) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 4 << 20;
  auto b = open_ok(dir / "atomic.img", o);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->atomic_write_max_blocks(), ~std::uint32_t{0});
  // 1 MiB + 3 blocks: several pread/pwrite pieces of the worker pool at once.
  int reads = 0;
  EXPECT_EQ(testing::torn_reads_under_atomic_writes(*b, 5, 2051, 40, 3, &reads), 0);
  std::printf("%d concurrent reads; RWF_ATOMIC unit %u..%u bytes (0: not offered)\n", reads,
              b->atomic_write_unit_bytes().first, b->atomic_write_unit_bytes().second);
  EXPECT_GT(reads, 0);
  std::vector<std::uint8_t> back(2051 * 512);
  ASSERT_EQ(read_sync(*b, 5, back), Errc::kOk);
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](std::uint8_t x) { return x == 40; }));
  EXPECT_EQ(testing::atomic_write_sync(*b, 8191, std::vector<std::uint8_t>(1024), true),
            Errc::kLbaOutOfRange);
}

TEST(FileBackend, CreatesSparseFileOfGivenSize) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = std::uint64_t{1} << 30;
  auto b = open_ok(dir / "disk.img", o);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->geometry().block_count, (std::uint64_t{1} << 30) / 512);
  EXPECT_FALSE(b->is_block_device());
  struct stat st {};
  ASSERT_EQ(::stat((dir / "disk.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), std::uint64_t{1} << 30);
  EXPECT_LT(static_cast<std::uint64_t>(st.st_blocks) * 512, std::uint64_t{1} << 20);  // sparse
}

TEST(FileBackend, CreatesImageReadableByOwnerOnly) {
  // Disk images hold other people's data: 0600 whatever the umask (issue 15).
  TempDir dir;
  const mode_t old_mask = ::umask(0);
  FileOptions o;
  o.size_bytes = 1 << 20;
  auto b = FileBackend::open(dir / "private.img", o);
  ::umask(old_mask);
  ASSERT_TRUE(b.has_value()) << b.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((dir / "private.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(FileBackend, RoundTripsSeveralSizesAndAlignments) {
  TempDir dir;
  for (std::uint32_t bs : {512u, 4096u}) {
    for (unsigned threads : {1u, 4u}) {
      FileOptions o;
      o.block_size = bs;
      o.threads = threads;
      o.size_bytes = 8 << 20;
      const auto path = dir / ("rt" + std::to_string(bs) + "_" + std::to_string(threads));
      auto b = open_ok(path, o);
      ASSERT_TRUE(b);
      const std::uint64_t n = b->geometry().block_count;
      const std::pair<std::uint64_t, std::uint64_t> cases[] = {
          {0, 1}, {1, 7}, {n / 2 - 3, 300 % n}, {n - 1, 1}, {n - 64, 64}};
      std::uint64_t gen = 1;
      for (auto [lba, blocks] : cases) {
        std::vector<std::uint8_t> w(blocks * bs), r(blocks * bs);
        fill_pattern_blocks(w, bs, 3, lba, gen);
        ASSERT_EQ(write_sync(*b, lba, w, gen % 2 == 0), Errc::kOk) << lba;
        ASSERT_EQ(read_sync(*b, lba, r), Errc::kOk);
        EXPECT_EQ(w, r) << "bs " << bs << " lba " << lba;
        ++gen;
      }
    }
  }
}

TEST(FileBackend, OutOfRangeCompletesWithoutTouchingData) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 64 * 1024;
  auto b = open_ok(dir / "small", o);
  ASSERT_TRUE(b);
  std::vector<std::uint8_t> buf(1024, 9);
  EXPECT_EQ(write_sync(*b, 127, buf), Errc::kLbaOutOfRange);
  EXPECT_EQ(read_sync(*b, 128, std::span(buf).first(512)), Errc::kLbaOutOfRange);
  EXPECT_EQ(trim_sync(*b, 0, 129), Errc::kLbaOutOfRange);
  EXPECT_EQ(write_sync(*b, 0, std::span<const std::uint8_t>(buf).first(513)),
            Errc::kInvalidArgument);
  EXPECT_EQ(std::filesystem::file_size(dir / "small"), 64u * 1024);
}

TEST(FileBackend, PersistsAcrossReopen) {
  TempDir dir;
  const auto path = dir / "persist.img";
  std::vector<std::uint8_t> w(16 * 4096);
  fill_pattern_blocks(w, 4096, 99, 10, 1);
  {
    FileOptions o;
    o.block_size = 4096;
    o.size_bytes = 1 << 20;
    auto b = open_ok(path, o);
    ASSERT_TRUE(b);
    ASSERT_EQ(write_sync(*b, 10, w), Errc::kOk);
    ASSERT_EQ(flush_sync(*b), Errc::kOk);
  }
  FileOptions o;  // existing file, no size: its own size is used
  o.block_size = 4096;
  auto b = open_ok(path, o);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->geometry().block_count, 256u);
  std::vector<std::uint8_t> r(w.size());
  ASSERT_EQ(read_sync(*b, 10, r), Errc::kOk);
  EXPECT_EQ(r, w);
}

TEST(FileBackend, TrimAndWriteZeroesReadBackZeroes) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 4 << 20;
  auto b = open_ok(dir / "z.img", o);
  ASSERT_TRUE(b);
  std::vector<std::uint8_t> w(8192 * 2, 0xEE), r(w.size());
  ASSERT_EQ(write_sync(*b, 0, w), Errc::kOk);
  ASSERT_EQ(trim_sync(*b, 2, 4), Errc::kOk);
  ASSERT_EQ(zeroes_sync(*b, 10, 3, false), Errc::kOk);
  ASSERT_EQ(zeroes_sync(*b, 20, 2, true), Errc::kOk);
  ASSERT_EQ(read_sync(*b, 0, r), Errc::kOk);
  for (std::uint64_t blk = 0; blk < 32; ++blk) {
    const bool zero = (blk >= 2 && blk < 6) || (blk >= 10 && blk < 13) || (blk >= 20 && blk < 22);
    auto s = std::span(r).subspan(blk * 512, 512);
    if (zero) {
      EXPECT_TRUE(all_zero(s)) << "block " << blk;
    } else {
      EXPECT_TRUE(std::all_of(s.begin(), s.end(), [](auto v) { return v == 0xEE; }))
          << "block " << blk;
    }
  }
}

TEST(FileBackend, FuaAndFlushSucceed) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 1 << 20;
  auto b = open_ok(dir / "fua.img", o);
  ASSERT_TRUE(b);
  std::vector<std::uint8_t> w(4096, 0x42), r(4096);
  ASSERT_EQ(write_sync(*b, 8, w, /*fua=*/true), Errc::kOk);
  ASSERT_EQ(flush_sync(*b), Errc::kOk);
  ASSERT_EQ(read_sync(*b, 8, r), Errc::kOk);
  EXPECT_EQ(r, w);
  // The data is in the file itself, seen through an independent descriptor.
  std::ifstream f(dir / "fua.img", std::ios::binary);
  f.seekg(8 * 512);
  std::vector<char> raw(4096);
  f.read(raw.data(), 4096);
  EXPECT_EQ(std::memcmp(raw.data(), w.data(), 4096), 0);
}

TEST(FileBackend, ReadOnlyOpenRefusesWrites) {
  TempDir dir;
  const auto path = dir / "ro.img";
  {
    FileOptions o;
    o.size_bytes = 1 << 20;
    ASSERT_TRUE(open_ok(path, o));
  }
  FileOptions o;
  o.read_only = true;
  auto b = open_ok(path, o);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->capabilities().read_only);
  std::vector<std::uint8_t> w(512, 1);
  EXPECT_EQ(write_sync(*b, 0, w), Errc::kWriteProtected);
  EXPECT_EQ(trim_sync(*b, 0, 1), Errc::kWriteProtected);
  EXPECT_EQ(zeroes_sync(*b, 0, 1, false), Errc::kWriteProtected);
  EXPECT_EQ(flush_sync(*b), Errc::kOk);
  std::vector<std::uint8_t> r(512, 7);
  EXPECT_EQ(read_sync(*b, 0, r), Errc::kOk);
  EXPECT_TRUE(all_zero(r));
}

TEST(FileBackend, OpenErrorsAreClear) {
  TempDir dir;
  auto missing = FileBackend::open(dir / "nope", FileOptions{});
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);

  {
    std::ofstream(dir / "odd") << "abc";  // 3 bytes
  }
  auto odd = FileBackend::open(dir / "odd", FileOptions{});
  ASSERT_FALSE(odd.has_value());
  EXPECT_NE(odd.error().message.find("multiple of the block size"), std::string::npos);

  FileOptions big;
  big.size_bytes = 1 << 20;
  ASSERT_TRUE(open_ok(dir / "big", big));
  FileOptions smaller;
  smaller.size_bytes = 1 << 19;
  auto shrink = FileBackend::open(dir / "big", smaller);
  ASSERT_FALSE(shrink.has_value());
  EXPECT_NE(shrink.error().message.find("shrink"), std::string::npos);

  auto dirp = FileBackend::open(dir.path(), FileOptions{});
  ASSERT_FALSE(dirp.has_value());

  FileOptions threads;
  threads.threads = 0;
  EXPECT_FALSE(FileBackend::open(dir / "big", threads).has_value());

  // A second writer on the same image is refused while the first is open.
  auto first = open_ok(dir / "big", FileOptions{});
  ASSERT_TRUE(first);
  auto second = FileBackend::open(dir / "big", FileOptions{});
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, Errc::kBusy);
}

TEST(FileBackend, GrowsSmallerExistingFile) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 1 << 20;
  { ASSERT_TRUE(open_ok(dir / "g", o)); }
  o.size_bytes = 2 << 20;
  auto b = open_ok(dir / "g", o);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->geometry().size_bytes(), 2u << 20);
}

TEST(FileBackend, DirectIoWithUnalignedBuffers) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 4 << 20;
  o.direct = true;
  o.block_size = 4096;
  auto r = FileBackend::open(dir / "direct.img", o);
  if (!r && r.error().code == Errc::kNotSupported) IPSAN_SKIP_OR_FAIL() << r.error().message;
  ASSERT_TRUE(r.has_value()) << r.error().message;
  auto b = *r;
  // Deliberately misaligned user buffers go through bounce buffers; > 1 MiB to cross pieces.
  std::vector<std::uint8_t> w(2 * 1024 * 1024 + 4096 + 1), rd(w.size());
  auto ws = std::span<std::uint8_t>(w).subspan(1, w.size() - 1);
  auto rs = std::span<std::uint8_t>(rd).subspan(1, rd.size() - 1);
  fill_pattern_blocks(ws, 4096, 5, 3, 1);
  ASSERT_EQ(write_sync(*b, 3, ws, true), Errc::kOk);
  ASSERT_EQ(read_sync(*b, 3, rs), Errc::kOk);
  EXPECT_TRUE(std::equal(ws.begin(), ws.end(), rs.begin()));
}

TEST(FileBackend, ConcurrentWritersFromSeveralThreads) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 8 << 20;
  auto b = open_ok(dir / "conc.img", o);
  ASSERT_TRUE(b);
  const std::uint64_t seed = 4242;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  constexpr int kThreads = 4;
  constexpr std::uint64_t kRuns = 64;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Several writes in flight per thread: issue all, then wait for all.
      std::vector<std::vector<std::uint8_t>> bufs(kRuns, std::vector<std::uint8_t>(4 * 512));
      std::vector<Waiter> waiters(kRuns);
      for (std::uint64_t run = 0; run < kRuns; ++run) {
        const std::uint64_t lba = (run * kThreads + static_cast<std::uint64_t>(t)) * 4;
        fill_pattern_blocks(bufs[run], 512, seed, lba, 1);
        b->write(lba, bufs[run], false, waiters[run].cb());
      }
      for (auto& w : waiters) EXPECT_EQ(w.wait(), Errc::kOk);
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::uint8_t> r(kThreads * kRuns * 4 * 512);
  ASSERT_EQ(read_sync(*b, 0, r), Errc::kOk);
  for (std::uint64_t i = 0; i < kThreads * kRuns * 4; ++i) {
    ASSERT_TRUE(check_pattern(std::span(r).subspan(i * 512, 512), seed, i, 1)) << "lba " << i;
  }
}

TEST(FileBackend, DestructorDrainsOutstandingOps) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 4 << 20;
  o.threads = 2;
  std::atomic<int> completed{0};
  std::vector<std::uint8_t> w(64 * 1024, 3);
  {
    auto b = open_ok(dir / "drain.img", o);
    ASSERT_TRUE(b);
    for (int i = 0; i < 32; ++i) {
      b->write(static_cast<std::uint64_t>(i) * 128, w, false, [&](Errc e) {
        if (e == Errc::kOk) completed.fetch_add(1);
      });
    }
  }  // destructor: every queued op completes before it returns
  EXPECT_EQ(completed.load(), 32);
}

TEST(FileBackend, LastReferenceDroppedInsideCompletion) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 1 << 20;
  auto b = open_ok(dir / "self.img", o);
  ASSERT_TRUE(b);
  Waiter w;
  auto done = w.cb();
  std::vector<std::uint8_t> buf(512);
  Backend* raw = b.get();
  // The completion owns the only reference: the backend is destroyed on its own worker.
  raw->read(0, buf, [keep = std::move(b), done](Errc e) mutable {
    keep.reset();
    done(e);
  });
  EXPECT_EQ(w.wait(), Errc::kOk);
}

TEST(FileBackend, ErrnoMapping) {
  EXPECT_EQ(errc_from_errno(EIO), Errc::kMediumError);
  EXPECT_EQ(errc_from_errno(ENOSPC), Errc::kNoSpace);
  EXPECT_EQ(errc_from_errno(EROFS), Errc::kWriteProtected);
  EXPECT_EQ(errc_from_errno(EOPNOTSUPP), Errc::kNotSupported);
  EXPECT_EQ(errc_from_errno(EXDEV), Errc::kIoError);
}

}  // namespace
}  // namespace ipsan::backends
