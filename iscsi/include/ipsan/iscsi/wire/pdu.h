// ipsan/iscsi/wire/pdu.h: THE iSCSI wire codec (library ipsan_iscsi_wire, depends on base only),
// used by the target portal (iscsi/) and by the capture import (replay/): PDUs (RFC 7143 section
// 11): the 48-byte basic header segment (BHS), additional header segments, the data segment,
// optional CRC32C header/data digests, opcodes, the LUN field, and the text key=value lists carried
// by Login and Text PDUs.
//
// Wire layout of every PDU (all multi-byte fields big-endian):
//   BHS (48) | AHS (TotalAHSLength * 4) | HeaderDigest (4, optional) |
//   data segment (DataSegmentLength, padded to 4) | DataDigest (4, optional, when data is present)
// BHS bytes: 0 = I bit (0x40) + opcode (0x3F); 1 = flags (F = 0x80); 4 = TotalAHSLength (words);
// 5..7 = DataSegmentLength; 8..15 = LUN (or ISID+TSIH in Login); 16..19 = Initiator Task Tag;
// 20..47 opcode specific. Digests are CRC32C (ipsan::crc32c) stored little-endian, as Linux and
// libiscsi do.
//
// Decoders treat every byte as hostile: lengths are bounded before anything is allocated.
// Pure value types and functions; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"

namespace ipsan::iscsi {

inline constexpr std::size_t kBhsSize = 48;
inline constexpr std::uint32_t kReservedTag = 0xFFFFFFFFu;
// DataSegmentLength is a 24-bit field.
inline constexpr std::size_t kMaxDataSegmentLength = (std::size_t{1} << 24) - 1;

// Opcodes (RFC 7143 11.2.1.2).
enum class Opcode : std::uint8_t {
  kNopOut = 0x00,
  kScsiCommand = 0x01,
  kTaskMgmtRequest = 0x02,
  kLoginRequest = 0x03,
  kTextRequest = 0x04,
  kDataOut = 0x05,
  kLogoutRequest = 0x06,
  kSnackRequest = 0x10,
  kNopIn = 0x20,
  kScsiResponse = 0x21,
  kTaskMgmtResponse = 0x22,
  kLoginResponse = 0x23,
  kTextResponse = 0x24,
  kDataIn = 0x25,
  kLogoutResponse = 0x26,
  kR2t = 0x31,
  kAsyncMessage = 0x32,
  kReject = 0x3F,
};

// Reject reasons (RFC 7143 11.17.1).
enum class RejectReason : std::uint8_t {
  kDataDigestError = 0x02,
  kSnackReject = 0x03,
  kProtocolError = 0x04,
  kCommandNotSupported = 0x05,
  kImmediateCommandReject = 0x06,
  kTaskInProgress = 0x07,
  kInvalidDataAck = 0x08,
  kInvalidPduField = 0x09,
  kLongOperationReject = 0x0A,
  kNegotiationReset = 0x0B,
  kWaitingForLogout = 0x0C,
};

struct Pdu {
  std::array<std::uint8_t, kBhsSize> bhs{};
  Bytes ahs;   // without padding (a multiple of 4 by construction)
  Bytes data;  // without padding

  Opcode opcode() const { return static_cast<Opcode>(bhs[0] & 0x3F); }
  bool immediate() const { return (bhs[0] & 0x40) != 0; }
  std::uint8_t flags() const { return bhs[1]; }
  bool final_bit() const { return (bhs[1] & 0x80) != 0; }
  std::uint32_t u32(std::size_t at) const { return load_be32(&bhs[at]); }
  std::uint16_t u16(std::size_t at) const { return load_be16(&bhs[at]); }
  std::uint64_t lun_field() const { return load_be64(&bhs[8]); }
  std::uint32_t itt() const { return u32(16); }

