// ipsan/proto/rudp/wire.h: the reliable-UDP datagram format (docs/RUDP.md explains every byte).
//
// Pure functions over byte spans: no state, no allocation except where a vector is passed in.
// Every decoder treats its input as hostile and reports a DropReason instead of asserting.
// Thread-safe (no shared state).
//
// Datagram = Header (24 bytes) | body | CRC32C (4 bytes, over everything before it).
// All integers big-endian.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"

namespace ipsan::proto::rudp {

inline constexpr std::uint8_t kVersion = 1;

enum class PacketType : std::uint8_t {
  kHello = 1,     // client -> server: open connection `conn_id` (epoch field 0)
  kHelloAck = 2,  // server -> client: accepted; epoch field = server boot epoch
  kData = 3,      // either way: frames (ACK, MESSAGE, PING, FLOW)
  kReset = 4,     // server -> client: no such connection (stateless); body = u32 reason
  kClose = 5,     // either way: orderly shutdown; body = u32 reason
};

enum class FrameType : std::uint8_t {
  kPadding = 0,  // 1 byte; lets HELLO fill a full-size datagram
  kPing = 1,     // 1 byte; ack-eliciting, nothing else
  kAck = 2,      // selective acknowledgment, see AckFrame
  kMessage = 3,  // one fragment of one message, see MessageFrame
  kFlow = 4,     // receiver-advertised limit: u64 max_data
};

// Header flags (offset 2, u16). Unknown bits make the datagram malformed.
// ACK_NOW: the sender asks for an ACK datagram of its own for this (ack-eliciting) packet, sent
// at once, not after the delayed-ACK threshold; set on PTO probes. Ignored on packets that are
// not ack-eliciting.
inline constexpr std::uint16_t kFlagAckNow = 0x0001;
inline constexpr std::uint16_t kKnownFlags = kFlagAckNow;

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

// A datagram whose CRC, version and type are valid. `body` is between header and CRC.
struct Packet {
  Header header;
  ByteSpan body;
};

// Checks length, CRC, version and type.
Result<Packet, DropReason> parse_packet(ByteSpan datagram);

// All frames of one DATA/HELLO/HELLO_ACK body. Messages point into the datagram.
struct Frames {
  bool ping = false;
  std::optional<AckFrame> ack;
  std::optional<std::uint64_t> max_data;
  std::vector<MessageFrame> messages;  // reused between calls to avoid allocation
  void clear() {
    ping = false;
    ack.reset();
    max_data.reset();
    messages.clear();
  }
  bool ack_eliciting() const { return ping || max_data.has_value() || !messages.empty(); }
};

// Parses frames; at most one ACK and one FLOW frame per packet. False on any malformation.
bool parse_frames(ByteSpan body, Frames& out);

// Reads the u32 reason of a RESET or CLOSE body (kConnectionLost if absent or unknown).
Errc parse_reason(ByteSpan body);

// Writer over a caller-provided buffer. The caller checks room() before each put_*.
class PacketWriter {
 public:
  // Writes the header; `out` must hold at least kPacketOverhead bytes.
  PacketWriter(MutableByteSpan out, const Header& header);
  std::size_t room() const { return limit_ - pos_ - kCrcSize; }
  void put_ping();
  void put_padding(std::size_t n);
  void put_flow(std::uint64_t max_data);
  void put_u32(std::uint32_t v);
  // Encodes ranges[0..count) (highest first, disjoint, descending); returns false if it does not
  // fit in room() even with one range. Ranges that do not fit are left out.
  bool put_ack(std::uint64_t largest, std::uint32_t ack_delay_us, const AckRange* ranges,
               std::size_t count);
  void put_message(std::uint64_t id, std::uint32_t total, std::uint32_t offset, ByteSpan payload);
  // Appends the CRC; returns the datagram size.
  std::size_t finish();
  std::size_t size() const { return pos_; }

 private:
  std::uint8_t* p_;
  std::size_t limit_;
  std::size_t pos_ = 0;
};

// Builds a complete RESET or CLOSE datagram into `out` (needs kPacketOverhead + 4 bytes).
std::size_t write_reason_packet(MutableByteSpan out, PacketType type, std::uint64_t conn_id,
                                std::uint32_t epoch, std::uint64_t packet_number, Errc reason);

}  // namespace ipsan::proto::rudp
