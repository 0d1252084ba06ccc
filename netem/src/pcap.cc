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
constexpr std::uint8_t kProtoUdp = 17;

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

// Parses an IP packet holding UDP; false when it is not one (or is malformed).
bool parse_ip_udp(const std::uint8_t* p, std::size_t len, PcapRecord& rec) {
  if (len < 1) return false;
  const int version = p[0] >> 4;
  const std::uint8_t* udp = nullptr;
  std::size_t avail = 0;
  if (version == 4) {
    if (len < 20) return false;
    const std::size_t ihl = std::size_t{p[0] & 0x0Fu} * 4;
    const std::size_t total = load_be16(p + 2);
    if (ihl < 20 || ihl > len || total < ihl) return false;
    if (p[9] != kProtoUdp) return false;
    if ((load_be16(p + 6) & 0x1FFF) != 0) return false;  // a later fragment: no UDP header
    rec.src = NetAddr::ipv4(load_be32(p + 12), 0);
    rec.dst = NetAddr::ipv4(load_be32(p + 16), 0);
    rec.ip_id = load_be16(p + 4);
    udp = p + ihl;
    avail = std::min(len, total) - ihl;
  } else if (version == 6) {
    if (len < 40 || p[6] != kProtoUdp) return false;
    const std::size_t payload = load_be16(p + 4);
    rec.src.v6 = rec.dst.v6 = true;
    std::memcpy(rec.src.bytes.data(), p + 8, 16);
    std::memcpy(rec.dst.bytes.data(), p + 24, 16);
    udp = p + 40;
    avail = std::min(len - 40, payload);
  } else {
    return false;
  }
  if (avail < 8) return false;
  rec.src.port = load_be16(udp);
  rec.dst.port = load_be16(udp + 2);
  const std::size_t udp_len = load_be16(udp + 4);
  if (udp_len < 8) return false;
  rec.payload_len = static_cast<std::uint32_t>(udp_len - 8);
  const std::size_t n = std::min(avail - 8, udp_len - 8);
  rec.payload.assign(udp + 8, udp + 8 + n);
  return true;
}

// Strips the link-layer header; returns the IP packet or nullptr when not IP.
const std::uint8_t* strip_link(int linktype, const std::uint8_t* p, std::size_t& len) {
  switch (linktype) {
    case DLT_RAW:
#ifdef DLT_IPV4
    case DLT_IPV4:
#endif
#ifdef DLT_IPV6
    case DLT_IPV6:
#endif
      return p;
    case DLT_EN10MB: {
      std::size_t off = 12;
      if (len < off + 2) return nullptr;
      std::uint16_t type = load_be16(p + off);
      while ((type == 0x8100 || type == 0x88A8) && len >= off + 6) {
        off += 4;
        type = load_be16(p + off);
      }
      if (type != 0x0800 && type != 0x86DD) return nullptr;
      off += 2;
      if (len < off) return nullptr;
      len -= off;
      return p + off;
    }
    case DLT_LINUX_SLL: {
      if (len < 16) return nullptr;
      const std::uint16_t type = load_be16(p + 14);
      if (type != 0x0800 && type != 0x86DD) return nullptr;
      len -= 16;
      return p + 16;
    }
    case DLT_NULL:
    case DLT_LOOP:
      if (len < 4) return nullptr;
      len -= 4;
      return p + 4;
    default: return nullptr;
  }
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
    ip[6] = kProtoUdp;
    ip[7] = 64;
    std::memcpy(ip + 8, src.bytes.data(), 16);
    std::memcpy(ip + 24, dst.bytes.data(), 16);
    pseudo = sum16(0, {ip + 8, 32}) + udp_len + kProtoUdp;
  } else {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<std::uint16_t>(ip_len + udp_len));
    store_be16(ip + 4, ip_id);
    store_be16(ip + 6, 0x4000);  // don't fragment
    ip[8] = 64;
    ip[9] = kProtoUdp;
    std::memcpy(ip + 12, src.bytes.data(), 4);
    std::memcpy(ip + 16, dst.bytes.data(), 4);
    store_be16(ip + 10, fold(sum16(0, {ip, 20})));
    pseudo = sum16(0, {ip + 12, 8}) + udp_len + kProtoUdp;
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

Result<std::vector<PcapRecord>, Error> read_pcap(const std::string& path) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (p == nullptr)
    return fail(Errc::kBadMessage, str_cat("cannot read pcap ", path, ": ", errbuf));
  const int linktype = pcap_datalink(p);
  std::vector<PcapRecord> out;
  for (;;) {
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(p, &hdr, &data);
    if (rc != 1) break;  // -2: end of file; -1: truncated or damaged record: keep what we have
    std::size_t len = hdr->caplen;
    const std::uint8_t* ip = strip_link(linktype, data, len);
    if (ip == nullptr) continue;
    PcapRecord rec;
    if (!parse_ip_udp(ip, len, rec)) continue;
    rec.timestamp =
        std::chrono::seconds(hdr->ts.tv_sec) + std::chrono::nanoseconds(hdr->ts.tv_usec);
    out.push_back(std::move(rec));
  }
  pcap_close(p);
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
  const Bytes pkt = build_udp_packet(src, dst, payload, ip_id);
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
