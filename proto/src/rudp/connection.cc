// rudp::Connection: the sans-I/O engine (see connection.h and docs/RUDP.md).
#include "ipsan/proto/rudp/connection.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "ipsan/base/crypto.h"

namespace ipsan::proto::rudp {
namespace {

// Received-packet intervals kept for ACK ranges and duplicate detection. Older intervals are
// folded into a floor (everything below it counts as seen), which bounds memory.
constexpr std::size_t kMaxTrackedRanges = 256;
// Loss discrimination: gain of the per-packet RTT average, and the samples after which it counts
// as settled (the first sample then weighs (15/16)^64 < 2 %) and feeds the baseline.
constexpr int kPacketRttGainShift = 4;
// Gain of the slow average whose minimum is the baseline (1/64): an average of noisy samples
// dips below its mean by chance, and its minimum over a connection's life is the deepest dip.
// With the fast average (1/16) the baseline of the `nasty` profile fell 10-20 ms below the mean
// RTT (30-50 ms) with no queue at all; 1/64 leaves the virtual `nasty` test 33-39 % of the plain
// path's goodput where 1/16 left 31-32 %.
constexpr int kBaseRttGainShift = 6;
constexpr std::uint64_t kPacketRttSettleSamples = 16;
// Packets declared lost that are remembered for spurious-loss detection.
constexpr std::size_t kMaxLostRemembered = 4096;

}  // namespace

const char* protection_name(Protection p) {
  switch (p) {
    case Protection::kOff: return "off";
    case Protection::kIntegrity: return "integrity";
    case Protection::kEncrypted: return "encrypted";
  }
  return "?";
}

bool parse_protection(std::string_view s, Protection& out) {
  if (s == "off") {
    out = Protection::kOff;
  } else if (s == "integrity") {
    out = Protection::kIntegrity;
  } else if (s == "encrypted") {
    out = Protection::kEncrypted;
  } else {
    return false;
  }
  return true;
}

namespace {

Config normalize(Config c) {
  c.max_datagram = std::clamp(c.max_datagram, kMinDatagram, kMaxDatagram);
  c.max_message_bytes = std::min<std::size_t>(c.max_message_bytes, 0xffffffffu);
  c.recv_window_bytes = std::max<std::uint64_t>(c.recv_window_bytes, c.max_message_bytes);
  c.max_messages_in_flight = std::max<std::uint32_t>(c.max_messages_in_flight, 1);
  c.ack_eliciting_threshold = std::max<std::uint32_t>(c.ack_eliciting_threshold, 1);
  c.packet_threshold = std::max<std::uint32_t>(c.packet_threshold, 1);
  c.max_ack_ranges = std::clamp<std::size_t>(c.max_ack_ranges, 1, kMaxAckRangesOnWire);
  c.min_window_packets = std::max<std::size_t>(c.min_window_packets, 1);
  c.initial_window_packets = std::max(c.initial_window_packets, c.min_window_packets);
  c.pacing_burst_packets = std::max<std::size_t>(c.pacing_burst_packets, 1);
  c.time_threshold = std::max(c.time_threshold, 1.0);
  c.reorder_decay_rounds = std::max<std::uint32_t>(c.reorder_decay_rounds, 1);
  if (!(c.loss_reduction_factor >= 0.1 && c.loss_reduction_factor <= 0.95)) {
    c.loss_reduction_factor = 0.7;
  }
  if (c.timer_granularity <= Duration::zero()) c.timer_granularity = 1us;
  if (c.initial_rtt <= Duration::zero()) c.initial_rtt = 1ms;
  return c;
}

}  // namespace

Connection::Connection(Role role, std::uint64_t conn_id, std::uint32_t epoch, const Config& config,
                       TimePoint now)
    : cfg_(normalize(config)),
      role_(role),
      state_(role == Role::kClient ? State::kHandshake : State::kEstablished),
      conn_id_(conn_id),
      epoch_(epoch),
      // Sized for the larger (protected) trailer, so fragments need not change at the switch.
      frag_size_(cfg_.max_datagram - kProtectedOverhead - kMessageFrameHeader),
      smoothed_rtt_(cfg_.initial_rtt),
      rttvar_(cfg_.initial_rtt / 2),
      last_eliciting_sent_(now),
      cwnd_(cfg_.initial_window_packets * cfg_.max_datagram),
      pacer_tokens_(static_cast<double>(cfg_.pacing_burst_packets * cfg_.max_datagram)),
      pacer_last_(now),
      largest_recv_time_(now),
      last_recv_(now) {
  // Honest senders use fragments of at least kMinDatagram - 47 bytes: generous slack on top.
  max_intervals_ =
      cfg_.recv_window_bytes / 128 + 2 * std::uint64_t{cfg_.max_messages_in_flight} + 1024;
  scratch_.messages.reserve(8);
  // Packet numbers start at a random point (QUIC): an off-path party cannot guess a number the
  // receiver would accept as new, and with protection it cannot forge a packet anyway.
  initial_pn_ = cfg_.initial_packet_number;
  while (initial_pn_ == 0) initial_pn_ = (random_u64() % ((1ull << 40) - (1ull << 20))) + (1ull << 20);
  next_pn_ = initial_pn_;
}

Connection::~Connection() {
  if (budget_ && charged_ > 0) charge(-static_cast<std::int64_t>(charged_));
}

// Keeps the shared receive budget in step with recv_reserved_ (positive: reserve, negative:
// release); unverified connections are also counted in their own, smaller budget.
void Connection::charge(std::int64_t bytes) {
  if (!budget_) return;
  if (bytes >= 0) {
    const auto b = static_cast<std::uint64_t>(bytes);
    budget_->used += b;
    if (!verified_) budget_->unverified_used += b;
    charged_ += b;
  } else {
    const auto b = std::min<std::uint64_t>(static_cast<std::uint64_t>(-bytes), charged_);
    budget_->used -= std::min(budget_->used, b);
    if (!verified_) budget_->unverified_used -= std::min(budget_->unverified_used, b);
    charged_ -= b;
  }
}

void Connection::mark_verified() {
  if (verified_) return;
  if (budget_) budget_->unverified_used -= std::min(budget_->unverified_used, charged_);
  verified_ = true;
}

void Connection::protect(const std::optional<PacketKeys>& keys, bool send_now, TimePoint now) {
  if (state_ == State::kClosed) return;
  mark_verified();
  if (!keys || keys_) return;
  keys_ = keys;
  if (send_now) {
    tx_protected_ = true;
  } else if (!rx_protected_) {
    protect_deadline_ = now + cfg_.protect_grace;
  }
}

void Connection::set_reset_token(const ResetToken& token) { reset_token_ = token; }

void Connection::set_bind(std::uint64_t session_id, const std::optional<PacketKeys>& keys) {
  if (role_ == Role::kClient) {
    if (state_ != State::kHandshake || keys_) return;
    bind_request_ = session_id;
    pending_keys_ = keys;
  } else {
    bind_echo_ = session_id;
  }
}

PacketWriter Connection::writer(MutableByteSpan out, PacketType type, std::uint64_t pn,
                                std::uint16_t flags) {
  if (tx_protected_) {
    flags |= kFlagKeyPhase;
    if (keys_->encrypt) flags |= kFlagEncrypted;
    return PacketWriter(out.first(cfg_.max_datagram),
                        Header{kVersion, type, conn_id_, epoch_, pn, flags}, kTagSize);
  }
  return PacketWriter(out.first(cfg_.max_datagram),
                      Header{kVersion, type, conn_id_, epoch_, pn, flags});
}

std::size_t Connection::finish_packet(PacketWriter& w) {
  return tx_protected_ ? w.finish_sealed(keys_->tx) : w.finish();
}

Connection Connection::make_client(std::uint64_t conn_id, const Config& config, TimePoint now) {
  Connection c(Role::kClient, conn_id, 0, config, now);
  c.hello_pending_ = true;
  return c;
}

Connection Connection::make_server(std::uint64_t conn_id, std::uint32_t boot_epoch,
                                   const Config& config, TimePoint now) {
  return Connection(Role::kServer, conn_id, boot_epoch, config, now);
}

const ConnectionStats& Connection::stats() const {
  stats_.srtt_us = to_micros(smoothed_rtt_);
  stats_.rttvar_us = to_micros(rttvar_);
  stats_.min_rtt_us = to_micros(min_rtt_);
  stats_.packet_rtt_us = to_micros(packet_rtt_);
  stats_.base_rtt_us = to_micros(base_rtt_);
  stats_.cwnd = cwnd_;
  stats_.ssthresh = ssthresh_ == ~std::uint64_t{0} ? 0 : ssthresh_;
  stats_.reorder_window_us = to_micros(reo_delay_);
  stats_.loss_rate = loss_rate_;
  stats_.bytes_in_flight = bytes_in_flight_;
  stats_.recv_buffered = recv_reserved_;
  return stats_;
}

void Connection::close_with(Errc reason) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  close_reason_ = reason;
  sent_.clear();
  lost_.clear();
  out_.clear();
  retransmit_.clear();
  reassembly_.clear();
  std::uint64_t held = 0;
  for (const Bytes& m : ready_) held += m.size();
  if (charged_ > held) charge(-static_cast<std::int64_t>(charged_ - held));
  intervals_ = 0;
  bytes_in_flight_ = 0;
}

