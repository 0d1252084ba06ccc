// Packet reader for pcap/pcapng (ipsan/replay/capture.h).
#include "ipsan/replay/capture.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ipsan/base/log.h"

namespace ipsan::replay {
namespace {

constexpr int kLinkSll2 = 276;  // DLT_LINUX_SLL2, absent from older pcap headers

// Link layer -> IP packet (view into the frame) or nullopt.
bool strip_link(int link_type, ByteSpan& frame, std::string& why) {
  auto need = [&](std::size_t n) {
    if (frame.size() < n) {
      why = "short link-layer header";
      return false;
    }
    return true;
  };
  auto ip_type = [&](std::uint16_t type) {
    if (type != 0x0800 && type != 0x86DD) {
      why = "not IP";
      return false;
    }
    return true;
  };
  switch (link_type) {
    case DLT_RAW:
    case 101:  // LINKTYPE_RAW (as stored in files)
    case 228:  // DLT_IPV4
    case 229:  // DLT_IPV6
      return true;
    case DLT_EN10MB: {
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
    case DLT_LINUX_SLL:
      if (!need(16) || !ip_type(load_be16(&frame[14]))) return false;
      frame = frame.subspan(16);
      return true;
    case kLinkSll2:
      if (!need(20) || !ip_type(load_be16(&frame[0]))) return false;
      frame = frame.subspan(20);
      return true;
    case DLT_NULL:
    case DLT_LOOP:
      if (!need(4)) return false;
      frame = frame.subspan(4);
      return true;
    default: why = "unsupported link type"; return false;
  }
}

}  // namespace

std::string SkipCounts::to_string() const {
  std::string out;
  for (const auto& [k, v] : reasons) {
    if (!out.empty()) out += ", ";
    out += k + "=" + std::to_string(v);
  }
  return out;
}

bool parse_frame(int link_type, ByteSpan frame, std::uint32_t wire_len, Packet& out,
                 std::string& why) {
  (void)wire_len;
  if (!strip_link(link_type, frame, why)) return false;
  if (frame.empty()) {
    why = "empty IP packet";
    return false;
  }
  const std::uint8_t* p = frame.data();
  std::size_t len = frame.size();
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
    out.src = netem::NetAddr::ipv4(load_be32(p + 12), 0);
    out.dst = netem::NetAddr::ipv4(load_be32(p + 16), 0);
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
  if (proto == kProtoUdp) {
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
  if (proto == kProtoTcp) {
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

namespace {

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
    if (!parse_frame(out.link_type, ByteSpan(data, hdr->caplen), hdr->len, pkt, why)) {
      out.skipped.add(why);
      continue;
    }
    out.packets.push_back(std::move(pkt));
  }
  pcap_close(p);
  return out;
}

}  // namespace

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

}  // namespace ipsan::replay
