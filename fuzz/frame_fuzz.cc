// libFuzzer target: one link-layer frame through the shared capture decoder
// (netem::parse_frame: link header, IPv4/IPv6 with extension headers and fragments, UDP/TCP).
// Byte 0 picks the link type; the rest is the frame.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ipsan/netem/pcap.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipsan::netem;
  static constexpr int kLinks[] = {kLinkNull, kLinkEthernet, kLinkRaw,  kLinkLoop,
                                   kLinkSll,  kLinkIpv4,     kLinkIpv6, kLinkSll2};
  if (size == 0) return 0;
  const int link = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
  Packet p;
  std::string why;
  if (parse_frame(link, ipsan::ByteSpan(data + 1, size - 1), p, why)) {
    // Touch every field so sanitizers see any bad read.
    volatile std::size_t sink = p.payload.size() + p.payload_len + p.src.port + p.dst.port + p.seq +
                                p.ack + p.flags + p.ip_id + (p.cut() ? 1 : 0);
    (void)sink;
    if (!p.payload.empty()) sink = std::size_t{p.payload.front()} + p.payload.back();
    (void)p.src.to_string();
  } else if (why.empty()) {
    __builtin_trap();  // every rejection names its reason
  }
  return 0;
}
