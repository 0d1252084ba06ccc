// ipsan traffic in captures: extraction and replay (ipsan/replay/ipsan_capture.h).
#include "ipsan/replay/ipsan_capture.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "ipsan/base/log.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/proto/rudp/wire.h"
#include "ipsan/replay/tcp_stream.h"

namespace ipsan::replay {
namespace {

struct Message {
  std::chrono::nanoseconds time{};
  std::size_t order = 0;  // tie-break: position of the completing packet / record
  std::string from;
  std::string to;
  Bytes bytes;
};

// Per (sender, receiver, conn_id): partial and completed rudp messages.
struct RudpFlow {
  struct Partial {
    std::uint32_t total = 0;
    // Fragments as they arrived (offset -> bytes), joined once complete: a first fragment's
    // total_length is untrusted, so nothing is allocated for bytes that never came.
    std::map<std::uint32_t, Bytes> pieces;
    std::map<std::uint32_t, std::uint32_t> have;  // start -> end, disjoint, merged
    std::uint64_t have_bytes = 0;
    std::chrono::nanoseconds first{};
  };
  std::map<std::uint64_t, Partial> partial;
  std::set<std::uint64_t> done;
};

constexpr std::size_t kMaxPartialPerFlow = 4096;
// Captured bytes held by incomplete messages over all flows. Only bytes that were really in the
// capture count (a hostile capture announces huge messages: 7 KB once claimed 512 MB).
constexpr std::uint64_t kMaxPartialBytes = 64u << 20;

// Adds [a, b) to a set of disjoint intervals; returns the number of new bytes.
std::uint64_t add_interval(std::map<std::uint32_t, std::uint32_t>& have, std::uint32_t a,
                           std::uint32_t b) {
  if (a >= b) return 0;
  std::uint64_t before = 0;
  for (const auto& [s, e] : have) before += e - s;
  auto it = have.upper_bound(a);
  if (it != have.begin() && std::prev(it)->second >= a) --it;
  while (it != have.end() && it->first <= b) {
    a = std::min(a, it->first);
    b = std::max(b, it->second);
    it = have.erase(it);
  }
  have.emplace(a, b);
  std::uint64_t after = 0;
  for (const auto& [s, e] : have) after += e - s;
  return after - before;
}

void extract_udp(const CaptureFile& capture, const ExtractOptions& opt, IpsanCapture& out,
                 std::vector<Message>& messages) {
  std::map<std::tuple<std::string, std::string, std::uint64_t>, RudpFlow> flows;
  std::uint64_t partial_bytes = 0;
  proto::rudp::Frames frames;
  for (const Packet& p : capture.packets) {
    if (p.protocol != kProtoUdp) continue;
    if (opt.port && p.src.port != *opt.port && p.dst.port != *opt.port) continue;
    if (p.cut()) {
      out.skipped.add("datagram cut by the snap length");
      continue;
    }
    auto pkt = proto::rudp::parse_packet(p.payload);
    if (!pkt) {
      // Not rudp at all (other UDP traffic) or damaged: either way nothing to use.
      out.skipped.add("UDP datagram that is not reliable-UDP (bad CRC, version or type)");
      continue;
    }
    ++out.datagrams;
    using proto::rudp::PacketType;
    const PacketType type = pkt->header.type;
    if (type != PacketType::kData && type != PacketType::kHello && type != PacketType::kHelloAck)
      continue;
    if ((pkt->header.flags & proto::rudp::kFlagEncrypted) != 0) {
      // --transport-security encrypted: nothing to read without the session's key.
      out.skipped.add("encrypted reliable-UDP packet");
      continue;
    }
    frames.clear();
    if (!proto::rudp::parse_frames(pkt->body, frames)) {
      out.skipped.add("malformed reliable-UDP frames");
      continue;
    }
    const std::string from = p.src.to_string(), to = p.dst.to_string();
    RudpFlow& flow = flows[{from, to, pkt->header.conn_id}];
    for (const auto& m : frames.messages) {
      if (flow.done.count(m.message_id) != 0) continue;  // retransmission of a complete message
      if (m.total_length > opt.max_message || m.offset > m.total_length ||
          m.payload.size() > m.total_length - m.offset) {
        out.skipped.add("message fragment out of bounds");
        continue;
      }
      auto it = flow.partial.find(m.message_id);
      if (it == flow.partial.end()) {
        if (flow.partial.size() >= kMaxPartialPerFlow) {
          out.skipped.add("too much incomplete message data");
          continue;
        }
        RudpFlow::Partial np;
        np.total = m.total_length;
        np.first = p.timestamp;
        it = flow.partial.emplace(m.message_id, std::move(np)).first;
      }
      RudpFlow::Partial& part = it->second;
      if (part.total != m.total_length) {
        out.skipped.add("fragments disagree on the message length");
        continue;
      }
      if (!m.payload.empty()) {
        if (partial_bytes + m.payload.size() > kMaxPartialBytes) {
          out.skipped.add("too much incomplete message data");
          continue;
        }
        const std::uint64_t added = add_interval(
            part.have, m.offset, static_cast<std::uint32_t>(m.offset + m.payload.size()));
        if (added == 0) continue;  // a retransmitted fragment: nothing new
        part.have_bytes += added;
        auto& piece = part.pieces[m.offset];
        partial_bytes += m.payload.size() - std::min<std::size_t>(piece.size(), m.payload.size());
        if (m.payload.size() > piece.size()) piece.assign(m.payload.begin(), m.payload.end());
      }
      if (part.have_bytes == part.total) {
        Message msg;
        msg.time = part.first;
        msg.order = p.number;
        msg.from = from;
        msg.to = to;
        msg.bytes.resize(part.total);  // every byte of it is in `pieces`: bounded by the capture
        std::uint64_t held = 0;
        for (const auto& [off, bytes] : part.pieces) {
          std::copy(bytes.begin(), bytes.end(), msg.bytes.begin() + off);
          held += bytes.size();
        }
        messages.push_back(std::move(msg));
        partial_bytes -= std::min<std::uint64_t>(partial_bytes, held);
        flow.partial.erase(it);
        flow.done.insert(m.message_id);
      }
    }
  }
  for (const auto& [k, f] : flows)
    out.skipped.add("incomplete fragmented message", f.partial.size());
}

// The stream starts with a record-marked ONC-RPC call to the ipsan program (RFC 5531: xid,
// msg_type CALL = 0, rpcvers 2, prog).
bool starts_with_ipsan_call(const Bytes& d) {
  return d.size() >= 4 + 16 && load_be32(&d[8]) == 0 && load_be32(&d[12]) == 2 &&
         load_be32(&d[16]) == proto::kProgram;
}

void extract_tcp(const CaptureFile& capture, const ExtractOptions& opt, IpsanCapture& out,
                 std::vector<Message>& messages) {
  // With a port: the connections on it. Without: port 5260, and any connection whose client
  // stream begins with a call to the ipsan program (servers on other ports).
  const std::optional<std::uint16_t> port = opt.port;
  auto conns = reassemble_tcp(capture.packets, [port](const Packet& p) {
    return !port || p.src.port == *port || p.dst.port == *port;
  });
  for (const TcpConnection& c : conns) {
    if (!port && c.client.from.port != kIpsanDefaultPort && c.client.to.port != kIpsanDefaultPort &&
        !starts_with_ipsan_call(c.client.data)) {
      if (!c.client.data.empty() || !c.server.data.empty() || c.client.gap || c.server.gap) {
        out.skipped.add("TCP connection that does not begin with an ipsan RPC call (ignored)");
      }
      continue;
    }
    for (const TcpDirection* d : {&c.client, &c.server}) {
      out.skipped.add("retransmitted TCP segment (duplicate data ignored)", d->retransmitted);
      if (d->data.empty() && !d->gap) continue;
      if (!d->saw_syn && !d->data.empty()) {
        out.skipped.add("TCP stream without its start (no SYN captured)");
        continue;
      }
      // RFC 5531 record marking: u32 header, top bit = last fragment, 31-bit length.
      std::size_t pos = 0;
      Bytes record;
      std::size_t record_start = 0;
      bool bad = false;
      while (pos + 4 <= d->data.size()) {
        const std::uint32_t h = load_be32(&d->data[pos]);
        const std::size_t len = h & 0x7FFFFFFFu;
        if (record.size() + len > opt.max_message) {
          out.skipped.add("TCP record larger than the message limit (stream abandoned)");
          bad = true;
          break;
        }
        if (pos + 4 + len > d->data.size()) break;
        if (record.empty()) record_start = pos;
        record.insert(record.end(), d->data.begin() + static_cast<std::ptrdiff_t>(pos + 4),
                      d->data.begin() + static_cast<std::ptrdiff_t>(pos + 4 + len));
        pos += 4 + len;
        if ((h & 0x80000000u) != 0) {
          Message msg;
          msg.time = d->time_at(record_start);
          msg.order = c.first_packet * 1000000 + messages.size();
          msg.from = d->from.to_string();
          msg.to = d->to.to_string();
          msg.bytes = std::move(record);
          record.clear();
          messages.push_back(std::move(msg));
        }
      }
      if (!bad && (pos < d->data.size() || d->gap)) {
        out.skipped.add(!d->gap  ? "incomplete TCP record at the end of the capture"
                        : d->cut ? "TCP segment cut by the snap length (rest of stream skipped)"
                                 : "TCP segment missing from the capture (rest of stream skipped)");
      }
    }
  }
}

struct ReplyRef {
  const Message* msg = nullptr;
  proto::ParsedReply parsed;
};

}  // namespace

IpsanCapture extract_ipsan(const CaptureFile& capture, const ExtractOptions& options) {
  IpsanCapture out;
  // What the reader could not decode (other protocols, fragments, a truncated final record).
  out.skipped.merge(capture.skipped);
  std::vector<Message> messages;
  extract_udp(capture, options, out, messages);
  extract_tcp(capture, options, out, messages);
  std::stable_sort(messages.begin(), messages.end(), [](const Message& a, const Message& b) {
    return std::tie(a.time, a.order) < std::tie(b.time, b.order);
  });
  out.messages = messages.size();

  // Replies by (conversation, xid); MAC'd replies win over unauthenticated hints.
  std::map<std::tuple<std::string, std::string, std::uint32_t>, std::vector<ReplyRef>> replies;
  std::vector<std::pair<const Message*, proto::ParsedCall>> calls;
  for (const Message& m : messages) {
    auto call = proto::parse_call(ByteSpan(m.bytes));
    if (call) {
      calls.emplace_back(&m, *call);
      continue;
    }
    auto reply = proto::parse_reply(ByteSpan(m.bytes));
    if (reply) {
      // Keyed as the call will look it up: (caller, callee, xid).
      replies[{m.to, m.from, reply->xid}].push_back(ReplyRef{&m, *reply});
      continue;
    }
    out.skipped.add("message that is neither an ipsan RPC call nor a reply");
  }

  std::set<std::tuple<std::uint64_t, std::uint32_t, std::uint64_t>> seen_slots;
  for (auto& [m, call] : calls) {
    CapturedCall cc;
    cc.index = out.calls.size();
    cc.time = m->time;
    cc.flow = m->from + " -> " + m->to;
    cc.xid = call.xid;
    cc.op = call.op;
    auto finish = [&](std::string why) {
      cc.skip = std::move(why);
      out.calls.push_back(std::move(cc));
    };
    if (call.op == proto::Op::kLoginBegin || call.op == proto::Op::kLoginFinish ||
        call.op == proto::Op::kLogout) {
      finish("login/logout call (the replay logs in itself)");
      continue;
    }
    if (call.op == proto::Op::kSlotFence || call.op == proto::Op::kEndSession) {
      finish("slot fence / end-session call (session bookkeeping, no device I/O)");
      continue;
    }
    if (call.op == proto::Op::kNull) {
      finish("NULL ping");
      continue;
    }
    auto req = proto::decode_request(call.op, call.args);
    if (!req) {
      finish("call arguments do not decode");
      continue;
    }
    cc.request = proto::to_request(*req);
    const ReplyRef* best = nullptr;
    auto rit = replies.find({m->from, m->to, call.xid});
    if (rit != replies.end()) {
      for (const ReplyRef& r : rit->second) {
        if (r.msg->time < m->time) continue;
        if (best == nullptr || (best->parsed.verf_flavor != proto::kAuthIpsan &&
                                r.parsed.verf_flavor == proto::kAuthIpsan)) {
          best = &r;
        }
      }
    }
    const auto slot_key = std::make_tuple(call.cred.session_id, call.cred.slot, call.cred.seq);
    if (best == nullptr) {
      finish("no reply captured");
      continue;
    }
    if (!best->parsed.success()) {
      finish("captured reply is an RPC rejection (" +
             std::string(to_string(best->parsed.to_errc())) + ")");
      continue;
    }
    if (best->parsed.verf_flavor != proto::kAuthIpsan) {
      finish("only an unauthenticated hint reply captured (e.g. seq-misordered, busy)");
      continue;
    }
    if (!seen_slots.insert(slot_key).second) {
      finish("re-sent call (same session slot and sequence)");
      continue;
    }
    auto res = proto::decode_results(call.op, best->parsed.results);
    if (!res) {
      finish("captured reply does not decode");
      continue;
    }
    cc.reply = std::move(*res);
    out.calls.push_back(std::move(cc));
  }
  return out;
}

std::string compare_replies(proto::Op op, const proto::Reply& captured, const proto::Reply& now) {
  if (captured.status != now.status) {
    return str_cat("status: captured ", to_string(captured.status), ", now ",
                   to_string(now.status));
  }
  if (captured.status != Errc::kOk) return "";
  switch (op) {
    case proto::Op::kRead: {
      if (captured.data.size() != now.data.size()) {
        return str_cat("read data length: captured ", captured.data.size(), ", now ",
                       now.data.size());
      }
      auto mm = std::mismatch(captured.data.begin(), captured.data.end(), now.data.begin());
      if (mm.first != captured.data.end()) {
        const auto at = static_cast<std::size_t>(mm.first - captured.data.begin());
        char buf[96];
        std::snprintf(buf, sizeof buf, "read data differs at byte %zu: captured %02x, now %02x", at,
                      *mm.first, *mm.second);
        return buf;
      }
      return "";
    }
    case proto::Op::kIdentify: {
      const auto& a = captured.identity;
      const auto& b = now.identity;
      std::string d;
      auto field = [&](const char* name, const auto& x, const auto& y) {
        if (x != y && d.empty()) d = str_cat("identity ", name, ": captured ", x, ", now ", y);
      };
      field("vendor", a.vendor, b.vendor);
      field("product", a.product, b.product);
      field("revision", a.revision, b.revision);
      field("serial", a.serial, b.serial);
      field("block_size", a.block_size, b.block_size);
      field("block_count", a.block_count, b.block_count);
      field("capabilities", a.capabilities, b.capabilities);
      field("max_transfer_blocks", a.max_transfer_blocks, b.max_transfer_blocks);
      field("optimal_transfer_blocks", a.optimal_transfer_blocks, b.optimal_transfer_blocks);
      if (d.empty() && a.uuid != b.uuid) d = "identity uuid differs";
      return d;
    }
    case proto::Op::kCapacity:
    case proto::Op::kReady:
      if (captured.capacity.block_size != now.capacity.block_size ||
          captured.capacity.block_count != now.capacity.block_count) {
        return str_cat("capacity: captured ", captured.capacity.block_count, "x",
                       captured.capacity.block_size, ", now ", now.capacity.block_count, "x",
                       now.capacity.block_size);
      }
      return "";
    default: return "";
  }
}

PcapReplayReport replay_ipsan(const IpsanCapture& capture, client::GenericTarget& target,
                              const PcapReplayOptions& options) {
  PcapReplayReport report;
  report.skip_reasons.merge(capture.skipped);
  std::optional<std::chrono::nanoseconds> first_time;
  const auto start = std::chrono::steady_clock::now();
  for (const CapturedCall& c : capture.calls) {
    MessageResult r;
    r.index = c.index;
    r.xid = c.xid;
    r.op = c.op;
    if (!c.skip.empty() || !c.request || !c.reply) {
      r.outcome = MessageOutcome::kSkipped;
      r.detail = c.skip.empty() ? "not replayable" : c.skip;
      ++report.skipped;
      report.skip_reasons.add(r.detail);
      report.results.push_back(std::move(r));
      continue;
    }
    if (options.timing == Timing::kOriginal) {
      if (!first_time) first_time = c.time;
      const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   c.time - *first_time);
      // Pacing to the capture's clock is the point here, not synchronisation.
      if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
    }
    proto::Request req = *c.request;
    auto mapped = options.device_map.find(req.device_id);
    if (mapped != options.device_map.end()) req.device_id = mapped->second;
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<proto::Reply> reply;
    };
    auto st = std::make_shared<State>();
    target.execute(std::move(req), [st](proto::Reply rep) {
      std::lock_guard<std::mutex> lock(st->mu);
      st->reply = std::move(rep);
      st->cv.notify_all();
    });
    std::optional<proto::Reply> now;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait_for(lock, options.timeout, [&] { return st->reply.has_value(); });
      now = st->reply;
    }
    if (!now) {
      r.outcome = MessageOutcome::kError;
      r.detail = "no reply within the timeout";
      ++report.errors;
    } else if (std::string d = compare_replies(c.op, *c.reply, *now); !d.empty()) {
      r.outcome = MessageOutcome::kMismatch;
      r.detail = std::move(d);
      ++report.mismatched;
    } else {
      ++report.matched;
    }
    report.results.push_back(std::move(r));
  }
  return report;
}

void print_pcap_report(std::ostream& os, const PcapReplayReport& report, bool verbose) {
  for (const MessageResult& r : report.results) {
    const char* what = r.outcome == MessageOutcome::kMatch      ? "match"
                       : r.outcome == MessageOutcome::kMismatch ? "MISMATCH"
                       : r.outcome == MessageOutcome::kError    ? "ERROR"
                                                                : "skipped";
    if (!verbose && (r.outcome == MessageOutcome::kMatch || r.outcome == MessageOutcome::kSkipped))
      continue;
    os << "call " << r.index << " xid=" << r.xid << " " << proto::op_name(r.op) << ": " << what;
    if (!r.detail.empty()) os << ": " << r.detail;
    os << "\n";
  }
  os << "replay: " << report.matched << " matched, " << report.mismatched << " mismatched, "
     << report.errors << " errors, " << report.skipped << " skipped";
  if (!report.skip_reasons.reasons.empty()) os << " (" << report.skip_reasons.to_string() << ")";
  os << "\n";
}

}  // namespace ipsan::replay
