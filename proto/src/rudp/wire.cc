// rudp wire format: encoders and hostile-input decoders (see wire.h, docs/RUDP.md).
#include "ipsan/proto/rudp/wire.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "ipsan/base/crc32c.h"

namespace ipsan::proto::rudp {

static_assert(kHeaderSize == 1 + 1 + 2 + 8 + 4 + 8, "header layout");
static_assert(kMessageFrameHeader == 1 + 8 + 4 + 4 + 2, "message frame layout");
static_assert(kAckFrameBase == 1 + 8 + 4 + 1 + 4, "ack frame layout");
static_assert(kFlowFrameSize == 1 + 8, "flow frame layout");

Result<Packet, DropReason> parse_packet(ByteSpan d) {
  if (d.size() < kPacketOverhead) return tl::unexpected(DropReason::kTooShort);
  const std::uint8_t* p = d.data();
  const std::uint16_t flags = load_be16(p + 2);
  const bool sealed = (flags & kFlagKeyPhase) != 0;
  std::size_t n = 0;
  if (sealed) {
    // No CRC: the tag (checked by the connection, which has the key) covers corruption too.
    if (d.size() < kProtectedOverhead) return tl::unexpected(DropReason::kTooShort);
    n = d.size() - kTagSize;
  } else {
    n = d.size() - kCrcSize;
    if (crc32c(d.first(n)) != load_be32(d.data() + n)) return tl::unexpected(DropReason::kBadCrc);
  }
  if (p[0] != kVersion) return tl::unexpected(DropReason::kBadVersion);
  if (p[1] < 1 || p[1] > 6) return tl::unexpected(DropReason::kBadType);
  if ((flags & ~kKnownFlags) != 0) return tl::unexpected(DropReason::kMalformed);
  if ((flags & kFlagEncrypted) != 0 && !sealed) return tl::unexpected(DropReason::kMalformed);
  Packet pkt;
  if (sealed) pkt.tag = d.subspan(n, kTagSize);
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
      case FrameType::kResetToken:
        if (left < kResetTokenFrameSize || out.reset_token) return false;
        out.reset_token.emplace();
        std::memcpy(out.reset_token->data(), p + 1, kResetTokenSize);
        p += kResetTokenFrameSize;
        left -= kResetTokenFrameSize;
        break;
      case FrameType::kCookie:
        if (left < kCookieFrameSize || out.cookie) return false;
        out.cookie.emplace();
        std::memcpy(out.cookie->data(), p + 1, kCookieSize);
        p += kCookieFrameSize;
        left -= kCookieFrameSize;
        break;
      case FrameType::kBind:
        if (left < kBindFrameSize || out.bind) return false;
        out.bind = load_be64(p + 1);
        p += kBindFrameSize;
        left -= kBindFrameSize;
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

PacketKeys derive_packet_keys(const Key256& session_key, std::uint64_t conn_id, bool client,
                              bool encrypt) {
  static constexpr std::string_view kLabel = "ipsan-rudp-packet-v1";
  std::array<std::uint8_t, 8> id;
  store_be64(id.data(), conn_id);
  // The mode is part of the derivation: a downgraded offer yields keys that verify nothing.
  const std::array<std::uint8_t, 1> mode{static_cast<std::uint8_t>(encrypt ? 2 : 1)};
  const Digest256 c2s =
      hmac_sha256(session_key, {as_bytes(kLabel), id, mode, as_bytes("c2s")});
  const Digest256 s2c =
      hmac_sha256(session_key, {as_bytes(kLabel), id, mode, as_bytes("s2c")});
  PacketKeys k;
  std::memcpy(k.tx.data(), client ? c2s.data() : s2c.data(), 32);
  std::memcpy(k.rx.data(), client ? s2c.data() : c2s.data(), 32);
  k.encrypt = encrypt;
  return k;
}

namespace {

// Integrity mode: Poly1305 keyed from XChaCha20(key, "rudp-mac" || 0^8 || packet number).
Nonce192 mac_nonce(std::uint64_t pn) {
  Nonce192 n{};
  std::memcpy(n.data(), "rudp-mac", 8);
  store_be64(n.data() + 16, pn);
  return n;
}

// Encrypted mode: ChaCha20-Poly1305 (IETF) with nonce 0^4 || packet number.
Nonce96 aead_nonce(std::uint64_t pn) {
  Nonce96 n{};
  store_be64(n.data() + 4, pn);
  return n;
}

}  // namespace

std::size_t seal_packet(std::uint8_t* buf, std::size_t len, const Key256& key,
                        std::uint64_t packet_number, bool encrypt) {
  Tag128 tag;
  if (encrypt) {
    tag = aead_seal(key, aead_nonce(packet_number), ByteSpan(buf, kHeaderSize), buf + kHeaderSize,
                    len - kHeaderSize);
  } else {
    tag = aead_mac(key, mac_nonce(packet_number), {ByteSpan(buf, len)});
  }
  std::memcpy(buf + len, tag.data(), kTagSize);
  return len + kTagSize;
}

bool open_packet(const Packet& pkt, ByteSpan datagram, const Key256& key,
                 std::vector<std::uint8_t>& plain, ByteSpan& body_out) {
  if (!pkt.is_protected() || pkt.tag.size() != kTagSize) return false;
  Tag128 tag;
  std::memcpy(tag.data(), pkt.tag.data(), kTagSize);
  const std::uint64_t pn = pkt.header.packet_number;
  if ((pkt.header.flags & kFlagEncrypted) != 0) {
    plain.resize(pkt.body.size());
    if (!aead_open(key, aead_nonce(pn), datagram.first(kHeaderSize), pkt.body.data(),
                   pkt.body.size(), plain.data(), tag)) {
      return false;
    }
    body_out = ByteSpan(plain.data(), plain.size());
    return true;
  }
  const Tag128 want =
      aead_mac(key, mac_nonce(pn), {datagram.first(kHeaderSize + pkt.body.size())});
  if (!constant_time_equal(want, tag)) return false;
  body_out = pkt.body;
  return true;
}

PacketWriter::PacketWriter(MutableByteSpan out, const Header& h, std::size_t trailer)
    : p_(out.data()), limit_(out.size()), trailer_(trailer) {
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

void PacketWriter::put_bytes(ByteSpan b) {
  if (!b.empty()) std::memcpy(p_ + pos_, b.data(), b.size());
  pos_ += b.size();
}

void PacketWriter::put_reset_token(const ResetToken& t) {
  p_[pos_] = static_cast<std::uint8_t>(FrameType::kResetToken);
  std::memcpy(p_ + pos_ + 1, t.data(), t.size());
  pos_ += kResetTokenFrameSize;
}

void PacketWriter::put_cookie(const Cookie& c) {
  p_[pos_] = static_cast<std::uint8_t>(FrameType::kCookie);
  std::memcpy(p_ + pos_ + 1, c.data(), c.size());
  pos_ += kCookieFrameSize;
}

void PacketWriter::put_bind(std::uint64_t session_id) {
  p_[pos_] = static_cast<std::uint8_t>(FrameType::kBind);
  store_be64(p_ + pos_ + 1, session_id);
  pos_ += kBindFrameSize;
}

std::size_t PacketWriter::finish_sealed(const Key256& key) {
  if (pos_ + kTagSize < kMinProtectedPacket) put_padding(kMinProtectedPacket - kTagSize - pos_);
  pos_ = seal_packet(p_, pos_, key, load_be64(p_ + 16), (load_be16(p_ + 2) & kFlagEncrypted) != 0);
  return pos_;
}

std::size_t PacketWriter::finish() {
  store_be32(p_ + pos_, crc32c(ByteSpan(p_, pos_)));
  pos_ += kCrcSize;
  return pos_;
}

std::size_t write_reason_packet(MutableByteSpan out, PacketType type, std::uint64_t conn_id,
                                std::uint32_t epoch, std::uint64_t packet_number, Errc reason,
                                const ResetToken* token) {
  if (out.size() < kPacketOverhead + 4 + (token ? kResetTokenSize : 0)) return 0;
  PacketWriter w(out, Header{kVersion, type, conn_id, epoch, packet_number});
  w.put_u32(static_cast<std::uint32_t>(reason));
  if (token) w.put_bytes(*token);
  return w.finish();
}

std::size_t write_sealed_close(MutableByteSpan out, std::uint64_t conn_id, std::uint32_t epoch,
                               std::uint64_t packet_number, Errc reason, const Key256& key,
                               bool encrypt) {
  if (out.size() < kMinProtectedPacket + kTagSize) return 0;
  const std::uint16_t flags = kFlagKeyPhase | (encrypt ? kFlagEncrypted : 0);
  PacketWriter w(out, Header{kVersion, PacketType::kClose, conn_id, epoch, packet_number, flags},
                 kTagSize);
  w.put_u32(static_cast<std::uint32_t>(reason));
  return w.finish_sealed(key);
}

std::size_t write_retry_packet(MutableByteSpan out, std::uint64_t conn_id, std::uint32_t epoch,
                               std::uint64_t hello_packet_number, const Cookie& cookie) {
  if (out.size() < kRetrySize) return 0;
  PacketWriter w(out, Header{kVersion, PacketType::kRetry, conn_id, epoch, hello_packet_number});
  w.put_bytes(cookie);
  return w.finish();
}

std::optional<ResetToken> parse_reset_token(ByteSpan body) {
  if (body.size() != 4 + kResetTokenSize) return std::nullopt;
  ResetToken t;
  std::memcpy(t.data(), body.data() + 4, kResetTokenSize);
  return t;
}

}  // namespace ipsan::proto::rudp

namespace ipsan::proto::rudp {

std::optional<Cookie> parse_retry_cookie(ByteSpan body) {
  if (body.size() != kCookieSize) return std::nullopt;
  Cookie c;
  std::memcpy(c.data(), body.data(), kCookieSize);
  return c;
}

}  // namespace ipsan::proto::rudp
