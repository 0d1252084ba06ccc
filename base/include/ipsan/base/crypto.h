// ipsan/base/crypto.h: the few cryptographic primitives ipsan uses, all from libsodium.
//
// Why libsodium: a well-kept, audited library with constant-time primitives and a small API; it
// also gives the Ed25519 signatures and AEAD encryption the storage manager will need. ipsan uses:
//  - HMAC-SHA-256 for LOGIN challenge-response and session-key derivation;
//  - Poly1305 keyed per message from XChaCha20 (the MAC half of XChaCha20-Poly1305) over each RPC
//    message: the 24-byte nonce is built from (direction, slot, sequence), which never repeats
//    under one session key. Poly1305 runs at several GB/s and streams over several parts without
//    copying, so a MAC on every 1 MiB WRITE costs little; the same keys encrypt when AEAD
//    encryption is enabled later.
// All functions are thread-safe after crypto_init().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ipsan {

using Key256 = std::array<std::uint8_t, 32>;
using Digest256 = std::array<std::uint8_t, 32>;
using Tag128 = std::array<std::uint8_t, 16>;
using Nonce192 = std::array<std::uint8_t, 24>;

// Initialises libsodium; safe to call repeatedly. Returns false if the library cannot start.
bool crypto_init() noexcept;

// HMAC-SHA-256 over the concatenation of `parts`.
Digest256 hmac_sha256(std::span<const std::uint8_t> key,
                      std::initializer_list<std::span<const std::uint8_t>> parts) noexcept;

// Poly1305 tag over the concatenation of `parts`, one-time key = XChaCha20(key, nonce) bytes 0..31.
// A (key, nonce) pair must never MAC two different messages.
Tag128 aead_mac(const Key256& key, const Nonce192& nonce,
                std::initializer_list<std::span<const std::uint8_t>> parts) noexcept;

// ChaCha20-Poly1305 (IETF, RFC 8439) with a 96-bit nonce, detached tag: encrypts `n` bytes at
// `inout` in place and returns the tag over `ad` and the ciphertext. A (key, nonce) pair must
// never be used twice.
using Nonce96 = std::array<std::uint8_t, 12>;
Tag128 aead_seal(const Key256& key, const Nonce96& nonce, std::span<const std::uint8_t> ad,
                 std::uint8_t* inout, std::size_t n) noexcept;
// Verifies `tag` and decrypts `n` bytes from `in` to `out` (may be equal); false (and `out`
// unspecified) on a bad tag.
bool aead_open(const Key256& key, const Nonce96& nonce, std::span<const std::uint8_t> ad,
               const std::uint8_t* in, std::size_t n, std::uint8_t* out,
               const Tag128& tag) noexcept;

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

void random_bytes(std::span<std::uint8_t> out) noexcept;
std::uint64_t random_u64() noexcept;

// A fixed key from a label for tests and in-process fixtures: 64 hex digits, or else one SHA-256
// of the text. Not for keys people type: those go through parse_key_text (ipsan/base/key.h:
// strict hex, or an Argon2id passphrase with a minimum length). Empty input returns false.
bool parse_key(std::string_view text, Key256& out) noexcept;

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace ipsan
