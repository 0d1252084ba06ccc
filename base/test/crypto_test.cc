#include "ipsan/base/crypto.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <random>

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

// Fixed tags (computed with libsodium 1.0.18 alone): whichever Poly1305 implementation is built
// in (src/crypto.cc), the per-call MACs on the wire must not change.
TEST(Crypto, AeadMacKnownAnswers) {
  ASSERT_TRUE(crypto_init());
  Key256 k;
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i * 7 + 1);
  Nonce192 n;
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::uint8_t>(0xa0 + i);
  const struct {
    std::size_t len;
    const char* tag;
  } cases[] = {{0, "0e4cab9b4c9e757009e9710626b8396f"},
               {1, "afa94a8034a76a03f5b2c68c360627da"},
               {96, "3f6a1848f52ddeb9aa2c9e636f4a77d9"},
               {4196, "23a2b1fc4a7e06094b8cb6ebd2a1f9cf"},
               {1048700, "46acadb0b7a192293146110a5b75d67c"}};
  for (const auto& c : cases) {
    Bytes m(c.len);
    for (std::size_t i = 0; i < c.len; ++i)
      m[i] = static_cast<std::uint8_t>((i * 131 + 17) ^ (i >> 8));
    const ByteSpan all(m);
    EXPECT_EQ(to_hex(aead_mac(k, n, {all})), c.tag) << c.len;
    const std::size_t cut = c.len / 3;  // as a message minus its MAC field: two parts
    EXPECT_EQ(to_hex(aead_mac(k, n, {all.first(cut), all.subspan(cut)})), c.tag) << c.len;
  }
}

// aead_mac against libsodium's XChaCha20 + Poly1305 computed here, for random keys, nonces,
// lengths and splits into parts (empty parts included).
TEST(Crypto, AeadMacMatchesLibsodiumReference) {
  ASSERT_TRUE(crypto_init());
  std::mt19937_64 rng(8);
  Bytes m(70000);
  for (auto& b : m) b = static_cast<std::uint8_t>(rng());
  for (int i = 0; i < 400; ++i) {
    Key256 k;
    Nonce192 n;
    for (auto& b : k) b = static_cast<std::uint8_t>(rng());
    for (auto& b : n) b = static_cast<std::uint8_t>(rng());
    const std::size_t len = i < 300 ? rng() % 300 : rng() % m.size();
    const std::size_t a = len == 0 ? 0 : rng() % (len + 1);
    const std::size_t b = a + (len - a == 0 ? 0 : rng() % (len - a + 1));
    const ByteSpan all = ByteSpan(m).first(len);
    unsigned char otk[32];
    crypto_stream_xchacha20(otk, sizeof otk, n.data(), k.data());
    Tag128 want;
    crypto_onetimeauth_poly1305(want.data(), all.data(), all.size(), otk);
    EXPECT_EQ(aead_mac(k, n, {all.first(a), all.subspan(a, b - a), all.subspan(b)}), want)
        << "len " << len << " split " << a << "/" << b;
  }
}

// aead_seal/aead_open (OpenSSL's ChaCha20-Poly1305 when linked, else libsodium) against
// libsodium's RFC 8439 implementation, for sizes around the block and packet boundaries.
TEST(Crypto, AeadSealMatchesLibsodiumAndOpenRejectsTampering) {
  ASSERT_TRUE(crypto_init());
  std::mt19937_64 rng(7);
  for (std::size_t n : {0u, 1u, 63u, 64u, 65u, 1393u, 1452u, 4096u}) {
    Key256 key;
    Nonce96 nonce;
    for (auto& b : key) b = static_cast<std::uint8_t>(rng());
    for (auto& b : nonce) b = static_cast<std::uint8_t>(rng());
    std::vector<std::uint8_t> ad(24), plain(n);
    for (auto& b : ad) b = static_cast<std::uint8_t>(rng());
    for (auto& b : plain) b = static_cast<std::uint8_t>(rng());
    std::vector<std::uint8_t> ct = plain;
    const Tag128 tag = aead_seal(key, nonce, ad, ct.data(), n);
    std::vector<std::uint8_t> ref(n), plain_in(plain);
    plain_in.push_back(0);  // never a null pointer for libsodium, also when n == 0
    std::vector<std::uint8_t> ref_out(n + 1);
    Tag128 ref_tag;
    unsigned long long tl = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(ref_out.data(), ref_tag.data(), &tl,
                                                       plain_in.data(), n, ad.data(), ad.size(),
                                                       nullptr, nonce.data(), key.data());
    ref.assign(ref_out.begin(), ref_out.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(ct, ref) << n;
    EXPECT_EQ(tag, ref_tag) << n;
    std::vector<std::uint8_t> back(n + 16);
    ASSERT_TRUE(aead_open(key, nonce, ad, ct.data(), n, back.data(), tag)) << n;
    EXPECT_TRUE(std::equal(plain.begin(), plain.end(), back.begin())) << n;
    Tag128 bad = tag;
    bad[3] ^= 1;
    EXPECT_FALSE(aead_open(key, nonce, ad, ct.data(), n, back.data(), bad)) << n;
    ad[0] ^= 1;
    EXPECT_FALSE(aead_open(key, nonce, ad, ct.data(), n, back.data(), tag)) << n;
  }
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
