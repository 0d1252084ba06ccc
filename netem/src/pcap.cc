// pcap recording and reading through libpcap (ipsan/netem/pcap.h).
#include "ipsan/netem/pcap.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "ipsan/base/log.h"

namespace ipsan::netem {
namespace {

constexpr std::size_t kSnapLen = 262144;
constexpr std::size_t kMaxUdpPayloadV4 = 65535 - 20 - 8;
constexpr std::size_t kMaxUdpPayloadV6 = 65535 - 8;

// RFC 1071 ones'-complement sum, folded later.
std::uint32_t sum16(std::uint32_t acc, ByteSpan data) {
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) acc += load_be16(&data[i]);
  if (i < data.size()) acc += static_cast<std::uint32_t>(data[i]) << 8;
  return acc;
}

std::uint16_t fold(std::uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc & 0xFFFF);
}

std::string ipv6_text(const std::array<std::uint8_t, 16>& b) {
  // Plain eight-group form with the longest zero run compressed (RFC 5952 style).
  std::uint16_t g[8];
  for (int i = 0; i < 8; ++i) g[i] = load_be16(&b[static_cast<std::size_t>(i) * 2]);
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && g[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) {
      best = i;
      best_len = j - i;
    }
    i = j == i ? i + 1 : j;
  }
  std::string out;
  char buf[8];
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(buf, sizeof buf, "%x", g[i]);
    out += buf;
  }
  return out;
}

bool is_ip_ethertype(std::uint16_t type) { return type == 0x0800 || type == 0x86DD; }

// Address families of DLT_NULL / DLT_LOOP headers (host or network byte order): AF_INET, and
// AF_INET6 as Linux, the BSDs and macOS number it.
bool is_ip_family(std::uint32_t af) {
  return af == 2 || af == 10 || af == 24 || af == 28 || af == 30;
}

// Link layer -> IP packet (a view into the frame); false with `why` when not IP.
bool strip_link(int link_type, ByteSpan& frame, std::string& why) {
  auto need = [&](std::size_t n) {
    if (frame.size() < n) {
      why = "short link-layer header";
      return false;
    }
    return true;
  };
  auto ip_type = [&](std::uint16_t type) {
    if (!is_ip_ethertype(type)) {
      why = "not IP";
      return false;
    }
    return true;
  };
  switch (link_type) {
    case DLT_RAW:  // 12 or 14 depending on the platform's headers
    case kLinkRaw:
    case kLinkIpv4:
    case kLinkIpv6: return true;
    case kLinkEthernet: {
      if (!need(14)) return false;
      std::size_t off = 12;
      std::uint16_t type = load_be16(&frame[off]);
      while ((type == 0x8100 || type == 0x88A8) && frame.size() >= off + 6) {
        off += 4;
        type = load_be16(&frame[off]);
      }
      if (!ip_type(type)) return false;
      frame = frame.subspan(off + 2);
      return true;
    }
    case kLinkSll:
      if (!need(16) || !ip_type(load_be16(&frame[14]))) return false;
      frame = frame.subspan(16);
      return true;
    case kLinkSll2:
      if (!need(20) || !ip_type(load_be16(&frame[0]))) return false;
      frame = frame.subspan(20);
      return true;
    case kLinkNull:
    case kLinkLoop: {
      if (!need(4)) return false;
      const std::uint32_t be = load_be32(&frame[0]);
      const std::uint32_t le =
          (be >> 24) | ((be >> 8) & 0xFF00u) | ((be << 8) & 0xFF0000u) | (be << 24);
      if (!is_ip_family(be) && !is_ip_family(le)) {
        why = "not IP";
        return false;
      }
      frame = frame.subspan(4);
      return true;
    }
    default: why = "unsupported link type"; return false;
  }
}

