#include "ipsan/base/crypto.h"

#include <sodium.h>

#include <cstring>
#include <vector>

#include "ipsan/base/bytes.h"

namespace ipsan {

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
  crypto_onetimeauth_poly1305_state st;
  crypto_onetimeauth_poly1305_init(&st, otk);
  for (auto p : parts) crypto_onetimeauth_poly1305_update(&st, p.data(), p.size());
  Tag128 tag;
  static_assert(crypto_onetimeauth_poly1305_BYTES == 16);
  crypto_onetimeauth_poly1305_final(&st, tag.data());
  sodium_memzero(otk, sizeof otk);
  return tag;
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept {
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
