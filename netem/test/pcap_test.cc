// pcap capture files written through libpcap and read back (pcap and pcapng, damaged files).
#include "ipsan/netem/pcap.h"

#include <gtest/gtest.h>
#include "ipsan/base/log.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <unistd.h>

#include "ipsan/netem/config.h"
#include "ipsan/netem/link.h"
#include "ipsan/testing/temp_dir.h"

namespace ipsan::netem {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

using ::ipsan::testing::TempDir;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

void write_file(const std::string& path, const Bytes& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}
Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(line);
  return lines;
}

std::uint16_t ones_sum(ByteSpan d, std::uint32_t acc = 0) {
  for (std::size_t i = 0; i + 1 < d.size(); i += 2) acc += load_be16(&d[i]);
  if (d.size() % 2) acc += static_cast<std::uint32_t>(d.back()) << 8;
  while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
  return static_cast<std::uint16_t>(acc);
}

TEST(Pcap, BuiltPacketsHaveValidChecksums) {
  const NetAddr src = NetAddr::ipv4(0x7F000001, 40000);
  const NetAddr dst = NetAddr::ipv4(0x7F000002, 2049);
  const Bytes payload = text("hello, odd length");
  const Bytes pkt = build_udp_packet(src, dst, payload, 77);
  ASSERT_EQ(pkt.size(), 20u + 8u + payload.size());
  EXPECT_EQ(ones_sum({pkt.data(), 20}), 0xFFFF);  // IPv4 header checksum verifies
  // UDP checksum over pseudo-header + UDP header + payload verifies.
  std::uint32_t pseudo = ones_sum({pkt.data() + 12, 8});
  pseudo += 17 + static_cast<std::uint32_t>(pkt.size() - 20);
  EXPECT_EQ(ones_sum({pkt.data() + 20, pkt.size() - 20}, pseudo), 0xFFFF);
  EXPECT_EQ(load_be16(pkt.data() + 4), 77);
  EXPECT_EQ(src.to_string(), "127.0.0.1:40000");
}

TEST(Pcap, WriterAndReaderRoundTripIpv4AndIpv6) {
  TempDir dir;
  const std::string path = dir.file("rt.pcap");
  NetAddr v6a, v6b;
  v6a.v6 = v6b.v6 = true;
  v6a.bytes[15] = 1;  // ::1
  v6b.bytes[0] = 0xfe;
  v6b.bytes[1] = 0x80;
  v6b.bytes[15] = 2;
  v6a.port = 5;
  v6b.port = 6;
  {
    auto w = PcapWriter::open(path);
    ASSERT_TRUE(w) << w.error().message;
    (*w)->write(std::chrono::seconds(1700000000) + std::chrono::nanoseconds(123456789),
                NetAddr::ipv4(0x7F000001, 1111), NetAddr::ipv4(0x7F000002, 2222), text("four"), 9);
    (*w)->write(std::chrono::seconds(5), v6a, v6b, text(""));
    EXPECT_EQ((*w)->records(), 2u);
  }
  auto recs = read_pcap(path);
  ASSERT_TRUE(recs) << recs.error().message;
  ASSERT_EQ(recs->size(), 2u);
  const auto& r0 = (*recs)[0];
  EXPECT_EQ(r0.timestamp, std::chrono::seconds(1700000000) + std::chrono::nanoseconds(123456789));
  EXPECT_EQ(r0.src, NetAddr::ipv4(0x7F000001, 1111));
  EXPECT_EQ(r0.dst, NetAddr::ipv4(0x7F000002, 2222));
  EXPECT_EQ(r0.payload, text("four"));
  EXPECT_EQ(r0.payload_len, 4u);
  EXPECT_EQ(r0.ip_id, 9);
  const auto& r1 = (*recs)[1];
  EXPECT_EQ(r1.src, v6a);
  EXPECT_EQ(r1.dst, v6b);
  EXPECT_TRUE(r1.payload.empty());
  EXPECT_EQ(r1.src.to_string(), "[::1]:5");
  EXPECT_EQ(r1.dst.to_string(), "[fe80::2]:6");
}

