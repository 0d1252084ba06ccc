// ipsan/proto/codec.h: encoding and decoding of the ipsan procedures (proto/ipsan.x).
//
// Every device op (READY, IDENTIFY, CAPACITY, READ, WRITE, FLUSH, TRIM, WRITE_ZEROES) takes the one
// argument shape io_args {device_id, lba, blocks, flags, data<>} (data only for WRITE) and returns
// ipsan_status followed, only when it is OK, by the op's result (READ: data<>; IDENTIFY: identity;
// READY/CAPACITY: capacity; others nothing). NULL takes and returns nothing; LOGOUT takes nothing
// and returns a status. Login messages are in login.h, RPC framing in rpc.h.
//
// Typical client flow:   encode_call -> transport -> parse_reply -> verify_reply -> decode_results
// Typical server flow:   parse_call (reject -> encode_reject) -> session lookup -> verify_call ->
//                        decode_request (error -> GARBAGE_ARGS) -> execute -> encode_reply
//                        (READ: ReadReplyBuilder, filled in place).
// Decoders treat input as hostile and return views into it where noted. Encoders expect valid
// values (see validate_identity); oversize identity strings are cut to their limits.
//
// Pure functions / plain values, no shared state: callable from any thread (after crypto_init()).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"
#include "ipsan/proto/generic.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/proto/xdr.h"

namespace ipsan::proto {

// Limits (part of the protocol).
inline constexpr std::size_t kMaxIoBytes = 8u << 20;  // largest READ/WRITE data<> (8 MiB)
inline constexpr std::size_t kMaxVendor = 8;
inline constexpr std::size_t kMaxProduct = 16;
inline constexpr std::size_t kMaxRevision = 4;
inline constexpr std::size_t kMaxSerial = 32;
inline constexpr std::uint32_t kMinBlockSize = 512;
inline constexpr std::uint32_t kMaxBlockSize = 65536;
// Bytes of a MAC'd call / reply header before the arguments / results (for sizing buffers).
inline constexpr std::size_t kIpsanCallHeaderBytes = 24 + 8 + kIpsanCredBodyBytes + 8 + kMacBytes;
inline constexpr std::size_t kIpsanReplyHeaderBytes = 12 + 8 + kMacBytes + 4;
inline constexpr std::size_t kIoArgsBytes = 4 + 8 + 4 + 4 + 4;  // io_args without data

// Largest block count a device may report: 2^48 - 1 (the ATA 48-bit LBA range, far beyond SCSI
// devices in practice: 128 PiB at 512 bytes), so that block_count * block_size always fits 64 bits.
inline constexpr std::uint64_t kMaxBlockCount = (std::uint64_t{1} << 48) - 1;

// block_size is a power of two in [kMinBlockSize, kMaxBlockSize].
bool valid_block_size(std::uint32_t block_size);
// THE device-geometry check of every front end (SCSI logical units, ATA devices) on what a server
// reports: a valid block size and at most kMaxBlockCount blocks (zero allowed here; a medium
// command that needs blocks checks that itself).
bool valid_geometry(std::uint32_t block_size, std::uint64_t block_count);
// Strings within their limits and printable ASCII, valid block size.
bool validate_identity(const Identity& id);

// True for READY, IDENTIFY, CAPACITY, READ, WRITE, FLUSH, TRIM, WRITE_ZEROES.
bool is_device_op(Op op);

// Arguments of a device op as views: what decode_request returns, and what a client may encode
// from without first copying WRITE data into a Request.
struct RequestView {
  Op op = Op::kNull;
  std::uint32_t device_id = 0;
  std::uint64_t lba = 0;
  std::uint32_t blocks = 0;
  std::uint32_t flags = 0;
  ByteSpan data;  // WRITE only
};

// ---- client side ----
// A call with the kAuthIpsan credential, MAC'd with session_key. req.op must be NULL, LOGOUT or a
// device op (NULL and LOGOUT send no arguments); req.data is sent only for WRITE.
Bytes encode_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                  const Request& req);
// Same bytes, from views (req.data is copied once, straight into the message).
Bytes encode_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                  const RequestView& req);
// NULL with AUTH_NONE (ping; usable before login).
Bytes encode_null_call(std::uint32_t xid);
Bytes encode_logout_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key);
// SLOT_FENCE on (cred.slot, cred.seq): no arguments. Once the server has answered it (a MAC'd
// status), no call on that slot with a lower seq will ever execute (docs/PROTOCOL.md).
Bytes encode_slot_fence_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key);
// END_SESSION: ends `old_session_id` (an earlier session of the same client). OK: that session is
// gone and nothing of it runs any more; BUSY: it is closed to new calls but calls are still
// running, ask again.
Bytes encode_end_session_call(std::uint32_t xid, const SlotCred& cred, const Key256& session_key,
                              std::uint64_t old_session_id);