Result<CaptureFile, Error> read_from(pcap_t* p) {
  CaptureFile out;
  out.link_type = pcap_datalink(p);
  std::size_t number = 0;
  for (;;) {
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(p, &hdr, &data);
    if (rc == PCAP_ERROR_BREAK) break;  // end of file
    if (rc != 1) {
      out.skipped.add("truncated or damaged record (end of capture)");
      break;
    }
    ++number;
    Packet pkt;
    pkt.number = number;
    pkt.timestamp =
        std::chrono::seconds(hdr->ts.tv_sec) + std::chrono::nanoseconds(hdr->ts.tv_usec);
    std::string why;
    if (!parse_frame(out.link_type, ByteSpan(data, hdr->caplen), pkt, why)) {
      out.skipped.add(why);
      continue;
    }
    out.packets.push_back(std::move(pkt));
  }
  pcap_close(p);
  return out;
}

std::string csv_path_for(const std::string& path, std::string_view suffix) {
  constexpr std::string_view kExt = ".pcap";
  if (path.size() > kExt.size() &&
      path.compare(path.size() - kExt.size(), kExt.size(), kExt) == 0) {
    return path.substr(0, path.size() - kExt.size()) + std::string(suffix);
  }
  return path + std::string(suffix);
}

}  // namespace

NetAddr NetAddr::ipv4(std::uint32_t host_order_addr, std::uint16_t port) {
  NetAddr a;
  store_be32(a.bytes.data(), host_order_addr);
  a.port = port;
  return a;
}

std::string NetAddr::to_string() const {
  if (v6) return str_cat("[", ipv6_text(bytes), "]:", port);
  return str_cat(int{bytes[0]}, ".", int{bytes[1]}, ".", int{bytes[2]}, ".", int{bytes[3]}, ":",
                 port);
}

Bytes build_udp_packet(const NetAddr& src, const NetAddr& dst, ByteSpan payload,
                       std::uint16_t ip_id) {
  const bool v6 = src.v6 || dst.v6;
  payload = payload.first(std::min(payload.size(), v6 ? kMaxUdpPayloadV6 : kMaxUdpPayloadV4));
  const std::size_t ip_len = v6 ? 40 : 20;
  const auto udp_len = static_cast<std::uint16_t>(8 + payload.size());
  Bytes pkt(ip_len + udp_len);
  std::uint8_t* ip = pkt.data();
  std::uint8_t* udp = ip + ip_len;
  std::uint32_t pseudo = 0;
  if (v6) {
    store_be32(ip, 0x60000000u);
    store_be16(ip + 4, udp_len);
    ip[6] = kIpProtoUdp;
    ip[7] = 64;
    std::memcpy(ip + 8, src.bytes.data(), 16);
    std::memcpy(ip + 24, dst.bytes.data(), 16);
    pseudo = sum16(0, {ip + 8, 32}) + udp_len + kIpProtoUdp;
  } else {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<std::uint16_t>(ip_len + udp_len));
    store_be16(ip + 4, ip_id);
    store_be16(ip + 6, 0x4000);  // don't fragment
    ip[8] = 64;
    ip[9] = kIpProtoUdp;
    std::memcpy(ip + 12, src.bytes.data(), 4);
    std::memcpy(ip + 16, dst.bytes.data(), 4);
    store_be16(ip + 10, fold(sum16(0, {ip, 20})));
    pseudo = sum16(0, {ip + 12, 8}) + udp_len + kIpProtoUdp;
  }
  store_be16(udp, src.port);
  store_be16(udp + 2, dst.port);
  store_be16(udp + 4, udp_len);
  if (!payload.empty()) std::memcpy(udp + 8, payload.data(), payload.size());
  std::uint16_t csum = fold(sum16(pseudo, {udp, udp_len}));
  if (csum == 0) csum = 0xFFFF;
  store_be16(udp + 6, csum);
  return pkt;
}

