// Tests of XdrWriter / XdrReader (RFC 4506 encoding, hostile-input decoding).
#include "ipsan/proto/xdr.h"

#include <gtest/gtest.h>

#include <limits>

namespace ipsan::proto {
namespace {

Bytes hex(std::string_view h) {
  Bytes out;
  EXPECT_TRUE(from_hex(h, out)) << h;
  return out;
}

TEST(Xdr, IntegersAreBigEndian) {
  XdrWriter w;
  w.put_u32(0x01020304);
  w.put_i32(-2);
  w.put_u64(0x0102030405060708ull);
  w.put_bool(true);
  w.put_bool(false);
  EXPECT_EQ(to_hex(w.bytes()), "01020304fffffffe01020304050607080000000100000000");
  XdrReader r(w.bytes());
  EXPECT_EQ(*r.get_u32(), 0x01020304u);
  EXPECT_EQ(*r.get_i32(), -2);
  EXPECT_EQ(*r.get_u64(), 0x0102030405060708ull);
  EXPECT_TRUE(*r.get_bool());
  EXPECT_FALSE(*r.get_bool());
  EXPECT_TRUE(r.expect_end());
  EXPECT_FALSE(r.get_u32());
}

TEST(Xdr, OpaqueAndStringPadWithZeroes) {
  const Bytes five = {1, 2, 3, 4, 5};
  XdrWriter w;
  w.put_opaque(five);
  w.put_string("ab");
  w.put_opaque_fixed(ByteSpan(five).first(3));
  w.put_opaque({});
  EXPECT_EQ(to_hex(w.bytes()), "00000005010203040500000000000002616200000102030000000000");
  EXPECT_EQ(w.size(), 4 + 8 + 4 + 4 + 4 + 4u);
  XdrReader r(w.bytes());
  auto o = r.get_opaque(5);
  ASSERT_TRUE(o);
  EXPECT_EQ(Bytes(o->begin(), o->end()), five);
  EXPECT_EQ(o->data(), w.bytes().data() + 4);  // a view, not a copy
  EXPECT_EQ(*r.get_string(2), "ab");
  auto f = r.get_opaque_fixed(3);
  ASSERT_TRUE(f);
  EXPECT_EQ((Bytes{f->begin(), f->end()}), (Bytes{1, 2, 3}));
  auto e = r.get_opaque(0);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->empty());
  EXPECT_TRUE(r.expect_end());
}

TEST(Xdr, RejectsNonZeroPadding) {
  for (int pad_byte = 1; pad_byte <= 3; ++pad_byte) {
    Bytes b = hex("000000050102030405000000");
    b[8 + static_cast<std::size_t>(pad_byte)] = 0x80;
    XdrReader r(b);
    auto o = r.get_opaque(100);
    EXPECT_FALSE(o) << pad_byte;
    EXPECT_EQ(o.error(), Errc::kBadMessage);
    EXPECT_EQ(r.offset(), 0u);  // a failed read does not advance
  }
  Bytes fixed = hex("aabbcc01");
  XdrReader r(fixed);
  EXPECT_FALSE(r.get_opaque_fixed(3));
}

TEST(Xdr, RejectsBadBool) {
  const Bytes b = hex("00000002");
  XdrReader r(b);
  EXPECT_FALSE(r.get_bool());
}

TEST(Xdr, LengthsAboveMaxOrRemainingFail) {
  const Bytes over_in = hex("0000000501020304050000");
  XdrReader over(over_in);
  auto o = over.get_opaque(4);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error(), Errc::kTooLarge);
  // Lengths near 2^32 must neither overflow nor read out of bounds.
  for (std::uint32_t len : {0xffffffffu, 0xfffffffeu, 0xfffffffdu, 0xfffffffcu, 0x80000000u, 9u}) {
    Bytes b(4 + 8, 0);
    store_be32(b.data(), len);
    XdrReader r(b);
    EXPECT_FALSE(r.get_opaque(std::numeric_limits<std::size_t>::max())) << len;
    XdrReader r2(b);
    EXPECT_FALSE(r2.get_string(std::numeric_limits<std::size_t>::max())) << len;
    XdrReader r3(ByteSpan(b).subspan(4));
    EXPECT_FALSE(r3.get_opaque_fixed(len)) << len;
  }
  // Missing padding after an exactly-present body.
  const Bytes nopad_in = hex("000000050102030405");
  XdrReader nopad(nopad_in);
  EXPECT_FALSE(nopad.get_opaque(10));
}

TEST(Xdr, StringRejectsNul) {
  const Bytes r_in = hex("0000000361006200");
  XdrReader r(r_in);
  EXPECT_FALSE(r.get_string(10));
}

TEST(Xdr, TruncationAtEveryOffsetFails) {
  XdrWriter w;
  w.put_u32(7);
  w.put_u64(9);
  w.put_string("hello");
  w.put_opaque_fixed(Bytes{1, 2, 3, 4, 5, 6});
  const Bytes full = w.release();
  for (std::size_t n = 0; n < full.size(); ++n) {
    XdrReader r(ByteSpan(full).first(n));
    const bool ok = r.get_u32() && r.get_u64() && r.get_string(16) && r.get_opaque_fixed(6);
    EXPECT_FALSE(ok) << "prefix " << n;
  }
  XdrReader r(full);
  EXPECT_TRUE(r.get_u32() && r.get_u64() && r.get_string(16) && r.get_opaque_fixed(6));
  EXPECT_TRUE(r.expect_end());
}

TEST(Xdr, TrailingBytesFailExpectEnd) {
  const Bytes r_in = hex("0000000100");
  XdrReader r(r_in);
  EXPECT_TRUE(r.get_u32());
  EXPECT_EQ(r.remaining(), 1u);
  EXPECT_FALSE(r.expect_end());
}

TEST(Xdr, OpaqueSpaceIsFilledInPlace) {
  XdrWriter w;
  w.put_u32(1);
  std::size_t off = 0;
  MutableByteSpan space = w.put_opaque_space(5, &off);
  EXPECT_EQ(off, 8u);
  ASSERT_EQ(space.size(), 5u);
  for (std::size_t i = 0; i < space.size(); ++i) space[i] = static_cast<std::uint8_t>(0xa0 + i);
  EXPECT_EQ(to_hex(w.bytes()), "0000000100000005a0a1a2a3a4000000");
  // After growth the span must be re-derived from the offset.
  w.put_u32(2);
  w.span(off, 5)[0] = 0xff;
  EXPECT_EQ(to_hex(w.bytes()), "0000000100000005ffa1a2a3a400000000000002");
  EXPECT_EQ(xdr_opaque_size(5), 12u);
  EXPECT_EQ(xdr_pad(4), 0u);
  EXPECT_EQ(xdr_pad(1), 3u);
}

}  // namespace
}  // namespace ipsan::proto
