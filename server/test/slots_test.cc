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
  // At most once: a replayed copy cannot make the server read again and again.
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kReexecuteSpent);
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kReexecuteSpent);
  EXPECT_EQ(t.admit(0, 2), SlotVerdict::kExecute);
}

TEST(SlotTable, FenceSkipsTheLostSeqAndRefusesItForever) {
  SlotTable t(2);
  EXPECT_EQ(t.admit(0, 1), SlotVerdict::kExecute);
  t.complete(0, 1, Bytes{1});
  // seq 2 was sent but never arrived; the client fences at 3.
  EXPECT_EQ(t.admit_fence(0, 3), SlotVerdict::kExecute);
  t.complete(0, 3, Bytes{7});
  EXPECT_EQ(t.admit(0, 2), SlotVerdict::kMisordered);  // the delayed copy never runs
  EXPECT_EQ(t.admit_fence(0, 3), SlotVerdict::kReplayCached);
  EXPECT_EQ(t.admit_fence(0, 2), SlotVerdict::kMisordered);
  EXPECT_EQ(t.admit(0, 4), SlotVerdict::kExecute);
  // A fence waits for the request it fences if that one is still running.
  EXPECT_EQ(t.admit(1, 1), SlotVerdict::kExecute);
  EXPECT_EQ(t.admit_fence(1, 2), SlotVerdict::kInProgress);
  t.complete(1, 1, Bytes{2});
  EXPECT_EQ(t.admit_fence(1, 2), SlotVerdict::kExecute);
  EXPECT_EQ(t.admit_fence(5, 2), SlotVerdict::kBadSlot);
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
