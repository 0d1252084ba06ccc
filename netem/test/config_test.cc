// Text forms of impairment settings and the named profiles.
#include "ipsan/netem/config.h"

#include <gtest/gtest.h>

namespace ipsan::netem {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(Config, ParseDuration) {
  EXPECT_EQ(*parse_duration("10ms"), milliseconds(10));
  EXPECT_EQ(*parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(*parse_duration("250us"), microseconds(250));
  EXPECT_EQ(*parse_duration("100ns"), Duration(100));
  EXPECT_EQ(*parse_duration("2m"), seconds(120));
  EXPECT_EQ(*parse_duration("0"), Duration::zero());
  for (const char* bad : {"", "ms", "10", "-5ms", "10parsecs", "1e3ms", "1..2s", "9999999999s"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
  EXPECT_NE(parse_duration("10").error().message.find("unit"), std::string::npos);
}

TEST(Config, ParseProbability) {
  EXPECT_DOUBLE_EQ(*parse_probability("1%"), 0.01);
  EXPECT_DOUBLE_EQ(*parse_probability("0.1%"), 0.001);
  EXPECT_DOUBLE_EQ(*parse_probability("25%"), 0.25);
  EXPECT_DOUBLE_EQ(*parse_probability("0"), 0.0);
  EXPECT_DOUBLE_EQ(*parse_probability("100%"), 1.0);
  for (const char* bad : {"", "%", "101%", "1.5", "0.01", "1", "-1%", "abc", "1%%", "5 pct"}) {
    EXPECT_FALSE(parse_probability(bad)) << bad;
  }
}

TEST(Config, ParseRate) {
  EXPECT_EQ(*parse_rate("100mbit"), 100'000'000u);
  EXPECT_EQ(*parse_rate("1gbit"), 1'000'000'000u);
  EXPECT_EQ(*parse_rate("64kbit"), 64'000u);
  EXPECT_EQ(*parse_rate("1.5Mbit"), 1'500'000u);
  EXPECT_EQ(*parse_rate("1000"), 1000u);
  EXPECT_EQ(*parse_rate("1mbps"), 8'000'000u);  // tc: bytes per second
  EXPECT_EQ(*parse_rate("0"), 0u);
  for (const char* bad : {"", "fast", "10furlongs", "0.5bit", "100tbit"}) {
    EXPECT_FALSE(parse_rate(bad)) << bad;
  }
}

TEST(Config, ParsePartitions) {
  auto p = parse_partitions("2s+500ms");
  ASSERT_TRUE(p);
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0], (Partition{seconds(2), milliseconds(500), Duration::zero()}));
  p = parse_partitions("2s+500ms/10s,30s+1s");
  ASSERT_TRUE(p);
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].period, seconds(10));
  EXPECT_EQ((*p)[1].at, seconds(30));
  EXPECT_TRUE(parse_partitions("none")->empty());
  for (const char* bad : {"", "2s", "2s+0", "2s+1s/500ms", "x+1s", "1s+1s/", "+1s"}) {
    EXPECT_FALSE(parse_partitions(bad)) << bad;
  }
}

TEST(Config, ApplyOptions) {
  ImpairmentConfig c;
  ASSERT_TRUE(apply_option(c, "loss", "1%"));
  ASSERT_TRUE(apply_option(c, "burst", "1%,25%"));
  ASSERT_TRUE(apply_option(c, "delay", "10ms"));
  ASSERT_TRUE(apply_option(c, "jitter", "2ms,normal,reorder"));
  ASSERT_TRUE(apply_option(c, "reorder", "10%"));
  ASSERT_TRUE(apply_option(c, "duplicate", "1%"));
  ASSERT_TRUE(apply_option(c, "corrupt", "0.1%,3"));
  ASSERT_TRUE(apply_option(c, "rate", "100mbit"));
  ASSERT_TRUE(apply_option(c, "queue", "50"));
  ASSERT_TRUE(apply_option(c, "mtu", "1500,truncate"));
  ASSERT_TRUE(apply_option(c, "partition", "2s+500ms/10s"));
  EXPECT_DOUBLE_EQ(c.loss, 0.01);
  EXPECT_EQ(c.burst, (GilbertElliott{0.01, 0.25, 0.0, 1.0}));
  EXPECT_EQ(c.delay, milliseconds(10));
  EXPECT_EQ(c.jitter, milliseconds(2));
  EXPECT_EQ(c.jitter_distribution, JitterDistribution::kNormal);
  EXPECT_TRUE(c.jitter_reorders);
  EXPECT_DOUBLE_EQ(c.reorder, 0.1);
  EXPECT_DOUBLE_EQ(c.duplicate, 0.01);
  EXPECT_DOUBLE_EQ(c.corrupt, 0.001);
  EXPECT_EQ(c.corrupt_max_bits, 3u);
  EXPECT_EQ(c.rate_bps, 100'000'000u);
  EXPECT_EQ(c.queue_limit, 50u);
  EXPECT_EQ(c.mtu, 1500u);
  EXPECT_TRUE(c.mtu_truncate);
  ASSERT_EQ(c.partitions.size(), 1u);
  EXPECT_EQ(validate(c), "");
  EXPECT_EQ(describe(c),
            "loss=1% burst=1%,25%,0%,100% delay=10ms jitter=2ms,normal,reorder reorder=10% "
            "duplicate=1% corrupt=0.1%,3 rate=100000000bit queue=50 mtu=1500,truncate "
            "partition=2s+500ms/10s");
  ASSERT_TRUE(apply_option(c, "burst", "2%,30%,10%,95%"));
  EXPECT_EQ(c.burst, (GilbertElliott{0.02, 0.30, 0.10, 0.95}));
  ASSERT_TRUE(apply_option(c, "burst", "off"));
  EXPECT_EQ(c.burst.p, 0.0);
}

TEST(Config, ApplyOptionErrorsNameTheFlag) {
  ImpairmentConfig c;
  const ImpairmentConfig before = c;
  const std::pair<const char*, const char*> bad[] = {
      {"loss", "lots"},    {"burst", "1%"},        {"burst", "1%,0"},
      {"burst", "1,2,3"},  {"delay", "soon"},      {"jitter", "2ms,gaussian"},
      {"corrupt", "1%,0"}, {"corrupt", "1%,2,3"},  {"rate", "warp9"},
      {"queue", "-1"},     {"queue", "many"},      {"mtu", "1500,chop"},
      {"mtu", "big"},      {"partition", "later"}, {"colour", "blue"}};
  for (const auto& [name, value] : bad) {
    auto r = apply_option(c, name, value);
    ASSERT_FALSE(r) << name << " " << value;
    EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(c, before);
}

TEST(Config, SpecAndDescribeRoundTrip) {
  auto c = parse_spec("delay=10ms  jitter=1ms,normal loss=0.5%");
  ASSERT_TRUE(c);
  EXPECT_EQ(describe(*c), "loss=0.5% delay=10ms jitter=1ms,normal");
  EXPECT_EQ(describe(ImpairmentConfig{}), "none");
  EXPECT_FALSE(parse_spec("delay"));
  EXPECT_FALSE(parse_spec("delay=10ms bogus=1"));
}

TEST(Config, EveryProfileParsesAndValidates) {
  const auto names = profile_names();
  const std::vector<std::string_view> expected = {
      "lan",    "wan-20ms", "wan-50ms",  "lossy-0.1pct", "lossy-1pct", "lossy-5pct",
      "bursty", "reorder",  "duplicate", "corrupt",      "nasty",      "partition"};
  EXPECT_EQ(names, expected);
  for (const auto name : names) {
    auto c = profile_by_name(name);
    ASSERT_TRUE(c) << name << ": " << c.error().message;
    EXPECT_EQ(validate(*c), "") << name;
    EXPECT_NE(describe(*c), "none") << name;
  }
  EXPECT_EQ(profile_by_name("wan-20ms")->delay, milliseconds(10));  // 20 ms RTT
  EXPECT_DOUBLE_EQ(profile_by_name("lossy-1pct")->loss, 0.01);
  EXPECT_DOUBLE_EQ(profile_by_name("reorder")->reorder, 0.10);
  EXPECT_DOUBLE_EQ(profile_by_name("duplicate")->duplicate, 0.01);
  EXPECT_EQ(profile_by_name("partition")->partitions.at(0).length, milliseconds(500));
  auto bad = profile_by_name("moon");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("wan-20ms"), std::string::npos);
}

}  // namespace
}  // namespace ipsan::netem