TEST(Pcap, CaptureRecordsEntriesDeliveriesAndFates) {
  TempDir dir;
  const std::string path = dir.file("link.pcap");
  EXPECT_EQ(Capture::in_path(path), dir.file("link.in.pcap"));
  EXPECT_EQ(Capture::fates_path(path), dir.file("link.fates.csv"));
  EXPECT_EQ(Capture::in_path("x"), "x.in.pcap");

  ImpairmentConfig c = *parse_spec("delay=5ms loss=20% duplicate=10% corrupt=10%");
  VirtualClock clock;
  Link link(c, 42, clock.now());
  const NetAddr a = NetAddr::ipv4(0x7F000001, 1000);
  const NetAddr b = NetAddr::ipv4(0x7F000001, 2000);
  std::vector<Bytes> sent, at_b;
  {
    auto cap = Capture::open(path, Duration::zero());
    ASSERT_TRUE(cap) << cap.error().message;
    link.attach_capture(**cap, a, b);
    for (std::uint32_t i = 0; i < 500; ++i) {
      Bytes d(32, static_cast<std::uint8_t>(i));
      store_be32(d.data(), i);
      sent.push_back(d);
      link.send_a_to_b(d, clock.now());
      clock.advance(milliseconds(1));
      while (auto got = link.poll_b(clock.now())) at_b.push_back(*got);
    }
    link.send_b_to_a(text("reply"), clock.now());
    clock.advance(milliseconds(100));
    while (auto got = link.poll_b(clock.now())) at_b.push_back(*got);
    ASSERT_TRUE(link.poll_a(clock.now()));
  }
  const Counters k = link.a_to_b().counters();
  ASSERT_GT(k.dropped_random, 0u);
  ASSERT_GT(k.duplicated, 0u);
  ASSERT_GT(k.corrupted, 0u);

  auto in = read_pcap(Capture::in_path(path));
  ASSERT_TRUE(in) << in.error().message;
  ASSERT_EQ(in->size(), 501u);  // every datagram that entered, both directions
  for (std::size_t i = 0; i < 500; ++i) {
    EXPECT_EQ((*in)[i].payload, sent[i]);
    EXPECT_EQ((*in)[i].src, a);
    EXPECT_EQ((*in)[i].ip_id, i);
    EXPECT_EQ((*in)[i].timestamp, clock.now().time_since_epoch() - milliseconds(600 - i));
  }
  EXPECT_EQ((*in)[500].src, b);

  auto out = read_pcap(path);
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_EQ(out->size(), at_b.size() + 1);  // what B received, plus the reply
  std::size_t j = 0;
  for (const auto& rec : *out) {
    if (rec.dst == a) continue;
    ASSERT_LT(j, at_b.size());
    EXPECT_EQ(rec.payload, at_b[j++]);
  }

  const auto lines = read_lines(Capture::fates_path(path));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0].rfind("direction,index,copy,", 0), 0u);
  std::size_t delivered = 0, dropped = 0, corrupted = 0, copies = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f;
    std::stringstream ss(lines[i]);
    for (std::string field; std::getline(ss, field, ',');) f.push_back(field);
    ASSERT_EQ(f.size(), 11u) << lines[i];
    if (f[6] == "delivered") ++delivered;
    if (f[6] == "dropped" && f[7] == "random") ++dropped;
    if (f[6] == "delivered" && f[8] == "1") ++corrupted;
    if (f[0] == "up" && f[2] == "1") ++copies;
  }
  EXPECT_EQ(delivered, k.delivered + 1);
  EXPECT_EQ(dropped, k.dropped_random);
  EXPECT_EQ(corrupted, k.corrupted);
  EXPECT_EQ(copies, k.duplicated);
}