void Connection::close(TimePoint) {
  if (state_ == State::kClosed) return;
  const bool can_say_goodbye = state_ == State::kEstablished;
  close_with(Errc::kShutdown);
  close_pending_ = can_say_goodbye;
}

// ---------------------------------------------------------------------------------------------
// Receive path.

void Connection::on_datagram(ByteSpan datagram, TimePoint now) {
  if (state_ == State::kClosed) return;
  auto pkt = parse_packet(datagram);
  if (!pkt) {
    if (pkt.error() == DropReason::kBadCrc) {
      ++stats_.dropped_bad_crc;
    } else {
      ++stats_.dropped_malformed;
    }
    return;
  }
  if (pkt->header.conn_id != conn_id_) {
    ++stats_.dropped_other;
    return;
  }
  handle_packet(*pkt, datagram, now);
}

void Connection::handle_packet(const Packet& pkt, ByteSpan datagram, TimePoint now) {
  const Header& h = pkt.header;
  ByteSpan body = pkt.body;
  // Authentication first: nothing in a packet is looked at before its tag verified.
  if (pkt.is_protected()) {
    if (!keys_ || ((h.flags & kFlagEncrypted) != 0) != keys_->encrypt ||
        !open_packet(pkt, datagram, keys_->rx, plain_, body)) {
      ++stats_.dropped_unauthenticated;
      return;
    }
    if (!rx_protected_) {
      // The peer has switched: from now on only protected packets count, and we switch too.
      rx_protected_ = true;
      protect_deadline_.reset();
      if (!tx_protected_) {
        tx_protected_ = true;
        if (reset_token_) token_pending_ = true;
      }
    }
  } else if (rx_protected_) {
    // After the switch an unprotected packet can only be a stateless RESET from a server that
    // lost our state: it must carry the token the server gave us inside the protected channel.
    const bool genuine_reset = h.type == PacketType::kReset && role_ == Role::kClient &&
                               reset_token_ && [&] {
                                 auto t = parse_reset_token(body);
                                 return t && constant_time_equal(*t, *reset_token_);
                               }();
    if (!genuine_reset) {
      ++stats_.dropped_unauthenticated;
      return;
    }
    close_with(h.epoch != epoch_ ? Errc::kStaleSession : Errc::kConnectionLost);
    return;
  }
  switch (h.type) {
    case PacketType::kReset:
      // Stateless: the server has no such connection. A different boot epoch than the one
      // learned at HELLO_ACK means the server restarted and every session is gone.
      if (role_ != Role::kClient || pkt.is_protected()) {
        ++stats_.dropped_other;
        return;
      }
      close_with(state_ == State::kEstablished && h.epoch != epoch_ ? Errc::kStaleSession
                                                                    : Errc::kConnectionLost);
      return;
    case PacketType::kRetry: {
      // Stateless address validation: echo the cookie in a new HELLO. Only an answer to one of
      // our HELLOs (its packet number is echoed; on a long path the HELLO has often been resent
      // by then, so any of ours counts), and the immediate resend only a few times per
      // connection, so forged RETRYs cannot make us flood the server with full-size HELLOs
      // (later cookies ride on the PTO-driven HELLOs).
      auto c = parse_retry_cookie(body);
      if (role_ != Role::kClient || state_ != State::kHandshake || !c ||
          h.packet_number < initial_pn_ || h.packet_number > last_hello_pn_) {
        ++stats_.dropped_other;
        return;
      }
      cookie_ = *c;
      last_recv_ = now;
      if (++retries_ > 4) return;
      for (auto it = sent_.begin(); it != sent_.end();) {  // the HELLO was answered
        if (it->second.is_hello) {
          if (it->second.in_flight) bytes_in_flight_ -= it->second.size;
          it = sent_.erase(it);
        } else {
          ++it;
        }
      }
      hello_pending_ = true;
      last_recv_ = now;
      return;
    }
    case PacketType::kClose:
      if (state_ == State::kEstablished && h.epoch != epoch_) {
        ++stats_.dropped_other;
        return;
      }
      close_with(Errc::kConnectionLost);
      return;
    case PacketType::kHello:
      if (role_ != Role::kServer) {
        ++stats_.dropped_other;
        return;
      }
      break;
    case PacketType::kHelloAck:
      if (role_ != Role::kClient || (state_ == State::kEstablished && h.epoch != epoch_)) {
        ++stats_.dropped_other;
        return;
      }
      break;
    case PacketType::kData:
      // In the handshake, DATA is dropped even though it proves the server accepted us: only
      // HELLO_ACK carries the server's initial FLOW limit. The next HELLO fetches it.
      if (state_ != State::kEstablished || h.epoch != epoch_) {
        ++stats_.dropped_other;
        return;
      }
      break;
  }
  if (h.packet_number == 0 || !parse_frames(body, scratch_)) {
    ++stats_.dropped_malformed;
    return;
  }
  // Reset tokens only inside the protected channel, and only from the server.
  if (scratch_.reset_token && (!pkt.is_protected() || role_ != Role::kClient)) {
    ++stats_.dropped_malformed;
    return;
  }
  if (!validate_frames(scratch_)) {
    return;  // counted by validate_frames
  }
  if (h.type == PacketType::kHelloAck && state_ == State::kHandshake) {
    epoch_ = h.epoch;
    state_ = State::kEstablished;
    hello_pending_ = false;
    if (bind_request_ != 0) {
      // The server confirmed it armed the session's key for this connection: switch now.
      if (!scratch_.bind || *scratch_.bind != bind_request_) {
        // The server does not know the session any more: say so, the owner logs in again.
        close_with(Errc::kStaleSession);
        return;
      }
      protect(pending_keys_, /*send_now=*/true, now);
      pending_keys_.reset();
    }
  }
  if (h.type == PacketType::kHello) {
    hello_ack_pending_ = true;
    if (scratch_.bind && *scratch_.bind != 0) peer_bind_ = scratch_.bind;
  }
  if (scratch_.reset_token) reset_token_ = scratch_.reset_token;
  last_recv_ = now;
  const std::uint64_t pn = h.packet_number;
  if (!record_received(pn)) {
    // Probably our ACK was lost: acknowledge again, but do not process the frames twice.
    ++stats_.dropped_duplicate;
    if (scratch_.ack_eliciting()) {
      schedule_ack(true, /*out_of_order=*/true, /*ack_now=*/false, /*resent=*/false, now);
    }
    return;
  }
  ++stats_.packets_received;
  stats_.bytes_received += datagram.size();
  const bool out_of_order = pn != largest_recv_ + 1;
  if (pn > largest_recv_) {
    largest_recv_ = pn;
    largest_recv_time_ = now;
  }
  // Content we already had means our ACKs are being lost (retransmissions get new packet
  // numbers, so this is not a network duplicate): acknowledge at once (see schedule_ack).
  const bool resent_content = apply_frames(scratch_, now);
  schedule_ack(scratch_.ack_eliciting(), out_of_order, (h.flags & kFlagAckNow) != 0, resent_content,
               now);
}

