// ipsan/proto/rpc.h: ONC-RPC version 2 (RFC 5531) message framing for the ipsan program.
//
// Calls and replies are XDR. Login procedures and NULL use AUTH_NONE; every other call carries the
// private credential flavor kAuthIpsan ("IPS1") whose body names the session, the slot and the
// slot sequence number, and whose verifier is a 16-byte Poly1305 MAC over the whole message (the
// MAC bytes themselves excluded). Replies to such calls carry a MAC verifier of the same flavor.
// See docs/PROTOCOL.md for the byte layout and the reasons behind it.
//
// Parsers treat their input as hostile; they return views (ByteSpan) into the message they were
// given, so the message must outlive the parsed struct. Pure functions, no shared state: callable
// from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"
#include "ipsan/proto/generic.h"
#include "ipsan/proto/xdr.h"

namespace ipsan::proto {

inline constexpr std::uint32_t kRpcVersion = 2;
inline constexpr std::uint32_t kProgram = 0x20495341;  // user-defined range 0x20000000-0x3fffffff
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint32_t kMaxAuthBody = 400;  // RFC 5531 opaque_auth body<400>

// Credential / verifier flavors.
inline constexpr std::uint32_t kAuthNone = 0;
// Private flavor "IPS1". RFC 5531 leaves flavor numbers to IANA; ipsan is a closed program number
// in the user-defined range, so a private, self-describing number is enough and collides with
// nothing registered (registered flavors are small numbers and 390000-390255 for RPCSEC_GSS).
inline constexpr std::uint32_t kAuthIpsan = 0x49505331;
inline constexpr std::size_t kIpsanCredBodyBytes = 20;  // session_id u64, slot u32, seq u64
inline constexpr std::size_t kMacBytes = 16;

enum class MsgType : std::uint32_t { kCall = 0, kReply = 1 };
enum class ReplyStat : std::uint32_t { kAccepted = 0, kDenied = 1 };
enum class AcceptStat : std::uint32_t {
  kSuccess = 0,
  kProgUnavail = 1,
  kProgMismatch = 2,
  kProcUnavail = 3,
  kGarbageArgs = 4,
  kSystemErr = 5,
};
enum class RejectStat : std::uint32_t { kRpcMismatch = 0, kAuthError = 1 };
enum class AuthStat : std::uint32_t {
  kOk = 0,
  kBadCred = 1,       // malformed credential or unsupported flavor
  kRejectedCred = 2,  // unknown or stale session: the client must log in again
  kBadVerf = 3,       // MAC did not verify
  kRejectedVerf = 4,
  kTooWeak = 5,  // device op or LOGOUT without the ipsan credential
};

// Session, slot and slot sequence number carried by the kAuthIpsan credential.
struct SlotCred {
  std::uint64_t session_id = 0;
  std::uint32_t slot = 0;
  std::uint64_t seq = 0;
};

// MAC nonce: direction ('C' 0x43 for calls, 'R' 0x52 for replies), 7 zero bytes, slot as 8 bytes
// big-endian, seq as 8 bytes big-endian. Unique per message under one session key because a
// (slot, seq) pair is used by exactly one call and its reply.
inline constexpr std::uint8_t kDirCall = 0x43;
inline constexpr std::uint8_t kDirReply = 0x52;
Nonce192 mac_nonce(std::uint8_t direction, std::uint32_t slot, std::uint64_t seq);

// What the server must answer to a call it cannot accept (see encode_reject).
enum class RejectKind : std::uint8_t {
  kDrop,          // not a parsable call (no xid, or not a CALL): send nothing (RFC 5531)
  kRpcMismatch,   // MSG_DENIED / RPC_MISMATCH (low = high = 2)
  kAuthError,     // MSG_DENIED / AUTH_ERROR with auth_stat
  kProgUnavail,   // MSG_ACCEPTED / PROG_UNAVAIL
  kProgMismatch,  // MSG_ACCEPTED / PROG_MISMATCH (low = high = kVersion)
  kProcUnavail,   // MSG_ACCEPTED / PROC_UNAVAIL
  kGarbageArgs,   // MSG_ACCEPTED / GARBAGE_ARGS
  kSystemErr,     // MSG_ACCEPTED / SYSTEM_ERR
};

struct RpcReject {
  RejectKind kind = RejectKind::kDrop;
  std::uint32_t xid = 0;               // valid unless kind == kDrop
  AuthStat auth_stat = AuthStat::kOk;  // for kAuthError
};

// E.g. encode_reject(make_reject(RejectKind::kAuthError, call.xid, AuthStat::kRejectedCred)).
inline RpcReject make_reject(RejectKind kind, std::uint32_t xid, AuthStat auth = AuthStat::kOk) {
  return RpcReject{kind, xid, auth};
}

// A call whose header parsed and whose flavor fits its procedure (policy checked by parse_call):
//  - proc is a known Op of program kProgram version kVersion;
//  - NULL: AUTH_NONE or kAuthIpsan; LOGIN_BEGIN/LOGIN_FINISH: AUTH_NONE only;
//  - LOGOUT and device ops: kAuthIpsan only (else AUTH_TOOWEAK).
// With flavor == kAuthIpsan, `cred` and `mac` are set and covered_before/covered_after are the
// message minus the 16 MAC bytes; the server still has to look the session up (unknown ->
// AUTH_REJECTEDCRED) and call verify_call (false -> AUTH_BADVERF).
struct ParsedCall {
  std::uint32_t xid = 0;
  std::uint32_t proc = 0;
  Op op = Op::kNull;  // == static_cast<Op>(proc)
  std::uint32_t flavor = kAuthNone;
  SlotCred cred;
  Tag128 mac{};
  ByteSpan covered_before;
  ByteSpan covered_after;
  ByteSpan args;  // XDR arguments, undecoded (see codec.h / login.h)
};

Result<ParsedCall, RpcReject> parse_call(ByteSpan msg);
// The result views `msg`: refuse temporaries that would dangle.
Result<ParsedCall, RpcReject> parse_call(Bytes&& msg) = delete;
// Constant-time MAC check of a kAuthIpsan call; false for any other flavor.
bool verify_call(const ParsedCall& call, const Key256& session_key);

// A reply, header only. `results` are the undecoded procedure results when accept_stat is
// kSuccess (see decode_results / decode_login_*_res).
struct ParsedReply {
  std::uint32_t xid = 0;
  ReplyStat reply_stat = ReplyStat::kAccepted;
  AcceptStat accept_stat = AcceptStat::kSuccess;      // if kAccepted
  RejectStat reject_stat = RejectStat::kRpcMismatch;  // if kDenied
  AuthStat auth_stat = AuthStat::kOk;                 // if kDenied / kAuthError
  std::uint32_t mismatch_low = 0;                     // RPC_MISMATCH / PROG_MISMATCH
  std::uint32_t mismatch_high = 0;
  std::uint32_t verf_flavor = kAuthNone;  // if kAccepted
  Tag128 mac{};                           // if verf_flavor == kAuthIpsan
  ByteSpan covered_before;
  ByteSpan covered_after;
  ByteSpan results;

