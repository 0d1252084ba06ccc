// Conformance suite "multi-command-splitting": requests that start, end and span 2, 3 and many
// extents (including the last block) become the right number of back-end commands, in logical
// order, each at the right physical address, carrying the right data; the completion fires once
// after every part; one failing part fails the whole request; FUA reaches every part; flush reaches
// every distinct back end once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "ipsan/backends/fault.h"
#include "ipsan/backends/ram.h"
#include "ipsan/base/bytes.h"
#include "ipsan/base/pattern.h"
#include "ipsan/base/rng.h"
#include "ipsan/virt/virtual_disk.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::FaultInjectingBackend;
using backends::OpKind;
using backends::testing::flush_sync;
using backends::testing::read_sync;
using backends::testing::trim_sync;
using backends::testing::write_sync;
using backends::testing::zeroes_sync;

constexpr std::uint32_t kBs = 512;

struct Cmd {
  std::string backend;
  std::uint64_t lba;
  std::uint64_t blocks;
  bool operator==(const Cmd&) const = default;
};
std::ostream& operator<<(std::ostream& o, const Cmd& c) {
  return o << c.backend << "@" << c.lba << "+" << c.blocks;
}

// Five extents on three back ends, with offsets and out of physical order:
//   logical   0.. 99  -> A 1000..1099
//   logical 100..149  -> B    0..  49
//   logical 150..159  -> C  500.. 509
//   logical 160..359  -> A    0.. 199
//   logical 360..363  -> B  100.. 103   (last block of the disk: logical 363 -> B 103)
class Splitting : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* n : {"A", "B", "C"}) {
      auto ram = *backends::RamBackend::create(2048 * kBs);
      f_[n] = std::make_shared<FaultInjectingBackend>(ram, n);
    }
    auto vd =
        VirtualDisk::linear("vd", {{"A", f_["A"]}, {"B", f_["B"]}, {"C", f_["C"]}},
                            {{0, 1000, 100}, {1, 0, 50}, {2, 500, 10}, {0, 0, 200}, {1, 100, 4}});
    ASSERT_TRUE(vd.has_value()) << vd.error().message;
    vd_ = *vd;
    vd_->set_trace([this](const TraceEvent& e) {
      trace_.push_back(Cmd{std::string(e.backend), e.lba, e.blocks});
      ops_.push_back(e.op);
      fua_.push_back(e.fua);
    });
  }

  // Writes [lba, lba + blocks) and checks the commands, the counters and the data placement.
  void check_write(std::uint64_t lba, std::uint64_t blocks, const std::vector<Cmd>& want) {
    trace_.clear();
    const Counters before = vd_->counters();
    Bytes w(blocks * kBs);
    fill_pattern_blocks(w, kBs, 5, lba, ++gen_);
    ASSERT_EQ(write_sync(*vd_, lba, w), Errc::kOk);
    EXPECT_EQ(trace_, want) << "write at " << lba << " of " << blocks;
    const Counters after = vd_->counters();
    EXPECT_EQ(after.requests - before.requests, 1u);
    EXPECT_EQ(after.backend_commands - before.backend_commands, want.size());
    EXPECT_EQ(after.split_requests - before.split_requests, want.size() > 1 ? 1u : 0u);
    // Each command's data sits at its physical address, in request order.
    std::uint64_t offset = 0;
    for (const Cmd& c : want) {
      Bytes got(c.blocks * kBs);
      ASSERT_EQ(read_sync(*f_[c.backend]->inner(), c.lba, got), Errc::kOk);
      EXPECT_TRUE(std::equal(got.begin(), got.end(), w.begin() + offset * kBs)) << c;
      offset += c.blocks;
    }
    EXPECT_EQ(offset, blocks);
    // And the logical read splits the same way and returns the data.
    trace_.clear();
    Bytes r(w.size());
    ASSERT_EQ(read_sync(*vd_, lba, r), Errc::kOk);
    EXPECT_EQ(r, w);
    EXPECT_EQ(trace_, want) << "read at " << lba;
  }

  std::map<std::string, std::shared_ptr<FaultInjectingBackend>> f_;
  std::shared_ptr<VirtualDisk> vd_;
  std::vector<Cmd> trace_;
  std::vector<OpKind> ops_;
  std::vector<bool> fua_;
  std::uint64_t gen_ = 0;
};

TEST_F(Splitting, InsideOneExtentIsOneCommand) {
  check_write(10, 20, {{"A", 1010, 20}});
  check_write(150, 10, {{"C", 500, 10}});  // exactly one whole extent
}

TEST_F(Splitting, StartingAtAnExtentStart) { check_write(100, 60, {{"B", 0, 50}, {"C", 500, 10}}); }

TEST_F(Splitting, EndingAtAnExtentEnd) { check_write(90, 10, {{"A", 1090, 10}}); }

