// ipsan/proto/login.h: LOGIN_BEGIN / LOGIN_FINISH messages and the login key derivations.
//
// Mutual challenge-response over a pre-shared 32-byte client key (docs/PROTOCOL.md "Login"):
//   client -> LOGIN_BEGIN {client_name, client_nonce}
//   server <- {server_nonce, boot_epoch}
//   client -> LOGIN_FINISH {client_name, client_nonce, server_nonce, client_proof}
//   server <- {session_id, boot_epoch, slot_count, max_request_bytes, server_proof}
// Both sides then MAC every message with session_key (rpc.h). All three values are HMAC-SHA-256
// under the client key over: a label, the client name, both nonces (and the session id for the
// server proof and the session key). The label and the name enter the HMAC length-prefixed (4-byte
// big-endian length, then the bytes; like an XDR string without padding) so that no two different
// inputs concatenate to the same bytes; nonces are fixed size, the session id is 8 bytes
// big-endian. The distinct labels keep the three outputs independent.
//
// Pure functions, no shared state: callable from any thread (after ipsan::crypto_init()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/errc.h"
#include "ipsan/base/result.h"

namespace ipsan::proto {

inline constexpr std::size_t kMaxClientName = 64;
inline constexpr std::size_t kLoginNonceBytes = 16;
inline constexpr std::size_t kProofBytes = 32;
// Upper bound on slot_count a client accepts (it allocates per-slot state).
inline constexpr std::uint32_t kMaxSlots = 1024;
// A storage-manager grant presented at LOGIN_FINISH (ipsan/auth/grant.h; opaque to proto).
inline constexpr std::size_t kMaxLoginGrantBytes = 512;

using LoginNonce = std::array<std::uint8_t, kLoginNonceBytes>;

// Transport security a client asks for (docs/PROTOCOL.md "Login"): 0 off, 1 integrity (every
// reliable-UDP packet MAC'd), 2 encrypted (AEAD). The server refuses an offer below its minimum
// with kNotSupported.
inline constexpr std::uint32_t kTransportSecurityMax = 2;

struct LoginBeginArgs {
  std::string client_name;  // 1..64 printable ASCII characters (0x20-0x7e)
  LoginNonce client_nonce{};
  std::uint32_t transport_security = 1;  // optional on the wire (absent: 0, an older client)
};

struct LoginBeginRes {
  Errc status = Errc::kOk;  // the fields below only when kOk
  LoginNonce server_nonce{};
  std::uint32_t boot_epoch = 0;
};

struct LoginFinishArgs {
  std::string client_name;
  LoginNonce client_nonce{};
  LoginNonce server_nonce{};
  Digest256 proof{};  // login_client_proof(...)
  std::uint32_t transport_security = 1;  // as in LOGIN_BEGIN (optional on the wire: absent = 0)
  // Optional (after transport_security; absent or empty = none): a manager grant. With a grant the
  // login key is the one derived from it (docs/MANAGER.md), not the key ring's.
  Bytes grant{};
};

struct LoginFinishRes {
  Errc status = Errc::kOk;  // the fields below only when kOk
  std::uint64_t session_id = 0;
  std::uint32_t boot_epoch = 0;
  std::uint32_t slot_count = 0;         // 1..kMaxSlots
  std::uint32_t max_request_bytes = 0;  // largest call message the server accepts; > 0
  Digest256 server_proof{};             // login_server_proof(...)
};

// True if `name` is 1..kMaxClientName printable ASCII characters.
bool valid_client_name(std::string_view name);

// Client side. Precondition: valid_client_name(args.client_name) (else the server rejects the
// call with GARBAGE_ARGS).
Bytes encode_login_begin_call(std::uint32_t xid, const LoginBeginArgs& args);
Bytes encode_login_finish_call(std::uint32_t xid, const LoginFinishArgs& args);
// Decode the `results` of a successful reply (ParsedReply::results). A non-kOk status decodes to a
// Res with only `status` set.
Result<LoginBeginRes> decode_login_begin_res(ByteSpan results);
Result<LoginFinishRes> decode_login_finish_res(ByteSpan results);

// Server side: decode ParsedCall::args (kBadMessage / kTooLarge -> reply GARBAGE_ARGS).
Result<LoginBeginArgs> decode_login_begin_args(ByteSpan args);
Result<LoginFinishArgs> decode_login_finish_args(ByteSpan args);
// Accepted SUCCESS replies with AUTH_NONE verifiers; only `status` is sent unless it is kOk.
Bytes encode_login_begin_reply(std::uint32_t xid, const LoginBeginRes& res);
Bytes encode_login_finish_reply(std::uint32_t xid, const LoginFinishRes& res);

// Derivations (see the header comment for the exact HMAC input).
//   client_proof = HMAC(key, "ipsan-login-v1 client", name, client_nonce, server_nonce)
//   server_proof = HMAC(key, "ipsan-login-v1 server", name, client_nonce, server_nonce, session_id)
//   session_key  = HMAC(key, "ipsan-session-v1",      name, client_nonce, server_nonce, session_id)
Digest256 login_client_proof(const Key256& client_key, std::string_view client_name,
                             const LoginNonce& client_nonce, const LoginNonce& server_nonce);
Digest256 login_server_proof(const Key256& client_key, std::string_view client_name,
                             const LoginNonce& client_nonce, const LoginNonce& server_nonce,
                             std::uint64_t session_id);
Key256 derive_session_key(const Key256& client_key, std::string_view client_name,
                          const LoginNonce& client_nonce, const LoginNonce& server_nonce,
                          std::uint64_t session_id);
// Constant-time comparison of two proofs.
bool proof_equal(const Digest256& a, const Digest256& b);

}  // namespace ipsan::proto
