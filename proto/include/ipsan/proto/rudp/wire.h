// ipsan/proto/rudp/wire.h: the reliable-UDP datagram format (docs/RUDP.md explains every byte).
//
// Pure functions over byte spans: no state, no allocation except where a vector is passed in.
// Every decoder treats its input as hostile and reports a DropReason instead of asserting.
// Thread-safe (no shared state).
//
// Datagram = Header (24 bytes) | body | CRC32C (4 bytes, over everything before it), or, when the
// KEY_PHASE flag is set (a protected packet, after login), Header | body | 16-byte tag, the body
// possibly encrypted (ENCRYPTED flag). All integers big-endian.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"

namespace ipsan::proto::rudp {

inline constexpr std::uint8_t kVersion = 1;

enum class PacketType : std::uint8_t {
  kHello = 1,     // client -> server: open connection `conn_id` (epoch field 0)
  kHelloAck = 2,  // server -> client: accepted; epoch field = server boot epoch
  kData = 3,      // either way: frames (ACK, MESSAGE, PING, FLOW)
  kReset = 4,     // server -> client: no such connection (stateless); body = u32 reason
  kClose = 5,     // either way: orderly shutdown; body = u32 reason
  kRetry = 6,     // server -> client: stateless address-validation cookie (answer to HELLO)
};

enum class FrameType : std::uint8_t {
  kPadding = 0,  // 1 byte; lets HELLO fill a full-size datagram
  kPing = 1,     // 1 byte; ack-eliciting, nothing else
  kAck = 2,      // selective acknowledgment, see AckFrame
  kMessage = 3,  // one fragment of one message, see MessageFrame
  kFlow = 4,     // receiver-advertised limit: u64 max_data
  kResetToken = 5,  // server -> client, protected packets only: 16-byte stateless reset token
  kCookie = 6,      // in HELLO: the 24-byte cookie of a RETRY, echoed
  kBind = 7,        // in HELLO: u64 session id whose key protects this connection; in HELLO_ACK:
                    // echo (the session id if the server armed that key, 0 if it does not know it)
};

// Header flags (offset 2, u16). Unknown bits make the datagram malformed.
// ACK_NOW: the sender asks for an ACK datagram of its own for this (ack-eliciting) packet, sent
// at once, not after the delayed-ACK threshold; set on PTO probes. Ignored on packets that are
// not ack-eliciting.
inline constexpr std::uint16_t kFlagAckNow = 0x0001;
// KEY_PHASE: the packet is protected with the connection's packet key (derived from the session
// key at login): the trailer is a 16-byte tag instead of the CRC. ENCRYPTED (only with KEY_PHASE):
// the body is ChaCha20-Poly1305 ciphertext; without it the body is clear and the tag a Poly1305 MAC.
inline constexpr std::uint16_t kFlagKeyPhase = 0x0002;
inline constexpr std::uint16_t kFlagEncrypted = 0x0004;
inline constexpr std::uint16_t kKnownFlags = kFlagAckNow | kFlagKeyPhase | kFlagEncrypted;

// Fixed header. Offsets: 0 version, 1 type, 2..3 flags, 4..11 conn_id, 12..15 epoch,
// 16..23 packet number.
struct Header {
  std::uint8_t version = kVersion;
  PacketType type = PacketType::kData;
  std::uint64_t conn_id = 0;
  std::uint32_t epoch = 0;
  std::uint64_t packet_number = 0;
  std::uint16_t flags = 0;  // kFlag* bits
};

inline constexpr std::size_t kHeaderSize = 24;
inline constexpr std::size_t kCrcSize = 4;
inline constexpr std::size_t kPacketOverhead = kHeaderSize + kCrcSize;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kProtectedOverhead = kHeaderSize + kTagSize;
inline constexpr std::size_t kResetTokenSize = 16;
inline constexpr std::size_t kCookieSize = 24;  // u64 issue time (ms) + 16-byte MAC
inline constexpr std::size_t kResetTokenFrameSize = 1 + kResetTokenSize;
inline constexpr std::size_t kCookieFrameSize = 1 + kCookieSize;
inline constexpr std::size_t kBindFrameSize = 1 + 8;
// A RESET with a stateless reset token, and a RETRY.
inline constexpr std::size_t kTokenResetSize = kPacketOverhead + 4 + kResetTokenSize;  // 48
inline constexpr std::size_t kRetrySize = kPacketOverhead + kCookieSize;               // 52
// Protected packets are padded to at least this size, so that a stateless RESET answering one
// (48 bytes) is never larger than what triggered it.
inline constexpr std::size_t kMinProtectedPacket = kTokenResetSize;
using ResetToken = std::array<std::uint8_t, kResetTokenSize>;
using Cookie = std::array<std::uint8_t, kCookieSize>;
// type(1) id(8) total(4) offset(4) length(2)
inline constexpr std::size_t kMessageFrameHeader = 19;
// type(1) largest(8) delay_us(4) count(1) first(4), then 8 bytes per further range
inline constexpr std::size_t kAckFrameBase = 18;
inline constexpr std::size_t kAckRangeSize = 8;
inline constexpr std::size_t kFlowFrameSize = 9;
inline constexpr std::size_t kMaxAckRangesOnWire = 64;
inline constexpr std::size_t kMinDatagram = 256;
inline constexpr std::size_t kMaxDatagram = 65507;  // largest IPv4 UDP payload

// Packet numbers acknowledged as closed intervals [lo, hi], highest first.
struct AckRange {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
};

struct AckFrame {
  std::uint64_t largest = 0;
  std::uint32_t ack_delay_us = 0;
  std::size_t range_count = 0;
  std::array<AckRange, kMaxAckRangesOnWire> ranges{};
};

struct MessageFrame {
  std::uint64_t message_id = 0;
  std::uint32_t total_length = 0;
  std::uint32_t offset = 0;
  ByteSpan payload;
};

enum class DropReason {
  kTooShort,    // shorter than header + CRC
  kBadCrc,      // CRC32C mismatch (corruption)
  kBadVersion,  // unknown version
  kBadType,     // unknown packet type
  kMalformed,   // frames do not parse, or violate a limit
};

// A datagram whose CRC (unprotected packets), version and type are valid. `body` is between
// header and trailer; for a protected packet `tag` is the 16-byte trailer, NOT yet verified (and
// the body is still ciphertext when the ENCRYPTED flag is set): see open_packet().
struct Packet {
  Header header;
  ByteSpan body;
  ByteSpan tag;  // empty for CRC packets
  bool is_protected() const { return (header.flags & kFlagKeyPhase) != 0; }
};

// Checks length, CRC (unprotected packets), version and type.
Result<Packet, DropReason> parse_packet(ByteSpan datagram);

// All frames of one DATA/HELLO/HELLO_ACK body. Messages point into the datagram.
struct Frames {
  bool ping = false;
  std::optional<AckFrame> ack;
  std::optional<std::uint64_t> max_data;
  std::optional<ResetToken> reset_token;
  std::optional<Cookie> cookie;
  std::optional<std::uint64_t> bind;
  std::vector<MessageFrame> messages;  // reused between calls to avoid allocation
  void clear() {
    ping = false;
    ack.reset();
    max_data.reset();
    reset_token.reset();
    cookie.reset();
    bind.reset();
    messages.clear();
  }
  bool ack_eliciting() const {
    return ping || max_data.has_value() || reset_token.has_value() || !messages.empty();
  }
};

// Parses frames; at most one ACK and one FLOW frame per packet. False on any malformation.
bool parse_frames(ByteSpan body, Frames& out);

// The cookie of a RETRY body.
std::optional<Cookie> parse_retry_cookie(ByteSpan body);

// Reads the u32 reason of a RESET or CLOSE body (kConnectionLost if absent or unknown).
Errc parse_reason(ByteSpan body);

// Directional packet keys of one connection (docs/RUDP.md "Packet protection").
struct PacketKeys {
  Key256 tx{};
  Key256 rx{};
  bool encrypt = false;  // AEAD-encrypt bodies (else integrity only)
};

// Derives the keys of connection `conn_id` from a session key: HMAC-SHA-256(session_key,
// "ipsan-rudp-packet-v1" || conn_id || "c2s"/"s2c"); `client` picks which is tx.
PacketKeys derive_packet_keys(const Key256& session_key, std::uint64_t conn_id, bool client,
                              bool encrypt);

// Protects a packet in place: `len` bytes of header + clear body are in `buf` (the header's flags
// must already carry KEY_PHASE, and ENCRYPTED when `encrypt`); appends the 16-byte tag (and
// encrypts the body in place when `encrypt`). Returns len + kTagSize. `buf` needs the room.
std::size_t seal_packet(std::uint8_t* buf, std::size_t len, const Key256& key,
                        std::uint64_t packet_number, bool encrypt);
// Verifies a protected packet (and decrypts its body into `plain`, which is resized, when the
// ENCRYPTED flag is set). On success `body_out` is the clear body (pointing into the datagram or
// into `plain`). Constant-time tag check; false on any mismatch.
bool open_packet(const Packet& pkt, ByteSpan datagram, const Key256& key,
                 std::vector<std::uint8_t>& plain, ByteSpan& body_out);

// Writer over a caller-provided buffer. The caller checks room() before each put_*.
class PacketWriter {
 public:
  // Writes the header; `out` must hold at least kPacketOverhead bytes. `trailer` is kCrcSize
  // (finish()) or kTagSize (protected: finish_sealed()).
  PacketWriter(MutableByteSpan out, const Header& header, std::size_t trailer = kCrcSize);
  std::size_t room() const { return limit_ - pos_ - trailer_; }
  void put_ping();
  void put_padding(std::size_t n);
  void put_flow(std::uint64_t max_data);
  void put_u32(std::uint32_t v);
  // Encodes ranges[0..count) (highest first, disjoint, descending); returns false if it does not
  // fit in room() even with one range. Ranges that do not fit are left out.
  bool put_ack(std::uint64_t largest, std::uint32_t ack_delay_us, const AckRange* ranges,
               std::size_t count);
  void put_message(std::uint64_t id, std::uint32_t total, std::uint32_t offset, ByteSpan payload);
  void put_bytes(ByteSpan b);
  void put_reset_token(const ResetToken& t);
  void put_cookie(const Cookie& c);
  void put_bind(std::uint64_t session_id);
  // Appends the CRC; returns the datagram size.
  std::size_t finish();
  // Pads to kMinProtectedPacket, appends the tag (encrypting when the header says so).
  std::size_t finish_sealed(const Key256& key);
  std::size_t size() const { return pos_; }

 private:
  std::uint8_t* p_;
  std::size_t limit_;
  std::size_t trailer_;
  std::size_t pos_ = 0;
};

// Builds a complete RESET or CLOSE datagram into `out` (needs kPacketOverhead + 4 bytes, + 16
// with a token).
std::size_t write_reason_packet(MutableByteSpan out, PacketType type, std::uint64_t conn_id,
                                std::uint32_t epoch, std::uint64_t packet_number, Errc reason,
                                const ResetToken* token = nullptr);
// Builds a protected CLOSE (needs kMinProtectedPacket + kTagSize bytes).
std::size_t write_sealed_close(MutableByteSpan out, std::uint64_t conn_id, std::uint32_t epoch,
                               std::uint64_t packet_number, Errc reason, const Key256& key,
                               bool encrypt);
// Builds a RETRY datagram (kRetrySize bytes); its packet number echoes the HELLO's.
std::size_t write_retry_packet(MutableByteSpan out, std::uint64_t conn_id, std::uint32_t epoch,
                               std::uint64_t hello_packet_number, const Cookie& cookie);
// The token of a 48-byte RESET body (reason + token), if present.
std::optional<ResetToken> parse_reset_token(ByteSpan body);

}  // namespace ipsan::proto::rudp
