#include "ipsan/base/units.h"

#include <gtest/gtest.h>

namespace ipsan {
namespace {

TEST(Units, Sizes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("64K"), 65536u);
  EXPECT_EQ(*parse_size("256M"), 256u << 20);
  EXPECT_EQ(*parse_size("1GiB"), 1u << 30);
  EXPECT_EQ(*parse_size("1.5k"), 1536u);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("M"));
  EXPECT_FALSE(parse_size("12Q"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("0.3"));
  EXPECT_FALSE(parse_size("99999999999P"));
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