TEST(Pcap, TruncatedFileKeepsCompleteRecords) {
  TempDir dir;
  const std::string path = dir.file("t.pcap");
  {
    auto w = PcapWriter::open(path);
    ASSERT_TRUE(w);
    for (int i = 0; i < 3; ++i) {
      (*w)->write(std::chrono::seconds(i), NetAddr::ipv4(1, 1), NetAddr::ipv4(2, 2),
                  Bytes(100, static_cast<std::uint8_t>(i)));
    }
  }
  const Bytes full = read_file(path);
  for (std::size_t cut : {full.size() - 1, full.size() - 60, full.size() - 128 - 10}) {
    write_file(path, Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    auto recs = read_pcap(path);
    ASSERT_TRUE(recs) << cut;
    EXPECT_EQ(recs->size(), 2u) << cut;
  }
  // Cut inside the file header: an error, not a crash.
  write_file(path, Bytes(full.begin(), full.begin() + 10));
  EXPECT_FALSE(read_pcap(path));
}

TEST(Pcap, BadFilesGiveErrors) {
  TempDir dir;
  EXPECT_FALSE(read_pcap(dir.file("missing.pcap")));
  write_file(dir.file("junk.pcap"), text("this is not a capture file at all, no."));
  auto r = read_pcap(dir.file("junk.pcap"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("junk.pcap"), std::string::npos);
  write_file(dir.file("empty.pcap"), {});
  EXPECT_FALSE(read_pcap(dir.file("empty.pcap")));
  EXPECT_FALSE(PcapWriter::open(dir.file("no/such/dir/x.pcap")));
  EXPECT_FALSE(Capture::open(dir.file("no/such/dir/x.pcap"), Duration::zero()));
}

// A hand-built little-endian pcapng file: SHB, IDB (LINKTYPE_ETHERNET), one EPB holding
// Ethernet + IPv4 + UDP, one EPB holding ARP (skipped).
TEST(Pcap, ReadsPcapngWithEthernet) {
  Bytes f;
  auto u32 = [&f](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) f.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  auto u16 = [&f](std::uint16_t v) {
    f.push_back(static_cast<std::uint8_t>(v));
    f.push_back(static_cast<std::uint8_t>(v >> 8));
  };
  u32(0x0A0D0D0A);
  u32(28);
  u32(0x1A2B3C4D);
  u16(1);
  u16(0);
  u32(0xFFFFFFFF);
  u32(0xFFFFFFFF);
  u32(28);
  u32(1);
  u32(20);
  u16(1);
  u16(0);
  u32(65535);
  u32(20);
  auto epb = [&](const Bytes& frame, std::uint64_t usec) {
    const std::size_t padded = (frame.size() + 3) & ~std::size_t{3};
    const auto total = static_cast<std::uint32_t>(32 + padded);
    u32(6);
    u32(total);
    u32(0);
    u32(static_cast<std::uint32_t>(usec >> 32));
    u32(static_cast<std::uint32_t>(usec));
    u32(static_cast<std::uint32_t>(frame.size()));
    u32(static_cast<std::uint32_t>(frame.size()));
    f.insert(f.end(), frame.begin(), frame.end());
    f.resize(f.size() + padded - frame.size());
    u32(total);
  };
  Bytes eth(12, 0x02);
  eth.push_back(0x08);
  eth.push_back(0x00);
  const Bytes ip = build_udp_packet(NetAddr::ipv4(0x0A000001, 53), NetAddr::ipv4(0x0A000002, 999),
                                    text("dns?"), 1);
  Bytes frame = eth;
  frame.insert(frame.end(), ip.begin(), ip.end());
  epb(frame, 1'500'000);
  Bytes arp(12, 0x02);
  arp.push_back(0x08);
  arp.push_back(0x06);
  arp.resize(42);
  epb(arp, 2'000'000);

  TempDir dir;
  write_file(dir.file("x.pcapng"), f);
  auto recs = read_pcap(dir.file("x.pcapng"));
  ASSERT_TRUE(recs) << recs.error().message;
  ASSERT_EQ(recs->size(), 1u);
  EXPECT_EQ((*recs)[0].payload, text("dns?"));
  EXPECT_EQ((*recs)[0].src.port, 53);
  EXPECT_EQ((*recs)[0].timestamp, std::chrono::milliseconds(1500));
}

TEST(Pcap, MalformedIpPacketsAreSkipped) {
  TempDir dir;
  const std::string path = dir.file("m.pcap");
  {
    auto w = PcapWriter::open(path);
    ASSERT_TRUE(w);
    (*w)->write(std::chrono::seconds(1), NetAddr::ipv4(1, 1), NetAddr::ipv4(2, 2), text("ok"));
  }
  // Flip the IPv4 header length to 15 words (60 bytes, past the packet): record is skipped.
  Bytes bytes = read_file(path);
  const std::size_t ip_off = 24 + 16;
  ASSERT_EQ(bytes[ip_off], 0x45);
  bytes[ip_off] = 0x4F;
  write_file(path, bytes);
  auto recs = read_pcap(path);
  ASSERT_TRUE(recs);
  EXPECT_TRUE(recs->empty());
}

// ---- the shared decoder (read_capture / parse_frame / read_pcap) ----

// A classic little-endian, nanosecond pcap image: (frame, wire length or 0).
Bytes pcap_image(std::uint32_t link_type,
                 const std::vector<std::pair<Bytes, std::uint32_t>>& frames,
                 std::uint32_t snaplen = 262144) {
  Bytes f;
  auto u32 = [&f](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) f.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  u32(0xa1b23c4d);  // nanosecond magic
  u32(0x00040002);  // version 2.4
  u32(0);
  u32(0);
  u32(snaplen);
  u32(link_type);
  std::uint32_t n = 0;
  for (const auto& [frame, wire] : frames) {
    u32(1000 + n);
    u32(n++);
    u32(static_cast<std::uint32_t>(frame.size()));
    u32(wire != 0 ? wire : static_cast<std::uint32_t>(frame.size()));
    f.insert(f.end(), frame.begin(), frame.end());
  }
  return f;
}

// The link-layer header of `link_type` in front of an IP packet.
Bytes framed(int link_type, const Bytes& ip) {
  const bool v6 = (ip[0] >> 4) == 6;
  const std::uint16_t ethertype = v6 ? 0x86DD : 0x0800;
  Bytes f;
  switch (link_type) {
    case kLinkEthernet:
      f.assign(12, 0x02);
      f.push_back(0x81);  // one 802.1Q tag
      f.push_back(0x00);
      f.push_back(0x00);
      f.push_back(0x05);
      f.push_back(static_cast<std::uint8_t>(ethertype >> 8));
      f.push_back(static_cast<std::uint8_t>(ethertype));
      break;
    case kLinkSll:
      f.resize(16);
      store_be16(&f[14], ethertype);
      break;
    case kLinkSll2:
      f.resize(20);
      store_be16(&f[0], ethertype);
      store_be32(&f[4], 1);  // interface index
      break;
    case kLinkNull:  // host byte order (little-endian here): AF_INET 2, AF_INET6 10
      f = {static_cast<std::uint8_t>(v6 ? 10 : 2), 0, 0, 0};
      break;
    case kLinkLoop:  // network byte order; AF_INET6 as the BSDs number it
      f = {0, 0, 0, static_cast<std::uint8_t>(v6 ? 24 : 2)};
      break;
    default: break;  // RAW, IPV4, IPV6
  }
  f.insert(f.end(), ip.begin(), ip.end());
  return f;
}

NetAddr v6addr(std::uint8_t last, std::uint16_t port) {
  NetAddr a;
  a.v6 = true;
  a.bytes[0] = 0xfd;
  a.bytes[15] = last;
  a.port = port;
  return a;
}

TEST(PcapDecoder, EveryLinkTypeIpv4AndIpv6UdpAndTcp) {
  const NetAddr a4 = NetAddr::ipv4(0x0A000001, 4000), b4 = NetAddr::ipv4(0x0A000002, 5260);
  const NetAddr a6 = v6addr(1, 4000), b6 = v6addr(2, 5260);
  TempDir dir;
  for (int link : {kLinkNull, kLinkEthernet, kLinkRaw, kLinkLoop, kLinkSll, kLinkSll2}) {
    SCOPED_TRACE(link);
    std::vector<std::pair<Bytes, std::uint32_t>> frames;
    frames.emplace_back(framed(link, build_udp_packet(a4, b4, text("udp4"), 3)), 0);
    frames.emplace_back(framed(link, build_udp_packet(a6, b6, text("udp6"), 0)), 0);
    frames.emplace_back(framed(link, build_tcp_packet(a4, b4, 100, 7, kTcpAck, text("tcp4"))), 0);
    frames.emplace_back(framed(link, build_tcp_packet(b6, a6, 200, 9, kTcpAck, text("tcp6"))), 0);
    const Bytes image = pcap_image(static_cast<std::uint32_t>(link), frames);
    auto cap = read_capture_bytes(image);
    ASSERT_TRUE(cap) << cap.error().message;
    EXPECT_EQ(cap->skipped.to_string(), "");
    ASSERT_EQ(cap->packets.size(), 4u);
    EXPECT_EQ(cap->packets[0].protocol, kIpProtoUdp);
    EXPECT_EQ(cap->packets[0].src, a4);
    EXPECT_EQ(cap->packets[0].dst, b4);
    EXPECT_EQ(cap->packets[0].ip_id, 3);
    EXPECT_EQ(cap->packets[0].payload, text("udp4"));
    EXPECT_EQ(cap->packets[1].src, a6);
    EXPECT_EQ(cap->packets[1].payload, text("udp6"));
    EXPECT_EQ(cap->packets[2].protocol, kIpProtoTcp);
    EXPECT_EQ(cap->packets[2].seq, 100u);
    EXPECT_EQ(cap->packets[2].ack, 7u);
    EXPECT_EQ(cap->packets[2].payload, text("tcp4"));
    EXPECT_EQ(cap->packets[3].src, b6);
    EXPECT_EQ(cap->packets[3].payload, text("tcp6"));
    EXPECT_EQ(cap->packets[3].timestamp, std::chrono::seconds(1003) + std::chrono::nanoseconds(3));
    // read_pcap: the same decoder, UDP only; TCP counted as skipped.
    const std::string path = dir.file("l.pcap");
    write_file(path, image);
    SkipCounts skipped;
    auto recs = read_pcap(path, &skipped);
    ASSERT_TRUE(recs) << recs.error().message;
    ASSERT_EQ(recs->size(), 2u);
    EXPECT_EQ((*recs)[1].src, a6);
    EXPECT_EQ((*recs)[1].payload, text("udp6"));
    EXPECT_EQ(skipped.to_string(), "not UDP=2");
  }
  for (int link : {kLinkIpv4, kLinkIpv6}) {
    const Bytes ip = link == kLinkIpv4 ? build_udp_packet(a4, b4, text("x"), 0)
                                       : build_udp_packet(a6, b6, text("x"), 0);
    auto cap = read_capture_bytes(pcap_image(static_cast<std::uint32_t>(link), {{ip, 0}}));
    ASSERT_TRUE(cap);
    EXPECT_EQ(cap->packets.size(), 1u) << link;
  }
}

TEST(PcapDecoder, NonIpAndUnknownLinkTypesAreCounted) {
  Bytes arp(12, 0x02);
  arp.push_back(0x08);
  arp.push_back(0x06);
  arp.resize(42);
  Bytes null_other = {7, 0, 0, 0, 0x45};  // AF 7: not IP
  Bytes short_sll2(10, 0);
  auto cap = read_capture_bytes(pcap_image(kLinkEthernet, {{arp, 0}, {Bytes(5, 0), 0}}));
  ASSERT_TRUE(cap);
  EXPECT_EQ(cap->skipped.to_string(), "not IP=1, short link-layer header=1");
  cap = read_capture_bytes(pcap_image(kLinkNull, {{null_other, 0}}));
  ASSERT_TRUE(cap);
  EXPECT_EQ(cap->skipped.to_string(), "not IP=1");
  cap = read_capture_bytes(pcap_image(kLinkSll2, {{short_sll2, 0}}));
  ASSERT_TRUE(cap);
  EXPECT_EQ(cap->skipped.to_string(), "short link-layer header=1");
  cap = read_capture_bytes(pcap_image(147, {{text("user link type"), 0}}));
  ASSERT_TRUE(cap);
  EXPECT_EQ(cap->skipped.to_string(), "unsupported link type=1");
}

TEST(PcapDecoder, FragmentsAreSkippedAndCounted) {
  const NetAddr a4 = NetAddr::ipv4(0x0A000001, 4000), b4 = NetAddr::ipv4(0x0A000002, 5260);
  Bytes first = build_udp_packet(a4, b4, Bytes(64, 1), 1);
  store_be16(&first[6], 0x2000);  // MF, offset 0: the UDP header is there but not the datagram
  Bytes later = build_udp_packet(a4, b4, Bytes(64, 1), 1);
  store_be16(&later[6], 0x0008);  // offset 64, last fragment
  // IPv6: a fragment header (next header 44) before UDP.
  Bytes v6 = build_udp_packet(v6addr(1, 1), v6addr(2, 2), Bytes(16, 3), 0);
  Bytes frag6(v6.begin(), v6.begin() + 40);
  frag6[6] = 44;
  store_be16(&frag6[4], static_cast<std::uint16_t>(load_be16(&frag6[4]) + 8));
  const Bytes fh = {17, 0, 0, 1, 0, 0, 0, 42};  // next UDP, offset 0, M set
  frag6.insert(frag6.end(), fh.begin(), fh.end());
  frag6.insert(frag6.end(), v6.begin() + 40, v6.end());
  const Bytes whole = build_udp_packet(a4, b4, text("whole"), 2);
  TempDir dir;
  const std::string path = dir.file("f.pcap");
  write_file(path, pcap_image(kLinkRaw, {{first, 0}, {later, 0}, {frag6, 0}, {whole, 0}}));
  SkipCounts skipped;
  auto recs = read_pcap(path, &skipped);
  ASSERT_TRUE(recs) << recs.error().message;
  ASSERT_EQ(recs->size(), 1u);
  EXPECT_EQ((*recs)[0].payload, text("whole"));
  EXPECT_EQ(skipped.to_string(), "IP fragment=3");
}

TEST(PcapDecoder, SnapLengthCutsAndTruncatedRecords) {
  const NetAddr a4 = NetAddr::ipv4(0x0A000001, 4000), b4 = NetAddr::ipv4(0x0A000002, 5260);
  const Bytes udp = build_udp_packet(a4, b4, Bytes(100, 0x55), 0);
  const Bytes tcp = build_tcp_packet(a4, b4, 1, 1, kTcpAck, Bytes(100, 0x66));
  const Bytes udp_cut(udp.begin(), udp.begin() + 60);  // 32 of 100 payload bytes
  const Bytes tcp_cut(tcp.begin(), tcp.begin() + 50);  // 10 of 100
  const Bytes hdr_cut(tcp.begin(), tcp.begin() + 30);  // inside the TCP header
  const Bytes image = pcap_image(kLinkRaw, {{udp_cut, static_cast<std::uint32_t>(udp.size())},
                                            {tcp_cut, static_cast<std::uint32_t>(tcp.size())},
                                            {hdr_cut, static_cast<std::uint32_t>(tcp.size())},
                                            {udp, 0}});
  auto cap = read_capture_bytes(image);
  ASSERT_TRUE(cap) << cap.error().message;
  ASSERT_EQ(cap->packets.size(), 3u);
  EXPECT_TRUE(cap->packets[0].cut());
  EXPECT_EQ(cap->packets[0].payload.size(), 32u);
  EXPECT_EQ(cap->packets[0].payload_len, 100u);
  EXPECT_TRUE(cap->packets[1].cut());
  EXPECT_EQ(cap->packets[1].payload.size(), 10u);
  EXPECT_FALSE(cap->packets[2].cut());
  EXPECT_EQ(cap->skipped.to_string(), "short TCP header=1");
  TempDir dir;
  const std::string path = dir.file("s.pcap");
  write_file(path, image);
  auto recs = read_pcap(path);
  ASSERT_TRUE(recs);
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[0].payload.size(), 32u);
  EXPECT_EQ((*recs)[0].payload_len, 100u);
  // A file cut at every length: never a crash; whole records kept, the cut one counted.
  for (std::size_t n = 24; n < image.size(); ++n) {
    auto t = read_capture_bytes(ByteSpan(image).first(n));
    ASSERT_TRUE(t) << n;
    EXPECT_LE(t->packets.size(), 3u);
  }
  auto t = read_capture_bytes(ByteSpan(image).first(image.size() - 5));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->packets.size(), 2u);
  EXPECT_EQ(t->skipped.reasons.count("truncated or damaged record (end of capture)"), 1u);
}

