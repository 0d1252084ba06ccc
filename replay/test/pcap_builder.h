// pcap_builder.h: builds pcap file images in memory for the replay tests: IPv4/IPv6 TCP and UDP
// packets under several link types, with optional snap-length cuts.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/netem/pcap.h"

namespace ipsan::replay::testing {

struct Frame {
  Bytes bytes;
  std::uint32_t wire_len = 0;  // 0: bytes.size()
  std::uint64_t ts_ns = 0;
};

inline Bytes ip_packet(const netem::NetAddr& src, const netem::NetAddr& dst, std::uint8_t proto,
                       ByteSpan l4) {
  Bytes p;
  if (src.v6) {
    p.resize(40);
    p[0] = 0x60;
    store_be16(&p[4], static_cast<std::uint16_t>(l4.size()));
    p[6] = proto;
    p[7] = 64;
    std::memcpy(&p[8], src.bytes.data(), 16);
    std::memcpy(&p[24], dst.bytes.data(), 16);
  } else {
    p.resize(20);
    p[0] = 0x45;
    store_be16(&p[2], static_cast<std::uint16_t>(20 + l4.size()));
    store_be16(&p[6], 0x4000);
    p[8] = 64;
    p[9] = proto;
    std::memcpy(&p[12], src.bytes.data(), 4);
    std::memcpy(&p[16], dst.bytes.data(), 4);
  }
  p.insert(p.end(), l4.begin(), l4.end());
  return p;
}

inline Bytes tcp_packet(const netem::NetAddr& src, const netem::NetAddr& dst, std::uint32_t seq,
                        std::uint8_t flags, ByteSpan payload) {
  Bytes t(20);
  store_be16(&t[0], src.port);
  store_be16(&t[2], dst.port);
  store_be32(&t[4], seq);
  t[12] = 5 << 4;
  t[13] = flags;
  store_be16(&t[14], 65535);
  t.insert(t.end(), payload.begin(), payload.end());
  return ip_packet(src, dst, 6, t);
}

inline Bytes udp_packet(const netem::NetAddr& src, const netem::NetAddr& dst, ByteSpan payload) {
  Bytes u(8);
  store_be16(&u[0], src.port);
  store_be16(&u[2], dst.port);
  store_be16(&u[4], static_cast<std::uint16_t>(8 + payload.size()));
  u.insert(u.end(), payload.begin(), payload.end());
  return ip_packet(src, dst, 17, u);
}

// Wraps an IP packet in a link-layer header.
inline Bytes with_link(int link_type, const Bytes& ip) {
  Bytes f;
  const bool v6 = (ip[0] >> 4) == 6;
  switch (link_type) {
    case 1:  // EN10MB
      f.resize(14);
      store_be16(&f[12], v6 ? 0x86DD : 0x0800);
      break;
    case 113:  // LINUX_SLL
      f.resize(16);
      store_be16(&f[14], v6 ? 0x86DD : 0x0800);
      break;
    case 276:  // LINUX_SLL2
      f.resize(20);
      store_be16(&f[0], v6 ? 0x86DD : 0x0800);
      break;
    case 0:  // NULL (host byte order AF)
      f.resize(4);
      f[0] = v6 ? 10 : 2;
      break;
    default: break;  // RAW (12 / 101)
  }
  f.insert(f.end(), ip.begin(), ip.end());
  return f;
}

// A classic little-endian, microsecond pcap file.
inline Bytes pcap_file(std::uint32_t link_type, const std::vector<Frame>& frames,
                       std::uint32_t snaplen = 262144) {
  Bytes f(24);
  auto le32 = [](std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
  };
  le32(&f[0], 0xa1b2c3d4);
  f[4] = 2;
  f[6] = 4;
  le32(&f[16], snaplen);
  le32(&f[20], link_type);
  for (const Frame& fr : frames) {
    std::uint8_t h[16];
    le32(h, static_cast<std::uint32_t>(fr.ts_ns / 1000000000));
    le32(h + 4, static_cast<std::uint32_t>(fr.ts_ns % 1000000000 / 1000));
    le32(h + 8, static_cast<std::uint32_t>(fr.bytes.size()));
    le32(h + 12, fr.wire_len != 0 ? fr.wire_len : static_cast<std::uint32_t>(fr.bytes.size()));
    f.insert(f.end(), h, h + 16);
    f.insert(f.end(), fr.bytes.begin(), fr.bytes.end());
  }
  return f;
}

inline netem::NetAddr addr(std::uint32_t ip, std::uint16_t port) {
  return netem::NetAddr::ipv4(ip, port);
}

}  // namespace ipsan::replay::testing
