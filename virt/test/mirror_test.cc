// MirrorDisk: write fan-out, bitmap before data, degraded mode, resync of only the stale regions,
// crash recovery from the bitmap, verify/repair, online add/remove, bad input.
#include "ipsan/virt/mirror.h"
#include "ipsan/virt/layout.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "ipsan/backends/fault.h"
#include "ipsan/backends/ram.h"
#include "ipsan/base/rng.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::BackendPtr;
using backends::FaultInjectingBackend;
using backends::OpKind;
using backends::RamBackend;
using namespace backends::testing;

constexpr std::uint32_t kBs = 512;
constexpr std::uint64_t kRegion = 64 * 1024;            // 128 blocks
constexpr std::uint64_t kSize = 4 * 1024 * 1024;        // 64 regions
constexpr std::uint64_t kBlocks = kSize / kBs;

BackendPtr ram(std::uint64_t bytes = kSize) { return *RamBackend::create(bytes); }

std::vector<std::uint8_t> read_all(backends::Backend& b, std::uint64_t blocks = kBlocks) {
  std::vector<std::uint8_t> out(blocks * kBs);
  EXPECT_EQ(read_sync(b, 0, out), Errc::kOk);
  return out;
}

std::vector<std::uint8_t> pattern(std::uint64_t blocks, std::uint8_t seed) {
  std::vector<std::uint8_t> v(blocks * kBs);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(seed + i * 7);
  return v;
}

struct Rig {
  BackendPtr a = ram(), b = ram();
  std::shared_ptr<FaultInjectingBackend> fa = std::make_shared<FaultInjectingBackend>(a, "a");
  std::shared_ptr<FaultInjectingBackend> fb = std::make_shared<FaultInjectingBackend>(b, "b");
  BackendPtr bitmap = ram(MirrorDisk::bitmap_bytes_needed(kBlocks, kBs, kRegion));
  std::shared_ptr<FaultInjectingBackend> fbm =
      std::make_shared<FaultInjectingBackend>(bitmap, "bm");

  // A test that "crashes" leaves a completion held in a wrapper; run it at the end, or the
  // callback (which owns the abandoned mirror, which owns the wrappers) is a cycle that leaks.
  ~Rig() {
    for (auto* f : {fa.get(), fb.get(), fbm.get()}) {
      f->set_hold(false);
      f->release_all();
    }
  }

  std::shared_ptr<MirrorDisk> open() {
    auto m = MirrorDisk::open("m", {{"a", fa}, {"b", fb}}, fbm, MirrorOptions{kRegion, 0});
    EXPECT_TRUE(m) << (m ? "" : m.error().message);
    return m ? *m : nullptr;
  }
  void sync(MirrorDisk& m) {
    for (int i = 0; i < 1000; ++i) {
      auto n = m.resync_step(16);
      ASSERT_TRUE(n) << n.error().message;
      if (*n == 0) return;
    }
    FAIL() << "resync did not finish";
  }
};

LegState state_of(const MirrorDisk& m, const std::string& leg) {
  for (const auto& l : m.status().legs)
    if (l.name == leg) return l.state;
  return LegState::kFailed;
}

TEST(Mirror, NewMirrorFullInitialSyncThenWritesReachEveryLeg) {
  Rig r;
  auto first = pattern(kBlocks, 3);
  ASSERT_EQ(write_sync(*r.a, 0, first), Errc::kOk);  // existing data on the first leg
  auto m = r.open();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->geometry().block_count, kBlocks);
  auto s = m->status();
  EXPECT_TRUE(s.degraded);
  EXPECT_EQ(s.stale_regions, s.regions);
  EXPECT_EQ(state_of(*m, "b"), LegState::kSyncing);
  EXPECT_EQ(read_all(*m), first);  // reads only from the in-sync leg
  r.sync(*m);
  EXPECT_EQ(m->status().stats.resync_regions, kSize / kRegion);
  EXPECT_EQ(state_of(*m, "b"), LegState::kInSync);
  EXPECT_EQ(read_all(*r.b), first);

  auto d = pattern(300, 9);
  ASSERT_EQ(write_sync(*m, 1000, d), Errc::kOk);
  std::vector<std::uint8_t> got(d.size());
  ASSERT_EQ(read_sync(*r.a, 1000, got), Errc::kOk);
  EXPECT_EQ(got, d);
  ASSERT_EQ(read_sync(*r.b, 1000, got), Errc::kOk);
  EXPECT_EQ(got, d);
  EXPECT_FALSE(m->status().degraded);
}