TEST(PcapDecoder, TcpPacketsHaveValidChecksums) {
  const NetAddr a4 = NetAddr::ipv4(0x7F000001, 40000), b4 = NetAddr::ipv4(0x7F000001, 5260);
  const Bytes payload = text("odd-length payload");
  const Bytes opts = {2, 4, 0xFF, 0xD7, 1, 3, 3, 14};
  const Bytes p4 =
      build_tcp_packet(a4, b4, 0xFFFFFFF0u, 77, kTcpAck | kTcpPsh, payload, 1000, opts);
  ASSERT_EQ(p4.size(), 20u + 28u + payload.size());
  EXPECT_EQ(ones_sum({p4.data(), 20}), 0xFFFF);
  std::uint32_t pseudo = ones_sum({p4.data() + 12, 8});
  pseudo += 6 + static_cast<std::uint32_t>(p4.size() - 20);
  EXPECT_EQ(ones_sum({p4.data() + 20, p4.size() - 20}, pseudo), 0xFFFF);
  EXPECT_EQ(p4[20 + 12] >> 4, 7);  // data offset: 28 bytes
  const Bytes p6 = build_tcp_packet(v6addr(1, 1), v6addr(2, 2), 5, 6, kTcpSyn, {});
  ASSERT_EQ(p6.size(), 60u);
  pseudo = ones_sum({p6.data() + 8, 32});
  pseudo += 6 + 20;
  EXPECT_EQ(ones_sum({p6.data() + 40, 20}, pseudo), 0xFFFF);
  EXPECT_EQ(load_be32(p6.data() + 40 + 8), 0u);  // no ACK flag: acknowledgement number zero
  // Payloads are cut to what an IPv4 packet can hold.
  const Bytes big = build_tcp_packet(a4, b4, 1, 1, kTcpAck, Bytes(100000, 1));
  EXPECT_EQ(big.size(), 65535u);
}