// Checks every limit before anything is applied, so a rejected packet has no effect at all
// (and is not acknowledged: the peer will resend what it carried).
bool Connection::validate_frames(const Frames& f) {
  auto malformed = [this] {
    ++stats_.dropped_malformed;
    return false;
  };
  // Acknowledges a number never sent.
  if (f.ack && (f.ack->largest >= next_pn_ || f.ack->largest < initial_pn_)) return malformed();
  // Before the peer is verified (server side: no protected packet, no session bound) only small
  // messages are accepted: a first fragment declaring 8 MiB must not reserve 8 MiB.
  const std::uint64_t max_message =
      (role_ == Role::kServer && !verified_) ? std::min<std::uint64_t>(cfg_.unverified_max_message,
                                                                        cfg_.max_message_bytes)
                                             : cfg_.max_message_bytes;
  std::uint64_t new_bytes = 0;
  std::uint64_t last_new_id = 0;
  for (const MessageFrame& m : f.messages) {
    if (m.message_id == 0 || m.total_length > max_message) return malformed();
    if (m.message_id > delivered_floor_ + cfg_.max_messages_in_flight) return malformed();
    if (m.message_id <= delivered_floor_ || delivered_above_.count(m.message_id)) continue;
    auto it = reassembly_.find(m.message_id);
    if (it != reassembly_.end()) {
      if (it->second.data.size() != m.total_length) return malformed();
      continue;
    }
    // A new message: reserve its full length against the receive window (FLOW limit).
    if (m.message_id != last_new_id) {
      bool seen = false;
      for (const MessageFrame& o : f.messages) {
        if (&o == &m) break;
        if (o.message_id == m.message_id) {
          if (o.total_length != m.total_length) return malformed();
          seen = true;
          break;
        }
      }
      if (!seen) new_bytes += m.total_length;
      last_new_id = m.message_id;
    }
  }
  // Each fragment adds at most one received interval; a peer sending tiny scattered fragments
  // must not make the interval sets grow without bound.
  if (intervals_ + f.messages.size() > max_intervals_) return malformed();
  if (recv_reserved_ + new_bytes > cfg_.recv_window_bytes) return malformed();
  // The server-wide budgets (Listener): refused like a loss, the peer resends later.
  if (budget_ && new_bytes > 0 &&
      (budget_->used + new_bytes > budget_->limit ||
       (!verified_ && budget_->unverified_used + new_bytes > budget_->unverified_limit))) {
    ++budget_->refused;
    ++stats_.dropped_over_budget;
    return false;
  }
  return true;
}

// Returns true when the packet carried fragments and every one of them was already held: the
// peer resent them because our acknowledgement did not arrive.
bool Connection::apply_frames(const Frames& f, TimePoint now) {
  if (f.max_data) peer_max_data_ = std::max(peer_max_data_, *f.max_data);
  if (f.ack) on_ack(*f.ack, now);
  bool all_duplicate = !f.messages.empty();
  for (const MessageFrame& m : f.messages) {
    if (!on_fragment(m)) all_duplicate = false;
  }
  return all_duplicate;
}

bool Connection::record_received(std::uint64_t pn) {
  if (pn < recv_floor_) return false;
  auto it = recv_ranges_.upper_bound(pn);  // first interval starting above pn
  if (it != recv_ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= pn) return false;
    if (prev->second + 1 == pn) {
      prev->second = pn;
      if (it != recv_ranges_.end() && it->first == pn + 1) {
        prev->second = it->second;
        recv_ranges_.erase(it);
      }
      return true;
    }
  }
  if (it != recv_ranges_.end() && it->first == pn + 1) {
    const std::uint64_t hi = it->second;
    recv_ranges_.erase(it);
    recv_ranges_.emplace(pn, hi);
  } else {
    recv_ranges_.emplace(pn, pn);
  }
  while (recv_ranges_.size() > kMaxTrackedRanges) {
    recv_floor_ = recv_ranges_.begin()->second + 1;
    recv_ranges_.erase(recv_ranges_.begin());
  }
  return true;
}