Bytes build_tcp_packet(const NetAddr& src, const NetAddr& dst, std::uint32_t seq, std::uint32_t ack,
                       std::uint8_t flags, ByteSpan payload, std::uint16_t window,
                       ByteSpan options) {
  const bool v6 = src.v6 || dst.v6;
  payload = payload.first(std::min(payload.size(), kMaxTcpSegment));
  options = options.first(std::min<std::size_t>(options.size(), 40) & ~std::size_t{3});
  const std::size_t ip_len = v6 ? 40 : 20;
  const std::size_t tcp_hdr = 20 + options.size();
  const std::size_t tcp_len = tcp_hdr + payload.size();
  Bytes pkt(ip_len + tcp_len);
  std::uint8_t* ip = pkt.data();
  std::uint8_t* tcp = ip + ip_len;
  std::uint32_t pseudo = 0;
  if (v6) {
    store_be32(ip, 0x60000000u);
    store_be16(ip + 4, static_cast<std::uint16_t>(tcp_len));
    ip[6] = kIpProtoTcp;
    ip[7] = 64;
    std::memcpy(ip + 8, src.bytes.data(), 16);
    std::memcpy(ip + 24, dst.bytes.data(), 16);
    pseudo = sum16(0, {ip + 8, 32});
  } else {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<std::uint16_t>(ip_len + tcp_len));
    store_be16(ip + 6, 0x4000);  // don't fragment
    ip[8] = 64;
    ip[9] = kIpProtoTcp;
    std::memcpy(ip + 12, src.bytes.data(), 4);
    std::memcpy(ip + 16, dst.bytes.data(), 4);
    store_be16(ip + 10, fold(sum16(0, {ip, 20})));
    pseudo = sum16(0, {ip + 12, 8});
  }
  pseudo += static_cast<std::uint32_t>(tcp_len) + kIpProtoTcp;
  store_be16(tcp, src.port);
  store_be16(tcp + 2, dst.port);
  store_be32(tcp + 4, seq);
  store_be32(tcp + 8, (flags & kTcpAck) != 0 ? ack : 0);
  tcp[12] = static_cast<std::uint8_t>((tcp_hdr / 4) << 4);
  tcp[13] = flags;
  store_be16(tcp + 14, window);
  if (!options.empty()) std::memcpy(tcp + 20, options.data(), options.size());
  if (!payload.empty()) std::memcpy(tcp + tcp_hdr, payload.data(), payload.size());
  store_be16(tcp + 16, fold(sum16(pseudo, {tcp, tcp_len})));
  return pkt;
}

std::string SkipCounts::to_string() const {
  std::string out;
  for (const auto& [k, v] : reasons) {
    if (!out.empty()) out += ", ";
    out += k + "=" + std::to_string(v);
  }
  return out;
}

bool parse_frame(int link_type, ByteSpan frame, Packet& out, std::string& why) {
  if (!strip_link(link_type, frame, why)) return false;
  if (frame.empty()) {
    why = "empty IP packet";
    return false;
  }
  const std::uint8_t* p = frame.data();
  const std::size_t len = frame.size();
  std::uint8_t proto = 0;
  std::size_t l4 = 0;      // offset of the transport header
  std::size_t l4_end = 0;  // end of the transport segment per the IP header (may exceed len)
  const int version = p[0] >> 4;
  if (version == 4) {
    if (len < 20) {
      why = "short IPv4 header";
      return false;
    }
    const std::size_t ihl = std::size_t{p[0] & 0x0Fu} * 4;
    const std::size_t total = load_be16(p + 2);
    if (ihl < 20 || ihl > len || total < ihl) {
      why = "bad IPv4 header";
      return false;
    }
    if ((load_be16(p + 6) & 0x3FFF) != 0) {  // MF set or a non-zero offset
      why = "IP fragment";
      return false;
    }
    proto = p[9];
    out.src = NetAddr::ipv4(load_be32(p + 12), 0);
    out.dst = NetAddr::ipv4(load_be32(p + 16), 0);
    out.ip_id = load_be16(p + 4);
    l4 = ihl;
    l4_end = total;
  } else if (version == 6) {
    if (len < 40) {
      why = "short IPv6 header";
      return false;
    }
    out.src.v6 = out.dst.v6 = true;
    std::memcpy(out.src.bytes.data(), p + 8, 16);
    std::memcpy(out.dst.bytes.data(), p + 24, 16);
    l4_end = 40 + std::size_t{load_be16(p + 4)};
    proto = p[6];
    l4 = 40;
    // Hop-by-hop, routing and destination options; fragments are skipped.
    for (int hops = 0; hops < 8 && (proto == 0 || proto == 43 || proto == 60 || proto == 44);
         ++hops) {
      if (proto == 44) {
        why = "IP fragment";
        return false;
      }
      if (l4 + 8 > len) {
        why = "short IPv6 extension header";
        return false;
      }
      const std::uint8_t next = p[l4];
      l4 += (std::size_t{p[l4 + 1]} + 1) * 8;
      proto = next;
    }
  } else {
    why = "not IP";
    return false;
  }
  if (l4_end < l4) {
    why = "bad IP length";
    return false;
  }
  const std::size_t avail_end = std::min(len, l4_end);
  out.protocol = proto;
  if (proto == kIpProtoUdp) {
    if (l4 + 8 > avail_end) {
      why = "short UDP header";
      return false;
    }
    out.src.port = load_be16(p + l4);
    out.dst.port = load_be16(p + l4 + 2);
    const std::size_t udp_len = load_be16(p + l4 + 4);
    if (udp_len < 8 || l4 + udp_len > l4_end) {
      why = "bad UDP length";
      return false;
    }
    out.payload_len = static_cast<std::uint32_t>(udp_len - 8);
    const std::size_t have = std::min(avail_end, l4 + udp_len) - (l4 + 8);
    out.payload.assign(p + l4 + 8, p + l4 + 8 + have);
    return true;
  }
  if (proto == kIpProtoTcp) {
    if (l4 + 20 > avail_end) {
      why = "short TCP header";
      return false;
    }
    out.src.port = load_be16(p + l4);
    out.dst.port = load_be16(p + l4 + 2);
    out.seq = load_be32(p + l4 + 4);
    out.ack = load_be32(p + l4 + 8);
    const std::size_t doff = static_cast<std::size_t>(p[l4 + 12] >> 4) * 4;
    out.flags = p[l4 + 13];
    if (doff < 20 || l4 + doff > l4_end) {
      why = "bad TCP header length";
      return false;
    }
    if (l4 + doff > avail_end) {
      why = "short TCP header";
      return false;
    }
    out.payload_len = static_cast<std::uint32_t>(l4_end - l4 - doff);
    out.payload.assign(p + l4 + doff, p + avail_end);
    return true;
  }
  why = "not UDP or TCP";
  return false;
}