// TcpStreamRecorder: a connection as segments; read back, every sequence / ack number and flag
// is what a real capture would show, and no segment exceeds the IP limit.
void check_recorded_connection(const NetAddr& client, const NetAddr& server) {
  TempDir dir;
  const std::string path = dir.file("tcp.pcap");
  Bytes request(150000), reply(70000);
  for (std::size_t i = 0; i < request.size(); ++i) request[i] = static_cast<std::uint8_t>(i * 7);
  for (std::size_t i = 0; i < reply.size(); ++i) reply[i] = static_cast<std::uint8_t>(i * 13);
  {
    auto w = PcapWriter::open(path);
    ASSERT_TRUE(w);
    TcpStreamRecorder rec(**w);
    rec.open(1, std::chrono::seconds(1), client, server);
    rec.data(1, std::chrono::seconds(2), true, request);
    rec.data(1, std::chrono::seconds(3), false, reply);
    rec.data(1, std::chrono::seconds(4), true, text("bye"));
    rec.data(2, std::chrono::seconds(4), true, text("unknown id: ignored"));
    EXPECT_EQ(rec.open_connections(), 1u);
    rec.close(1, std::chrono::seconds(5), true);
    EXPECT_EQ(rec.open_connections(), 0u);
  }
  auto cap = read_capture(path);
  ASSERT_TRUE(cap) << cap.error().message;
  EXPECT_EQ(cap->skipped.to_string(), "");
  const auto& p = cap->packets;
  // SYN, SYN-ACK, ACK, 3 + 2 + 1 data segments, FIN, FIN, ACK.
  ASSERT_EQ(p.size(), 12u);
  EXPECT_EQ(p[0].flags, kTcpSyn);
  EXPECT_EQ(p[0].src, client);
  EXPECT_EQ(p[1].flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(p[1].src, server);
  EXPECT_EQ(p[1].ack, p[0].seq + 1);
  EXPECT_EQ(p[2].flags, kTcpAck);
  EXPECT_EQ(p[2].seq, p[0].seq + 1);
  EXPECT_EQ(p[2].ack, p[1].seq + 1);
  std::uint32_t cseq = p[0].seq + 1, sseq = p[1].seq + 1;
  Bytes got_req, got_reply;
  for (std::size_t i = 3; i < 9; ++i) {
    EXPECT_LE(p[i].payload.size(), kMaxTcpSegment);
    EXPECT_FALSE(p[i].cut());
    EXPECT_NE(p[i].flags & kTcpAck, 0);
    if (p[i].src == client) {
      EXPECT_EQ(p[i].seq, cseq);
      EXPECT_EQ(p[i].ack, sseq);
      cseq += static_cast<std::uint32_t>(p[i].payload.size());
      if (got_req.size() < request.size())
        got_req.insert(got_req.end(), p[i].payload.begin(), p[i].payload.end());
    } else {
      EXPECT_EQ(p[i].seq, sseq);
      EXPECT_EQ(p[i].ack, cseq);
      sseq += static_cast<std::uint32_t>(p[i].payload.size());
      got_reply.insert(got_reply.end(), p[i].payload.begin(), p[i].payload.end());
    }
  }
  EXPECT_EQ(got_req, request);
  EXPECT_EQ(got_reply, reply);
  EXPECT_EQ(p[5].flags, kTcpAck | kTcpPsh);  // the last segment of a write pushes
  EXPECT_EQ(p[8].payload, text("bye"));
  EXPECT_EQ(p[9].flags, kTcpFin | kTcpAck);
  EXPECT_EQ(p[9].src, client);
  EXPECT_EQ(p[9].seq, cseq);
  EXPECT_EQ(p[10].flags, kTcpFin | kTcpAck);
  EXPECT_EQ(p[10].seq, sseq);
  EXPECT_EQ(p[10].ack, cseq + 1);
  EXPECT_EQ(p[11].flags, kTcpAck);
  EXPECT_EQ(p[11].ack, sseq + 1);
  EXPECT_EQ(p[11].timestamp, std::chrono::seconds(5));
}

TEST(PcapDecoder, TcpStreamRecorderIpv4) {
  check_recorded_connection(NetAddr::ipv4(0x7F000001, 41000), NetAddr::ipv4(0x7F000001, 5260));
}

TEST(PcapDecoder, TcpStreamRecorderIpv6) {
  check_recorded_connection(v6addr(1, 41000), v6addr(1, 5260));
}

}  // namespace
}  // namespace ipsan::netem
