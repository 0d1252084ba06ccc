// rudp::Listener: connection demux, HELLO acceptance, stateless RESET (see listener.h).
#include "ipsan/proto/rudp/listener.h"

namespace ipsan::proto::rudp {

Listener::Listener(std::uint32_t boot_epoch, const Config& config)
    : epoch_(boot_epoch), cfg_(config) {}

Connection* Listener::find(std::uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  return it == conns_.end() ? nullptr : it->second.get();
}

const Connection* Listener::find(std::uint64_t conn_id) const {
  auto it = conns_.find(conn_id);
  return it == conns_.end() ? nullptr : it->second.get();
}

Listener::Routed Listener::on_datagram(ByteSpan datagram, TimePoint now,
                                       MutableByteSpan reset_out) {
  ++stats_.datagrams_received;
  Routed r;
  // The connection id sits at a fixed offset; route on it, and let the connection do the full
  // check (CRC and all) so its counters see its own garbage.
  if (datagram.size() < kPacketOverhead) {
    ++stats_.dropped_malformed;
    return r;
  }
  const std::uint64_t id = load_be64(datagram.data() + 4);
  if (Connection* c = find(id)) {
    c->on_datagram(datagram, now);
    r.conn_id = id;
    return r;
  }
  auto pkt = parse_packet(datagram);
  if (!pkt) {
    if (pkt.error() == DropReason::kBadCrc) {
      ++stats_.dropped_bad_crc;
    } else {
      ++stats_.dropped_malformed;
    }
    return r;
  }
  const PacketType type = pkt->header.type;
  // Never answer a RESET or a CLOSE (two servers must not ping-pong resets forever).
  if (type == PacketType::kReset || type == PacketType::kClose || type == PacketType::kHelloAck) {
    ++stats_.dropped_unknown;
    return r;
  }
  auto reset = [&](Errc reason) {
    r.reset_size =
        write_reason_packet(reset_out, PacketType::kReset, id, epoch_, reset_pn_++, reason);
    if (r.reset_size) ++stats_.resets_sent;
  };
  if (type != PacketType::kHello) {  // DATA for a connection this incarnation does not know
    reset(Errc::kStaleSession);
    return r;
  }
  if (id == 0 || recently_closed_.count(id) || conns_.size() >= cfg_.max_connections) {
    // A delayed duplicate HELLO of a closed connection must not resurrect it (its old DATA
    // datagrams could then be delivered a second time).
    ++stats_.connections_refused;
    reset(conns_.size() >= cfg_.max_connections ? Errc::kBusy : Errc::kConnectionLost);
    return r;
  }
  auto conn = std::make_unique<Connection>(Connection::make_server(id, epoch_, cfg_, now));
  conn->on_datagram(datagram, now);
  if (conn->state() != State::kEstablished) {  // frames did not parse: forget it
    ++stats_.dropped_malformed;
    return r;
  }
  ++stats_.connections_accepted;
  conns_.emplace(id, std::move(conn));
  r.conn_id = id;
  return r;
}

void Listener::on_timer(TimePoint now) {
  for (auto& [id, c] : conns_) {
    if (auto d = c->next_deadline(); d && *d <= now) c->on_timer(now);
  }
}

std::optional<TimePoint> Listener::next_deadline() const {
  std::optional<TimePoint> t;
  for (const auto& [id, c] : conns_) {
    if (auto d = c->next_deadline(); d && (!t || *d < *t)) t = d;
  }
  return t;
}

std::optional<std::pair<std::uint64_t, std::size_t>> Listener::poll_transmit(MutableByteSpan out,
                                                                             TimePoint now) {
  if (conns_.empty()) return std::nullopt;
  // Round robin from the connection after the last one served, so one busy connection cannot
  // starve the others.
  auto start = conns_.upper_bound(rr_cursor_);
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    if (start == conns_.end()) start = conns_.begin();
    if (std::size_t n = start->second->poll_transmit(out, now)) {
      rr_cursor_ = start->first;
      return std::make_pair(start->first, n);
    }
    ++start;
  }
  return std::nullopt;
}

std::optional<std::pair<std::uint64_t, Bytes>> Listener::poll_message() {
  for (auto& [id, c] : conns_) {
    if (c->has_messages()) {
      if (auto m = c->poll_message()) return std::make_pair(id, std::move(*m));
    }
  }
  return std::nullopt;
}

std::optional<std::pair<std::uint64_t, Errc>> Listener::poll_closed() {
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    Connection& c = *it->second;
    if (c.state() != State::kClosed || c.close_pending() || c.has_messages()) continue;
    const auto result = std::make_pair(it->first, c.close_reason());
    recently_closed_.insert(it->first);
    recently_closed_order_.push_back(it->first);
    while (recently_closed_order_.size() > cfg_.closed_id_memory) {
      recently_closed_.erase(recently_closed_order_.front());
      recently_closed_order_.pop_front();
    }
    if (on_forget) on_forget(it->first, c);
    conns_.erase(it);
    return result;
  }
  return std::nullopt;
}

void Listener::close(std::uint64_t conn_id, TimePoint now) {
  if (Connection* c = find(conn_id)) c->close(now);
}

void Listener::close_all(TimePoint now) {
  for (auto& [id, c] : conns_) c->close(now);
}

}  // namespace ipsan::proto::rudp
