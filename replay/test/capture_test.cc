// Tests of the capture reader (pcap/pcapng link types, truncation, snap length, garbage), TCP
// reassembly (reordering, retransmission, overlap, holes, wraparound) and ipsan extraction of
// hostile UDP payloads.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "ipsan/netem/pcap.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/replay/capture.h"
#include "ipsan/replay/ipsan_capture.h"
#include "ipsan/replay/tcp_stream.h"
#include "pcap_builder.h"

namespace ipsan::replay {
namespace {

using testing::addr;
using testing::Frame;

const netem::NetAddr kA = addr(0x7f000001, 40000);
const netem::NetAddr kB = addr(0x7f000002, 3260);

Bytes text(const char* s) { return Bytes(s, s + std::strlen(s)); }

TEST(Capture, ReadsUdpWrittenByNetemPcapWriter) {
  const auto path = (std::filesystem::temp_directory_path() /
                     ("replay_cap_" + std::to_string(::getpid()) + ".pcap"))
                        .string();
  {
    auto w = netem::PcapWriter::open(path);
    ASSERT_TRUE(w);
    const Bytes p = text("hello ipsan");
    (*w)->write(std::chrono::seconds(5), kA, kB, p);
    (*w)->write(std::chrono::seconds(6), kB, kA, p);
  }
  auto c = read_capture(path);
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->packets.size(), 2u);
  EXPECT_EQ(c->packets[0].protocol, kProtoUdp);
  EXPECT_EQ(c->packets[0].src, kA);
  EXPECT_EQ(c->packets[1].dst, kA);
  EXPECT_EQ(c->packets[0].payload, text("hello ipsan"));
  EXPECT_EQ(c->packets[0].timestamp, std::chrono::seconds(5));
  std::filesystem::remove(path);
}

TEST(Capture, EveryLinkTypeAndIpv6) {
  netem::NetAddr a6, b6;
  a6.v6 = b6.v6 = true;
  a6.bytes[15] = 1;
  b6.bytes[15] = 2;
  a6.port = 1;
  b6.port = 2;
  for (int link : {1, 113, 276, 0, 101}) {
    for (bool v6 : {false, true}) {
      const Bytes ip = v6 ? testing::tcp_packet(a6, b6, 7, kTcpAck, text("abc"))
                          : testing::tcp_packet(kA, kB, 7, kTcpAck, text("abc"));
      Packet p;
      std::string why;
      ASSERT_TRUE(parse_frame(link == 0 ? 0 : link, testing::with_link(link, ip), p, why))
          << link << " " << v6 << ": " << why;
      EXPECT_EQ(p.protocol, kProtoTcp);
      EXPECT_EQ(p.seq, 7u);
      EXPECT_EQ(p.payload, text("abc"));
      EXPECT_EQ(p.src, v6 ? a6 : kA);
    }
  }
  Packet p;
  std::string why;
  EXPECT_FALSE(parse_frame(147, text("xx"), p, why));
  EXPECT_EQ(why, "unsupported link type");
}

TEST(Capture, TruncatedFileAndSnapLengthCuts) {
  std::vector<Frame> frames;
  for (std::uint32_t i = 0; i < 3; ++i) {
    frames.push_back(
        {testing::with_link(1, testing::tcp_packet(kA, kB, 100 * i, kTcpAck, Bytes(100, 0x55))), 0,
         i * 1000});
  }
  // The last frame cut by the snap length: 40 of its 100 payload bytes.
  frames[2].wire_len = static_cast<std::uint32_t>(frames[2].bytes.size());
  frames[2].bytes.resize(frames[2].bytes.size() - 60);
  const Bytes file = testing::pcap_file(1, frames);
  auto c = read_capture_bytes(file);
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->packets.size(), 3u);
  EXPECT_FALSE(c->packets[0].cut());
  EXPECT_TRUE(c->packets[2].cut());
  EXPECT_EQ(c->packets[2].payload.size(), 40u);
  // Cut the file at every length: never a crash, complete records kept, the rest counted.
  for (std::size_t n = 0; n <= file.size(); ++n) {
    auto t = read_capture_bytes(ByteSpan(file).first(n));
    if (!t) continue;  // shorter than the file header
    EXPECT_LE(t->packets.size(), 3u);
  }
  auto t = read_capture_bytes(ByteSpan(file).first(file.size() - 10));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->packets.size(), 2u);
  EXPECT_EQ(t->skipped.total(), 1u) << t->skipped.to_string();
}

