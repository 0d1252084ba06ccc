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

namespace {
unsigned char kEmpty = 0;  // libsodium declares the (empty) message pointers nonnull
}  // namespace

Tag128 aead_mac(const Key256& key, const Nonce192& nonce,
                std::initializer_list<std::span<const std::uint8_t>> parts) noexcept {
  static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == 16);
  Tag128 tag{};
  if (parts.size() == 1) {
    auto p = *parts.begin();
    unsigned long long taglen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(&kEmpty, tag.data(), &taglen, &kEmpty, 0,
                                                        p.data(), p.size(), nullptr, nonce.data(),
                                                        key.data());
    return tag;
  }
  // libsodium's AEAD takes one associated-data buffer; join the parts.
  std::size_t total = 0;
  for (auto p : parts) total += p.size();
  std::vector<std::uint8_t> joined;
  joined.reserve(total);
  for (auto p : parts) joined.insert(joined.end(), p.begin(), p.end());
  unsigned long long taglen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(&kEmpty, tag.data(), &taglen, &kEmpty, 0,
                                                      joined.data(), joined.size(), nullptr,
                                                      nonce.data(), key.data());
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