// `ack_now`: the peer asked for an ACK of this packet at once (ACK_NOW flag, a PTO probe).
// `resent`: the packet repeated what we already had, so our ACKs are being lost; like TCP's
// quick-ACK mode, the next kQuickAcks ack-eliciting packets are then each answered at once.
// Either way the packet is owed an ACK datagram of its own, even when several arrive in one
// receive batch: each probe gets a separate chance through a lossy return path.
void Connection::schedule_ack(bool ack_eliciting, bool out_of_order, bool ack_now, bool resent,
                              TimePoint now) {
  if (!ack_eliciting) return;
  ack_pending_ = true;
  ++eliciting_since_ack_;
  if (resent) quick_acks_left_ = kQuickAcks;
  std::uint32_t owed = ack_now ? kAcksPerProbe : 0;
  if (quick_acks_left_ > 0) {
    --quick_acks_left_;
    owed = std::max<std::uint32_t>(owed, 1);
  }
  acks_owed_ = std::min(acks_owed_ + owed, kMaxAcksOwed);
  if (owed > 0 || out_of_order || eliciting_since_ack_ >= cfg_.ack_eliciting_threshold) {
    ack_immediate_ = true;
    ack_deadline_.reset();
  } else if (!ack_deadline_) {
    ack_deadline_ = now + cfg_.max_ack_delay;
  }
}

// Returns true when the fragment brought nothing new (a duplicate).
bool Connection::on_fragment(const MessageFrame& m) {
  const std::uint64_t id = m.message_id;
  if (id <= delivered_floor_ || delivered_above_.count(id)) {
    ++stats_.duplicate_fragments;
    return true;
  }
  auto [it, inserted] = reassembly_.try_emplace(id);
  InMessage& in = it->second;
  if (inserted) {
    in.data.resize(m.total_length);
    recv_reserved_ += m.total_length;
    charge(m.total_length);
    stats_.recv_buffered_max = std::max(stats_.recv_buffered_max, recv_reserved_);
  }
  const std::uint32_t a = m.offset;
  const std::uint32_t b = static_cast<std::uint32_t>(m.offset + m.payload.size());
  if (b > a) {
    // Merge [a, b) into the received intervals, counting bytes not held before.
    auto cur = in.have.upper_bound(a);
    if (cur != in.have.begin() && std::prev(cur)->second >= a) --cur;
    std::uint32_t lo = a;
    std::uint32_t hi = b;
    std::uint64_t already = 0;
    while (cur != in.have.end() && cur->first <= hi) {
      const std::uint32_t ol = std::max(cur->first, a);
      const std::uint32_t oh = std::min(cur->second, b);
      if (oh > ol) already += oh - ol;
      lo = std::min(lo, cur->first);
      hi = std::max(hi, cur->second);
      cur = in.have.erase(cur);
      --intervals_;
    }
    in.have.emplace(lo, hi);
    ++intervals_;
    const std::uint64_t fresh = (b - a) - already;
    if (fresh == 0) {
      ++stats_.duplicate_fragments;
      return true;
    }
    std::memcpy(in.data.data() + a, m.payload.data(), m.payload.size());
    in.received += fresh;
  }
  if (in.received < in.data.size()) return false;
  ready_.push_back(std::move(in.data));
  intervals_ -= in.have.size();
  reassembly_.erase(it);
  ++stats_.messages_received;
  if (id == delivered_floor_ + 1) {
    ++delivered_floor_;
    while (!delivered_above_.empty() && *delivered_above_.begin() == delivered_floor_ + 1) {
      delivered_above_.erase(delivered_above_.begin());
      ++delivered_floor_;
    }
  } else {
    delivered_above_.insert(id);
  }
  return false;
}

std::optional<Bytes> Connection::poll_message() {
  if (ready_.empty()) return std::nullopt;
  Bytes m = std::move(ready_.front());
  ready_.pop_front();
  recv_reserved_ -= m.size();
  recv_released_ += m.size();
  charge(-static_cast<std::int64_t>(m.size()));
  // Re-advertise once a useful part of the window has been freed, and whenever the receive
  // buffer becomes empty: a sender whose next message is larger than its remaining credit is
  // blocked until it hears the new limit, and with nothing buffered here it cannot be anything
  // else (without this, a message close to the window size could wait forever).
  const std::uint64_t freed = advertised_max_data() - last_advertised_;
  if (state_ == State::kEstablished && freed > 0 &&
      (freed >= std::max<std::uint64_t>(cfg_.recv_window_bytes / 8, 1) || recv_reserved_ == 0)) {
    flow_pending_ = true;
  }
  return m;
}

std::uint64_t Connection::advertised_max_data() const {
  return recv_released_ + cfg_.recv_window_bytes;
}

// ---------------------------------------------------------------------------------------------
// Acknowledgments, RTT, loss detection, congestion control (RFC 9002).

void Connection::on_ack(const AckFrame& ack, TimePoint now) {
  std::vector<std::uint64_t> newly;
  const std::optional<TimePoint> acked_before = max_acked_time_sent_;
  const std::uint64_t largest_before = largest_acked_;
  bool rtt_sample = false;
  bool reordering = false;
  TimePoint largest_sent_time{};
  Duration rtt_sum{};
  std::int64_t rtt_count = 0;
  for (std::size_t i = 0; i < ack.range_count; ++i) {
    const AckRange& r = ack.ranges[i];
    // Packets declared lost but acknowledged now: the loss was spurious (reordering).
    for (auto it = lost_.lower_bound(r.lo); it != lost_.end() && it->first <= r.hi;) {
      on_spurious_loss(it->first, it->second, now);
      reordering = true;
      it = lost_.erase(it);
    }
    for (auto it = sent_.lower_bound(r.lo); it != sent_.end() && it->first <= r.hi;) {
      SentPacket& p = it->second;
      newly.push_back(it->first);
      // Acknowledged below an earlier ACK's largest: it arrived out of order.
      if (it->first < largest_before) reordering = true;
      if (!max_acked_time_sent_ || p.time_sent > *max_acked_time_sent_) {
        max_acked_time_sent_ = p.time_sent;
      }
      if (it->first == ack.largest) {
        rtt_sample = true;
        largest_sent_time = p.time_sent;
      }
      rtt_sum += now - p.time_sent;
      ++rtt_count;
      if (p.in_flight) {
        bytes_in_flight_ -= std::min<std::uint64_t>(bytes_in_flight_, p.size);
        // NewReno: no growth for packets sent before the current recovery period began.
        if (p.cwnd_limited && (!recovery_start_ || p.time_sent > *recovery_start_)) {
          if (cwnd_ < ssthresh_) {
            cwnd_ += p.size;
          } else {
            ca_acked_ += p.size;
            while (ca_acked_ >= cwnd_) {
              ca_acked_ -= cwnd_;
              cwnd_ += cfg_.max_datagram;
            }
          }
          cwnd_ = std::min<std::uint64_t>(
              cwnd_, std::max<std::uint64_t>(cfg_.max_window_bytes, 2 * cfg_.max_datagram));
        }
      }
      for (const FragRef& fr : p.frags) {
        auto m = out_.find(fr.message_id);
        if (m == out_.end()) continue;
        std::uint64_t& s = m->second.frag_pn[fr.index];
        if (s == kFragAcked) continue;
        s = kFragAcked;
        if (++m->second.acked == m->second.frag_pn.size()) {
          ++stats_.messages_sent;
          out_.erase(m);
        }
      }
      it = sent_.erase(it);
    }
  }
  if (newly.empty()) {
    if (reordering) reorder_in_round_ = true;
    return;
  }
  if (ack.largest > largest_acked_) largest_acked_ = ack.largest;
  if (reordering) reorder_in_round_ = true;
  if (largest_acked_ >= round_end_pn_) {
    end_round(reorder_in_round_);
    reorder_in_round_ = false;
    round_end_pn_ = next_pn_;
  }
  if (rtt_sample) {
    update_rtt(now - largest_sent_time, std::chrono::microseconds(ack.ack_delay_us));
  }
  // One sample per ACK (the mean over the packets it newly acknowledges): packets acknowledged
  // by one ACK share its return delay, so one sample each would weigh an ACK by its size.
  sample_packet_rtt(rtt_sum / rtt_count);
  std::sort(newly.begin(), newly.end());
  detect_lost(now, newly, acked_before);
  prune_lost(now);
  pto_count_ = 0;
  probes_ = 0;  // the path answers again: probes of an earlier PTO no longer bypass cwnd
}

