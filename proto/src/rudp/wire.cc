// rudp wire format: encoders and hostile-input decoders (see wire.h, docs/RUDP.md).
#include "ipsan/proto/rudp/wire.h"

#include <algorithm>
#include <cstring>

#include "ipsan/base/crc32c.h"

namespace ipsan::proto::rudp {

static_assert(kHeaderSize == 1 + 1 + 2 + 8 + 4 + 8, "header layout");
static_assert(kMessageFrameHeader == 1 + 8 + 4 + 4 + 2, "message frame layout");
static_assert(kAckFrameBase == 1 + 8 + 4 + 1 + 4, "ack frame layout");
static_assert(kFlowFrameSize == 1 + 8, "flow frame layout");

Result<Packet, DropReason> parse_packet(ByteSpan d) {
  if (d.size() < kPacketOverhead) return tl::unexpected(DropReason::kTooShort);
  const std::size_t n = d.size() - kCrcSize;
  if (crc32c(d.first(n)) != load_be32(d.data() + n)) return tl::unexpected(DropReason::kBadCrc);
  const std::uint8_t* p = d.data();
  if (p[0] != kVersion) return tl::unexpected(DropReason::kBadVersion);
  if (p[1] < 1 || p[1] > 5) return tl::unexpected(DropReason::kBadType);
  const std::uint16_t flags = load_be16(p + 2);
  if ((flags & ~kKnownFlags) != 0) return tl::unexpected(DropReason::kMalformed);
  Packet pkt;
  pkt.header.flags = flags;
  pkt.header.version = p[0];
  pkt.header.type = static_cast<PacketType>(p[1]);
  pkt.header.conn_id = load_be64(p + 4);
  pkt.header.epoch = load_be32(p + 12);
  pkt.header.packet_number = load_be64(p + 16);
  pkt.body = d.subspan(kHeaderSize, n - kHeaderSize);
  return pkt;
}

bool parse_frames(ByteSpan body, Frames& out) {
  out.clear();
  const std::uint8_t* p = body.data();
  std::size_t left = body.size();
  while (left > 0) {
    const std::uint8_t type = *p;
    switch (static_cast<FrameType>(type)) {
      case FrameType::kPadding:
        ++p;
        --left;
        break;
      case FrameType::kPing:
        out.ping = true;
        ++p;
        --left;
        break;
      case FrameType::kFlow:
        if (left < kFlowFrameSize || out.max_data) return false;
        out.max_data = load_be64(p + 1);
        p += kFlowFrameSize;
        left -= kFlowFrameSize;
        break;
      case FrameType::kAck: {
        if (left < kAckFrameBase || out.ack) return false;
        AckFrame a;
        a.largest = load_be64(p + 1);
        a.ack_delay_us = load_be32(p + 9);
        const std::size_t count = p[13];
        const std::uint64_t first = load_be32(p + 14);
        if (count == 0 || count > kMaxAckRangesOnWire) return false;
        if (first > a.largest) return false;
        const std::size_t need = kAckFrameBase + (count - 1) * kAckRangeSize;
        if (left < need) return false;
        a.ranges[0] = {a.largest - first, a.largest};
        const std::uint8_t* r = p + kAckFrameBase;
        for (std::size_t i = 1; i < count; ++i, r += kAckRangeSize) {
          const std::uint64_t gap = load_be32(r);
          const std::uint64_t len = load_be32(r + 4);
          const std::uint64_t prev_lo = a.ranges[i - 1].lo;
          // next.hi = prev.lo - gap - 2 (gap = number of unacked packets between, minus one).
          if (prev_lo < gap + 2) return false;
          const std::uint64_t hi = prev_lo - gap - 2;
          if (len > hi) return false;
          a.ranges[i] = {hi - len, hi};
        }
        a.range_count = count;
        out.ack = a;
        p += need;
        left -= need;
        break;
      }
      case FrameType::kMessage: {
        if (left < kMessageFrameHeader) return false;
        MessageFrame m;
        m.message_id = load_be64(p + 1);
        m.total_length = load_be32(p + 9);
        m.offset = load_be32(p + 13);
        const std::size_t len = load_be16(p + 17);
        if (left - kMessageFrameHeader < len) return false;
        if (std::uint64_t{m.offset} + len > m.total_length) return false;
        if (len == 0 && m.total_length != 0) return false;
        m.payload = ByteSpan(p + kMessageFrameHeader, len);
        out.messages.push_back(m);
        p += kMessageFrameHeader + len;
        left -= kMessageFrameHeader + len;
        break;
      }
      default: return false;
    }
  }
  return true;
}

Errc parse_reason(ByteSpan body) {
  if (body.size() < 4) return Errc::kConnectionLost;
  return errc_from_wire(load_be32(body.data()));
}

PacketWriter::PacketWriter(MutableByteSpan out, const Header& h)
    : p_(out.data()), limit_(out.size()) {
  p_[0] = h.version;
  p_[1] = static_cast<std::uint8_t>(h.type);
  store_be16(p_ + 2, h.flags);
  store_be64(p_ + 4, h.conn_id);
  store_be32(p_ + 12, h.epoch);
  store_be64(p_ + 16, h.packet_number);
  pos_ = kHeaderSize;
}

void PacketWriter::put_ping() { p_[pos_++] = static_cast<std::uint8_t>(FrameType::kPing); }

void PacketWriter::put_padding(std::size_t n) {
  std::memset(p_ + pos_, 0, n);
  pos_ += n;
}

void PacketWriter::put_flow(std::uint64_t max_data) {
  p_[pos_] = static_cast<std::uint8_t>(FrameType::kFlow);
  store_be64(p_ + pos_ + 1, max_data);
  pos_ += kFlowFrameSize;
}

void PacketWriter::put_u32(std::uint32_t v) {
  store_be32(p_ + pos_, v);
  pos_ += 4;
}

bool PacketWriter::put_ack(std::uint64_t largest, std::uint32_t ack_delay_us,
                           const AckRange* ranges, std::size_t count) {
  if (count == 0 || room() < kAckFrameBase) return false;
  count = std::min({count, kMaxAckRangesOnWire, 1 + (room() - kAckFrameBase) / kAckRangeSize});
  std::uint8_t* q = p_ + pos_;
  q[0] = static_cast<std::uint8_t>(FrameType::kAck);
  store_be64(q + 1, largest);
  store_be32(q + 9, ack_delay_us);
  // The first range must end at `largest`; lengths and gaps are clamped to 32 bits (a longer
  // contiguous run is acknowledged in its upper 2^32 packets only, which is harmless).
  const std::uint64_t first = std::min<std::uint64_t>(largest - ranges[0].lo, 0xffffffffu);
  store_be32(q + 14, static_cast<std::uint32_t>(first));
  std::uint64_t prev_lo = largest - first;
  std::size_t written = 1;
  std::uint8_t* r = q + kAckFrameBase;
  for (std::size_t i = 1; i < count; ++i) {
    if (ranges[i].hi + 2 > prev_lo) break;  // not strictly below: stop (defensive)
    const std::uint64_t gap = prev_lo - ranges[i].hi - 2;
    if (gap > 0xffffffffu) break;
    const std::uint64_t len = std::min<std::uint64_t>(ranges[i].hi - ranges[i].lo, 0xffffffffu);
    store_be32(r, static_cast<std::uint32_t>(gap));
    store_be32(r + 4, static_cast<std::uint32_t>(len));
    r += kAckRangeSize;
    prev_lo = ranges[i].hi - len;
    ++written;
  }
  q[13] = static_cast<std::uint8_t>(written);
  pos_ += kAckFrameBase + (written - 1) * kAckRangeSize;
  return true;
}

void PacketWriter::put_message(std::uint64_t id, std::uint32_t total, std::uint32_t offset,
                               ByteSpan payload) {
  std::uint8_t* q = p_ + pos_;
  q[0] = static_cast<std::uint8_t>(FrameType::kMessage);
  store_be64(q + 1, id);
  store_be32(q + 9, total);
  store_be32(q + 13, offset);
  store_be16(q + 17, static_cast<std::uint16_t>(payload.size()));
  if (!payload.empty()) std::memcpy(q + kMessageFrameHeader, payload.data(), payload.size());
  pos_ += kMessageFrameHeader + payload.size();
}

std::size_t PacketWriter::finish() {
  store_be32(p_ + pos_, crc32c(ByteSpan(p_, pos_)));
  pos_ += kCrcSize;
  return pos_;
}

std::size_t write_reason_packet(MutableByteSpan out, PacketType type, std::uint64_t conn_id,
                                std::uint32_t epoch, std::uint64_t packet_number, Errc reason) {
  if (out.size() < kPacketOverhead + 4) return 0;
  PacketWriter w(out, Header{kVersion, type, conn_id, epoch, packet_number});
  w.put_u32(static_cast<std::uint32_t>(reason));
  return w.finish();
}

}  // namespace ipsan::proto::rudp