TEST(Capture, GarbageIsAnErrorOrSkipped) {
  EXPECT_FALSE(read_capture_bytes(text("this is not a capture file at all")));
  EXPECT_FALSE(read_capture("/nonexistent/x.pcap"));
  // A valid header with random records: everything skipped or parsed, nothing crashes.
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<Frame> frames;
    for (int i = 0; i < 5; ++i) {
      Bytes b(rng() % 120);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng());
      if (!b.empty() && (rng() & 1)) b[0] = 0x45;
      frames.push_back({b, 0, 0});
    }
    auto c = read_capture_bytes(testing::pcap_file(101, frames));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->packets.size() + c->skipped.total(), 5u);
  }
}

std::vector<Packet> tcp_stream_packets(const std::vector<std::pair<std::uint32_t, Bytes>>& segs,
                                       std::uint32_t isn) {
  std::vector<Packet> out;
  Packet syn;
  syn.number = 1;
  syn.protocol = kProtoTcp;
  syn.src = kA;
  syn.dst = kB;
  syn.seq = isn;
  syn.flags = kTcpSyn;
  out.push_back(syn);
  for (const auto& [off, data] : segs) {
    Packet p = syn;
    p.number = out.size() + 1;
    p.flags = kTcpAck;
    p.seq = isn + 1 + off;
    p.payload = data;
    p.payload_len = static_cast<std::uint32_t>(data.size());
    out.push_back(p);
  }
  return out;
}

TEST(TcpStream, ReordersMergesRetransmissionsAndOverlaps) {
  const Bytes all = text("0123456789abcdefghij");
  auto seg = [&](std::uint32_t off, std::size_t n) {
    return std::make_pair(off, Bytes(all.begin() + off, all.begin() + off + n));
  };
  // Out of order, a duplicate, an overlap, across the 32-bit sequence wrap.
  const auto pkts = tcp_stream_packets(
      {seg(5, 5), seg(0, 5), seg(0, 5), seg(8, 7), seg(15, 5), seg(10, 3)}, 0xFFFFFFF0u);
  auto conns = reassemble_tcp(pkts, [](const Packet&) { return true; });
  ASSERT_EQ(conns.size(), 1u);
  const TcpDirection& d = conns[0].client;
  EXPECT_TRUE(d.saw_syn);
  EXPECT_FALSE(d.gap);
  EXPECT_EQ(d.data, all);
  EXPECT_GE(d.retransmitted, 2u);
  EXPECT_GE(d.out_of_order, 1u);
}

TEST(TcpStream, StopsAtAHoleAndAtACutSegment) {
  const Bytes all = text("0123456789abcdefghij");
  auto seg = [&](std::uint32_t off, std::size_t n) {
    return std::make_pair(off, Bytes(all.begin() + off, all.begin() + off + n));
  };
  auto conns = reassemble_tcp(tcp_stream_packets({seg(0, 5), seg(10, 10)}, 1000),
                              [](const Packet&) { return true; });
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_TRUE(conns[0].client.gap);
  EXPECT_FALSE(conns[0].client.cut);  // missing, not cut
  EXPECT_EQ(conns[0].client.data, text("01234"));
  EXPECT_EQ(conns[0].client.bytes_after_gap, 10u);
  // A snap-length-cut segment leaves a hole that its retransmission fills.
  auto pkts = tcp_stream_packets({seg(0, 10), seg(10, 10), seg(10, 10)}, 1000);
  pkts[2].payload.resize(4);
  conns = reassemble_tcp(pkts, [](const Packet&) { return true; });
  EXPECT_FALSE(conns[0].client.gap);
  EXPECT_EQ(conns[0].client.data, all);
  pkts.pop_back();
  conns = reassemble_tcp(pkts, [](const Packet&) { return true; });
  EXPECT_TRUE(conns[0].client.gap);
  EXPECT_TRUE(conns[0].client.cut);
  EXPECT_EQ(conns[0].client.data.size(), 14u);
  // A cut segment followed by a later one: the hole is the cut's.
  pkts = tcp_stream_packets({seg(0, 10), seg(10, 5), seg(15, 5)}, 1000);
  pkts[2].payload.resize(2);
  conns = reassemble_tcp(pkts, [](const Packet&) { return true; });
  EXPECT_TRUE(conns[0].client.gap);
  EXPECT_TRUE(conns[0].client.cut);
  EXPECT_EQ(conns[0].client.data.size(), 12u);
}