Result<CaptureFile, Error> read_capture(const std::string& path) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (p == nullptr) {
    return fail(Errc::kBadMessage, str_cat("cannot read capture ", path, ": ", errbuf));
  }
  return read_from(p);
}

Result<CaptureFile, Error> read_capture_bytes(ByteSpan image) {
  if (image.empty()) return fail(Errc::kBadMessage, "empty capture");
  // fmemopen needs a writable buffer in some libcs; give it a copy.
  auto copy = std::make_unique<Bytes>(image.begin(), image.end());
  std::FILE* f = fmemopen(copy->data(), copy->size(), "rb");
  if (f == nullptr) return fail(Errc::kInternal, "fmemopen failed");
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (p == nullptr) {
    std::fclose(f);
    return fail(Errc::kBadMessage, str_cat("cannot read capture: ", errbuf));
  }
  return read_from(p);  // pcap_close closes f
}

Result<std::vector<PcapRecord>, Error> read_pcap(const std::string& path, SkipCounts* skipped) {
  auto cap = read_capture(path);
  if (!cap) return make_unexpected(cap.error());
  std::vector<PcapRecord> out;
  out.reserve(cap->packets.size());
  for (Packet& pkt : cap->packets) {
    if (pkt.protocol != kIpProtoUdp) {
      cap->skipped.add("not UDP");
      continue;
    }
    PcapRecord rec;
    rec.timestamp = pkt.timestamp;
    rec.src = pkt.src;
    rec.dst = pkt.dst;
    rec.ip_id = pkt.ip_id;
    rec.payload = std::move(pkt.payload);
    rec.payload_len = pkt.payload_len;
    out.push_back(std::move(rec));
  }
  if (skipped != nullptr) skipped->merge(cap->skipped);
  return out;
}

Result<std::unique_ptr<PcapWriter>, Error> PcapWriter::open(const std::string& path) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  pcap_t* p = pcap_open_dead_with_tstamp_precision(DLT_RAW, kSnapLen, PCAP_TSTAMP_PRECISION_NANO);
  if (p == nullptr) return fail(Errc::kInternal, "pcap_open_dead failed");
  w->pcap_ = p;
  pcap_dumper_t* d = pcap_dump_open(p, path.c_str());
  if (d == nullptr) {
    return fail(Errc::kIoError, str_cat("cannot write pcap ", path, ": ", pcap_geterr(p)));
  }
  w->dumper_ = d;
  return w;
}

