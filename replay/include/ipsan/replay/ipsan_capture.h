// ipsan/replay/ipsan_capture.h: ipsan's own traffic in a capture: extraction, and replay against
// a server with comparison of every reply.
//
// Extraction: reliable-UDP datagrams (any port, or --port) are decoded with proto/rudp/wire.h
// (bad CRC, wrong version: skipped and counted) and their MESSAGE frames reassembled per
// (sender, receiver, connection id, message id), retransmitted fragments merged; TCP streams
// (--port; without it port 5260 and every connection whose client stream begins with a call to
// the ipsan program) are reassembled (tcp_stream.h) and split by RPC record marking.
// Retransmitted TCP segments and what the capture reader skipped are counted in `skipped`. Each
// message is an ONC-RPC call or reply; calls and replies are paired by conversation and xid.
// Calls re-sent with the same session slot and sequence (after a transport change or a server
// restart) count once. The MACs are not checked: they are bound to the captured session's key.
//
// Replay: every replayable call (a device op whose arguments decode and whose MAC'd reply was
// captured) is re-encoded by a fresh SanClient session (client::Runtime: log in with the user's key,
// new slots, new MACs) in capture order, one at a time, with the original spacing
// (Timing::kOriginal) or back to back (kFast); each reply is compared with the captured one:
// status, and READ data / IDENTIFY identity / CAPACITY and READY capacity when OK.
//
// Threading: extract_ipsan() is a pure function; replay_ipsan() blocks its thread and must not
// run on the target's completion thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ipsan/base/clock.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/proto/generic.h"
#include "ipsan/replay/capture.h"

namespace ipsan::replay {

inline constexpr std::uint16_t kIpsanDefaultPort = 5260;

struct CapturedCall {
  std::size_t index = 0;  // position among the capture's calls
  std::chrono::nanoseconds time{};
  std::string flow;  // "client -> server" endpoints
  std::uint32_t xid = 0;
  proto::Op op = proto::Op::kNull;
  std::optional<proto::Request> request;  // device ops whose arguments decoded
  std::optional<proto::Reply> reply;      // the captured (MAC'd) reply, decoded
  std::string skip;                       // non-empty: why this call is not replayed
};

struct IpsanCapture {
  std::vector<CapturedCall> calls;  // in capture order
  std::size_t datagrams = 0;        // rudp datagrams that decoded
  std::size_t messages = 0;         // complete RPC messages
  SkipCounts skipped;               // datagrams, segments and messages that could not be used
};

struct ExtractOptions {
  // Empty: UDP on any port; TCP on kIpsanDefaultPort or starting with an ipsan call.
  std::optional<std::uint16_t> port;
  std::size_t max_message = 9u << 20;
};

IpsanCapture extract_ipsan(const CaptureFile& capture, const ExtractOptions& options);

enum class Timing { kFast, kOriginal };

struct PcapReplayOptions {
  Timing timing = Timing::kFast;
  Duration timeout = std::chrono::seconds(30);
  // Captured device id -> device id to use (others unchanged).
  std::map<std::uint32_t, std::uint32_t> device_map;
};

enum class MessageOutcome { kMatch, kMismatch, kError, kSkipped };

struct MessageResult {
  std::size_t index = 0;
  std::uint32_t xid = 0;
  proto::Op op = proto::Op::kNull;
  MessageOutcome outcome = MessageOutcome::kMatch;
  std::string detail;
};

struct PcapReplayReport {
  std::size_t matched = 0;
  std::size_t mismatched = 0;
  std::size_t errors = 0;
  std::size_t skipped = 0;
  SkipCounts skip_reasons;  // for `skipped` (calls) and for what extraction dropped
  std::vector<MessageResult> results;
  bool ok() const { return mismatched == 0 && errors == 0; }
};

// Compares a replayed reply with the captured one; empty string = same.
std::string compare_replies(proto::Op op, const proto::Reply& captured, const proto::Reply& now);

PcapReplayReport replay_ipsan(const IpsanCapture& capture, client::GenericTarget& target,
                              const PcapReplayOptions& options);

// One line per mismatch/error (every call when verbose) and the summary line
// "replay: N matched, N mismatched, N errors, N skipped (reason=N, ...)".
void print_pcap_report(std::ostream& os, const PcapReplayReport& report, bool verbose);

}  // namespace ipsan::replay
