#include "ipsan/virt/virtual_disk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "ipsan/backends/fault.h"
#include "ipsan/backends/ram.h"
#include "ipsan/base/bytes.h"
#include "ipsan/base/pattern.h"
#include "ipsan/base/rng.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::FaultInjectingBackend;
using backends::RamBackend;
using backends::RamOptions;
using backends::testing::flush_sync;
using backends::testing::read_sync;
using backends::testing::trim_sync;
using backends::testing::write_sync;
using backends::testing::zeroes_sync;

BackendPtr ram(std::uint64_t blocks, std::uint32_t bs = 512) {
  return *RamBackend::create(blocks * bs, RamOptions{bs, false});
}

std::shared_ptr<FaultInjectingBackend> fault(std::uint64_t blocks, const std::string& name) {
  return std::make_shared<FaultInjectingBackend>(ram(blocks), name);
}

std::shared_ptr<VirtualDisk> ok(Result<std::shared_ptr<VirtualDisk>, Error> r) {
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r ? *r : nullptr;
}

Bytes pattern(std::uint64_t lba, std::uint64_t blocks, std::uint64_t gen = 1) {
  Bytes b(blocks * 512);
  fill_pattern_blocks(b, 512, 11, lba, gen);
  return b;
}

TEST(VirtualDisk, ConcatMapsAcrossMembers) {
  auto a = ram(100), b = ram(50), c = ram(30);
  auto vd = ok(VirtualDisk::concat("cat", {{"a", a}, {"b", b}, {"c", c}}));
  ASSERT_TRUE(vd);
  EXPECT_EQ(vd->geometry().block_count, 180u);
  // Logical 95..155 covers a[95..99], b[0..49], c[0..5].
  Bytes w = pattern(95, 61);
  ASSERT_EQ(write_sync(*vd, 95, w), Errc::kOk);
  Bytes r(5 * 512), rb(50 * 512), rc(6 * 512);
  ASSERT_EQ(read_sync(*a, 95, r), Errc::kOk);
  ASSERT_EQ(read_sync(*b, 0, rb), Errc::kOk);
  ASSERT_EQ(read_sync(*c, 0, rc), Errc::kOk);
  EXPECT_TRUE(std::equal(r.begin(), r.end(), w.begin()));
  EXPECT_TRUE(std::equal(rb.begin(), rb.end(), w.begin() + 5 * 512));
  EXPECT_TRUE(std::equal(rc.begin(), rc.end(), w.begin() + 55 * 512));
  Bytes back(w.size());
  ASSERT_EQ(read_sync(*vd, 95, back), Errc::kOk);
  EXPECT_EQ(back, w);
  auto cnt = vd->counters();
  EXPECT_EQ(cnt.requests, 2u);
  EXPECT_EQ(cnt.backend_commands, 6u);
  EXPECT_EQ(cnt.split_requests, 2u);
}

TEST(VirtualDisk, MapUsesBinarySearchAndMergesContiguousPieces) {
  auto a = ram(1000);
  // Segments: a[10..19], a[20..29] (physically contiguous with the previous), a[500..504].
  auto vd = ok(VirtualDisk::linear("x", {{"a", a}}, {{0, 10, 10}, {0, 20, 10}, {0, 500, 5}}));
  ASSERT_TRUE(vd);
  std::vector<Piece> p;
  vd->map(5, 20, p);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].physical_lba, 15u);
  EXPECT_EQ(p[0].blocks, 15u);  // merged across the segment boundary
  EXPECT_EQ(p[1].physical_lba, 500u);
  EXPECT_EQ(p[1].blocks, 5u);
  EXPECT_EQ(p[1].offset, 15u);
  EXPECT_EQ(vd->segment_index(0), 0u);
  EXPECT_EQ(vd->segment_index(19), 1u);
  EXPECT_EQ(vd->segment_index(24), 2u);
}

TEST(VirtualDisk, SegmentIndexMatchesLinearScan) {
  const std::uint64_t seed = 20261125;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  std::vector<Segment> segs;
  std::uint64_t phys = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::uint64_t n = 1 + rng.below(9);
    segs.push_back(Segment{0, phys, n});
    phys += n + rng.below(3);  // gaps keep pieces from merging
  }
  auto vd = ok(VirtualDisk::linear("x", {{"a", ram(phys + 10)}}, segs));
  ASSERT_TRUE(vd);
  std::uint64_t start = 0;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    for (std::uint64_t k = 0; k < segs[i].blocks; ++k) {
      ASSERT_EQ(vd->segment_index(start + k), i);
    }
    start += segs[i].blocks;
  }
}