// A packet declared lost was acknowledged after all: count it, take back what was queued for
// retransmission, learn the reordering window and undo the episode's reduction if every loss of
// the episode has turned out to be spurious.
void Connection::on_spurious_loss(std::uint64_t, LostPacket& lp, TimePoint now) {
  ++stats_.spurious_losses;
  ++round_spurious_;
  for (const FragRef& fr : lp.frags) {
    auto m = out_.find(fr.message_id);
    if (m == out_.end()) continue;
    std::uint64_t& s = m->second.frag_pn[fr.index];
    if (s == kFragAcked) continue;
    if (s != kFragLost) ++stats_.spurious_retransmissions;  // already resent in a newer packet
    s = kFragAcked;  // a stale retransmit_ entry is skipped by build_data
    if (++m->second.acked == m->second.frag_pn.size()) {
      ++stats_.messages_sent;
      out_.erase(m);
    }
  }
  if (lp.episode != 0 && lp.episode == episode_.id && !episode_.undone &&
      ++episode_.spurious >= episode_.lost) {
    episode_.undone = true;
    ++stats_.congestion_events_undone;
    cwnd_ = std::max(cwnd_, episode_.cwnd_before);
    ssthresh_ = std::max(ssthresh_, episode_.ssthresh_before);
    recovery_start_ = episode_.recovery_before;
    ca_acked_ = 0;
  }
  if (!cfg_.adaptive_reordering) return;
  // The time threshold must exceed how long this packet really took (x 5/4 margin).
  const Duration cap = pto_base() * 2;
  const Duration want = std::min((now - lp.time_sent) * 5 / 4, cap);
  reo_delay_ = std::max({reo_delay_, want, cfg_.timer_granularity});
  quiet_rounds_ = 0;
}

// Once per round trip: the learned reordering window decays after quiet rounds.
void Connection::end_round(bool reordering_seen) {
  if (round_sent_ > 0) {
    // Exponential average over packets, not rounds: a round of 4 small packets with one loss
    // moves the rate by 4 packets' weight, not by 1/8 of "25 %".
    // Losses that turned out spurious (reordering) are not losses: on a path whose jitter
    // reorders a whole window they outnumbered the real ones and tripped the net.
    const std::uint64_t lost = round_lost_ - std::min(round_lost_, round_spurious_);
    const double frac = std::min(1.0, static_cast<double>(lost) / static_cast<double>(round_sent_));
    const double keep = std::pow(1.0 - 1.0 / kLossRatePackets, static_cast<double>(round_sent_));
    loss_rate_ = loss_rate_ * keep + frac * (1.0 - keep);
  }
  round_sent_ = 0;
  round_lost_ = 0;
  round_spurious_ = 0;
  if (reo_delay_ == Duration::zero()) return;
  if (reordering_seen) {
    quiet_rounds_ = 0;
    return;
  }
  if (++quiet_rounds_ < cfg_.reorder_decay_rounds) return;
  quiet_rounds_ = 0;
  reo_delay_ /= 2;
  const Duration base = std::chrono::duration_cast<Duration>(std::max(latest_rtt_, smoothed_rtt_) *
                                                             cfg_.time_threshold);
  if (reo_delay_ < base) reo_delay_ = Duration::zero();  // packet threshold back in force
}

void Connection::prune_lost(TimePoint now) {
  const Duration keep = pto_base() * 8 + reo_delay_;
  while (!lost_.empty() &&
         (lost_.size() > kMaxLostRemembered || lost_.begin()->second.time_sent + keep < now)) {
    lost_.erase(lost_.begin());
  }
}

void Connection::sample_packet_rtt(Duration rtt) {
  if (rtt < Duration::zero()) rtt = Duration::zero();
  if (packet_rtt_samples_ == 0) {
    packet_rtt_ = rtt;
  } else {
    packet_rtt_ += (rtt - packet_rtt_) / (1 << kPacketRttGainShift);
  }
  ++packet_rtt_samples_;
  if (packet_rtt_samples_ == kPacketRttSettleSamples) {
    slow_rtt_ = packet_rtt_;
    base_rtt_ = packet_rtt_;
  } else if (packet_rtt_samples_ > kPacketRttSettleSamples) {
    slow_rtt_ += (rtt - slow_rtt_) / (1 << kBaseRttGainShift);
    base_rtt_ = std::min(base_rtt_, slow_rtt_);
  }
}

void Connection::update_rtt(Duration latest, Duration ack_delay) {
  if (latest < Duration::zero()) latest = Duration::zero();
  latest_rtt_ = latest;
  if (!has_rtt_sample_) {
    has_rtt_sample_ = true;
    min_rtt_ = latest;
    smoothed_rtt_ = latest;
    rttvar_ = latest / 2;
    return;
  }
  min_rtt_ = std::min(min_rtt_, latest);
  ack_delay = std::min(ack_delay, cfg_.max_ack_delay);
  Duration adjusted = latest;
  if (latest >= min_rtt_ + ack_delay) adjusted = latest - ack_delay;
  const Duration diff =
      smoothed_rtt_ > adjusted ? smoothed_rtt_ - adjusted : adjusted - smoothed_rtt_;
  rttvar_ = (rttvar_ * 3 + diff) / 4;
  smoothed_rtt_ = (smoothed_rtt_ * 7 + adjusted) / 8;
}

