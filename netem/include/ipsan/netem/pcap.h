// ipsan/netem/pcap.h: pcap recording of emulated traffic, and a pcap/pcapng reader, via libpcap.
//
// Written files use link type DLT_RAW (each record is an IPv4 or IPv6 packet) with synthesized
// headers carrying the real addresses and ports and valid IPv4/UDP checksums, so tcpdump, tshark
// and Wireshark decode them as UDP; timestamps have nanosecond resolution.
//
// Capture writes three files for one base name FILE.pcap (docs/NETEM.md "Capture files"):
//   FILE.pcap        every datagram as it left the emulator (delivered, with its corruption)
//   FILE.in.pcap     every datagram as it entered
//   FILE.fates.csv   one row per datagram or copy: what happened and why
// The IPv4 identification field holds the low 16 bits of the per-direction entry index, so a
// record in FILE.pcap can be matched with FILE.in.pcap and the CSV.
//
// read_pcap() treats the file as untrusted: unknown link types and non-UDP or malformed packets are
// skipped, a truncated final record ends the list without an error, and a bad header is an Error.
//
// Threading: a PcapWriter / Capture is used by one thread at a time. read_pcap() is thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
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

struct PcapRecord {
  std::chrono::nanoseconds timestamp{};  // as stored in the file (Unix time for real captures)
  NetAddr src;
  NetAddr dst;
  std::uint16_t ip_id = 0;        // IPv4 identification (0 for IPv6)
  Bytes payload;                  // UDP payload as captured
  std::uint32_t payload_len = 0;  // UDP payload length claimed by the UDP header
};

// Reads every UDP datagram of a pcap or pcapng file (link types RAW, EN10MB, LINUX_SLL, NULL,
// LOOP).
Result<std::vector<PcapRecord>, Error> read_pcap(const std::string& path);

// Builds the IPv4/IPv6 + UDP packet a writer stores (exposed for tests and tools).
Bytes build_udp_packet(const NetAddr& src, const NetAddr& dst, ByteSpan payload,
                       std::uint16_t ip_id);

class PcapWriter {
 public:
  static Result<std::unique_ptr<PcapWriter>, Error> open(const std::string& path);
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  void write(std::chrono::nanoseconds timestamp, const NetAddr& src, const NetAddr& dst,
             ByteSpan payload, std::uint16_t ip_id = 0);
  void flush();
  void close();
  std::uint64_t records() const { return records_; }

 private:
  PcapWriter() = default;
  void* pcap_ = nullptr;    // pcap_t*
  void* dumper_ = nullptr;  // pcap_dumper_t*
  std::uint64_t records_ = 0;
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