// Decodes ParsedReply::results of a successful reply to `op`; copies READ data into Reply::data.
// For login ops only the status is returned (use decode_login_*_res for the rest).
Result<Reply> decode_results(Op op, ByteSpan results);
// Same, for `results` viewing into `message` (the whole reply, as received): READ data is moved
// to the front of message's own buffer and handed over as Reply::data instead of being copied
// into a new one. `message` is consumed when the result is a READ with data; otherwise (and on
// any error) it is left as it was.
Result<Reply> decode_results(Op op, ByteSpan results, Bytes& message);

// ---- server side ----
// For NULL / LOGOUT / SLOT_FENCE: args must be empty (END_SESSION: decode_end_session_args). For device ops: io_args, data empty unless WRITE, at most
// kMaxIoBytes. Login ops: kInvalidArgument (use decode_login_*_args). Any failure -> GARBAGE_ARGS.
// Range checks against the device (blocks * block_size == data size, lba range, flags) are the
// server's job.
Result<RequestView> decode_request(Op op, ByteSpan args);
Result<RequestView> decode_request(Op op, Bytes&& args) = delete;  // would dangle
// END_SESSION arguments: the session id to end.
Result<std::uint64_t> decode_end_session_args(ByteSpan args);
// Copies a RequestView into an owning Request (tests, client-side tools).
Request to_request(const RequestView& view);

// Accepted SUCCESS reply to an authenticated call, MAC'd with session_key. At most one distinct
// MAC'd reply may ever be sent per (session, slot, seq) (Poly1305 is one-time): resend the cached
// bytes for retransmissions and send SEQ_MISORDERED unauthenticated (docs/PROTOCOL.md).
Bytes encode_reply(std::uint32_t xid, const SlotCred& cred, const Key256& session_key, Op op,
                   const Reply& reply);
// Accepted SUCCESS reply with an AUTH_NONE verifier: NULL ping, a status for a login op, and
// statuses that are not "the" reply of their (slot, seq): SEQ_MISORDERED, BUSY for a re-executed
// READ whose data changed. Clients treat these as unauthenticated hints.
Bytes encode_unauthenticated_reply(std::uint32_t xid, Op op, const Reply& reply);

// READ fast path: lays out a successful READ reply around a data area of `len` bytes that the
// caller fills in place (e.g. straight from the back end), then seals the MAC. data() stays valid
// until finish() (nothing is appended after the data area). If the read fails, drop the builder
// and send encode_reply(..., Reply{status}) instead. Precondition: len <= kMaxIoBytes.
class ReadReplyBuilder {
 public:
  ReadReplyBuilder(std::uint32_t xid, const SlotCred& cred, std::size_t len);
  MutableByteSpan data() { return w_.span(data_offset_, len_); }
  // Computes and stores the MAC; returns the message, and the MAC through `mac` if given (what
  // the server keeps to check a re-executed READ). The builder is empty afterwards.
  Bytes finish(const Key256& session_key, Tag128* mac = nullptr);

 private:
  XdrWriter w_;
  SlotCred cred_;
  std::size_t mac_offset_ = 0;
  std::size_t data_offset_ = 0;
  std::size_t len_ = 0;
};

}  // namespace ipsan::proto
