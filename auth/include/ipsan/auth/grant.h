// ipsan/auth/grant.h: grants (capabilities signed by the storage manager) and their verification.
//
// A grant says: the client holding Ed25519 key `client_key`, logging in as `client_name`, may use
// device `device_id` of the server whose key is `server_key`, read-only or read-write, from
// `issued` until `expires` (Unix seconds); `serial` names it for revocation. The manager signs it
// with its Ed25519 key; a server verifies it offline with the manager's public key, so it serves
// while the manager is down. Binary form (big endian), then a 64-byte Ed25519 signature over all
// bytes before it:
//
//   "IGR1" | u8 version (1) | u8 flags (bit 0 read-only) | u16 0 | u64 serial | u64 issued |
//   u64 expires | u32 device_id | 32 client_key | 32 server_key | u8 name length (1..64) | name
//
// Login with a grant (docs/MANAGER.md): the client sends the grant in LOGIN_FINISH; the login key
// both sides use for the usual HMAC challenge-response and session-key derivation is
// HMAC-SHA256(X25519(client, server), "ipsan-grant-login-v1" || grant). Only the holder of the
// client's private key (or the server's) can compute it, so the proof shows possession of the
// client key; the server's proof shows possession of the server key. The session key is still
// derived per login from the nonces.
//
// Revocation lists ("IRV1" | u64 issued | u32 count | count x u64 serial | signature) are signed by
// the manager and only ever replaced by a newer one.
//
// Threading: GrantVerifier is safe to share between threads (revocations behind a mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/auth/identity.h"
#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"

namespace ipsan::auth {

inline constexpr std::size_t kMaxGrantBytes = 512;
inline constexpr std::size_t kMaxGrantName = 64;
inline constexpr std::uint64_t kClockSkewSeconds = 60;  // issued may be this far in the future

struct Grant {
  std::uint64_t serial = 0;
  std::uint64_t issued = 0;
  std::uint64_t expires = 0;
  std::uint32_t device_id = 0;
  bool read_only = false;
  PublicKey client_key{};
  PublicKey server_key{};
  std::string client_name;
  friend bool operator==(const Grant&, const Grant&) = default;
};

// Signed encoding.
Bytes encode_grant(const Grant& g, const Identity& manager);
// Parses the encoding (no signature check): structure and field ranges only.
Result<Grant, Error> decode_grant(ByteSpan bytes);
// Parses and checks the manager's signature.
Result<Grant, Error> open_grant(ByteSpan bytes, const PublicKey& manager);

struct RevocationList {
  std::uint64_t issued = 0;
  std::vector<std::uint64_t> serials;  // sorted, unique
};
Bytes encode_revocations(const RevocationList& list, const Identity& manager);
Result<RevocationList, Error> open_revocations(ByteSpan bytes, const PublicKey& manager);

// The client's side of a grant login: the login key for `grant` (which must name our key).
Result<Key256, Error> client_login_key(const Identity& client, ByteSpan grant);

using UnixClock = std::function<std::uint64_t()>;  // seconds since 1970
std::uint64_t system_unix_seconds();

struct VerifiedGrant {
  Grant grant;
  Key256 login_key{};
};

class GrantVerifier {
 public:
  GrantVerifier(PublicKey manager, Identity server, UnixClock clock = system_unix_seconds);
  // Checks signature, server, client name, validity period and revocation; the error says which
  // (it is logged and audited by the caller, never sent to the client).
  Result<VerifiedGrant, Error> verify(ByteSpan grant, std::string_view client_name) const;
  // For live sessions: false once the grant expired or was revoked.
  bool still_valid(std::uint64_t serial, std::uint64_t expires) const;
  // Installs a newer signed revocation list; older or equal ones are refused (no rollback).
  Result<void, Error> update_revocations(ByteSpan signed_list);
  std::uint64_t revocations_issued() const;
  std::size_t revoked_count() const;
  std::uint64_t now() const { return clock_(); }
  const PublicKey& manager_key() const { return manager_; }
  const Identity& server_identity() const { return server_; }

 private:
  PublicKey manager_;
  Identity server_;
  UnixClock clock_;
  mutable std::mutex mu_;
  std::set<std::uint64_t> revoked_;
  std::uint64_t revocations_issued_ = 0;
};

}  // namespace ipsan::auth
