// ipsan/auth/identity.h: Ed25519 identities of clients, servers, administrators and the manager.
//
// Every party of a managed installation holds an Ed25519 key pair (libsodium). The private key
// lives in a file of mode 0600 (`ipsan key gen`), one line `ipsan-ed25519-v1 <64 hex digits of
// the 32-byte seed>`; the public key is written as 64 hex digits and is what the manager
// registers. Besides signing, a key pair converts to X25519 for the grant login (grant.h).
// Threading: values; every function is thread-safe after crypto_init().
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"

namespace ipsan::auth {

using PublicKey = std::array<std::uint8_t, 32>;
using Signature = std::array<std::uint8_t, 64>;

struct Identity {
  PublicKey public_key{};
  std::array<std::uint8_t, 64> secret_key{};  // libsodium's seed || public key
};

Identity generate_identity();
Identity identity_from_seed(const std::array<std::uint8_t, 32>& seed);

// Writes the private key file (created 0600, refused if it exists unless `overwrite`).
Result<void, Error> write_identity_file(const std::filesystem::path& path, const Identity& id,
                                        bool overwrite = false);
// Reads a private key file; refuses group/other-accessible files as ssh does.
Result<Identity, Error> read_identity_file(const std::filesystem::path& path);
// The text form of a private key file (exposed for tests).
Result<Identity, Error> parse_identity_text(std::string_view text);

std::string public_key_hex(const PublicKey& pk);
// 64 hex digits -> public key (a clear error otherwise).
Result<PublicKey, Error> parse_public_key(std::string_view text);
// A public key given as 64 hex digits or as a file holding them (first word), e.g. the output of
// `ipsan key gen` saved to a file, or a private key file (its public half).
Result<PublicKey, Error> load_public_key(std::string_view text_or_path);

Signature sign(const Identity& id, ByteSpan message);
bool verify_signature(const PublicKey& pk, ByteSpan message, const Signature& sig);

// X25519 shared secret between `self` and the holder of `peer` (both Ed25519, converted). Fails
// for a low-order or otherwise invalid peer key.
Result<std::array<std::uint8_t, 32>, Error> shared_secret(const Identity& self,
                                                          const PublicKey& peer);

}  // namespace ipsan::auth
