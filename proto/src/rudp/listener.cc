// rudp::Listener: connection demux, HELLO acceptance, stateless RESET (see listener.h).
#include "ipsan/proto/rudp/listener.h"

#include <cstring>
#include <string_view>

#include "ipsan/base/crypto.h"

namespace ipsan::proto::rudp {

Listener::Listener(std::uint32_t boot_epoch, const Config& config, const Key256& secret)
    : epoch_(boot_epoch), cfg_(config), secret_(secret), budget_(new ReassemblyBudget) {
  if (secret_ == Key256{}) random_bytes(secret_);
  budget_->limit = cfg_.reassembly_budget_bytes;
  budget_->unverified_limit = cfg_.unverified_budget_bytes;
}

ResetToken Listener::reset_token(std::uint64_t conn_id) const {
  std::array<std::uint8_t, 8> id;
  store_be64(id.data(), conn_id);
  const Digest256 d = hmac_sha256(secret_, {as_bytes("ipsan-rudp-reset-v1"), id});
  ResetToken t;
  std::memcpy(t.data(), d.data(), t.size());
  return t;
}

namespace {

std::uint64_t to_ms(TimePoint t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

Digest256 cookie_mac(const Key256& secret, std::uint64_t issued_ms, std::uint64_t conn_id,
                     ByteSpan source) {
  std::array<std::uint8_t, 16> fields;
  store_be64(fields.data(), issued_ms);
  store_be64(fields.data() + 8, conn_id);
  return hmac_sha256(secret, {as_bytes("ipsan-rudp-cookie-v1"), fields, source});
}

}  // namespace

Cookie Listener::make_cookie(std::uint64_t conn_id, ByteSpan source, TimePoint now) const {
  Cookie c;
  const std::uint64_t t = to_ms(now);
  store_be64(c.data(), t);
  const Digest256 d = cookie_mac(secret_, t, conn_id, source);
  std::memcpy(c.data() + 8, d.data(), 16);
  return c;
}

bool Listener::check_cookie(const Cookie& c, std::uint64_t conn_id, ByteSpan source,
                            TimePoint now) const {
  const std::uint64_t t = load_be64(c.data());
  const std::uint64_t n = to_ms(now);
  const auto life = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.cookie_lifetime).count());
  if (t > n + 1000 || n - std::min(n, t) > life) return false;
  const Digest256 d = cookie_mac(secret_, t, conn_id, source);
  return constant_time_equal(ByteSpan(d.data(), 16), ByteSpan(c.data() + 8, 16));
}

namespace {

std::optional<PacketKeys> server_keys(const Key256& skey, std::uint64_t conn_id, Protection p) {
  if (p == Protection::kOff) return std::nullopt;
  return derive_packet_keys(skey, conn_id, false, p == Protection::kEncrypted);
}

}  // namespace

void Listener::protect(std::uint64_t conn_id, const Key256& skey, Protection p, TimePoint now) {
  Connection* c = find(conn_id);
  if (c == nullptr || c->is_protected() || (c->verified() && p == Protection::kOff)) return;
  c->protect(server_keys(skey, conn_id, p), /*send_now=*/false, now);
}

void Listener::forget_source(std::uint64_t conn_id) {
  auto it = source_of_.find(conn_id);
  if (it == source_of_.end()) return;
  auto ps = per_source_.find(it->second);
  if (ps != per_source_.end() && --ps->second == 0) per_source_.erase(ps);
  source_of_.erase(it);
}

Connection* Listener::find(std::uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  return it == conns_.end() ? nullptr : it->second.get();
}

const Connection* Listener::find(std::uint64_t conn_id) const {
  auto it = conns_.find(conn_id);
  return it == conns_.end() ? nullptr : it->second.get();
}

Listener::Routed Listener::on_datagram(ByteSpan datagram, TimePoint now,
                                       MutableByteSpan reset_out, ByteSpan source) {
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
  // Never answer a RESET, CLOSE, HELLO_ACK or RETRY (no reset loops, no reflection).
  if (type == PacketType::kReset || type == PacketType::kClose || type == PacketType::kHelloAck ||
      type == PacketType::kRetry) {
    ++stats_.dropped_unknown;
    return r;
  }
  // Stateless RESET, with this connection's reset token (a client that holds the token from the
  // protected channel accepts it; an off-path party cannot compute it). Never larger than what
  // triggered it, so it cannot amplify, and tiny datagrams get no answer at all.
  auto reset = [&](Errc reason) {
    if (datagram.size() < kTokenResetSize) {
      ++stats_.not_answered;
      return;
    }
    const ResetToken token = reset_token(id);
    r.reset_size = write_reason_packet(reset_out, PacketType::kReset, id, epoch_, reset_pn_++,
                                       reason, &token);
    if (r.reset_size) ++stats_.resets_sent;
  };
  if (type != PacketType::kHello) {  // DATA for a connection this incarnation does not know
    reset(Errc::kStaleSession);
    return r;
  }
  Frames frames;
  if (!parse_frames(pkt->body, frames) || pkt->is_protected()) {
    ++stats_.dropped_malformed;
    return r;
  }
  if (id == 0 || recently_closed_.count(id)) {
    // A delayed duplicate HELLO of a closed connection must not resurrect it (its old DATA
    // datagrams could then be delivered a second time).
    ++stats_.connections_refused;
    reset(Errc::kConnectionLost);
    return r;
  }
  if (cfg_.require_retry &&
      (!frames.cookie || !check_cookie(*frames.cookie, id, source, now))) {
    // Stateless address validation (QUIC Retry, WireGuard cookie): nothing is kept until the
    // client echoes a cookie bound to its address, its connection id and the time. The RETRY
    // (52 bytes) echoes the HELLO's packet number and stays under 3x what was received.
    if (frames.cookie) ++stats_.bad_cookies;
    if (kRetrySize > 3 * datagram.size()) {
      ++stats_.not_answered;
      return r;
    }
    r.reset_size = write_retry_packet(reset_out, id, epoch_, pkt->header.packet_number,
                                      make_cookie(id, source, now));
    if (r.reset_size) ++stats_.retries_sent;
    return r;
  }
  const std::string src(reinterpret_cast<const char*>(source.data()), source.size());
  if (conns_.size() >= cfg_.max_connections) {
    ++stats_.connections_refused;
    reset(Errc::kBusy);
    return r;
  }
  if (cfg_.max_connections_per_source != 0 && !source.empty()) {
    auto ps = per_source_.find(src);
    if (ps != per_source_.end() && ps->second >= cfg_.max_connections_per_source) {
      ++stats_.connections_refused;
      ++stats_.refused_per_source;
      reset(Errc::kBusy);
      return r;
    }
  }
  auto conn = std::make_unique<Connection>(Connection::make_server(id, epoch_, cfg_, now));
  conn->set_budget(budget_.get());
  conn->set_reset_token(reset_token(id));
  if (frames.bind && *frames.bind != 0) {
    // A reconnect of a logged-in session: arm that session's packet keys at once.
    std::optional<SessionKey> key = session_key ? session_key(*frames.bind) : std::nullopt;
    if (key) conn->protect(server_keys(key->key, id, key->protection), /*send_now=*/false, now);
    conn->set_bind(key ? *frames.bind : 0, std::nullopt);
  }
  conn->on_datagram(datagram, now);
  if (conn->state() != State::kEstablished) {  // frames did not parse: forget it
    ++stats_.dropped_malformed;
    return r;
  }
  ++stats_.connections_accepted;
  if (!source.empty()) {
    source_of_.emplace(id, src);
    ++per_source_[src];
  }
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
    forget_source(it->first);
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
