#include "ipsan/server/slots.h"

#include <gtest/gtest.h>

namespace ipsan::server {
namespace {

TEST(SlotTable, ExecutesInOrderAndReplaysCachedReply) {
  SlotTable t(2);
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kExecute);
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kInProgress);
  EXPECT_EQ(t.admit(0, 2), SlotVerdict::kMisordered);  // one request per slot at a time
  t.complete(0, 1, Bytes{1, 2, 3});
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kReplayCached);
  EXPECT_EQ(t.cached_reply(0), (Bytes{1, 2, 3}));
  EXPECT_EQ(t.admit(0, 2), SlotVerdict::kExecute);
  t.complete(0, 2, Bytes{9});
  // A late duplicate of the old request is refused: it must never run again.
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kMisordered);
  EXPECT_EQ(t.admit(0, 4), SlotVerdict::kMisordered);  // skipping ahead is refused too
  EXPECT_EQ(t.admit(0, 0), SlotVerdict::kMisordered);
  EXPECT_EQ(t.admit(1, 1), SlotVerdict::kExecute);  // slots are independent
  EXPECT_EQ(t.admit(2, 1), SlotVerdict::kBadSlot);
}

TEST(SlotTable, UncachedReplyIsReexecuted) {
  SlotTable t(1);
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kExecute);
  t.complete(0, 1, {});  // a READ: data not cached
  EXPECT_FALSE(t.busy());
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kReexecute);
  EXPECT_TRUE(t.busy());
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kInProgress);
  t.complete(0, 1, {});
  EXPECT_EQ(t.admit(0, 2), SlotVerdict::kExecute);
}

TEST(SlotTable, CompletionOfStaleSeqIgnored) {
  SlotTable t(1);
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kExecute);
  t.complete(0, 7, Bytes{1});
  EXPECT_TRUE(t.busy());
  EXPECT_EQ(t.cached_bytes(), 0u);
}

}  // namespace
}  // namespace ipsan::server
