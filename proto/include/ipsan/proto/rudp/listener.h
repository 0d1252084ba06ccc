// ipsan/proto/rudp/listener.h: the sans-I/O server side of reliable UDP.
//
// Demultiplexes datagrams by connection id, creates a server Connection on a valid HELLO (up to
// Config::max_connections), and answers datagrams for unknown connection ids with a stateless
// RESET carrying this server's boot epoch, so a client of a previous server incarnation learns
// at once that its session is gone (kStaleSession). Addresses are the binding's business: the
// Listener reports which connection a datagram belonged to and the binding remembers where it
// came from.
//
// Threading: not thread-safe; one owner thread calls every method.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/proto/rudp/connection.h"

namespace ipsan::proto::rudp {

struct ListenerStats {
  std::uint64_t datagrams_received = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;  // table full or recently closed id
  std::uint64_t resets_sent = 0;
  std::uint64_t dropped_bad_crc = 0;  // before any connection was found
  std::uint64_t dropped_malformed = 0;
  std::uint64_t dropped_unknown = 0;  // unknown id, no RESET warranted
  std::uint64_t retries_sent = 0;     // RETRY cookies sent (HELLO without a valid cookie)
  std::uint64_t bad_cookies = 0;      // HELLO with an invalid or expired cookie
  std::uint64_t refused_per_source = 0;  // HELLO refused: source at its connection limit
  std::uint64_t not_answered = 0;  // RESET/RETRY withheld by the amplification limit
};

class Listener {
 public:
  // `secret` keys the RETRY cookies and the stateless reset tokens. It should survive a restart
  // (the server derives it from its key ring) so a restarted server can still end a client's
  // old connection with a RESET the client accepts; all zero = a random one.
  Listener(std::uint32_t boot_epoch, const Config& config, const Key256& secret = {});

  // Server: the key and protection of session `session_id` (a HELLO BIND frame asks for it on
  // a reconnect), nullopt if unknown. Unset: binds are refused.
  struct SessionKey {
    Key256 key{};
    Protection protection = Protection::kIntegrity;
  };
  std::function<std::optional<SessionKey>(std::uint64_t session_id)> session_key;

  struct Routed {
    std::optional<std::uint64_t> conn_id;  // the connection this datagram was fed to
    std::size_t reset_size = 0;            // >0: send reset_out[0..reset_size) back to the sender
  };
  // Feeds one datagram from `source` (an opaque address, e.g. IP and port bytes: cookies and the
  // per-source limit are bound to it). `reset_out` needs kRetrySize bytes; the answer (RESET or
  // RETRY) is never larger than 3x the datagram (anti-amplification).
  Routed on_datagram(ByteSpan datagram, TimePoint now, MutableByteSpan reset_out,
                     ByteSpan source = {});
  void on_timer(TimePoint now);
  std::optional<TimePoint> next_deadline() const;
  // Next datagram from any connection (round robin); returns the connection id and the size.
  std::optional<std::pair<std::uint64_t, std::size_t>> poll_transmit(MutableByteSpan out,
                                                                     TimePoint now);
  std::optional<std::pair<std::uint64_t, Bytes>> poll_message();
  // Reports and forgets one closed connection (after its last datagram went out).
  std::optional<std::pair<std::uint64_t, Errc>> poll_closed();
  // Called with each connection just before poll_closed() forgets it (e.g. to keep its
  // statistics in a transport's totals).
  std::function<void(std::uint64_t, const Connection&)> on_forget;

  Connection* find(std::uint64_t conn_id);
  const Connection* find(std::uint64_t conn_id) const;
  // Orderly close of one or all connections (CLOSE datagrams follow via poll_transmit).
  void close(std::uint64_t conn_id, TimePoint now);
  void close_all(TimePoint now);

  // Binds a session key to a connection after a login or a session call verified on it: derives
  // the packet keys, arms them (protection on) and gives it its reset token. Idempotent.
  void protect(std::uint64_t conn_id, const Key256& session_key, Protection protection,
               TimePoint now);
  // The stateless reset token of `conn_id` under this listener's secret.
  ResetToken reset_token(std::uint64_t conn_id) const;
  Cookie make_cookie(std::uint64_t conn_id, ByteSpan source, TimePoint now) const;
  bool check_cookie(const Cookie& c, std::uint64_t conn_id, ByteSpan source, TimePoint now) const;
  const ReassemblyBudget& budget() const { return *budget_; }

  std::size_t connection_count() const { return conns_.size(); }
  std::uint32_t epoch() const { return epoch_; }
  const ListenerStats& stats() const { return stats_; }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, c] : conns_) f(id, *c);
  }

 private:
  void forget_source(std::uint64_t conn_id);

  std::uint32_t epoch_;
  Config cfg_;
  Key256 secret_{};
  std::unique_ptr<ReassemblyBudget> budget_;  // before conns_: outlives them
  std::map<std::uint64_t, std::string> source_of_;       // conn id -> source address
  std::map<std::string, std::size_t> per_source_;        // source -> connections
  std::map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::set<std::uint64_t> recently_closed_;
  std::deque<std::uint64_t> recently_closed_order_;
  std::uint64_t rr_cursor_ = 0;
  std::uint64_t reset_pn_ = 1;
  ListenerStats stats_;
};

}  // namespace ipsan::proto::rudp