TEST(Mirror, BitmapIsDurableBeforeDataIsIssued) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  r.sync(*m);
  ASSERT_EQ(m->checkpoint(), Errc::kOk);
  const auto a0 = r.fa->count(OpKind::kWrite), b0 = r.fb->count(OpKind::kWrite);
  const auto m0 = r.fbm->count(OpKind::kWrite);
  r.fbm->set_hold(true);
  Waiter w;
  auto d = pattern(8, 1);
  m->write(5 * (kRegion / kBs), d, false, w.cb());
  // The bitmap write is held: nothing went to the legs yet.
  EXPECT_GE(r.fbm->count(OpKind::kWrite), m0 + 1);
  EXPECT_EQ(r.fa->count(OpKind::kWrite), a0);
  EXPECT_EQ(r.fb->count(OpKind::kWrite), b0);
  r.fbm->set_hold(false);
  r.fbm->release_all();
  EXPECT_EQ(w.wait(), Errc::kOk);
  EXPECT_EQ(r.fa->count(OpKind::kWrite), a0 + 1);
  EXPECT_EQ(r.fb->count(OpKind::kWrite), b0 + 1);
  // A second write to the same region needs no bitmap write.
  const auto bm = r.fbm->count(OpKind::kWrite);
  ASSERT_EQ(write_sync(*m, 5 * (kRegion / kBs) + 8, d), Errc::kOk);
  EXPECT_EQ(r.fbm->count(OpKind::kWrite), bm);
  // A client flush keeps them (hot regions need no bitmap write); two checkpoints with no write
  // between clear them (one page write).
  ASSERT_EQ(flush_sync(*m), Errc::kOk);
  EXPECT_EQ(r.fbm->count(OpKind::kWrite), bm);
  ASSERT_EQ(m->checkpoint(), Errc::kOk);
  EXPECT_EQ(r.fbm->count(OpKind::kWrite), bm);
  ASSERT_EQ(m->checkpoint(), Errc::kOk);
  EXPECT_GT(r.fbm->count(OpKind::kWrite), bm);
}

TEST(Mirror, FailedLegDegradesThenResyncCopiesOnlyStaleRegions) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  r.sync(*m);
  const auto before = m->status().stats.resync_regions;
  r.fb->fail_range(0, kBlocks, Errc::kIoError);
  const std::uint64_t rb = kRegion / kBs;
  // Writes touching regions 3, 4 (spanning), 10 and 40: no error to the client.
  ASSERT_EQ(write_sync(*m, 3 * rb + 100, pattern(56, 2)), Errc::kOk);
  EXPECT_EQ(state_of(*m, "b"), LegState::kFailed);
  EXPECT_TRUE(m->status().degraded);
  ASSERT_EQ(write_sync(*m, 10 * rb, pattern(16, 3)), Errc::kOk);
  ASSERT_EQ(write_sync(*m, 40 * rb + 5, pattern(1, 4)), Errc::kOk);
  ASSERT_EQ(flush_sync(*m), Errc::kOk);  // degraded flush still succeeds
  EXPECT_EQ(m->status().legs[1].stale_regions, 4u);
  // The leg comes back.
  r.fb->clear_faults();
  EXPECT_EQ(m->reattach_failed(), 1u);
  EXPECT_EQ(state_of(*m, "b"), LegState::kSyncing);
  r.sync(*m);
  EXPECT_EQ(m->status().stats.resync_regions - before, 4u);
  EXPECT_EQ(state_of(*m, "b"), LegState::kInSync);
  EXPECT_EQ(read_all(*r.a), read_all(*r.b));
}