TEST(IpsanExtract, HostileUdpPayloadsAreCountedNotFatal) {
  std::mt19937 rng(3);
  CaptureFile cap;
  for (int i = 0; i < 500; ++i) {
    Packet p;
    p.number = static_cast<std::size_t>(i + 1);
    p.protocol = kProtoUdp;
    p.src = kA;
    p.dst = kB;
    p.payload.resize(rng() % 200);
    for (auto& x : p.payload) x = static_cast<std::uint8_t>(rng());
    p.payload_len = static_cast<std::uint32_t>(p.payload.size());
    cap.packets.push_back(std::move(p));
  }
  const IpsanCapture out = extract_ipsan(cap, ExtractOptions{});
  EXPECT_TRUE(out.calls.empty());
  EXPECT_EQ(out.skipped.total(), 500u) << out.skipped.to_string();
}

// ipsan over TCP: connections found without --port by their first call, retransmitted and
// missing segments counted with a reason, other TCP traffic ignored and counted.
TEST(IpsanExtract, TcpStreamsRetransmissionsAndHoles) {
  Bytes stream;
  for (std::uint32_t xid = 1; xid <= 3; ++xid) {
    proto::append_record(stream, proto::encode_null_call(xid), 1u << 20);
  }
  const std::size_t one = stream.size() / 3;
  auto connection = [&](std::uint16_t client_port, std::uint16_t server_port,
                        const std::vector<std::pair<std::uint32_t, std::size_t>>& segs,
                        const Bytes& data) {
    std::vector<std::pair<std::uint32_t, Bytes>> s;
    for (const auto& [off, n] : segs)
      s.emplace_back(off, Bytes(data.begin() + off, data.begin() + off + n));
    auto pkts = tcp_stream_packets(s, 5000);
    for (auto& p : pkts) {
      p.src.port = client_port;
      p.dst.port = server_port;
    }
    return pkts;
  };
  CaptureFile cap;
  auto add = [&](std::vector<Packet> pkts) {
    for (auto& p : pkts) {
      p.number = cap.packets.size() + 1;
      cap.packets.push_back(std::move(p));
    }
  };
  // Port 7000 (not 5260): whole, with one segment retransmitted.
  add(connection(40001, 7000, {{0, one}, {one, one}, {one, one}, {2 * one, one}}, stream));
  // Port 7001: the second call's segment is missing.
  add(connection(40002, 7001, {{0, one}, {2 * one, one}}, stream));
  // Port 7002: not ipsan.
  add(connection(40003, 7002, {{0, 10}}, text("GET / HTTP/1.1\r\n")));
  cap.skipped.add("not UDP or TCP", 2);  // what the reader skipped is reported too
  IpsanCapture out = extract_ipsan(cap, ExtractOptions{});
  ASSERT_EQ(out.calls.size(), 4u) << out.skipped.to_string();
  for (const auto& c : out.calls) EXPECT_EQ(c.skip, "NULL ping");
  EXPECT_EQ(out.skipped.to_string(),
            "TCP connection that does not begin with an ipsan RPC call (ignored)=1, "
            "TCP segment missing from the capture (rest of stream skipped)=1, "
            "not UDP or TCP=2, retransmitted TCP segment (duplicate data ignored)=1");
  // With --port only that port's connections are used.
  ExtractOptions eo;
  eo.port = 7001;
  out = extract_ipsan(cap, eo);
  EXPECT_EQ(out.calls.size(), 1u);
}

}  // namespace
}  // namespace ipsan::replay
