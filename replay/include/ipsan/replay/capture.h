// ipsan/replay/capture.h: reads UDP and TCP packets from pcap and pcapng files (via libpcap).
//
// netem::read_pcap() returns UDP only; replay also needs TCP (ipsan over TCP, iSCSI), so this is
// its own reader. Link types: RAW/IPV4/IPV6, EN10MB (with 802.1Q/QinQ tags), LINUX_SLL,
// LINUX_SLL2 (tcpdump -i any), NULL and LOOP. IPv4 (no fragments) and IPv6 (extension headers
// skipped, no fragments).
//
// The file is untrusted: packets that are not UDP/TCP over IP, malformed headers and IP
// fragments are skipped and counted by reason; a truncated or damaged record ends the list (also
// counted); a bad file header is an Error. Snap-length-cut packets are kept with `payload`
// shorter than `payload_len` so that consumers can tell.
//
// Threading: pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"
#include "ipsan/netem/pcap.h"

namespace ipsan::replay {

inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;

// TCP flag bits (RFC 9293 header byte 13).
inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpAck = 0x10;

struct Packet {
  std::size_t number = 0;  // 1-based record number in the file (for messages)
  std::chrono::nanoseconds timestamp{};
  netem::NetAddr src;
  netem::NetAddr dst;
  std::uint8_t protocol = 0;  // kProtoTcp or kProtoUdp
  std::uint32_t seq = 0;      // TCP only
  std::uint32_t ack = 0;
  std::uint8_t flags = 0;
  Bytes payload;                  // transport payload as captured
  std::uint32_t payload_len = 0;  // as claimed by the headers
  bool cut() const { return payload.size() < payload_len; }
};

// Counts by reason, e.g. {"not IP": 3, "IP fragment": 1}.
struct SkipCounts {
  std::map<std::string, std::size_t> reasons;
  void add(const std::string& reason, std::size_t n = 1) {
    if (n != 0) reasons[reason] += n;
  }
  std::size_t total() const {
    std::size_t n = 0;
    for (const auto& [k, v] : reasons) n += v;
    return n;
  }
  void merge(const SkipCounts& o) {
    for (const auto& [k, v] : o.reasons) add(k, v);
  }
  // "reason=N, reason=N" (empty when nothing was skipped).
  std::string to_string() const;
};

struct CaptureFile {
  std::vector<Packet> packets;
  SkipCounts skipped;
  int link_type = 0;
};

Result<CaptureFile, Error> read_capture(const std::string& path);
// The same from a file image in memory (tests, fuzzing).
Result<CaptureFile, Error> read_capture_bytes(ByteSpan image);

// Parses one link-layer frame into `out` (everything but number/timestamp); on failure returns
// false and sets `why` to the skip reason.
bool parse_frame(int link_type, ByteSpan frame, std::uint32_t wire_len, Packet& out,
                 std::string& why);

}  // namespace ipsan::replay