TEST(Mirror, ReadErrorIsRetriedOnTheOtherLeg) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  r.sync(*m);
  auto d = pattern(kBlocks, 5);
  ASSERT_EQ(write_sync(*m, 0, d), Errc::kOk);
  r.fa->fail_range(0, kBlocks, Errc::kMediumError, OpKind::kRead);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(read_all(*m), d);
  EXPECT_EQ(state_of(*m, "a"), LegState::kFailed);
  EXPECT_GE(m->status().stats.read_retries, 1u);
}

TEST(Mirror, LastInSyncLegIsNeverTakenOut) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  r.sync(*m);
  ASSERT_TRUE(m->offline_leg("b"));
  EXPECT_FALSE(m->offline_leg("a"));
  EXPECT_FALSE(m->remove_leg("a"));
  r.fa->fail_range(0, kBlocks, Errc::kIoError);
  EXPECT_EQ(write_sync(*m, 0, pattern(1, 1)), Errc::kIoError);
  EXPECT_EQ(state_of(*m, "a"), LegState::kInSync);
}

TEST(Mirror, CrashRecoveryResyncsEveryRegionMarkedInTheBitmap) {
  Rig r;
  {
    auto m = r.open();
    ASSERT_TRUE(m);
    r.sync(*m);
    ASSERT_EQ(m->checkpoint(), Errc::kOk);
    // A write whose second leg never finishes (the server dies): hold b's completion.
    r.fb->set_hold(true);
    Waiter w;
    auto d = pattern(4, 7);
    m->write(20 * (kRegion / kBs), d, false, w.cb());
    // The data reached a, but b "lost" it: simulate by never releasing, and make the legs differ.
    std::vector<std::uint8_t> junk(4 * kBs, 0xEE);
    ASSERT_EQ(write_sync(*r.b, 20 * (kRegion / kBs), junk), Errc::kOk);
    r.fb->set_hold(false);
    // Leave the request unfinished (crash); drop our mirror.
  }
  auto m2 = r.open();
  ASSERT_TRUE(m2);
  EXPECT_EQ(state_of(*m2, "b"), LegState::kSyncing);
  EXPECT_EQ(m2->status().legs[1].stale_regions, 1u);
  r.sync(*m2);
  EXPECT_EQ(m2->status().stats.resync_regions, 1u);
  EXPECT_EQ(read_all(*r.a), read_all(*r.b));
}

TEST(Mirror, CleanReopenNeedsNoResync) {
  Rig r;
  {
    auto m = r.open();
    ASSERT_TRUE(m);
    r.sync(*m);
    ASSERT_EQ(write_sync(*m, 77, pattern(9, 1)), Errc::kOk);
    ASSERT_EQ(flush_sync(*m), Errc::kOk);
    ASSERT_EQ(m->checkpoint(), Errc::kOk);
    ASSERT_EQ(m->checkpoint(), Errc::kOk);
  }
  auto m2 = r.open();
  ASSERT_TRUE(m2);
  EXPECT_FALSE(m2->status().degraded);
  EXPECT_EQ(m2->status().stale_regions, 0u);
}

TEST(Mirror, FailedLegStaysFailedAcrossRestartAndIsNeverRead) {
  Rig r;
  {
    auto m = r.open();
    ASSERT_TRUE(m);
    r.sync(*m);
    ASSERT_TRUE(m->offline_leg("a"));
    ASSERT_EQ(write_sync(*m, 0, pattern(kBlocks, 11)), Errc::kOk);
  }
  auto m2 = r.open();
  ASSERT_TRUE(m2);
  EXPECT_EQ(state_of(*m2, "a"), LegState::kSyncing);
  EXPECT_EQ(state_of(*m2, "b"), LegState::kInSync);
  EXPECT_EQ(read_all(*m2), pattern(kBlocks, 11));
  r.sync(*m2);
  EXPECT_EQ(read_all(*r.a), pattern(kBlocks, 11));
}