void Connection::detect_lost(TimePoint now, const std::vector<std::uint64_t>& newly_acked,
                             std::optional<TimePoint> acked_before) {
  loss_time_.reset();
  if (largest_acked_ == 0) return;
  const Duration base = std::max(latest_rtt_, smoothed_rtt_);
  const Duration loss_delay =
      std::max({std::chrono::duration_cast<Duration>(base * cfg_.time_threshold),
                cfg_.timer_granularity, reo_delay_});
  // Once reordering has been seen, only the (widened) time threshold declares losses (RACK).
  const bool use_packet_threshold = reo_delay_ == Duration::zero();
  const TimePoint lost_send_time = now - loss_delay;
  std::vector<std::pair<std::uint64_t, SentPacket>> lost;
  for (auto it = sent_.begin(); it != sent_.end() && it->first <= largest_acked_;) {
    if (it->second.time_sent <= lost_send_time ||
        (use_packet_threshold && largest_acked_ >= it->first + cfg_.packet_threshold)) {
      lost.emplace_back(it->first, std::move(it->second));
      it = sent_.erase(it);
    } else {
      const TimePoint t = it->second.time_sent + loss_delay;
      if (!loss_time_ || t < *loss_time_) loss_time_ = t;
      ++it;
    }
  }
  if (lost.empty()) return;
  on_congestion_event(lost.back().second.time_sent, now);
  // The loss-rate safety net counts loss events: a run of consecutive packet numbers lost
  // together (one burst) counts once.
  for (std::size_t i = 0; i < lost.size(); ++i) {
    if (i == 0 || lost[i].first != lost[i - 1].first + 1) ++round_lost_;
  }
  for (auto& [pn, p] : lost) {
    on_packet_lost(pn, p);
    if (!p.frags.empty() || p.has_flow) {
      ++episode_.lost;
      LostPacket& lp = lost_[pn];
      lp.time_sent = p.time_sent;
      lp.episode = episode_.id;
      lp.frags = std::move(p.frags);
    }
  }
  prune_lost(now);
  // Persistent congestion (RFC 9002 7.6): lost packets spanning more than 3 PTOs with nothing
  // acknowledged in between -> the path is (or was) black-holed; restart from the minimum window.
  // Only packets sent after everything acknowledged by earlier ACKs count (so no earlier ACK can
  // lie between them); this ACK's own packets are checked by number.
  auto first = lost.begin();
  while (first != lost.end() && acked_before && first->second.time_sent <= *acked_before) ++first;
  if (has_rtt_sample_ && lost.end() - first >= 2) {
    const Duration span = lost.back().second.time_sent - first->second.time_sent;
    const Duration pc =
        (smoothed_rtt_ + std::max(rttvar_ * 4, cfg_.timer_granularity) + cfg_.max_ack_delay) * 3;
    const std::uint64_t lo = first->first;
    const std::uint64_t hi = lost.back().first;
    const bool acked_between = std::any_of(newly_acked.begin(), newly_acked.end(),
                                           [&](std::uint64_t pn) { return pn > lo && pn < hi; });
    if (span > pc && !acked_between) {
      ++stats_.persistent_congestion;
      // A path with no queue (random loss, an outage) restarts like a new connection, at the
      // initial window; a queued one collapses to the minimum window (RFC 9002 7.6.2).
      const std::size_t packets =
          is_random_loss() ? cfg_.initial_window_packets : cfg_.min_window_packets;
      cwnd_ = std::min<std::uint64_t>(cwnd_, packets * cfg_.max_datagram);
      ca_acked_ = 0;
      recovery_start_.reset();
      episode_.recovery_before.reset();
    }
  }
}

void Connection::on_packet_lost(std::uint64_t pn, SentPacket& p) {
  ++stats_.packets_lost;
  if (p.in_flight) bytes_in_flight_ -= std::min<std::uint64_t>(bytes_in_flight_, p.size);
  requeue_content(pn, p);
}

// Puts what `pn` carried back in the send queues (only fragments whose newest copy it was).
void Connection::requeue_content(std::uint64_t pn, const SentPacket& p) {
  for (const FragRef& fr : p.frags) {
    auto m = out_.find(fr.message_id);
    if (m == out_.end()) continue;
    std::uint64_t& s = m->second.frag_pn[fr.index];
    if (s == pn) {
      s = kFragLost;
      retransmit_.push_back(fr);
    }
  }
  if (p.has_flow) flow_pending_ = true;
  if (p.has_token) token_pending_ = true;
  if (p.is_hello && state_ == State::kHandshake) hello_pending_ = true;
}

void Connection::on_congestion_event(TimePoint time_sent, TimePoint now) {
  // One reduction per recovery period: losses of packets sent before it began are ignored.
  if (recovery_start_ && time_sent <= *recovery_start_) return;
  if (is_random_loss()) {
    ++stats_.random_loss_events;
    return;
  }
  ++stats_.congestion_events;
  Episode e;
  e.id = episode_.id + 1;
  e.cwnd_before = cwnd_;
  e.ssthresh_before = ssthresh_;
  e.recovery_before = recovery_start_;
  episode_ = e;
  recovery_start_ = now;
  const std::uint64_t min_window = cfg_.min_window_packets * cfg_.max_datagram;
  ssthresh_ = std::max<std::uint64_t>(
      static_cast<std::uint64_t>(static_cast<double>(cwnd_) * cfg_.loss_reduction_factor),
      min_window);
  cwnd_ = ssthresh_;
  ca_acked_ = 0;
}

// Veno-style discrimination (see Config::random_loss_backlog).
bool Connection::is_random_loss() const {
  if (cfg_.random_loss_backlog <= 0) return false;
  if (loss_rate_ > cfg_.random_loss_max_rate) return false;
  // Before the per-ACK average has settled (the first kPacketRttSettleSamples ACKs: about the
  // initial window's round trip) there is no baseline to see a queue against, and min_rtt /
  // srtt are no substitute on a path that reorders (every early loss of the `nasty` profile was
  // taken for congestion and left the connection in congestion avoidance at a tenth of the
  // window it needed). The window is then at most about twice the initial window, which a new
  // connection may send anyway: the loss is taken as random (the loss-rate net still applies).
  if (packet_rtt_samples_ < kPacketRttSettleSamples) return true;
  if (!has_rtt_sample_) return false;
  const Duration rtt_now = packet_rtt_;
  // The baseline: the smallest value a slow average of the same samples has taken since the
  // average settled (sample_packet_rtt). Any average dips below its mean by chance, the slow one
  // far less.
  const Duration rtt_base = std::min(base_rtt_, packet_rtt_);
  const double srtt = static_cast<double>(rtt_now.count());
  const double min_rtt = static_cast<double>(rtt_base.count());
  if (srtt <= 0) return false;
  if (rtt_now < rtt_base + cfg_.random_loss_queue_delay) return true;
  // This connection's share of the queue: what it has in flight (not its window: a sender
  // limited by its application, e.g. small requests, keeps far less queued than cwnd allows).
  const double cwnd = static_cast<double>(cwnd_);
  const double in_flight = std::min(cwnd, static_cast<double>(bytes_in_flight_));
  const double backlog = in_flight * std::max(0.0, 1.0 - min_rtt / srtt);
  const double limit =
      std::max(3.0 * static_cast<double>(cfg_.max_datagram), cwnd * cfg_.random_loss_backlog);
  return backlog < limit;
}