TEST_F(Splitting, SpanningTwoExtents) { check_write(95, 10, {{"A", 1095, 5}, {"B", 0, 5}}); }

TEST_F(Splitting, SpanningThreeExtents) {
  check_write(149, 13, {{"B", 49, 1}, {"C", 500, 10}, {"A", 0, 2}});
}

TEST_F(Splitting, SpanningAllExtentsToTheLastBlock) {
  check_write(0, 364,
              {{"A", 1000, 100}, {"B", 0, 50}, {"C", 500, 10}, {"A", 0, 200}, {"B", 100, 4}});
}

TEST_F(Splitting, TheLastBlockAloneAndPastTheEnd) {
  check_write(363, 1, {{"B", 103, 1}});
  trace_.clear();
  Bytes two(2 * kBs);
  EXPECT_EQ(write_sync(*vd_, 363, two), Errc::kLbaOutOfRange);
  EXPECT_TRUE(trace_.empty());  // nothing issued
}

TEST_F(Splitting, OnePartFailingFailsTheWhole) {
  for (const char* victim : {"A", "B", "C"}) {
    f_[victim]->fail_nth(1, Errc::kMediumError, OpKind::kWrite);
    trace_.clear();
    Bytes w(364 * kBs, 0x3C);
    int calls = 0;
    Errc got = Errc::kOk;
    vd_->write(0, w, false, [&](Errc e) {
      got = e;
      ++calls;
    });
    EXPECT_EQ(calls, 1) << victim;
    EXPECT_EQ(got, Errc::kMediumError) << victim;
    EXPECT_EQ(trace_.size(), 5u) << "every part is still issued";
  }
  EXPECT_EQ(vd_->counters().failed_requests, 3u);
}

TEST_F(Splitting, FuaReachesEveryPart) {
  for (auto& [n, f] : f_) f->clear_log();
  Bytes w(364 * kBs);
  fua_.clear();
  ASSERT_EQ(write_sync(*vd_, 0, w, /*fua=*/true), Errc::kOk);
  ASSERT_EQ(fua_.size(), 5u);
  for (bool b : fua_) EXPECT_TRUE(b);
  std::size_t parts = 0;
  for (auto& [n, f] : f_) {
    for (const auto& rec : f->log()) {
      EXPECT_TRUE(rec.fua) << n;
      ++parts;
    }
  }
  EXPECT_EQ(parts, 5u);
  for (auto& [n, f] : f_) f->clear_log();
  ASSERT_EQ(write_sync(*vd_, 0, w, /*fua=*/false), Errc::kOk);
  for (auto& [n, f] : f_) {
    for (const auto& rec : f->log()) EXPECT_FALSE(rec.fua) << n;
  }
}

TEST_F(Splitting, FlushReachesEveryDistinctBackendOnce) {
  ASSERT_EQ(flush_sync(*vd_), Errc::kOk);
  for (auto& [n, f] : f_) EXPECT_EQ(f->count(OpKind::kFlush), 1u) << n;
  f_["C"]->fail_nth(1, Errc::kIoError, OpKind::kFlush);
  EXPECT_EQ(flush_sync(*vd_), Errc::kIoError);
}

TEST_F(Splitting, TrimAndWriteZeroesSplitLikeWrites) {
  trace_.clear();
  ops_.clear();
  ASSERT_EQ(trim_sync(*vd_, 95, 10), Errc::kOk);
  ASSERT_EQ(zeroes_sync(*vd_, 149, 13, false), Errc::kOk);
  EXPECT_EQ(trace_, (std::vector<Cmd>{
                        {"A", 1095, 5}, {"B", 0, 5}, {"B", 49, 1}, {"C", 500, 10}, {"A", 0, 2}}));
  EXPECT_EQ(ops_, (std::vector<OpKind>{OpKind::kTrim, OpKind::kTrim, OpKind::kWriteZeroes,
                                       OpKind::kWriteZeroes, OpKind::kWriteZeroes}));
}

