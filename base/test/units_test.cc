#include "ipsan/base/units.h"

#include <gtest/gtest.h>

namespace ipsan {
namespace {

TEST(Units, Sizes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("64K"), 65536u);
  EXPECT_EQ(*parse_size("256M"), 256u << 20);
  EXPECT_EQ(*parse_size("1GiB"), 1u << 30);
  EXPECT_EQ(*parse_size("1536k"), 1536u * 1024);
  EXPECT_EQ(*parse_size("2tb"), std::uint64_t{2} << 40);
  EXPECT_EQ(*parse_size("100B"), 100u);
  EXPECT_EQ(*parse_size("0"), 0u);
  EXPECT_EQ(*parse_size("16383P"), std::uint64_t{16383} << 50);
  EXPECT_EQ(*parse_size("18446744073709551615"), ~std::uint64_t{0});
  // Exact: 2^53 + 1 is not rounded to 2^53 (the old floating-point parser did).
  EXPECT_EQ(*parse_size("9007199254740993"), 9007199254740993u);
  // One rule for every input: no fractions, spaces, signs, hex, unknown or doubled suffixes,
  // nothing past 64 bits.
  for (const char* bad : {"", "M", "B", "12Q", "-1", "+1", "0.3", "1.5k", "1.5G", "1 G", " 1G",
                          "1G ", "0x10", "1Gx", "1KiBB", "1bb", "1iB", "99999999999P",
                          "16384P", "18446744073709551616", "20000000T"}) {
    auto r = parse_size(bad);
    EXPECT_FALSE(r) << "'" << bad << "'";
    if (!r) {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
}

TEST(Units, Durations) {
  EXPECT_EQ(*parse_duration("10ms"), std::chrono::milliseconds(10));
  EXPECT_EQ(*parse_duration("2"), std::chrono::seconds(2));
  EXPECT_EQ(*parse_duration("250us"), std::chrono::microseconds(250));
  EXPECT_EQ(*parse_duration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_FALSE(parse_duration("5 parsecs"));
  EXPECT_FALSE(parse_duration("x"));
}

TEST(Units, HostPort) {
  auto a = parse_host_port("10.1.2.3:99", "127.0.0.1", 5);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "10.1.2.3");
  EXPECT_EQ(a->port, 99);
  auto b = parse_host_port("7000", "127.0.0.1", 5);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "127.0.0.1");
  EXPECT_EQ(b->port, 7000);
  auto c = parse_host_port("[::1]:80", "x", 5);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  auto d = parse_host_port("localhost", "x", 5);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->port, 5);
  EXPECT_FALSE(parse_host_port("h:70000", "x", 5));
  EXPECT_FALSE(parse_host_port("h:x1", "x", 5));
  EXPECT_FALSE(parse_host_port("[::1", "x", 5));
}

TEST(Units, Format) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(256u << 20), "256 MiB");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
}

}  // namespace
}  // namespace ipsan
