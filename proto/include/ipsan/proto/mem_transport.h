// ipsan/proto/mem_transport.h: an in-memory transport pair, for tests and benchmarks that drive a
// server (and optionally real clients) without sockets.
//
// MemServerTransport is a ServerTransport. A test injects a call from any peer with receive()
// (synchronously: on_message runs before it returns) and collects what the server sent with
// take_sent(). connect() adds a client end (a ClientTransport) as a new peer: what it sends
// reaches the server, and what the server sends that peer reaches the client, each posted on the
// io_context given (asynchronous and in order, like a real transport, never re-entrant).
//
// The security seam is recorded, not simulated: bind_session() on either end stores the key and
// protection (binding()), and a reconnecting client end can be checked against the server's
// session_lookup (lookup_session()), so tests can assert what the server would have protected.
// Nothing here is lost or reordered unless a test asks (drop_next_sends()).
//
// Threading: one thread, as every transport (the io_context's, or the test's without clients).
// Either end may be destroyed first; messages to a destroyed end are dropped.
#pragma once

#include <utility>  // before Asio (GCC 12)

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ipsan/proto/transport.h"

namespace ipsan::proto {

class MemClientTransport;

class MemServerTransport final : public ServerTransport {
 public:
  struct Sent {
    PeerId peer = 0;
    Bytes message;
  };
  struct Binding {
    Key256 key{};
    std::uint32_t protection = 0;
  };

  explicit MemServerTransport(std::uint16_t port = 0);
  ~MemServerTransport() override;
  MemServerTransport(const MemServerTransport&) = delete;
  MemServerTransport& operator=(const MemServerTransport&) = delete;

  // A message from `peer` arrives now (on_message runs before this returns). Ignored after
  // close() or close_peer(peer).
  void receive(PeerId peer, Bytes message);
  // Everything sent to peers without a client end since the last call, in order.
  std::vector<Sent> take_sent();
  std::size_t sent_count() const { return sent_.size(); }
  // The next `n` messages the server sends are lost (counted, not delivered nor kept).
  void drop_next_sends(std::size_t n) { drop_ = n; }
  // What bind_session() recorded for `peer`.
  std::optional<Binding> binding(PeerId peer) const;
  // The server's answer for a reconnecting client's session (session_lookup), nullopt if none.
  std::optional<SessionLookup> lookup_session(std::uint64_t session_id) const;
  bool peer_closed(PeerId peer) const;
  bool closed() const { return closed_; }

  // A client end connected as a new peer (ids from 1000 up, so they never clash with receive()'s
  // hand-picked ones); deliveries both ways are posted on `io`.
  std::unique_ptr<MemClientTransport> connect(boost::asio::io_context& io, std::uint32_t epoch = 0);

  Errc send(PeerId peer, Bytes message) override;
  void close_peer(PeerId peer) override;
  void close() override;
  std::uint16_t local_port() const override { return port_; }
  TransportStats stats() const override { return stats_; }
  std::string peer_name(PeerId peer) const override;
  void bind_session(PeerId peer, const Key256& session_key, std::uint32_t protection) override;
  void for_each_peer(const std::function<void(PeerId, const TransportStats&)>& f) const override;

 private:
  friend class MemClientTransport;
  struct Link;  // shared by both ends; outlives either
  std::uint16_t port_ = 0;
  bool closed_ = false;
  std::size_t drop_ = 0;
  std::vector<Sent> sent_;
  std::map<PeerId, Binding> bindings_;
  std::map<PeerId, bool> closed_peers_;
  std::map<PeerId, std::shared_ptr<Link>> clients_;
  PeerId next_client_ = 1000;
  TransportStats stats_;
};

class MemClientTransport final : public ClientTransport {
 public:
  ~MemClientTransport() override;
  MemClientTransport(const MemClientTransport&) = delete;
  MemClientTransport& operator=(const MemClientTransport&) = delete;

  Errc send(Bytes message) override;
  void close() override;
  bool is_open() const override;
  std::uint32_t peer_epoch() const override { return epoch_; }
  TransportStats stats() const override { return stats_; }
  std::string describe() const override;
  void bind_session(std::uint64_t session_id, const Key256& session_key) override;

  PeerId peer() const { return peer_; }
  // What bind_session() recorded (session id 0: never bound).
  std::uint64_t bound_session() const { return session_id_; }
  const Key256& bound_key() const { return session_key_; }

 private:
  friend class MemServerTransport;
  MemClientTransport(std::shared_ptr<MemServerTransport::Link> link, PeerId peer,
                     std::uint32_t epoch);
  void deliver(Bytes message);  // from the server (posted)
  void lost(Errc why);          // the server end closed this peer or went away (posted)

  std::shared_ptr<MemServerTransport::Link> link_;
  PeerId peer_ = 0;
  std::uint32_t epoch_ = 0;
  bool open_ = true;
  std::uint64_t session_id_ = 0;
  Key256 session_key_{};
  TransportStats stats_;
};

}  // namespace ipsan::proto