Duration Connection::pto_base() const {
  return smoothed_rtt_ + std::max(rttvar_ * 4, cfg_.timer_granularity) + cfg_.max_ack_delay;
}

std::optional<TimePoint> Connection::pto_deadline() const {
  if (sent_.empty()) return std::nullopt;
  Duration d = pto_base();
  const Duration cap = std::max(cfg_.max_pto, pto_base() * 2);
  for (std::uint32_t i = 0; i < pto_count_ && d < cap; ++i) d *= 2;
  d = std::min(d, cap);
  return last_eliciting_sent_ + d;
}

// ---------------------------------------------------------------------------------------------
// Timers.

std::optional<TimePoint> Connection::next_deadline() const {
  if (state_ == State::kClosed) return std::nullopt;
  TimePoint t = last_recv_ + cfg_.idle_timeout;
  auto consider = [&t](const std::optional<TimePoint>& x) {
    if (x && *x < t) t = *x;
  };
  consider(ack_pending_ ? ack_deadline_ : std::nullopt);
  consider(loss_time_ ? loss_time_ : pto_deadline());
  consider(pacer_wait_until_);
  consider(protect_deadline_);
  if (state_ == State::kEstablished && sent_.empty() && !ping_pending_) {
    consider(last_eliciting_sent_ + cfg_.keepalive_interval);
  }
  return t;
}