  bool success() const {
    return reply_stat == ReplyStat::kAccepted && accept_stat == AcceptStat::kSuccess;
  }
  // The Errc a caller should see for an unsuccessful reply: AUTH_REJECTEDCRED -> kStaleSession
  // (log in again), other AUTH_ERRORs -> kAuthFailed, PROC_UNAVAIL/PROG_* -> kNotSupported,
  // GARBAGE_ARGS/RPC_MISMATCH -> kBadMessage, SYSTEM_ERR -> kInternal. kOk for success().
  Errc to_errc() const;
};

// Parses a reply header; kBadMessage if malformed (including trailing bytes after a non-success
// reply body). Does not verify the MAC.
Result<ParsedReply> parse_reply(ByteSpan msg);
Result<ParsedReply> parse_reply(Bytes&& msg) = delete;  // would dangle
// Constant-time MAC check of a reply to the call made with `cred`. False if the reply has no
// kAuthIpsan verifier (e.g. a denied reply: those are unauthenticated hints, see PROTOCOL.md).
bool verify_reply(const ParsedReply& reply, const Key256& session_key, const SlotCred& cred);

// Reply telling the caller why its call was not executed (AUTH_NONE verifier). Empty Bytes for
// RejectKind::kDrop.
Bytes encode_reject(const RpcReject& reject);
inline Bytes encode_reject(std::uint32_t xid, const RpcReject& reject) {
  RpcReject r = reject;
  r.xid = xid;
  return encode_reject(r);
}
// An accepted-but-failed reply (PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR) to an authenticated call,
// with a MAC verifier so the client can trust it.
Bytes encode_accept_error(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                          AcceptStat stat);

}  // namespace ipsan::proto

namespace ipsan::proto::detail {
// Building blocks shared by codec.cc and login.cc (not part of the stable API).
// Appends a call header with AUTH_NONE credential and verifier.
void put_call_header_none(XdrWriter& w, std::uint32_t xid, std::uint32_t proc);
// Appends a call header with the kAuthIpsan credential and a zeroed MAC; returns the MAC offset.
std::size_t put_call_header_ipsan(XdrWriter& w, std::uint32_t xid, std::uint32_t proc,
                                  const SlotCred& cred);
// Appends an accepted reply header with an AUTH_NONE verifier.
void put_reply_header_none(XdrWriter& w, std::uint32_t xid, AcceptStat stat);
// Appends an accepted reply header with a zeroed kAuthIpsan MAC; returns the MAC offset.
std::size_t put_reply_header_ipsan(XdrWriter& w, std::uint32_t xid, AcceptStat stat);
// Computes the MAC over `msg` minus [mac_offset, mac_offset+16), stores it there and returns it.
Tag128 seal(MutableByteSpan msg, std::size_t mac_offset, const Key256& key, std::uint8_t direction,
            const SlotCred& cred);
}  // namespace ipsan::proto::detail
