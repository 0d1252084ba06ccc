#include "ipsan/base/crypto.h"

#include <sodium.h>

#include <cstring>
#include <vector>

#include "ipsan/base/bytes.h"

#if IPSAN_HAVE_OPENSSL_POLY1305
#include <openssl/evp.h>
#endif

namespace ipsan {
namespace {

#if IPSAN_HAVE_OPENSSL_POLY1305
// Poly1305 itself comes from OpenSSL when it is there (base/CMakeLists.txt): its assembly has
// AVX2 and AVX-512 IFMA paths and runs 2.5-4x faster than libsodium 1.0.18's SSE2 code from
// 1 KiB up (a 4 KiB READ reply: ~1.4 us -> ~0.5 us); libsodium keeps messages under 256 bytes.
// Poly1305 is a deterministic function of (one-time key, message), so the tags are identical
// (base/test/crypto_test.cc checks both against each other and against fixed values). One
// context per thread, re-keyed for every message (it holds only the last one-time key, which
// authenticates nothing else); libsodium is the fallback if anything fails.
struct Poly1305Context {
  EVP_MAC_CTX* ctx = nullptr;
  Poly1305Context() {
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "POLY1305", nullptr);
    if (mac != nullptr) ctx = EVP_MAC_CTX_new(mac);
  }
  ~Poly1305Context() { EVP_MAC_CTX_free(ctx); }
  Poly1305Context(const Poly1305Context&) = delete;
  Poly1305Context& operator=(const Poly1305Context&) = delete;
};

// Below this, OpenSSL's per-message set-up costs more than its faster blocks save.
constexpr std::size_t kOpenSslMinBytes = 256;

bool openssl_poly1305(const unsigned char* otk,
                      std::initializer_list<std::span<const std::uint8_t>> parts, Tag128& tag) {
  std::size_t total = 0;
  for (auto p : parts) total += p.size();
  if (total < kOpenSslMinBytes) return false;
  thread_local Poly1305Context c;
  if (c.ctx == nullptr || EVP_MAC_init(c.ctx, otk, 32, nullptr) != 1) return false;
  for (auto p : parts) {
    if (!p.empty() && EVP_MAC_update(c.ctx, p.data(), p.size()) != 1) return false;
  }
  std::size_t len = 0;
  return EVP_MAC_final(c.ctx, tag.data(), &len, tag.size()) == 1 && len == tag.size();
}
#endif

}  // namespace

bool crypto_init() noexcept {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

Digest256 hmac_sha256(std::span<const std::uint8_t> key,
                      std::initializer_list<std::span<const std::uint8_t>> parts) noexcept {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  for (auto p : parts) crypto_auth_hmacsha256_update(&st, p.data(), p.size());
  Digest256 out;
  crypto_auth_hmacsha256_final(&st, out.data());
  return out;
}

Tag128 aead_mac(const Key256& key, const Nonce192& nonce,
                std::initializer_list<std::span<const std::uint8_t>> parts) noexcept {
  // The Poly1305 half of XChaCha20-Poly1305: a one-time Poly1305 key is the first 32 bytes of the
  // XChaCha20 keystream for (key, nonce); the tag is Poly1305 over the parts, streamed (no copy).
  unsigned char otk[crypto_onetimeauth_poly1305_KEYBYTES];
  static_assert(sizeof otk == 32);
  crypto_stream_xchacha20(otk, sizeof otk, nonce.data(), key.data());
  Tag128 tag;
#if IPSAN_HAVE_OPENSSL_POLY1305
  if (openssl_poly1305(otk, parts, tag)) {
    sodium_memzero(otk, sizeof otk);
    return tag;
  }
#endif
  crypto_onetimeauth_poly1305_state st;
  crypto_onetimeauth_poly1305_init(&st, otk);
  for (auto p : parts) crypto_onetimeauth_poly1305_update(&st, p.data(), p.size());
  static_assert(crypto_onetimeauth_poly1305_BYTES == 16);
  crypto_onetimeauth_poly1305_final(&st, tag.data());
  sodium_memzero(otk, sizeof otk);
  return tag;
}

#if IPSAN_HAVE_OPENSSL_POLY1305
namespace {

// ChaCha20-Poly1305 from OpenSSL when it is there: its AVX2/AVX-512 code sealed a 1452-byte
// packet in ~8 us against libsodium 1.0.18's 13-37 us on the shared test VM (noisy, load ~19;
// bench/RESULTS.md "Transport security"). Same algorithm (RFC 8439), so both ends interoperate
// whichever library each uses. One context per thread; libsodium is the fallback on any error.
struct AeadContext {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~AeadContext() { EVP_CIPHER_CTX_free(ctx); }
  AeadContext() = default;
  AeadContext(const AeadContext&) = delete;
  AeadContext& operator=(const AeadContext&) = delete;
};

// 1: done (sealed / tag verified), 0: bad tag (open), -1: OpenSSL could not run (fall back).
int openssl_aead(bool seal, const Key256& key, const Nonce96& nonce,
                 std::span<const std::uint8_t> ad, const std::uint8_t* in, std::size_t n,
                 std::uint8_t* out, Tag128& tag) {
  if (n > 0x7fffffff || ad.size() > 0x7fffffff) return -1;
  thread_local AeadContext c;
  if (c.ctx == nullptr) return -1;
  int len = 0;
  if (EVP_CipherInit_ex(c.ctx, EVP_chacha20_poly1305(), nullptr, key.data(), nonce.data(),
                        seal ? 1 : 0) != 1) {
    return -1;
  }
  if (!ad.empty() &&
      EVP_CipherUpdate(c.ctx, nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1) {
    return -1;
  }
  if (n > 0 && EVP_CipherUpdate(c.ctx, out, &len, in, static_cast<int>(n)) != 1) return -1;
  if (!seal && EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag.data()) != 1) return -1;
  if (EVP_CipherFinal_ex(c.ctx, out + n, &len) != 1) return seal ? -1 : 0;
  if (seal && EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag.data()) != 1) return -1;
  return 1;
}

}  // namespace
#endif