PcapWriter::~PcapWriter() { close(); }

void PcapWriter::write(std::chrono::nanoseconds timestamp, const NetAddr& src, const NetAddr& dst,
                       ByteSpan payload, std::uint16_t ip_id) {
  if (dumper_ == nullptr) return;
  write_packet(timestamp, build_udp_packet(src, dst, payload, ip_id));
}

void PcapWriter::write_packet(std::chrono::nanoseconds timestamp, ByteSpan pkt) {
  if (dumper_ == nullptr) return;
  pcap_pkthdr hdr{};
  const auto ns = timestamp.count() < 0 ? 0 : timestamp.count();
  hdr.ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  hdr.ts.tv_usec = static_cast<suseconds_t>(ns % 1'000'000'000);  // nanoseconds (nano file)
  hdr.len = static_cast<bpf_u_int32>(pkt.size());
  hdr.caplen = static_cast<bpf_u_int32>(std::min(pkt.size(), kSnapLen));
  pcap_dump(static_cast<u_char*>(dumper_), &hdr, pkt.data());
  ++records_;
}

void PcapWriter::flush() {
  if (dumper_ != nullptr) pcap_dump_flush(static_cast<pcap_dumper_t*>(dumper_));
}

void PcapWriter::close() {
  if (dumper_ != nullptr) pcap_dump_close(static_cast<pcap_dumper_t*>(dumper_));
  if (pcap_ != nullptr) pcap_close(static_cast<pcap_t*>(pcap_));
  dumper_ = nullptr;
  pcap_ = nullptr;
}

void TcpStreamRecorder::open(std::uint64_t id, std::chrono::nanoseconds ts, const NetAddr& client,
                             const NetAddr& server) {
  Conn c;
  c.client = client;
  c.server = server;
  // Deterministic initial sequence numbers that differ per connection and side.
  std::uint64_t x = (id + 1) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  const auto isn_c = static_cast<std::uint32_t>(x);
  const auto isn_s = static_cast<std::uint32_t>(x >> 32);
  // SYN options: MSS (kind 2), NOP, window scale 14 (kind 3): the 65535 window field then
  // means 1 GiB, so long runs of full-size segments are not "window full" to analysers.
  constexpr std::uint8_t syn_opts[8] = {2, 4, kMaxTcpSegment >> 8, kMaxTcpSegment & 0xFF, 1, 3,
                                        3, 14};
  writer_.write_packet(ts, build_tcp_packet(client, server, isn_c, 0, kTcpSyn, {}, 65535,
                                            ByteSpan(syn_opts, sizeof syn_opts)));
  writer_.write_packet(ts, build_tcp_packet(server, client, isn_s, isn_c + 1, kTcpSyn | kTcpAck, {},
                                            65535, ByteSpan(syn_opts, sizeof syn_opts)));
  c.client_next = isn_c + 1;
  c.server_next = isn_s + 1;
  writer_.write_packet(ts,
                       build_tcp_packet(client, server, c.client_next, c.server_next, kTcpAck, {}));
  conns_[id] = c;
}

void TcpStreamRecorder::data(std::uint64_t id, std::chrono::nanoseconds ts, bool from_client,
                             ByteSpan bytes) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  const NetAddr& src = from_client ? c.client : c.server;
  const NetAddr& dst = from_client ? c.server : c.client;
  std::uint32_t& seq = from_client ? c.client_next : c.server_next;
  const std::uint32_t ack = from_client ? c.server_next : c.client_next;
  while (!bytes.empty()) {
    const std::size_t n = std::min(bytes.size(), kMaxTcpSegment);
    const std::uint8_t flags = n == bytes.size() ? kTcpAck | kTcpPsh : kTcpAck;
    writer_.write_packet(ts, build_tcp_packet(src, dst, seq, ack, flags, bytes.first(n)));
    seq += static_cast<std::uint32_t>(n);
    bytes = bytes.subspan(n);
  }
}