TEST(Mirror, VerifyReportsAndRepairs) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  r.sync(*m);
  std::vector<std::uint8_t> junk(kBs, 0x5A);
  ASSERT_EQ(write_sync(*r.b, 7 * (kRegion / kBs) + 3, junk), Errc::kOk);
  ASSERT_EQ(write_sync(*r.b, 33 * (kRegion / kBs), junk), Errc::kOk);
  VerifyReport rep;
  std::uint64_t cursor = 0;
  while (true) {
    auto more = m->verify_step(&cursor, 10, false, rep);
    ASSERT_TRUE(more);
    if (!*more) break;
  }
  EXPECT_EQ(rep.regions_checked, kSize / kRegion);
  EXPECT_EQ(rep.mismatched_regions, 2u);
  EXPECT_EQ(rep.mismatches, (std::vector<std::uint64_t>{7, 33}));
  EXPECT_NE(read_all(*r.a), read_all(*r.b));
  VerifyReport fix;
  cursor = 0;
  while (*m->verify_step(&cursor, 64, true, fix)) {}
  EXPECT_EQ(fix.repaired_regions, 2u);
  EXPECT_EQ(read_all(*r.a), read_all(*r.b));
}

TEST(Mirror, OnlineAddAndRemoveLeg) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  r.sync(*m);
  ASSERT_EQ(write_sync(*m, 0, pattern(kBlocks, 21)), Errc::kOk);
  auto c = ram();
  ASSERT_TRUE(m->add_leg({"c", c}));
  EXPECT_FALSE(m->add_leg({"c", ram()}));  // duplicate name
  EXPECT_FALSE(m->add_leg({"d", ram(kSize - kBs)}));  // too small
  EXPECT_EQ(state_of(*m, "c"), LegState::kSyncing);
  ASSERT_EQ(write_sync(*m, 10, pattern(3, 22)), Errc::kOk);
  r.sync(*m);
  EXPECT_EQ(state_of(*m, "c"), LegState::kInSync);
  EXPECT_EQ(read_all(*c), read_all(*r.a));
  ASSERT_EQ(m->checkpoint(), Errc::kOk);  // the write-intent bits of the writes above age...
  ASSERT_EQ(m->checkpoint(), Errc::kOk);  // ...and are cleared
  ASSERT_TRUE(m->remove_leg("a"));
  EXPECT_EQ(m->leg_names(), (std::vector<std::string>{"b", "c"}));
  ASSERT_EQ(write_sync(*m, 0, pattern(2, 23)), Errc::kOk);
  EXPECT_EQ(read_all(*m), read_all(*c));
  // Restart with the new set of legs: the bitmap knows them.
  m.reset();
  auto m2 = MirrorDisk::open("m", {{"b", r.fb}, {"c", c}}, r.fbm, MirrorOptions{kRegion, 0});
  ASSERT_TRUE(m2) << m2.error().message;
  EXPECT_EQ((*m2)->status().stale_regions, 1u);  // the last write's region, not flushed
}

TEST(Mirror, WritesDuringResyncKeepLegsEqual) {
  Rig r;
  auto m = r.open();
  ASSERT_TRUE(m);
  const std::uint64_t seed = 0xC0FFEE;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    Rng rng(seed);
    for (int i = 0; i < 400; ++i) {
      const std::uint64_t blocks = 1 + rng.next() % 200;
      const std::uint64_t lba = rng.next() % (kBlocks - blocks);
      ASSERT_EQ(write_sync(*m, lba, pattern(blocks, static_cast<std::uint8_t>(i))), Errc::kOk);
    }
    stop = true;
  });
  while (!stop) {
    auto n = m->resync_step(1);
    ASSERT_TRUE(n);
  }
  writer.join();
  r.sync(*m);
  EXPECT_EQ(state_of(*m, "b"), LegState::kInSync);
  EXPECT_EQ(read_all(*r.a), read_all(*r.b));
}