Tag128 aead_seal(const Key256& key, const Nonce96& nonce, std::span<const std::uint8_t> ad,
                 std::uint8_t* inout, std::size_t n) noexcept {
  static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12);
  Tag128 tag;
#if IPSAN_HAVE_OPENSSL_POLY1305
  if (openssl_aead(true, key, nonce, ad, inout, n, inout, tag) == 1) return tag;
#endif
  unsigned long long tag_len = 0;
  std::uint8_t empty = 0;  // libsodium's pointers are declared non-null, even for 0 bytes
  if (n == 0) inout = &empty;
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(inout, tag.data(), &tag_len, inout, n,
                                                     ad.data(), ad.size(), nullptr, nonce.data(),
                                                     key.data());
  return tag;
}

bool aead_open(const Key256& key, const Nonce96& nonce, std::span<const std::uint8_t> ad,
               const std::uint8_t* in, std::size_t n, std::uint8_t* out,
               const Tag128& tag) noexcept {
#if IPSAN_HAVE_OPENSSL_POLY1305
  {
    // OpenSSL reports a bad tag only at EVP_CipherFinal_ex, after writing the plaintext: the
    // caller must not use `out` on false (crypto.h). A set-up error falls back to libsodium.
    Tag128 t = tag;
    const int r = openssl_aead(false, key, nonce, ad, in, n, out, t);
    if (r >= 0) return r == 1;
  }
#endif
  std::uint8_t empty = 0;  // libsodium's pointers are declared non-null, even for 0 bytes
  if (n == 0) {
    in = &empty;
    out = &empty;
  }
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(
             out, nullptr, in, n, tag.data(), ad.data(), ad.size(), nonce.data(), key.data()) == 0;
}

bool constant_time_equal(std::span<const std::uint8_t> a,
                         std::span<const std::uint8_t> b) noexcept {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void random_bytes(std::span<std::uint8_t> out) noexcept {
  crypto_init();
  randombytes_buf(out.data(), out.size());
}

std::uint64_t random_u64() noexcept {
  std::uint64_t v;
  random_bytes({reinterpret_cast<std::uint8_t*>(&v), sizeof v});
  return v;
}

bool parse_key(std::string_view text, Key256& out) noexcept {
  if (text.empty()) return false;
  Bytes raw;
  if (text.size() == 64 && from_hex(text, raw) && raw.size() == 32) {
    std::memcpy(out.data(), raw.data(), 32);
    return true;
  }
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(text.data()), text.size());
  return true;
}

}  // namespace ipsan