void TcpStreamRecorder::close(std::uint64_t id, std::chrono::nanoseconds ts, bool client_first) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  const NetAddr& a = client_first ? c.client : c.server;
  const NetAddr& b = client_first ? c.server : c.client;
  std::uint32_t& a_next = client_first ? c.client_next : c.server_next;
  std::uint32_t& b_next = client_first ? c.server_next : c.client_next;
  const std::uint8_t fin_ack = kTcpFin | kTcpAck;
  writer_.write_packet(ts, build_tcp_packet(a, b, a_next, b_next, fin_ack, {}));
  ++a_next;
  writer_.write_packet(ts, build_tcp_packet(b, a, b_next, a_next, fin_ack, {}));
  ++b_next;
  writer_.write_packet(ts, build_tcp_packet(a, b, a_next, b_next, kTcpAck, {}));
  conns_.erase(it);
}

std::string_view to_string(Direction d) { return d == Direction::kUp ? "up" : "down"; }

std::string Capture::in_path(const std::string& path) { return csv_path_for(path, ".in.pcap"); }
std::string Capture::fates_path(const std::string& path) {
  return csv_path_for(path, ".fates.csv");
}

Result<std::unique_ptr<Capture>, Error> Capture::open(const std::string& path,
                                                      std::chrono::nanoseconds time_offset) {
  std::unique_ptr<Capture> c(new Capture());
  c->offset_ = time_offset;
  auto out = PcapWriter::open(path);
  if (!out) return make_unexpected(out.error());
  c->out_ = std::move(*out);
  auto in = PcapWriter::open(in_path(path));
  if (!in) return make_unexpected(in.error());
  c->in_ = std::move(*in);
  const std::string csv = fates_path(path);
  c->csv_ = std::fopen(csv.c_str(), "w");
  if (c->csv_ == nullptr) {
    return fail(Errc::kIoError, str_cat("cannot write ", csv, ": ", std::strerror(errno)));
  }
  std::fputs(
      "direction,index,copy,entered_ns,time_ns,size,fate,reason,corrupted,truncated,"
      "reordered\n",
      c->csv_);
  return c;
}

Capture::~Capture() { close(); }

void Capture::record(Direction dir, const Event& ev, const NetAddr& src, const NetAddr& dst) {
  const auto ts = [this](TimePoint t) { return t.time_since_epoch() + offset_; };
  const auto ip_id = static_cast<std::uint16_t>(ev.index & 0xFFFF);
  if (ev.kind == Event::Kind::kEntered) {
    if (in_) in_->write(ts(ev.entered), src, dst, ev.data, ip_id);
    return;
  }
  if (ev.kind == Event::Kind::kDelivered && out_)
    out_->write(ts(ev.time), src, dst, ev.data, ip_id);
  if (csv_ == nullptr) return;
  const std::string_view fate = ev.kind == Event::Kind::kDelivered ? "delivered" : "dropped";
  std::fprintf(
      csv_, "%s,%" PRIu64 ",%u,%lld,%lld,%zu,%s,%s,%d,%d,%d\n", std::string(to_string(dir)).c_str(),
      ev.index, ev.copy, static_cast<long long>(ts(ev.entered).count()),
      static_cast<long long>(ts(ev.time).count()), ev.data.size(), std::string(fate).c_str(),
      ev.kind == Event::Kind::kDropped ? std::string(to_string(ev.reason)).c_str() : "",
      ev.corrupted ? 1 : 0, ev.truncated ? 1 : 0, ev.reordered ? 1 : 0);
}

Observer Capture::observer(Direction dir, NetAddr src, NetAddr dst) {
  return [this, dir, src, dst](const Event& ev) { record(dir, ev, src, dst); };
}

void Capture::flush() {
  if (out_) out_->flush();
  if (in_) in_->flush();
  if (csv_ != nullptr) std::fflush(csv_);
}

void Capture::close() {
  if (out_) out_->close();
  if (in_) in_->close();
  if (csv_ != nullptr) std::fclose(csv_);
  csv_ = nullptr;
}

}  // namespace ipsan::netem