TEST(Mirror, BadInputIsRefusedWithAClearError) {
  auto a = ram(), small = ram(kSize / 2);
  auto bm = ram(MirrorDisk::bitmap_bytes_needed(kBlocks, kBs, kRegion));
  auto e1 = MirrorDisk::open("m", {{"a", a}, {"s", small}}, bm, MirrorOptions{kRegion, 0});
  ASSERT_FALSE(e1);
  EXPECT_NE(e1.error().message.find("fewer than the mirror"), std::string::npos);
  auto tiny = ram(8192);
  auto e2 = MirrorDisk::open("m", {{"a", a}, {"b", ram()}}, tiny, MirrorOptions{kRegion, 0});
  ASSERT_FALSE(e2);
  EXPECT_NE(e2.error().message.find("needs at least"), std::string::npos);
  auto foreign = ram(MirrorDisk::bitmap_bytes_needed(kBlocks, kBs, kRegion));
  std::vector<std::uint8_t> junk(kBs, 1);
  ASSERT_EQ(write_sync(*foreign, 0, junk), Errc::kOk);
  auto e3 = MirrorDisk::open("m", {{"a", a}, {"b", ram()}}, foreign, MirrorOptions{kRegion, 0});
  ASSERT_FALSE(e3);
  EXPECT_NE(e3.error().message.find("something else"), std::string::npos);
  auto e4 = MirrorDisk::open("m", {{"a", a}, {"b", ram()}}, bm, MirrorOptions{1000, 0});
  ASSERT_FALSE(e4);
  // A bitmap for another size.
  ASSERT_TRUE(MirrorDisk::open("m", {{"a", a}}, bm, MirrorOptions{kRegion, 0}));
  auto e5 = MirrorDisk::open("m", {{"a", a}}, bm, MirrorOptions{kRegion, kBlocks / 2});
  ASSERT_FALSE(e5);
  EXPECT_NE(e5.error().message.find("written for"), std::string::npos);
  // Nothing was written to the data legs by a refused open.
  EXPECT_EQ(read_all(*small, kBlocks / 2), std::vector<std::uint8_t>(kSize / 2, 0));
}

TEST(MirrorLayout, DeclaredInTomlAndBadLayoutsRefused) {
  const std::string base = R"(
[backend.la]
spec = "ram:4M"
[backend.lb]
spec = "ram:4M"
[backend.small]
spec = "ram:2M"
[backend.bm]
spec = "ram:1M"
)";
  auto ok = parse_layout(base + R"(
[mirror.m1]
legs = ["la", "lb"]
bitmap = "bm"
region = "64K"
[[export]]
device_id = 1
disk = "m1"
)", {});
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_TRUE(ok->mirrors.count("m1"));
  EXPECT_EQ(ok->find_export(1)->backend->geometry().block_count, 8192u);
  auto again = parse_layout_desc(to_toml(ok->desc));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->mirrors, ok->desc.mirrors);
  auto refused = [&](const std::string& extra, const std::string& what) {
    auto l = parse_layout(base + extra, {});
    ASSERT_FALSE(l) << extra;
    EXPECT_NE(l.error().message.find(what), std::string::npos) << l.error().message;
  };
  refused("[mirror.m1]\nlegs = [\"la\", \"small\"]\nbitmap = \"bm\"\n", "fewer than the mirror");
  refused("[mirror.m1]\nlegs = [\"la\", \"nope\"]\nbitmap = \"bm\"\n", "not a backend");
  refused("[mirror.m1]\nlegs = [\"la\", \"lb\"]\nbitmap = \"la\"\n", "already used");
  refused("[mirror.m1]\nlegs = [\"la\", \"lb\"]\nbitmap = \"bm\"\n[[export]]\ndevice_id = 1\ndisk = \"lb\"\n",
          "also exported");
  refused("[mirror.m1]\nlegs = [\"la\"]\nbitmap = \"bm\"\nwhat = 1\n", "unknown key");
  refused("[mirror.m1]\nlegs = []\nbitmap = \"bm\"\n", "at least one");
  refused("[mirror.m1]\nlegs = [\"la\"]\n", "missing 'bitmap'");
}

}  // namespace
}  // namespace ipsan::virt
