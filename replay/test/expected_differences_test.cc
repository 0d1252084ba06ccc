// The expected-differences list of `ipsan replay --expected-differences` (expected_differences.h):
// parsing hostile text, and what it does to a report.
#include "ipsan/replay/expected_differences.h"

#include <gtest/gtest.h>

namespace ipsan::replay {
namespace {

using client::trace::LineResult;
using client::trace::Outcome;

TEST(ExpectedDifferences, ParsesEntriesCommentsAndBlankLines) {
  auto e = parse_expected_differences(
      "# comment\n\n  basics.trace:29 serial number differs  \nerrors.trace:41\tfault injection\n",
      "x.differences");
  ASSERT_TRUE(e) << e.error().message;
  ASSERT_EQ(e->reasons.size(), 2u);
  EXPECT_EQ((e->reasons.at({"basics.trace", 29})), "serial number differs");
  EXPECT_EQ((e->reasons.at({"errors.trace", 41})), "fault injection");
}

TEST(ExpectedDifferences, RefusesMalformedEntriesWithTheLineNumber) {
  for (const char* bad : {"basics.trace:29", "basics.trace why", ":3 why", "basics.trace:0 why",
                          "basics.trace:-1 why", "basics.trace:3x why", "dir/basics.trace:3 why",
                          "a.trace:99999999 why", "a.trace:1 x\na.trace:1 twice"}) {
    auto e = parse_expected_differences(bad, "x.differences");
    ASSERT_FALSE(e) << bad;
    EXPECT_NE(e.error().message.find("x.differences:"), std::string::npos) << e.error().message;
  }
}

client::trace::ReplayReport report_of(std::vector<std::pair<int, Outcome>> lines) {
  client::trace::ReplayReport r;
  for (auto [line, o] : lines) {
    r.lines.push_back(LineResult{"dir/t.trace", line, o, "detail"});
    switch (o) {
      case Outcome::kMatch: ++r.matched; break;
      case Outcome::kMismatch: ++r.mismatched; break;
      case Outcome::kError: ++r.errors; break;
      case Outcome::kSkipped: ++r.skipped; break;
    }
  }
  return r;
}

TEST(ExpectedDifferences, ListedMismatchesPassOthersFailStaleEntriesFail) {
  auto e = parse_expected_differences("t.trace:2 by design\nother.trace:9 not replayed\n", "f");
  ASSERT_TRUE(e);
  // Listed mismatch: expected, not failing; the other trace's entry is ignored.
  auto r = reconcile(report_of({{1, Outcome::kMatch}, {2, Outcome::kMismatch}}), *e,
                     {"dir/t.trace"});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.expected, 1u);
  EXPECT_EQ(r.report.mismatched, 0u);
  EXPECT_EQ(r.lines.at(1).reason, "by design");
  // An unlisted mismatch fails.
  r = reconcile(report_of({{2, Outcome::kMismatch}, {3, Outcome::kMismatch}}), *e, {"t.trace"});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.report.mismatched, 1u);
  // A listed line that matched is stale, as is a listed line that is no command of the trace.
  r = reconcile(report_of({{2, Outcome::kMatch}}), *e, {"t.trace"});
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.stale.size(), 1u);
  EXPECT_NE(r.stale[0].find("t.trace:2 matched"), std::string::npos);
  r = reconcile(report_of({{1, Outcome::kMatch}}), *e, {"t.trace"});
  ASSERT_EQ(r.stale.size(), 1u);
  EXPECT_NE(r.stale[0].find("not a command line"), std::string::npos);
  // Errors are never excused.
  r = reconcile(report_of({{2, Outcome::kError}}), *e, {"t.trace"});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.expected, 0u);
}

}  // namespace
}  // namespace ipsan::replay