TEST(VirtualDisk, StripeMappingMatchesReference) {
  auto a = ram(64), b = ram(64), c = ram(64);
  // Legs: a[0..31], b[8..39], c[32..63]; chunk 4 blocks.
  auto vd = ok(VirtualDisk::striped("s", {{"a", a}, {"b", b}, {"c", c}},
                                    {{0, 0, 32}, {1, 8, 32}, {2, 32, 32}}, 4));
  ASSERT_TRUE(vd);
  EXPECT_EQ(vd->geometry().block_count, 96u);
  const std::uint64_t leg_start[] = {0, 8, 32};
  for (std::uint64_t l = 0; l < 96; ++l) {
    std::vector<Piece> p;
    vd->map(l, 1, p);
    ASSERT_EQ(p.size(), 1u);
    const std::uint64_t chunk = l / 4;
    EXPECT_EQ(p[0].member, chunk % 3) << l;
    EXPECT_EQ(p[0].physical_lba, leg_start[chunk % 3] + (chunk / 3) * 4 + l % 4) << l;
  }
  std::vector<Piece> p;
  vd->map(2, 12, p);  // chunks 0 (2 blocks), 1, 2, 3 (2 blocks)
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[3].member, 0u);
  EXPECT_EQ(p[3].physical_lba, 4u);
  EXPECT_EQ(p[3].blocks, 2u);
  EXPECT_EQ(p[3].offset, 10u);
  // Data lands where the mapping says.
  Bytes w = pattern(0, 96);
  ASSERT_EQ(write_sync(*vd, 0, w), Errc::kOk);
  Bytes blk(512);
  ASSERT_EQ(read_sync(*b, 8 + 4 + 1, blk), Errc::kOk);  // logical chunk 4 = b row 1, block 1
  EXPECT_TRUE(check_pattern(blk, 11, 4 * 4 + 1, 1));
}

TEST(VirtualDisk, RejectsInvalidConstructions) {
  auto a = ram(100), b = ram(100), big = ram(100, 4096);
  struct Case {
    const char* what;
    Result<std::shared_ptr<VirtualDisk>, Error> r;
    const char* needle;
  };
  Case cases[] = {
      {"no members", VirtualDisk::concat("x", {}), "no members"},
      {"null member", VirtualDisk::concat("x", {{"n", nullptr}}), "null"},
      {"block sizes", VirtualDisk::concat("x", {{"a", a}, {"big", big}}), "block size"},
      {"past end", VirtualDisk::linear("x", {{"a", a}}, {{0, 90, 11}}), "past the end"},
      {"empty seg", VirtualDisk::linear("x", {{"a", a}}, {{0, 0, 0}}), "empty"},
      {"bad member", VirtualDisk::linear("x", {{"a", a}}, {{1, 0, 1}}), "missing member"},
      {"overlap", VirtualDisk::linear("x", {{"a", a}}, {{0, 0, 10}, {0, 9, 5}}), "overlap"},
      {"same backend twice",
       VirtualDisk::linear("x", {{"a", a}, {"a2", a}}, {{0, 0, 10}, {1, 5, 5}}), "overlap"},
      {"no segments", VirtualDisk::linear("x", {{"a", a}}, {}), "no extents"},
      {"unequal legs", VirtualDisk::striped("x", {{"a", a}, {"b", b}}, {{0, 0, 8}, {1, 0, 4}}, 4),
       "must be equal"},
      {"chunk multiple", VirtualDisk::striped("x", {{"a", a}, {"b", b}}, {{0, 0, 6}, {1, 0, 6}}, 4),
       "not a multiple of the chunk"},
      {"chunk zero", VirtualDisk::striped("x", {{"a", a}}, {{0, 0, 8}}, 0), "chunk must be > 0"},
  };
  for (auto& c : cases) {
    ASSERT_FALSE(c.r.has_value()) << c.what;
    EXPECT_NE(c.r.error().message.find(c.needle), std::string::npos)
        << c.what << ": " << c.r.error().message;
  }
}

TEST(VirtualDisk, OutOfRangeMisalignedAndEmptyRequests) {
  auto a = fault(10, "a");
  auto vd = ok(VirtualDisk::concat("x", {{"a", a}}));
  ASSERT_TRUE(vd);
  Bytes buf(1024);
  EXPECT_EQ(read_sync(*vd, 9, buf), Errc::kLbaOutOfRange);
  EXPECT_EQ(write_sync(*vd, 0, std::span<const std::uint8_t>(buf).first(100)),
            Errc::kInvalidArgument);
  EXPECT_EQ(trim_sync(*vd, 5, 6), Errc::kLbaOutOfRange);
  EXPECT_EQ(read_sync(*vd, 10, std::span<std::uint8_t>()), Errc::kOk);
  EXPECT_EQ(a->total_ops(), 0u);  // nothing reached the member
  EXPECT_EQ(vd->counters().failed_requests, 3u);
}

