// ipsan/auth/signed_call.h: the storage manager's API transport: signed JSON lines over TCP.
//
// Every request is one line `{"body": "<JSON text>", "key": "<public key hex>", "sig": "<hex>"}`:
// the body (which carries "op", "ts" in Unix seconds and a random "nonce") signed with the
// caller's Ed25519 key. The manager accepts a request only from a key it knows for the role the op
// needs, with "ts" within kRequestWindowSeconds of its clock and a nonce it has not seen in that
// window (a replayed registration or command is refused). The answer is one line
// `{"body": "<JSON text>", "sig": "<hex>"}` signed by the manager, whose body echoes the request's
// nonce as "re": a caller that knows the manager's public key checks both, so neither a forged
// nor a replayed answer is believed. docs/MANAGER.md "API".
// Threading: free functions; manager_call blocks (bounded by its timeout).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ipsan/auth/identity.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"

namespace ipsan::auth {

inline constexpr std::uint64_t kRequestWindowSeconds = 120;
inline constexpr std::size_t kMaxLineBytes = 1u << 20;

// Adds "ts" and "nonce" to `body` and signs it.
nlohmann::json sign_request(const Identity& caller, nlohmann::json body, std::uint64_t now);

struct OpenedRequest {
  PublicKey key{};
  nlohmann::json body;
  std::string nonce;
  std::uint64_t ts = 0;
};
// Checks the envelope's shape and signature and the time window (not the nonce's freshness: the
// manager remembers nonces).
Result<OpenedRequest, Error> open_request(const nlohmann::json& envelope, std::uint64_t now);

// The manager's signed answer to the request with `nonce`.
nlohmann::json sign_response(const Identity& manager, nlohmann::json body, const std::string& nonce);
Result<nlohmann::json, Error> open_response(const nlohmann::json& envelope,
                                            const PublicKey& manager, const std::string& nonce);

// Sends one signed request to the manager at host:port and returns the answer's body (verified
// with `manager` when it is given; an unverified answer is accepted only without it, e.g. by
// `ipsan manager` subcommands that print what they got). Errors: cannot connect, timeout, bad
// answer, or {"ok": false, "error": ...} turned into its message.
Result<nlohmann::json, Error> manager_call(const std::string& address, const Identity& caller,
                                           nlohmann::json body, const PublicKey* manager,
                                           Duration timeout = std::chrono::seconds(30));

}  // namespace ipsan::auth
