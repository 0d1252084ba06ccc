// ipsan/netem/pcap.h: pcap recording of emulated and captured traffic, and the pcap/pcapng reader
// shared by netem and replay, via libpcap.
//
// Written files use link type DLT_RAW (each record is an IPv4 or IPv6 packet) with synthesized
// headers carrying the real addresses and ports and valid IPv4/UDP/TCP checksums, so tcpdump,
// tshark and Wireshark decode them; timestamps have nanosecond resolution. UDP datagrams are
// written one per record (PcapWriter::write); TCP byte streams observed above the socket layer are
// turned into segments of a synthesized connection by TcpStreamRecorder (SYN / SYN-ACK / ACK,
// data segments of at most kMaxTcpSegment bytes with consistent sequence and acknowledgement
// numbers, FIN exchange at close).
//
// Capture writes three files for one base name FILE.pcap (docs/NETEM.md "Capture files"):
//   FILE.pcap        every datagram as it left the emulator (delivered, with its corruption)
//   FILE.in.pcap     every datagram as it entered
//   FILE.fates.csv   one row per datagram or copy: what happened and why
// The IPv4 identification field holds the low 16 bits of the per-direction entry index, so a
// record in FILE.pcap can be matched with FILE.in.pcap and the CSV.
//
// Reading (read_capture, parse_frame, read_pcap) treats the file as untrusted. Link types RAW /
// IPV4 / IPV6, EN10MB (802.1Q / QinQ tags), LINUX_SLL, LINUX_SLL2 (tcpdump -i any), NULL and
// LOOP; IPv4 and IPv6 (hop-by-hop, routing and destination options skipped); UDP and TCP. Packets
// that are not UDP/TCP over IP, malformed headers and IP fragments (IPv4 MF or offset, IPv6
// fragment header: the datagram cannot be decoded from one of them) are skipped and counted by
// reason; a truncated or damaged record ends the list (also counted); a bad file header is an
// Error. Snap-length-cut packets are kept with `payload` shorter than `payload_len`.
//
// Threading: a PcapWriter / Capture / TcpStreamRecorder is used by one thread at a time. The
// readers are thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"
#include "ipsan/netem/impairment.h"

namespace ipsan::netem {

// An IPv4 or IPv6 address with a UDP port. IPv4 uses bytes[0..3].
struct NetAddr {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;
  std::uint16_t port = 0;

  static NetAddr ipv4(std::uint32_t host_order_addr, std::uint16_t port);
  // "1.2.3.4:80" or "[::1]:80".
  std::string to_string() const;
  bool operator==(const NetAddr&) const = default;
};

inline constexpr std::uint8_t kIpProtoTcp = 6;
inline constexpr std::uint8_t kIpProtoUdp = 17;

// TCP flag bits (RFC 9293 header byte 13).
inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpPsh = 0x08;
inline constexpr std::uint8_t kTcpAck = 0x10;

// Link types as stored in files (LINKTYPE_*).
inline constexpr int kLinkNull = 0;
inline constexpr int kLinkEthernet = 1;
inline constexpr int kLinkRaw = 101;
inline constexpr int kLinkLoop = 108;
inline constexpr int kLinkSll = 113;
inline constexpr int kLinkIpv4 = 228;
inline constexpr int kLinkIpv6 = 229;
inline constexpr int kLinkSll2 = 276;

// One UDP or TCP packet of a capture.
struct Packet {
  std::size_t number = 0;  // 1-based record number in the file (for messages)
  std::chrono::nanoseconds timestamp{};
  NetAddr src;
  NetAddr dst;
  std::uint8_t protocol = 0;  // kIpProtoTcp or kIpProtoUdp
  std::uint16_t ip_id = 0;    // IPv4 identification (0 for IPv6)
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

// Every UDP and TCP packet of a pcap or pcapng file.
Result<CaptureFile, Error> read_capture(const std::string& path);
// The same from a file image in memory (tests, fuzzing).
Result<CaptureFile, Error> read_capture_bytes(ByteSpan image);

// Parses one link-layer frame into `out` (everything but number/timestamp); on failure returns
// false and sets `why` to the skip reason.
bool parse_frame(int link_type, ByteSpan frame, Packet& out, std::string& why);

// A UDP datagram of a capture (read_pcap).
struct PcapRecord {
  std::chrono::nanoseconds timestamp{};  // as stored in the file (Unix time for real captures)
  NetAddr src;
  NetAddr dst;
  std::uint16_t ip_id = 0;        // IPv4 identification (0 for IPv6)
  Bytes payload;                  // UDP payload as captured
  std::uint32_t payload_len = 0;  // UDP payload length claimed by the UDP header
};

// Reads every UDP datagram of a pcap or pcapng file (read_capture without TCP). What was skipped
// (other protocols, fragments, malformed packets, a truncated final record) is counted in
// `skipped` when given.
Result<std::vector<PcapRecord>, Error> read_pcap(const std::string& path,
                                                 SkipCounts* skipped = nullptr);

// Builds the IPv4/IPv6 + UDP packet a writer stores (exposed for tests and tools).
Bytes build_udp_packet(const NetAddr& src, const NetAddr& dst, ByteSpan payload,
                       std::uint16_t ip_id);

// Largest TCP payload per written segment: an IPv4 packet of 65535 bytes (20-byte IP and TCP
// headers); IPv6 segments use the same size.
inline constexpr std::size_t kMaxTcpSegment = 65535 - 20 - 20;

// Builds an IPv4/IPv6 + TCP segment with a valid checksum (payload cut to kMaxTcpSegment).
// `options` (a multiple of 4 bytes, at most 40) go after the 20-byte TCP header.
Bytes build_tcp_packet(const NetAddr& src, const NetAddr& dst, std::uint32_t seq, std::uint32_t ack,
                       std::uint8_t flags, ByteSpan payload, std::uint16_t window = 65535,
                       ByteSpan options = {});

class PcapWriter {
 public:
  static Result<std::unique_ptr<PcapWriter>, Error> open(const std::string& path);
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  // One UDP datagram.
  void write(std::chrono::nanoseconds timestamp, const NetAddr& src, const NetAddr& dst,
             ByteSpan payload, std::uint16_t ip_id = 0);
  // One IP packet as built by build_udp_packet / build_tcp_packet.
  void write_packet(std::chrono::nanoseconds timestamp, ByteSpan ip_packet);
  void flush();
  void close();
  std::uint64_t records() const { return records_; }

