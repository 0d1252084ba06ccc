// ipsan/replay/tcp_stream.h: TCP stream reassembly for captured traffic.
//
// Groups TCP packets into connections (4-tuple; a new SYN on a used tuple starts a new
// connection), and rebuilds each direction's byte stream from the sequence numbers:
// retransmitted and overlapping segments are merged (the first copy of a byte wins), out-of-order
// segments are put in order, and the stream stops at the first hole (a segment missing from the
// capture, or cut by the snap length): consumers parse `data` and learn from `gap` that the rest
// is unknown. Without a captured SYN the lowest sequence number seen starts the stream (a capture
// started mid-connection; the consumer must find a message boundary itself).
//
// Threading: pure function; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/replay/capture.h"

namespace ipsan::replay {

struct TcpDirection {
  netem::NetAddr from;
  netem::NetAddr to;
  Bytes data;            // contiguous bytes from the start of the stream to the first hole
  bool saw_syn = false;  // the stream start is known exactly
  bool gap = false;      // bytes after `data` were sent but are missing from the capture
  bool cut = false;      // ... because the segment there was cut by the snap length
  std::uint64_t bytes_after_gap = 0;
  std::size_t segments = 0;
  std::size_t retransmitted = 0;  // segments that added nothing new
  std::size_t out_of_order = 0;   // segments that arrived before an earlier part of the stream
  // (stream offset, capture time) of every segment that contributed bytes, by offset.
  std::vector<std::pair<std::uint64_t, std::chrono::nanoseconds>> times;
  std::chrono::nanoseconds time_at(std::uint64_t offset) const;
};

struct TcpConnection {
  // `client` is the SYN's sender when captured, else the first packet's sender.
  TcpDirection client;           // client -> server
  TcpDirection server;           // server -> client
  std::size_t first_packet = 0;  // Packet::number of its first packet
};

// Streams larger than this are cut (counted as a gap).
inline constexpr std::size_t kMaxTcpStreamBytes = 512u << 20;

// Reassembles every TCP connection for which `wanted(packet)` holds (e.g. a port test).
std::vector<TcpConnection> reassemble_tcp(const std::vector<Packet>& packets,
                                          const std::function<bool(const Packet&)>& wanted);

}  // namespace ipsan::replay
