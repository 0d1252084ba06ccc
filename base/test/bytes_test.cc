#include "ipsan/base/bytes.h"

#include <gtest/gtest.h>

namespace ipsan {
namespace {

TEST(Bytes, BigEndianRoundTrip) {
  std::uint8_t b[8];
  store_be64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[7], 8);
  EXPECT_EQ(load_be64(b), 0x0102030405060708ull);
  store_be16(b, 0xA1B2);
  EXPECT_EQ(load_be16(b), 0xA1B2);
}

TEST(Bytes, Hex) {
  Bytes out;
  EXPECT_TRUE(from_hex("00 ff 1A", out));
  EXPECT_EQ(to_hex(out), "00ff1a");
  EXPECT_FALSE(from_hex("0", out));
  EXPECT_FALSE(from_hex("0 0", out));
  EXPECT_FALSE(from_hex("zz", out));
}

}  // namespace
}  // namespace ipsan
