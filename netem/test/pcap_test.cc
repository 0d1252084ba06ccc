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

namespace ipsan::netem {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / str_cat("ipsan_netem_", info->name(), "_", ::getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

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

}  // namespace
}  // namespace ipsan::netem