  void set_opcode(Opcode op, bool immediate = false) {
    bhs[0] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(op) | (immediate ? 0x40 : 0));
  }
  void set_u32(std::size_t at, std::uint32_t v) { store_be32(&bhs[at], v); }
  void set_u16(std::size_t at, std::uint16_t v) { store_be16(&bhs[at], v); }
  void set_u64(std::size_t at, std::uint64_t v) { store_be64(&bhs[at], v); }
};

struct DigestConfig {
  bool header = false;
  bool data = false;
};

// Lengths announced by a BHS. `rest` = bytes that follow the BHS on the wire (AHS, header digest,
// padded data, data digest).
struct PduExtent {
  std::size_t ahs = 0;
  std::size_t data = 0;
  std::size_t rest = 0;
};

enum class PduError {
  kTruncated,       // fewer bytes than the header announces
  kDataTooLong,     // DataSegmentLength above the negotiated maximum
  kHeaderDigest,    // header digest mismatch (the PDU boundary cannot be trusted: reset)
  kDataDigest,      // data digest mismatch (the PDU is dropped with a Reject)
  kBadAhs,          // AHS lengths inconsistent
};
const char* to_string(PduError e);

// Checks the lengths in `bhs` against `max_data` (the negotiated MaxRecvDataSegmentLength or the
// login limit); no allocation.
Result<PduExtent, PduError> pdu_extent(const std::uint8_t* bhs, const DigestConfig& digests,
                                       std::size_t max_data);
// Parses one PDU from a BHS and the `rest` bytes that follow it (as pdu_extent announced).
// kDataDigest leaves a parsed PDU in `out` (the BHS is trustworthy) so a Reject can quote it.
Result<void, PduError> parse_pdu(const std::uint8_t* bhs, ByteSpan rest, const DigestConfig& digests,
                                 std::size_t max_data, Pdu& out);
// Parses exactly one PDU occupying all of `wire` (tests, fuzzing).
Result<Pdu, PduError> parse_pdu(ByteSpan wire, const DigestConfig& digests, std::size_t max_data);

// Cuts the PDU that begins at `stream[pos]` out of a byte stream (a TCP stream reassembled from a
// capture, a receive buffer). On success `out` holds it and `pos` points past it. kTruncated: the
// stream ends inside the PDU (`pos` unchanged; more bytes may complete it). kDataDigest: the
// framing is intact, so `out` holds the PDU and `pos` is advanced past it (the caller drops it).
// Any other error leaves `pos` unchanged: the stream cannot be trusted from here on.
Result<void, PduError> cut_pdu(ByteSpan stream, std::size_t& pos, const DigestConfig& digests,
                               std::size_t max_data, Pdu& out);

// Serialises with lengths, padding and digests filled in.
Bytes encode_pdu(const Pdu& pdu, const DigestConfig& digests);

// Text keys: "key=value\0" pairs (RFC 7143 6.1). Order is kept.
using TextPairs = std::vector<std::pair<std::string, std::string>>;
// Fails on a pair without '=', an empty or over-long key (> 63 bytes), a value over 8192 bytes or
// bytes that are not printable ASCII. A trailing pair without its NUL is accepted.
Result<TextPairs, Error> parse_text(ByteSpan data);
// For bytes that were already exchanged (captures): the same splitting, but a pair that breaks a
// rule above is left out instead of failing the list, and at most kMaxLenientPairs are kept.
inline constexpr std::size_t kMaxLenientPairs = 1024;
TextPairs parse_text_lenient(ByteSpan data);
Bytes encode_text(const TextPairs& pairs);

// The opcode's name ("SCSI Command", ...) for logs; "unknown opcode" for the others.
const char* opcode_name(std::uint8_t opcode);
// True for the opcodes RFC 7143 defines (the low six bits of BHS byte 0).
bool known_opcode(std::uint8_t opcode);

// The 8-byte LUN field (SAM-5 4.7, big-endian as in BHS bytes 8..15) -> LUN number, for
// single-level peripheral (00b, bus 0) and flat (01b) addressing; nullopt for anything else.
std::optional<std::uint32_t> decode_lun(std::uint64_t field);

}  // namespace ipsan::iscsi
