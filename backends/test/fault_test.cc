#include "ipsan/backends/fault.h"

#include <gtest/gtest.h>

#include <vector>

#include "ipsan/backends/ram.h"
#include "test_util.h"

namespace ipsan::backends {
namespace {

using testing::flush_sync;
using testing::read_sync;
using testing::trim_sync;
using testing::write_sync;

std::shared_ptr<FaultInjectingBackend> make() {
  return std::make_shared<FaultInjectingBackend>(*RamBackend::create(1 << 20));
}

TEST(FaultInjectingBackend, FailsTheNthOperationOnce) {
  auto f = make();
  std::vector<std::uint8_t> buf(512, 1);
  f->fail_nth(2, Errc::kMediumError, OpKind::kWrite);
  EXPECT_EQ(write_sync(*f, 0, buf), Errc::kOk);
  EXPECT_EQ(read_sync(*f, 0, buf), Errc::kOk);  // reads are not counted by a write rule
  std::vector<std::uint8_t> two(512, 2);
  EXPECT_EQ(write_sync(*f, 1, two), Errc::kMediumError);
  EXPECT_EQ(write_sync(*f, 2, two), Errc::kOk);
  // The failed write never reached the inner backend.
  std::vector<std::uint8_t> r(512, 9);
  ASSERT_EQ(read_sync(*f->inner(), 1, r), Errc::kOk);
  EXPECT_EQ(r, std::vector<std::uint8_t>(512, 0));
  EXPECT_EQ(f->count(OpKind::kWrite), 3u);
  EXPECT_EQ(f->count(OpKind::kRead), 1u);
  EXPECT_EQ(f->total_ops(), 4u);
  auto log = f->log();
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[2].injected, Errc::kMediumError);
  EXPECT_EQ(log[2].lba, 1u);
}

TEST(FaultInjectingBackend, FailsAnLbaRangeUntilCleared) {
  auto f = make();
  f->fail_range(10, 5, Errc::kIoError);
  std::vector<std::uint8_t> buf(4 * 512);
  EXPECT_EQ(read_sync(*f, 6, buf), Errc::kOk);       // 6..9
  EXPECT_EQ(read_sync(*f, 7, buf), Errc::kIoError);  // 7..10
  EXPECT_EQ(write_sync(*f, 14, std::span(buf).first(512)), Errc::kIoError);
  EXPECT_EQ(write_sync(*f, 15, std::span(buf).first(512)), Errc::kOk);
  EXPECT_EQ(trim_sync(*f, 12, 1), Errc::kIoError);
  EXPECT_EQ(flush_sync(*f), Errc::kOk);
  f->clear_faults();
  EXPECT_EQ(read_sync(*f, 7, buf), Errc::kOk);
}

TEST(FaultInjectingBackend, HoldsCompletionsUntilReleasedInAnyOrder) {
  auto f = make();
  f->set_hold(true);
  std::vector<int> order;
  std::vector<std::uint8_t> buf(512, 3);
  f->write(0, buf, true, [&](Errc e) { order.push_back(e == Errc::kOk ? 0 : -1); });
  f->write(1, buf, false, [&](Errc e) { order.push_back(e == Errc::kOk ? 1 : -1); });
  f->fail_nth(1, Errc::kNoSpace);
  f->write(2, buf, false, [&](Errc e) { order.push_back(e == Errc::kNoSpace ? 2 : -1); });
  EXPECT_TRUE(order.empty());
  EXPECT_EQ(f->held(), 3u);
  EXPECT_TRUE(f->release(1));
  EXPECT_EQ(order, (std::vector<int>{1}));
  f->release_all();
  EXPECT_EQ(order, (std::vector<int>{1, 0, 2}));
  EXPECT_FALSE(f->release(0));
  auto log = f->log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_TRUE(log[0].fua);
  EXPECT_FALSE(log[1].fua);
}

}  // namespace
}  // namespace ipsan::backends
