#include "ipsan/base/pattern.h"

#include <gtest/gtest.h>

#include <vector>

namespace ipsan {
namespace {

TEST(Pattern, DeterministicAndDistinct) {
  for (std::size_t bs : {512u, 4096u, 8192u}) {
    std::vector<std::uint8_t> a(bs), b(bs);
    fill_pattern(a, 1, 10, 0);
    fill_pattern(b, 1, 10, 0);
    EXPECT_EQ(a, b);
    EXPECT_TRUE(check_pattern(a, 1, 10, 0));
    EXPECT_FALSE(check_pattern(a, 1, 11, 0));
    EXPECT_FALSE(check_pattern(a, 2, 10, 0));
    EXPECT_FALSE(check_pattern(a, 1, 10, 1));
    a[bs - 1] ^= 1;
    EXPECT_FALSE(check_pattern(a, 1, 10, 0));
  }
}

TEST(Pattern, BlocksMatchSingle) {
  std::vector<std::uint8_t> buf(4 * 512), one(512);
  fill_pattern_blocks(buf, 512, 3, 100, 2);
  for (int i = 0; i < 4; ++i) {
    fill_pattern(one, 3, 100 + i, 2);
    EXPECT_TRUE(std::equal(one.begin(), one.end(), buf.begin() + i * 512));
  }
}

}  // namespace
}  // namespace ipsan