// Parts complete out of order on different threads; the completion runs once, after the last.
TEST_F(Splitting, OutOfOrderCompletionOnSeveralThreads) {
  for (auto& [n, f] : f_) f->set_hold(true);
  std::atomic<int> calls{0};
  std::atomic<Errc> got{Errc::kInternal};
  Bytes w(364 * kBs, 1);
  vd_->write(0, w, true, [&](Errc e) {
    got = e;
    calls.fetch_add(1);
  });
  EXPECT_EQ(f_["A"]->held(), 2u);
  EXPECT_EQ(f_["B"]->held(), 2u);
  EXPECT_EQ(f_["C"]->held(), 1u);
  // Release the newest first, each back end from its own thread.
  std::vector<std::thread> threads;
  for (auto& [n, f] : f_) {
    threads.emplace_back([f = f] {
      while (f->held() > 0) f->release(f->held() - 1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(got.load(), Errc::kOk);
}

// Many extents: 1000 single-to-eight-block extents spread over three back ends with gaps (so no
// two are physically contiguous); a request across 100 of them is 100 commands, in order.
TEST(SplittingMany, HundredExtentsInOneRequest) {
  const std::uint64_t seed = 1000;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  std::vector<std::shared_ptr<FaultInjectingBackend>> f;
  std::vector<Member> members;
  for (int i = 0; i < 3; ++i) {
    f.push_back(std::make_shared<FaultInjectingBackend>(*backends::RamBackend::create(1 << 22),
                                                        "m" + std::to_string(i)));
    members.push_back({"m" + std::to_string(i), f.back()});
  }
  std::vector<Segment> segs;
  std::uint64_t next[3] = {0, 0, 0};
  for (int i = 0; i < 1000; ++i) {
    const auto m = static_cast<std::uint32_t>(rng.below(3));
    const std::uint64_t n = 1 + rng.below(8);
    segs.push_back(Segment{m, next[m], n});
    next[m] += n + 1;  // gap
  }
  auto vd = VirtualDisk::linear("many", members, segs);
  ASSERT_TRUE(vd.has_value()) << vd.error().message;
  std::vector<Cmd> trace;
  (*vd)->set_trace([&](const TraceEvent& e) {
    trace.push_back(Cmd{std::string(e.backend), e.lba, e.blocks});
  });
  std::uint64_t start = 0;
  for (int i = 0; i < 200; ++i) start += segs[i].blocks;
  std::uint64_t len = 0;
  std::vector<Cmd> want;
  for (int i = 200; i < 300; ++i) {
    want.push_back(Cmd{"m" + std::to_string(segs[i].member), segs[i].physical_lba, segs[i].blocks});
    len += segs[i].blocks;
  }
  Bytes w(len * kBs);
  fill_pattern_blocks(w, kBs, seed, start, 1);
  ASSERT_EQ(write_sync(**vd, start, w), Errc::kOk);
  EXPECT_EQ(trace, want);
  std::uint64_t logical = start;
  for (const Cmd& c : want) {
    Bytes got(c.blocks * kBs);
    const int m = c.backend[1] - '0';
    ASSERT_EQ(read_sync(*f[m]->inner(), c.lba, got), Errc::kOk);
    for (std::uint64_t b = 0; b < c.blocks; ++b) {
      ASSERT_TRUE(check_pattern(std::span(got).subspan(b * kBs, kBs), seed, logical + b, 1)) << c;
    }
    logical += c.blocks;
  }
  // The whole disk in one request, ending at its last block: 1000 commands.
  std::uint64_t total = 0;
  for (const auto& s : segs) total += s.blocks;
  trace.clear();
  Bytes all(total * kBs);
  ASSERT_EQ(read_sync(**vd, 0, all), Errc::kOk);
  EXPECT_EQ(trace.size(), 1000u);
  EXPECT_EQ(trace.back(), (Cmd{"m" + std::to_string(segs.back().member), segs.back().physical_lba,
                               segs.back().blocks}));
}

// Striping: a request touching eleven chunks of three legs is eleven commands, round-robin.
TEST(SplittingStripe, ElevenChunksRoundRobin) {
  std::vector<std::shared_ptr<FaultInjectingBackend>> f;
  std::vector<Member> members;
  for (int i = 0; i < 3; ++i) {
    f.push_back(std::make_shared<FaultInjectingBackend>(*backends::RamBackend::create(1 << 20),
                                                        "s" + std::to_string(i)));
    members.push_back({"s" + std::to_string(i), f.back()});
  }
  auto vd = VirtualDisk::striped("st", members, {{0, 0, 2048}, {1, 0, 2048}, {2, 0, 2048}}, 8);
  ASSERT_TRUE(vd.has_value()) << vd.error().message;
  std::vector<Cmd> trace;
  (*vd)->set_trace([&](const TraceEvent& e) {
    trace.push_back(Cmd{std::string(e.backend), e.lba, e.blocks});
  });
  // Blocks 4..83: chunk 0 (4 blocks), chunks 1..9 (8 each), chunk 10 (4 blocks).
  Bytes w(80 * kBs);
  ASSERT_EQ(write_sync(**vd, 4, w, true), Errc::kOk);
  EXPECT_EQ(trace, (std::vector<Cmd>{{"s0", 4, 4},
                                     {"s1", 0, 8},
                                     {"s2", 0, 8},
                                     {"s0", 8, 8},
                                     {"s1", 8, 8},
                                     {"s2", 8, 8},
                                     {"s0", 16, 8},
                                     {"s1", 16, 8},
                                     {"s2", 16, 8},
                                     {"s0", 24, 8},
                                     {"s1", 24, 4}}));
  for (auto& x : f) {
    for (const auto& rec : x->log()) EXPECT_TRUE(rec.fua);
  }
}

}  // namespace
}  // namespace ipsan::virt
