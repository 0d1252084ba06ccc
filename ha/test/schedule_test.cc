#include <gtest/gtest.h>

#include "ipsan/ha/schedule.h"

namespace ipsan::ha {
namespace {

constexpr const char* kGood = R"(
seed = 5
duration = "6s"
[workload]
blocks = 64
queue_depth = 2
[[party]]
name = "A"
size = "16M"
[[event]]
at = "3s"
do = "partition"
link = "client-A"
for = "1s"
[[event]]
at = "1s"
do = "kill"
party = "A"
[[event]]
at = "2s"
do = "loss"
link = "client-A"
value = "12.5%"
for = "500ms"
)";

TEST(Schedule, ParsesAndSortsEvents) {
  auto s = parse_schedule(kGood);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->seed, 5u);
  EXPECT_EQ(s->duration, std::chrono::seconds(6));
  EXPECT_EQ(s->workload.target, "A");
  EXPECT_EQ(s->workload.blocks, 64u);
  ASSERT_EQ(s->events.size(), 3u);
  EXPECT_EQ(s->events[0].action, Action::kKill);
  EXPECT_EQ(s->events[1].action, Action::kLoss);
  EXPECT_DOUBLE_EQ(s->events[1].loss, 0.125);
  EXPECT_EQ(s->events[1].length, std::chrono::milliseconds(500));
  EXPECT_EQ(s->events[2].action, Action::kPartition);
}

TEST(Schedule, FormatRoundTrips) {
  auto s = parse_schedule(kGood);
  ASSERT_TRUE(s);
  const std::string text = format_schedule(*s);
  auto again = parse_schedule(text);
  ASSERT_TRUE(again) << again.error().message << "\n" << text;
  EXPECT_EQ(format_schedule(*again), text);
}

TEST(Schedule, GeneratedSchedulesAreValidAndReproducible) {
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string text = format_schedule(generate_schedule(seed));
    EXPECT_EQ(text, format_schedule(generate_schedule(seed)));
    auto parsed = parse_schedule(text);
    ASSERT_TRUE(parsed) << parsed.error().message << "\n" << text;
    EXPECT_EQ(format_schedule(*parsed), text);
    EXPECT_GE(parsed->events.size(), 2u);
  }
  EXPECT_NE(format_schedule(generate_schedule(1)), format_schedule(generate_schedule(2)));
}

TEST(Schedule, RejectsBadInputWithAMessage) {
  struct Case {
    const char* text;
    const char* want;  // substring of the message
  };
  const Case cases[] = {
      {"", "no [[party]]"},
      {"[[party]]\nname = \"client\"", "bad name"},
      {"[[party]]\nname = \"A\"\n[[party]]\nname = \"A\"", "duplicate"},
      {"[[party]]\nname = \"A\"\nsize = \"1K\"", "size"},
      {"bogus = 1\n[[party]]\nname = \"A\"", "unknown key 'bogus'"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"1s\"\ndo = \"explode\"\nparty = \"A\"",
       "unknown action"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"1s\"\ndo = \"kill\"\nparty = \"B\"",
       "unknown party"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"1s\"\ndo = \"kill\"\nlink = \"client-A\"",
       "needs 'party'"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"1s\"\ndo = \"loss\"\nlink = \"client-A\"",
       "needs 'value'"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"1s\"\ndo = \"loss\"\nlink = \"client-A\"\n"
       "value = \"120%\"",
       "bad loss"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"99s\"\ndo = \"kill\"\nparty = \"A\"",
       "after the end"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"-1s\"\ndo = \"kill\"\nparty = \"A\"",
       "negative"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = \"1s\"\ndo = \"partition\"\nlink = \"A-B\"",
       "unknown link"},
      {"[workload]\nblocks = 100000\n[[party]]\nname = \"A\"\nsize = \"1M\"", "do not fit"},
      {"[[party]]\nname = \"A\"\n[[event]]\nat = 1", "must be a string"},
      {"[[party]\nname=", "line 1"},
  };
  for (const auto& c : cases) {
    auto s = parse_schedule(c.text);
    ASSERT_FALSE(s) << c.text;
    EXPECT_NE(s.error().message.find(c.want), std::string::npos)
        << c.text << "\n=> " << s.error().message;
  }
}

}  // namespace
}  // namespace ipsan::ha