 private:
  PcapWriter() = default;
  void* pcap_ = nullptr;    // pcap_t*
  void* dumper_ = nullptr;  // pcap_dumper_t*
  std::uint64_t records_ = 0;
};

// Writes TCP connections seen above the socket layer (accept/connect, bytes read and written,
// close) as the segments a capture on the wire would show: a three-way handshake at open(), data
// cut into segments of at most kMaxTcpSegment bytes, each acknowledging everything the peer sent
// so far, and FIN / FIN / ACK at close(). Initial sequence numbers are derived from the
// connection id (deterministic). Connections are identified by the caller's id.
class TcpStreamRecorder {
 public:
  explicit TcpStreamRecorder(PcapWriter& writer) : writer_(writer) {}

  void open(std::uint64_t id, std::chrono::nanoseconds ts, const NetAddr& client,
            const NetAddr& server);
  // Bytes sent by the client (from_client) or by the server; ignored for unknown ids.
  void data(std::uint64_t id, std::chrono::nanoseconds ts, bool from_client, ByteSpan bytes);
  // FIN from the side that closed first, FIN from the other, final ACK; forgets the id.
  void close(std::uint64_t id, std::chrono::nanoseconds ts, bool client_first);
  std::size_t open_connections() const { return conns_.size(); }

 private:
  struct Conn {
    NetAddr client, server;
    std::uint32_t client_next = 0;  // next sequence number of each side
    std::uint32_t server_next = 0;
  };
  PcapWriter& writer_;
  std::map<std::uint64_t, Conn> conns_;
};

enum class Direction { kUp, kDown };  // up = A->B / client->server
std::string_view to_string(Direction d);

class Capture {
 public:
  // `path` names the delivered-traffic file; the others are derived from it (see above).
  // `time_offset` is added to engine TimePoints to get pcap timestamps (Unix time for the proxy,
  // zero for virtual-clock tests).
  static Result<std::unique_ptr<Capture>, Error> open(const std::string& path,
                                                      std::chrono::nanoseconds time_offset);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // Records one engine event; src/dst are the datagram's real endpoints.
  void record(Direction dir, const Event& ev, const NetAddr& src, const NetAddr& dst);
  // Observer for one direction of a Link with fixed addresses.
  Observer observer(Direction dir, NetAddr src, NetAddr dst);
  void flush();
  void close();

  static std::string in_path(const std::string& path);
  static std::string fates_path(const std::string& path);

 private:
  Capture() = default;
  std::unique_ptr<PcapWriter> out_;
  std::unique_ptr<PcapWriter> in_;
  std::FILE* csv_ = nullptr;
  std::chrono::nanoseconds offset_{};
};

}  // namespace ipsan::netem
