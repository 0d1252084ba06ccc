// ipsan/replay/capture.h: the UDP and TCP packets of pcap and pcapng files, for replay.
//
// The reader is netem's (ipsan/netem/pcap.h: read_capture, parse_frame), shared with
// netem::read_pcap so that both decode link types, IP and transport headers the same way: link
// types RAW/IPV4/IPV6, EN10MB (with 802.1Q/QinQ tags), LINUX_SLL, LINUX_SLL2 (tcpdump -i any),
// NULL and LOOP; IPv4 and IPv6 (extension headers skipped); fragments, malformed headers and
// other protocols skipped and counted by reason; a truncated or damaged record ends the list
// (counted); snap-length-cut packets kept with `payload` shorter than `payload_len`.
//
// Threading: pure functions; thread-safe.
#pragma once

#include "ipsan/netem/pcap.h"

namespace ipsan::replay {

inline constexpr std::uint8_t kProtoTcp = netem::kIpProtoTcp;
inline constexpr std::uint8_t kProtoUdp = netem::kIpProtoUdp;

using netem::kTcpAck;
using netem::kTcpFin;
using netem::kTcpRst;
using netem::kTcpSyn;

using netem::CaptureFile;
using netem::Packet;
using netem::parse_frame;
using netem::read_capture;
using netem::read_capture_bytes;
using netem::SkipCounts;

}  // namespace ipsan::replay
