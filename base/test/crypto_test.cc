#include "ipsan/base/crypto.h"

#include <gtest/gtest.h>

#include "ipsan/base/bytes.h"

namespace ipsan {
namespace {

TEST(Crypto, HmacSha256Rfc4231Case2) {
  ASSERT_TRUE(crypto_init());
  auto d = hmac_sha256(as_bytes("Jefe"), {as_bytes("what do ya want "), as_bytes("for nothing?")});
  EXPECT_EQ(to_hex(d), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, AeadMacDependsOnKeyNonceAndEveryByte) {
  ASSERT_TRUE(crypto_init());
  Key256 k{};
  k[0] = 1;
  Nonce192 n{};
  auto t1 = aead_mac(k, n, {as_bytes("hello"), as_bytes(" world")});
  auto t2 = aead_mac(k, n, {as_bytes("hello world")});
  EXPECT_EQ(t1, t2);  // parts are concatenated
  auto t3 = aead_mac(k, n, {as_bytes("hello worle")});
  EXPECT_NE(t1, t3);
  n[23] = 1;
  EXPECT_NE(t1, aead_mac(k, n, {as_bytes("hello world")}));
  n[23] = 0;
  k[31] = 9;
  EXPECT_NE(t1, aead_mac(k, n, {as_bytes("hello world")}));
}

TEST(Crypto, ParseKey) {
  Key256 k;
  EXPECT_FALSE(parse_key("", k));
  ASSERT_TRUE(parse_key(std::string(64, 'a'), k));
  EXPECT_EQ(k[0], 0xaa);
  ASSERT_TRUE(parse_key("passphrase", k));
  Key256 k2;
  ASSERT_TRUE(parse_key("passphrase", k2));
  EXPECT_EQ(k, k2);
  EXPECT_TRUE(constant_time_equal(k, k2));
  k2[5] ^= 1;
  EXPECT_FALSE(constant_time_equal(k, k2));
}

}  // namespace
}  // namespace ipsan
