// ipsan/proto/transport.h: message transports, the seam between ONC-RPC and the wire.
//
// A transport moves whole messages (one ONC-RPC call or reply each) reliably between a client and a
// server. Two implementations: reliable UDP (proto/rudp, the primary) and record-marked TCP
// (proto/tcp, RFC 5531 section 11). Messages may be delivered in any order (no head-of-line
// blocking); each message sent on a live transport is delivered at most once. Exactly-once
// *execution* across reconnects is the session layer's job (slots and sequence numbers).
//
// Threading: a transport belongs to one Asio io_context; every method must be called, and every
// callback runs, on that io_context's thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/errc.h"

namespace ipsan::proto {

enum class TransportKind { kUdp, kTcp };

struct TransportStats {
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t datagrams_sent = 0;      // UDP only
  std::uint64_t datagrams_received = 0;  // UDP only
  std::uint64_t retransmissions = 0;     // UDP only
  std::uint64_t dropped_bad_crc = 0;     // UDP only
  // UDP only: a protected packet whose tag did not verify (corruption or forgery), or a clear
  // packet on a connection that switched to protection (docs/RUDP.md).
  std::uint64_t dropped_unauthenticated = 0;
  std::uint64_t dropped_malformed = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  double srtt_us = 0;  // UDP only
  // Loss recovery and congestion control (UDP only; docs/RUDP.md): what explains retransmissions.
  std::uint64_t packets_lost = 0;        // declared lost (resent)
  std::uint64_t spurious_losses = 0;     // declared lost, then acknowledged after all
  std::uint64_t pto_fired = 0;           // probe timeouts
  std::uint64_t congestion_events = 0;   // window reductions
  std::uint64_t random_loss_events = 0;  // losses taken as random (window kept)
  std::uint64_t cwnd_bytes = 0;          // congestion window now (server: largest)
  // Server limits (TCP): connections closed to stay under the connection cap, closed for being
  // idle, closed for letting too many replies pile up unread; accept() back-offs at the fd limit.
  std::uint64_t connections_evicted = 0;
  std::uint64_t connections_idle_closed = 0;
  std::uint64_t send_queue_overflows = 0;
  std::uint64_t accept_backoffs = 0;
};

// Adds the counters of `s` to `t` (totals over several transports or connections); the gauges
// (srtt_us, cwnd_bytes) take the values of `s`.
inline void add_counters(TransportStats& t, const TransportStats& s) {
  t.messages_sent += s.messages_sent;
  t.messages_received += s.messages_received;
  t.datagrams_sent += s.datagrams_sent;
  t.datagrams_received += s.datagrams_received;
  t.retransmissions += s.retransmissions;
  t.dropped_bad_crc += s.dropped_bad_crc;
  t.dropped_unauthenticated += s.dropped_unauthenticated;
  t.dropped_malformed += s.dropped_malformed;
  t.bytes_sent += s.bytes_sent;
  t.bytes_received += s.bytes_received;
  t.packets_lost += s.packets_lost;
  t.spurious_losses += s.spurious_losses;
  t.pto_fired += s.pto_fired;
  t.congestion_events += s.congestion_events;
  t.random_loss_events += s.random_loss_events;
  t.connections_evicted += s.connections_evicted;
  t.connections_idle_closed += s.connections_idle_closed;
  t.send_queue_overflows += s.send_queue_overflows;
  t.accept_backoffs += s.accept_backoffs;
  t.srtt_us = s.srtt_us;
  t.cwnd_bytes = s.cwnd_bytes;
}

// As add_counters, for connections that run at the same time (a server's): the gauges keep the
// largest value.
inline void add_concurrent(TransportStats& t, const TransportStats& s) {
  const double srtt = std::max(t.srtt_us, s.srtt_us);
  const std::uint64_t cwnd = std::max(t.cwnd_bytes, s.cwnd_bytes);
  add_counters(t, s);
  t.srtt_us = srtt;
  t.cwnd_bytes = cwnd;
}

// Client end of a transport to one server.
class ClientTransport {
 public:
  virtual ~ClientTransport() = default;

  // Called once per received message.
  std::function<void(Bytes)> on_message;
  // Called when the transport becomes unusable: kTimeout (peer silent for the idle timeout),
  // kConnectionLost (reset/closed), kStaleSession (the server restarted: new boot epoch).
  // After this, send() fails; the owner may reconnect with a new transport.
  std::function<void(Errc)> on_closed;

  // Queues a message. Returns kOk, kTooLarge (over max message size) or kConnectionLost.
  virtual Errc send(Bytes message) = 0;
  virtual void close() = 0;
  virtual bool is_open() const = 0;
  // Server boot epoch learned at connection set-up (0 if the transport has none, e.g. TCP).
  virtual std::uint32_t peer_epoch() const = 0;
  virtual TransportStats stats() const = 0;
  virtual std::string describe() const = 0;  // e.g. "udp 127.0.0.1:3260"
  // Why the transport closed, when it knows more than on_closed's Errc (e.g. "connection
  // refused (tcp 127.0.0.1:5260)"); empty otherwise. refused(): the peer refused the connection
  // before it opened (nobody listens there). Defaults: nothing known.
  virtual std::string failure() const { return {}; }
  virtual bool refused() const { return false; }

  // Binds session `session_id` (key `session_key`) to this transport: reliable UDP protects
  // every later packet with keys derived from it (docs/RUDP.md "Packet protection"). Called
  // after LOGIN_FINISH verified, or right after creating a transport for a session that
  // survived a reconnect (then the binding travels in the handshake). Default: nothing.
  virtual void bind_session(std::uint64_t session_id, const Key256& session_key) {
    (void)session_id;
    (void)session_key;
  }
};

// A server-side peer: one client connection. Stable for the life of that connection.
using PeerId = std::uint64_t;

// Server end: accepts connections from many clients.
class ServerTransport {
 public:
  virtual ~ServerTransport() = default;

  std::function<void(PeerId, Bytes)> on_message;
  std::function<void(PeerId)> on_peer_closed;

  virtual Errc send(PeerId peer, Bytes message) = 0;
  virtual void close_peer(PeerId peer) = 0;
  // Stops accepting and closes every connection.
  virtual void close() = 0;
  // Local port actually bound (useful with port 0).
  virtual std::uint16_t local_port() const = 0;
  virtual TransportStats stats() const = 0;
  virtual std::string peer_name(PeerId peer) const = 0;  // "udp 127.0.0.1:40000 conn 1a2b"

  // A login or a session call verified on `peer`: bind that session's key to the connection
  // (reliable UDP: protected packets from then on, with `protection` 0 off / 1 integrity /
  // 2 encrypted). Default: nothing.
  virtual void bind_session(PeerId peer, const Key256& session_key, std::uint32_t protection) {
    (void)peer;
    (void)session_key;
    (void)protection;
  }
  // How a reconnecting client's HELLO finds its session: key and protection (0..2) of a
  // session id, or nullopt. Default: unused.
  struct SessionLookup {
    Key256 key{};
    std::uint32_t protection = 1;
  };
  std::function<std::optional<SessionLookup>(std::uint64_t session_id)> session_lookup;
  // Statistics of each live connection (live metrics; docs/METRICS.md). Default: none.
  virtual void for_each_peer(const std::function<void(PeerId, const TransportStats&)>& f) const {
    (void)f;
  }
};

}  // namespace ipsan::proto
