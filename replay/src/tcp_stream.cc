// TCP reassembly (ipsan/replay/tcp_stream.h).
#include "ipsan/replay/tcp_stream.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>

namespace ipsan::replay {
namespace {

struct Seg {
  std::uint32_t seq = 0;
  bool syn = false;
  const Packet* pkt = nullptr;
  std::size_t arrival = 0;
};

struct Builder {
  netem::NetAddr from, to;
  std::vector<Seg> segs;
  std::optional<std::uint32_t> isn;  // from a SYN: first data byte
};

void build(Builder& b, TcpDirection& d) {
  d.from = b.from;
  d.to = b.to;
  d.saw_syn = b.isn.has_value();
  std::uint32_t base = 0;
  std::vector<Seg> data_segs;
  for (const Seg& s : b.segs) {
    if (!s.pkt->payload.empty() || s.pkt->payload_len != 0) data_segs.push_back(s);
  }
  d.segments = data_segs.size();
  if (data_segs.empty()) return;
  if (b.isn) {
    base = *b.isn;
  } else {
    // The lowest sequence number, in modular order relative to the first segment.
    base = data_segs.front().seq;
    for (const Seg& s : data_segs) {
      if (static_cast<std::int32_t>(s.seq - base) < 0) base = s.seq;
    }
  }
  struct Item {
    std::uint64_t offset;
    const Seg* seg;
  };
  std::vector<Item> items;
  items.reserve(data_segs.size());
  for (const Seg& s : data_segs) items.push_back({std::uint64_t{s.seq - base}, &s});
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& x, const Item& y) { return x.offset < y.offset; });
  std::uint64_t next = 0;
  bool cut_at_next = false;  // the bytes at `next` were cut from the segment that ended there
  // Out of order: arrived after a segment that starts later in the stream.
  std::uint64_t max_start = 0;
  for (const Seg& s : data_segs) {
    const std::uint64_t off = std::uint64_t{s.seq - base};
    if (off < max_start) ++d.out_of_order;
    max_start = std::max(max_start, off);
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const Packet& p = *it.seg->pkt;
    if (it.offset > next) {
      d.gap = true;
      d.cut = cut_at_next;
      std::uint64_t after = 0;
      for (std::size_t j = i; j < items.size(); ++j) after += items[j].seg->pkt->payload_len;
      d.bytes_after_gap = after;
      break;
    }
    const std::uint64_t end = it.offset + p.payload.size();
    if (end <= next) {
      if (it.offset + p.payload_len <= next) ++d.retransmitted;
      continue;
    }
    const std::size_t skip = static_cast<std::size_t>(next - it.offset);
    std::size_t take = p.payload.size() - skip;
    if (d.data.size() + take > kMaxTcpStreamBytes) {
      d.gap = true;
      d.cut = false;
      d.bytes_after_gap = take;
      break;
    }
    d.times.emplace_back(next, p.timestamp);
    d.data.insert(d.data.end(), p.payload.begin() + static_cast<std::ptrdiff_t>(skip),
                  p.payload.end());
    next = end;
    cut_at_next = p.cut();
  }
  // A cut final segment leaves a hole no later segment filled.
  if (!d.gap) {
    for (const Item& it : items) {
      if (it.offset + it.seg->pkt->payload_len > next) {
        d.gap = true;
        d.cut = true;
        d.bytes_after_gap = it.offset + it.seg->pkt->payload_len - next;
      }
    }
  }
}

}  // namespace

std::chrono::nanoseconds TcpDirection::time_at(std::uint64_t offset) const {
  if (times.empty()) return {};
  auto it = std::upper_bound(
      times.begin(), times.end(), offset,
      [](std::uint64_t o, const std::pair<std::uint64_t, std::chrono::nanoseconds>& t) {
        return o < t.first;
      });
  if (it == times.begin()) return times.front().second;
  return std::prev(it)->second;
}

std::vector<TcpConnection> reassemble_tcp(const std::vector<Packet>& packets,
                                          const std::function<bool(const Packet&)>& wanted) {
  struct Conn {
    Builder c, s;
    std::size_t first_packet = 0;
    bool has_data = false;
  };
  using Key = std::pair<std::string, std::string>;  // sorted endpoint texts
  std::map<Key, std::size_t> open;                  // -> index into conns
  std::vector<Conn> conns;
  std::size_t arrival = 0;
  for (const Packet& p : packets) {
    if (p.protocol != kProtoTcp || !wanted(p)) continue;
    const std::string a = p.src.to_string(), b = p.dst.to_string();
    const Key key = a < b ? Key{a, b} : Key{b, a};
    const bool syn = (p.flags & kTcpSyn) != 0;
    const bool pure_syn = syn && (p.flags & kTcpAck) == 0;
    auto it = open.find(key);
    if (it == open.end() || (pure_syn && conns[it->second].has_data)) {
      Conn c;
      c.first_packet = p.number;
      c.c.from = c.s.to = p.src;
      c.c.to = c.s.from = p.dst;
      // A SYN+ACK first means the capture missed the SYN: its sender is the server.
      if (syn && !pure_syn) std::swap(c.c, c.s);
      conns.push_back(std::move(c));
      it = open.insert_or_assign(key, conns.size() - 1).first;
    }
    Conn& c = conns[it->second];
    Builder& dir = p.src == c.c.from ? c.c : c.s;
    if (syn) {
      dir.isn = p.seq + 1;
      if (p.payload.empty()) continue;
    }
    if (!p.payload.empty()) c.has_data = true;
    Seg s;
    s.seq = syn ? p.seq + 1 : p.seq;
    s.syn = syn;
    s.pkt = &p;
    s.arrival = arrival++;
    dir.segs.push_back(s);
  }
  std::vector<TcpConnection> out;
  out.reserve(conns.size());
  for (Conn& c : conns) {
    TcpConnection tc;
    tc.first_packet = c.first_packet;
    build(c.c, tc.client);
    build(c.s, tc.server);
    out.push_back(std::move(tc));
  }
  return out;
}

}  // namespace ipsan::replay
