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
};

class Listener {
 public:
  Listener(std::uint32_t boot_epoch, const Config& config);

  struct Routed {
    std::optional<std::uint64_t> conn_id;  // the connection this datagram was fed to
    std::size_t reset_size = 0;            // >0: send reset_out[0..reset_size) back to the sender
  };
  // Feeds one datagram. `reset_out` needs kPacketOverhead + 4 bytes.
  Routed on_datagram(ByteSpan datagram, TimePoint now, MutableByteSpan reset_out);
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

  std::size_t connection_count() const { return conns_.size(); }
  std::uint32_t epoch() const { return epoch_; }
  const ListenerStats& stats() const { return stats_; }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, c] : conns_) f(id, *c);
  }

 private:
  std::uint32_t epoch_;
  Config cfg_;
  std::map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::set<std::uint64_t> recently_closed_;
  std::deque<std::uint64_t> recently_closed_order_;
  std::uint64_t rr_cursor_ = 0;
  std::uint64_t reset_pn_ = 1;
  ListenerStats stats_;
};

}  // namespace ipsan::proto::rudp
