#include <gtest/gtest.h>

#include "ipsan/ha/ledger.h"

namespace ipsan::ha {
namespace {

TEST(Ledger, LastAcknowledgedWritePasses) {
  WriteLedger l(7);
  const auto a = l.issue(3);
  EXPECT_TRUE(l.busy(3));
  l.acknowledged(3, a);
  EXPECT_FALSE(l.busy(3));
  const auto b = l.issue(3);
  l.acknowledged(3, b);
  WriteLedger::Verdict v;
  l.check(3, l.pattern(3, b), v);
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.blocks_checked, 1u);
}

TEST(Ledger, OlderAcknowledgedContentIsALostWrite) {
  WriteLedger l(7);
  const auto a = l.issue(3);
  l.acknowledged(3, a);
  const auto b = l.issue(3);
  l.acknowledged(3, b);
  WriteLedger::Verdict v;
  l.check(3, l.pattern(3, a), v);  // b lost, or a applied again after b
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.lost, 1u);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_NE(v.problems[0].find("applied again"), std::string::npos);
}

TEST(Ledger, ZerosAfterAnAckIsLost) {
  WriteLedger l(7);
  l.acknowledged(9, l.issue(9));
  WriteLedger::Verdict v;
  l.check(9, Bytes(kBlockSize, 0), v);
  EXPECT_EQ(v.lost, 1u);
}

TEST(Ledger, UnknownFateMayOrMayNotLand) {
  WriteLedger l(7);
  const auto a = l.issue(1);
  l.acknowledged(1, a);
  const auto b = l.issue(1);
  l.unknown(1, b);
  WriteLedger::Verdict v;
  l.check(1, l.pattern(1, a), v);  // b not applied: fine
  l.check(1, l.pattern(1, b), v);  // b applied: fine
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.unknown_landed, 1u);
  // An unknown write overtaken by a later acknowledged one must not show up any more.
  const auto c = l.issue(1);
  l.acknowledged(1, c);
  WriteLedger::Verdict w;
  l.check(1, l.pattern(1, b), w);
  EXPECT_EQ(w.lost, 1u);
}

TEST(Ledger, TornMisplacedAndForeignContentIsCorrupt) {
  WriteLedger l(7);
  const auto a = l.issue(2);
  l.acknowledged(2, a);
  Bytes torn = l.pattern(2, a);
  torn[100] ^= 1;
  WriteLedger::Verdict v;
  l.check(2, torn, v);
  l.check(2, l.pattern(5, a), v);               // another block's data
  l.check(2, WriteLedger(8).pattern(2, a), v);  // another run's data
  l.check(2, Bytes(100, 1), v);                 // short
  EXPECT_EQ(v.corrupt, 4u);
  EXPECT_FALSE(v.ok());
}

TEST(Ledger, WrittenBlocksAndTotals) {
  WriteLedger l(1);
  l.acknowledged(5, l.issue(5));
  l.unknown(2, l.issue(2));
  EXPECT_EQ(l.written_blocks(), (std::vector<std::uint64_t>{2, 5}));
  WriteLedger::Verdict v;
  l.totals(v);
  EXPECT_EQ(v.acknowledged, 1u);
  EXPECT_EQ(v.unknown, 1u);
}

}  // namespace
}  // namespace ipsan::ha