// Completion fires exactly once, after the last part, whichever thread completes it.
TEST(VirtualDisk, CompletionRunsOnceAfterAllPartsFromAnyThread) {
  const std::uint64_t seed = 77;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  for (int round = 0; round < 20; ++round) {
    std::vector<std::shared_ptr<FaultInjectingBackend>> f;
    std::vector<Member> members;
    for (int i = 0; i < 5; ++i) {
      f.push_back(fault(8, "m" + std::to_string(i)));
      f.back()->set_hold(true);
      members.push_back({f.back()->describe(), f.back()});
    }
    auto vd = ok(VirtualDisk::concat("x", members));
    ASSERT_TRUE(vd);
    std::atomic<int> calls{0};
    Errc result = Errc::kInternal;
    Bytes w = pattern(2, 36);
    vd->write(2, w, false, [&](Errc e) {
      result = e;
      calls.fetch_add(1);
    });
    EXPECT_EQ(calls.load(), 0);
    // Release the five held parts from five threads in a shuffled start order.
    std::vector<int> order = {0, 1, 2, 3, 4};
    for (int i = 4; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    std::vector<std::thread> threads;
    for (int i : order) threads.emplace_back([&, i] { f[i]->release_all(); });
    for (auto& t : threads) t.join();
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(result, Errc::kOk);
  }
}

TEST(VirtualDisk, AnyPartFailureFailsTheWholeAndFirstErrorWins) {
  auto a = fault(10, "a"), b = fault(10, "b"), c = fault(10, "c");
  auto vd = ok(VirtualDisk::concat("x", {{"a", a}, {"b", b}, {"c", c}}));
  ASSERT_TRUE(vd);
  b->fail_nth(1, Errc::kMediumError);
  Bytes buf(30 * 512);
  EXPECT_EQ(read_sync(*vd, 0, buf), Errc::kMediumError);
  EXPECT_EQ(a->count(backends::OpKind::kRead), 1u);  // the other parts still ran
  EXPECT_EQ(c->count(backends::OpKind::kRead), 1u);

  // Two failing parts: the error of the part that completes first is reported.
  a->set_hold(true);
  c->set_hold(true);
  a->fail_nth(1, Errc::kNoSpace);
  c->fail_nth(1, Errc::kIoError);
  Errc got = Errc::kOk;
  int calls = 0;
  Bytes w(20 * 512);
  vd->write(5, w, false, [&](Errc e) {
    got = e;
    ++calls;
  });
  EXPECT_TRUE(c->release(0));  // c's error completes first
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(a->release(0));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(got, Errc::kIoError);
  EXPECT_EQ(vd->counters().failed_requests, 2u);
}

TEST(VirtualDisk, FuaReachesEveryPartAndFlushEveryDistinctBackend) {
  auto a = fault(10, "a"), b = fault(10, "b");
  // Two extents on a, one on b: flush must reach a once and b once.
  auto vd = ok(VirtualDisk::linear("x", {{"a", a}, {"b", b}}, {{0, 0, 4}, {1, 0, 4}, {0, 6, 4}}));
  ASSERT_TRUE(vd);
  ASSERT_EQ(write_sync(*vd, 0, Bytes(12 * 512), /*fua=*/true), Errc::kOk);
  auto la = a->log(), lb = b->log();
  ASSERT_EQ(la.size(), 2u);
  ASSERT_EQ(lb.size(), 1u);
  EXPECT_TRUE(la[0].fua && la[1].fua && lb[0].fua);
  ASSERT_EQ(flush_sync(*vd), Errc::kOk);
  EXPECT_EQ(a->count(backends::OpKind::kFlush), 1u);
  EXPECT_EQ(b->count(backends::OpKind::kFlush), 1u);
  b->fail_nth(1, Errc::kIoError, backends::OpKind::kFlush);
  EXPECT_EQ(flush_sync(*vd), Errc::kIoError);
}

TEST(VirtualDisk, TrimAndWriteZeroesSplitLikeWrites) {
  auto a = fault(10, "a"), b = fault(10, "b");
  auto vd = ok(VirtualDisk::concat("x", {{"a", a}, {"b", b}}));
  ASSERT_TRUE(vd);
  ASSERT_EQ(write_sync(*vd, 0, Bytes(20 * 512, 0x77)), Errc::kOk);
  ASSERT_EQ(trim_sync(*vd, 8, 4), Errc::kOk);
  ASSERT_EQ(zeroes_sync(*vd, 18, 2, true), Errc::kOk);
  auto lb = b->log();
  ASSERT_EQ(lb.size(), 3u);
  EXPECT_EQ(lb[1].op, backends::OpKind::kTrim);
  EXPECT_EQ(lb[1].lba, 0u);
  EXPECT_EQ(lb[1].blocks, 2u);
  EXPECT_EQ(lb[2].op, backends::OpKind::kWriteZeroes);
  EXPECT_EQ(lb[2].lba, 8u);
  Bytes r(20 * 512);
  ASSERT_EQ(read_sync(*vd, 0, r), Errc::kOk);
  for (std::uint64_t blk = 0; blk < 20; ++blk) {
    const bool zero = (blk >= 8 && blk < 12) || blk >= 18;
    EXPECT_EQ(r[blk * 512], zero ? 0 : 0x77) << blk;
  }
}

TEST(VirtualDisk, TraceSeesEveryCommandInIssueOrder) {
  auto a = ram(10), b = ram(10);
  auto vd = ok(VirtualDisk::concat("cat", {{"a", a}, {"b", b}}));
  ASSERT_TRUE(vd);
  std::vector<std::string> seen;
  vd->set_trace([&](const TraceEvent& e) {
    seen.push_back(std::string(e.disk) + ":" + std::string(e.backend) + ":" +
                   std::string(to_string(e.op)) + "@" + std::to_string(e.lba) + "+" +
                   std::to_string(e.blocks) + (e.fua ? "F" : ""));
  });
  ASSERT_EQ(write_sync(*vd, 7, Bytes(6 * 512), true), Errc::kOk);
  ASSERT_EQ(flush_sync(*vd), Errc::kOk);
  EXPECT_EQ(seen, (std::vector<std::string>{"cat:a:write@7+3F", "cat:b:write@0+3F",
                                            "cat:a:flush@0+0", "cat:b:flush@0+0"}));
}

TEST(VirtualDisk, ReadOnlyMemberMakesTheDiskReadOnly) {
  auto a = ram(10);
  auto ro = *RamBackend::create(10 * 512, RamOptions{512, true});
  auto vd = ok(VirtualDisk::concat("x", {{"a", a}, {"ro", ro}}));
  ASSERT_TRUE(vd);
  EXPECT_TRUE(vd->capabilities().read_only);
  EXPECT_EQ(write_sync(*vd, 0, Bytes(512, 1)), Errc::kWriteProtected);
  Bytes r(512, 9);
  ASSERT_EQ(read_sync(*a, 0, r), Errc::kOk);
  EXPECT_EQ(r[0], 0);  // nothing written anywhere
}

TEST(VirtualDisk, LayeredDisksStack) {
  // FIG. 8 in miniature: p1, p2 -> inner concat -> outer extents starting at inner block 15.
  auto p1 = ram(20), p2 = ram(20);
  auto inner = ok(VirtualDisk::concat("inner", {{"p1", p1}, {"p2", p2}}));
  ASSERT_TRUE(inner);
  auto outer = ok(VirtualDisk::linear("outer", {{"inner", inner}}, {{0, 15, 10}}));
  ASSERT_TRUE(outer);
  Bytes w = pattern(0, 10);
  ASSERT_EQ(write_sync(*outer, 0, w), Errc::kOk);
  Bytes r(512);
  ASSERT_EQ(read_sync(*p1, 19, r), Errc::kOk);  // outer 4 -> inner 19 -> p1 19
  EXPECT_TRUE(check_pattern(r, 11, 4, 1));
  ASSERT_EQ(read_sync(*p2, 0, r), Errc::kOk);  // outer 5 -> inner 20 -> p2 0
  EXPECT_TRUE(check_pattern(r, 11, 5, 1));
  EXPECT_EQ(outer->counters().backend_commands, 1u);
  EXPECT_EQ(inner->counters().backend_commands, 2u);
}

TEST(VirtualDisk, MayBeReleasedWhilePartsAreInFlight) {
  auto a = fault(10, "a"), b = fault(10, "b");
  a->set_hold(true);
  b->set_hold(true);
  int calls = 0;
  Errc got = Errc::kInternal;
  Bytes buf(20 * 512);
  {
    auto vd = ok(VirtualDisk::concat("x", {{"a", a}, {"b", b}}));
    ASSERT_TRUE(vd);
    vd->read(0, buf, [&](Errc e) {
      got = e;
      ++calls;
    });
  }
  a->release_all();
  b->release_all();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(got, Errc::kOk);
}

TEST(VirtualDisk, ReadOnlyWrapper) {
  auto a = ram(10);
  auto ro = make_read_only(a);
  EXPECT_TRUE(ro->capabilities().read_only);
  EXPECT_EQ(write_sync(*ro, 0, Bytes(512)), Errc::kWriteProtected);
  EXPECT_EQ(write_sync(*ro, 10, Bytes(512)), Errc::kLbaOutOfRange);
  EXPECT_EQ(trim_sync(*ro, 0, 1), Errc::kWriteProtected);
  Bytes r(512);
  EXPECT_EQ(read_sync(*ro, 0, r), Errc::kOk);
}

}  // namespace
}  // namespace ipsan::virt