void Connection::on_timer(TimePoint now) {
  if (state_ == State::kClosed) return;
  if (now >= last_recv_ + cfg_.idle_timeout) {
    close_with(Errc::kTimeout);
    return;
  }
  if (protect_deadline_ && now >= *protect_deadline_) {
    // Armed, but the peer never switched to protected packets: it cannot or will not.
    close_with(Errc::kAuthFailed);
    return;
  }
  if (ack_deadline_ && now >= *ack_deadline_) {
    ack_immediate_ = true;
    ack_deadline_.reset();
  }
  if (pacer_wait_until_ && now >= *pacer_wait_until_) pacer_wait_until_.reset();
  if (loss_time_) {
    if (now >= *loss_time_) {
      static const std::vector<std::uint64_t> kNone;
      detect_lost(now, kNone, max_acked_time_sent_);
    }
  } else if (auto pto = pto_deadline(); pto && now >= *pto) {
    // Probe: resend what the oldest outstanding packet carried, ignoring cwnd and pacing, so a
    // lost tail is repaired without waiting for more ACKs.
    ++stats_.pto_fired;
    ++pto_count_;
    probes_ = 2;
    requeue_content(sent_.begin()->first, sent_.begin()->second);
    if (!has_eliciting_work()) ping_pending_ = true;
    // The probe is the new reference point for the next (backed-off) PTO.
    last_eliciting_sent_ = now;
  }
  if (state_ == State::kEstablished && sent_.empty() &&
      now >= last_eliciting_sent_ + cfg_.keepalive_interval) {
    ping_pending_ = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Send path.

Errc Connection::send(Bytes message, TimePoint) {
  if (state_ == State::kClosed) return Errc::kConnectionLost;
  if (message.size() > cfg_.max_message_bytes) return Errc::kTooLarge;
  OutMessage m;
  const std::size_t n = std::max<std::size_t>(1, (message.size() + frag_size_ - 1) / frag_size_);
  m.frag_pn.assign(n, 0);
  m.data = std::move(message);
  out_.emplace(next_message_id_++, std::move(m));
  ++stats_.messages_queued;
  return Errc::kOk;
}

bool Connection::has_eliciting_work() const {
  if (ping_pending_ || flow_pending_ || !retransmit_.empty()) return true;
  if (token_pending_ && tx_protected_) return true;
  for (auto it = out_.lower_bound(send_cursor_); it != out_.end(); ++it) {
    const OutMessage& m = it->second;
    if (m.next_unsent < m.frag_pn.size()) {
      if (m.opened) return true;
      return it->first < out_.begin()->first + cfg_.max_messages_in_flight &&
             sent_data_ + m.data.size() <= peer_max_data_;
    }
  }
  return false;
}

bool Connection::pacer_allows(TimePoint now) {
  if (!cfg_.pacing) return true;
  const double burst = static_cast<double>(cfg_.pacing_burst_packets * cfg_.max_datagram);
  // Rate = 1.25 * cwnd / srtt (RFC 9002 7.7), in bytes per nanosecond.
  const double srtt_ns = std::max<double>(1000.0, static_cast<double>(smoothed_rtt_.count()));
  const double rate = 1.25 * static_cast<double>(cwnd_) / srtt_ns;
  if (now > pacer_last_) {
    pacer_tokens_ =
        std::min(burst, pacer_tokens_ + rate * static_cast<double>((now - pacer_last_).count()));
    pacer_last_ = now;
  }
  const double need = static_cast<double>(cfg_.max_datagram);
  if (pacer_tokens_ >= need) return true;
  const auto wait = static_cast<std::int64_t>(std::ceil((need - pacer_tokens_) / rate));
  pacer_wait_until_ = now + Duration(std::max<std::int64_t>(wait, 1));
  return false;
}

void Connection::pacer_spend(std::size_t bytes) {
  if (cfg_.pacing) pacer_tokens_ -= static_cast<double>(bytes);
}

void Connection::on_sent(std::uint64_t pn, SentPacket p, TimePoint now) {
  bytes_in_flight_ += p.size;
  p.cwnd_limited = 2 * bytes_in_flight_ >= cwnd_;
  ++round_sent_;
  last_eliciting_sent_ = now;
  if (probes_ > 0) {
    --probes_;
  } else {
    pacer_spend(p.size);
  }
  sent_.emplace(pn, std::move(p));
}

std::size_t Connection::poll_transmit(MutableByteSpan out, TimePoint now) {
  if (out.size() < cfg_.max_datagram) return 0;
  if (state_ == State::kClosed) {
    if (!close_pending_) return 0;
    close_pending_ = false;
    const std::size_t n =
        tx_protected_
            ? write_sealed_close(out, conn_id_, epoch_, next_pn_++, Errc::kShutdown, keys_->tx,
                                 keys_->encrypt)
            : write_reason_packet(out, PacketType::kClose, conn_id_, epoch_, next_pn_++,
                                  Errc::kShutdown);
    ++stats_.packets_sent;
    stats_.bytes_sent += n;
    return n;
  }
  if (state_ == State::kHandshake) return hello_pending_ ? build_hello(out, now) : 0;
  if (hello_ack_pending_) return build_hello(out, now);
  // Every probe of a PTO goes out, as a PING when nothing is left to resend.
  if (probes_ > 0 && !has_eliciting_work()) ping_pending_ = true;
  if (has_eliciting_work() && (probes_ > 0 || (bytes_in_flight_ < cwnd_ && pacer_allows(now)))) {
    if (const std::size_t n = build_data(out, now, true)) return n;
  }
  if (ack_pending_ && ack_immediate_) return build_data(out, now, false);
  return 0;
}

bool Connection::write_ack(PacketWriter& w, TimePoint now) {
  if (recv_ranges_.empty()) return false;
  std::array<AckRange, kMaxAckRangesOnWire> ranges;
  std::size_t n = 0;
  for (auto it = recv_ranges_.rbegin(); it != recv_ranges_.rend() && n < cfg_.max_ack_ranges;
       ++it) {
    ranges[n++] = {it->first, it->second};
  }
  const auto delay =
      std::chrono::duration_cast<std::chrono::microseconds>(now - largest_recv_time_);
  const auto delay_us =
      static_cast<std::uint32_t>(std::clamp<std::int64_t>(delay.count(), 0, 0xffffffff));
  if (!w.put_ack(largest_recv_, delay_us, ranges.data(), n)) return false;
  eliciting_since_ack_ = 0;
  if (acks_owed_ > 1) {
    --acks_owed_;  // another ACK datagram is due at once (quick-ACK mode)
  } else {
    acks_owed_ = 0;
    ack_pending_ = false;
    ack_immediate_ = false;
  }
  ack_deadline_.reset();
  ++stats_.acks_sent;
  return true;
}

// HELLO (client) or HELLO_ACK (server), padded to max_datagram: a path that cannot carry a
// full-size datagram in both directions fails at connect time rather than mid-transfer, and the
// server never answers with more bytes than it received (no amplification).
std::size_t Connection::build_hello(MutableByteSpan out, TimePoint now) {
  const std::uint64_t pn = next_pn_++;
  const bool client = role_ == Role::kClient;
  PacketWriter w(out.first(cfg_.max_datagram),
                 Header{kVersion, client ? PacketType::kHello : PacketType::kHelloAck, conn_id_,
                        client ? 0u : epoch_, pn});
  if (!client) write_ack(w, now);
  last_advertised_ = advertised_max_data();
  w.put_flow(last_advertised_);
  if (client) {
    last_hello_pn_ = pn;
    if (cookie_) w.put_cookie(*cookie_);
    if (bind_request_ != 0) w.put_bind(bind_request_);
  } else if (bind_echo_) {
    w.put_bind(*bind_echo_);
  }
  w.put_padding(w.room());
  const std::size_t n = w.finish();
  ++stats_.packets_sent;
  stats_.bytes_sent += n;
  if (client) {
    hello_pending_ = false;
    SentPacket sp;
    sp.time_sent = now;
    sp.size = static_cast<std::uint32_t>(n);
    sp.ack_eliciting = true;
    sp.in_flight = true;
    sp.is_hello = true;
    on_sent(pn, std::move(sp), now);
  } else {
    hello_ack_pending_ = false;
  }
  return n;
}

std::size_t Connection::build_data(MutableByteSpan out, TimePoint now, bool allow_eliciting) {
  const std::uint64_t pn = next_pn_;
  // A PTO probe asks for an immediate ACK of its own (the probe's point is to get one).
  const bool probe = allow_eliciting && probes_ > 0;
  PacketWriter w = writer(out, PacketType::kData, pn, probe ? kFlagAckNow : std::uint16_t{0});
  if (ack_pending_) write_ack(w, now);
  SentPacket sp;
  bool any_retransmit = false;
  bool wrote_ping = false;
  if (allow_eliciting) {
    if (token_pending_ && tx_protected_ && reset_token_ && w.room() >= kResetTokenFrameSize) {
      w.put_reset_token(*reset_token_);
      token_pending_ = false;
      sp.has_token = true;
    }
    if (flow_pending_ && w.room() >= kFlowFrameSize) {
      last_advertised_ = advertised_max_data();
      w.put_flow(last_advertised_);
      flow_pending_ = false;
      sp.has_flow = true;
    }
    while (true) {
      FragRef ref{0, 0};
      OutMessage* m = nullptr;
      bool retx = false;
      while (!retransmit_.empty()) {
        const FragRef fr = retransmit_.front();
        auto it = out_.find(fr.message_id);
        if (it != out_.end() && it->second.frag_pn[fr.index] == kFragLost) {
          ref = fr;
          m = &it->second;
          retx = true;
          break;
        }
        retransmit_.pop_front();  // stale: acknowledged meanwhile
      }
      if (!m) {
        // New data, in message-id order; opening a message spends FLOW credit and an id slot.
        auto it = out_.lower_bound(send_cursor_);
        while (it != out_.end() && it->second.next_unsent == it->second.frag_pn.size()) {
          send_cursor_ = it->first + 1;
          ++it;
        }
        if (it == out_.end()) break;
        OutMessage& cand = it->second;
        if (!cand.opened) {
          if (it->first >= out_.begin()->first + cfg_.max_messages_in_flight ||
              sent_data_ + cand.data.size() > peer_max_data_) {
            break;
          }
          cand.opened = true;
          sent_data_ += cand.data.size();
        }
        ref = {it->first, cand.next_unsent};
        m = &cand;
      }
      const std::size_t off = std::size_t{ref.index} * frag_size_;
      const std::size_t len = std::min(frag_size_, m->data.size() - off);
      if (w.room() < kMessageFrameHeader + len) break;
      w.put_message(ref.message_id, static_cast<std::uint32_t>(m->data.size()),
                    static_cast<std::uint32_t>(off), ByteSpan(m->data.data() + off, len));
      if (retx) {
        retransmit_.pop_front();
        ++stats_.fragments_retransmitted;
        any_retransmit = true;
      } else {
        ++m->next_unsent;
      }
      m->frag_pn[ref.index] = pn;
      sp.frags.push_back(ref);
      ++stats_.fragments_sent;
    }
    if (ping_pending_ && sp.frags.empty() && !sp.has_flow && !sp.has_token && w.room() >= 1) {
      w.put_ping();
      wrote_ping = true;
    }
    if (w.size() > kHeaderSize) ping_pending_ = false;
  }
  if (w.size() == kHeaderSize) return 0;
  const bool eliciting = sp.has_flow || sp.has_token || !sp.frags.empty() || wrote_ping;
  const std::size_t n = finish_packet(w);
  ++next_pn_;
  ++stats_.packets_sent;
  stats_.bytes_sent += n;
  if (any_retransmit) ++stats_.packets_retransmitted;
  if (eliciting) {
    sp.time_sent = now;
    sp.size = static_cast<std::uint32_t>(n);
    sp.ack_eliciting = true;
    sp.in_flight = true;
    on_sent(pn, std::move(sp), now);
  }
  return n;
}

}  // namespace ipsan::proto::rudp
