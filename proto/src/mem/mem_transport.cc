#include "ipsan/proto/mem_transport.h"

#include <boost/asio/post.hpp>

namespace ipsan::proto {

namespace asio = boost::asio;

struct MemServerTransport::Link {
  asio::io_context* io = nullptr;
  MemServerTransport* server = nullptr;  // nulled when either end goes away
  MemClientTransport* client = nullptr;
};

MemServerTransport::MemServerTransport(std::uint16_t port) : port_(port) {}

MemServerTransport::~MemServerTransport() {
  for (auto& entry : clients_) {
    const std::shared_ptr<Link>& link = entry.second;
    link->server = nullptr;
    if (link->client != nullptr) {
      asio::post(*link->io, [l = link] {
        if (l->client) l->client->lost(Errc::kConnectionLost);
      });
    }
  }
}

void MemServerTransport::receive(PeerId peer, Bytes message) {
  if (closed_ || peer_closed(peer) || !on_message) return;
  stats_.messages_received++;
  stats_.bytes_received += message.size();
  on_message(peer, std::move(message));
}

std::vector<MemServerTransport::Sent> MemServerTransport::take_sent() {
  std::vector<Sent> out;
  out.swap(sent_);
  return out;
}

std::optional<MemServerTransport::Binding> MemServerTransport::binding(PeerId peer) const {
  auto it = bindings_.find(peer);
  if (it == bindings_.end()) return std::nullopt;
  return it->second;
}

std::optional<ServerTransport::SessionLookup> MemServerTransport::lookup_session(
    std::uint64_t session_id) const {
  if (!session_lookup) return std::nullopt;
  return session_lookup(session_id);
}

bool MemServerTransport::peer_closed(PeerId peer) const {
  auto it = closed_peers_.find(peer);
  return it != closed_peers_.end() && it->second;
}

std::unique_ptr<MemClientTransport> MemServerTransport::connect(asio::io_context& io,
                                                                std::uint32_t epoch) {
  auto link = std::make_shared<Link>();
  link->io = &io;
  link->server = this;
  const PeerId peer = next_client_++;
  std::unique_ptr<MemClientTransport> c(new MemClientTransport(link, peer, epoch));
  link->client = c.get();
  clients_[peer] = link;
  if (closed_) c->open_ = false;
  return c;
}

Errc MemServerTransport::send(PeerId peer, Bytes message) {
  if (closed_ || peer_closed(peer)) return Errc::kConnectionLost;
  stats_.messages_sent++;
  stats_.bytes_sent += message.size();
  if (drop_ > 0) {
    --drop_;
    return Errc::kOk;  // lost on the way, as a datagram may be
  }
  auto it = clients_.find(peer);
  if (it == clients_.end()) {
    sent_.push_back(Sent{peer, std::move(message)});
    return Errc::kOk;
  }
  auto link = it->second;
  asio::post(*link->io, [link, m = std::move(message)]() mutable {
    if (link->client) link->client->deliver(std::move(m));
  });
  return Errc::kOk;
}

void MemServerTransport::close_peer(PeerId peer) {
  if (peer_closed(peer)) return;
  closed_peers_[peer] = true;
  if (auto it = clients_.find(peer); it != clients_.end()) {
    auto link = it->second;
    asio::post(*link->io, [link] {
      if (link->client) link->client->lost(Errc::kConnectionLost);
    });
  }
}

void MemServerTransport::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [peer, link] : clients_) {
    closed_peers_[peer] = true;
    asio::post(*link->io, [l = link] {
      if (l->client) l->client->lost(Errc::kConnectionLost);
    });
  }
}

std::string MemServerTransport::peer_name(PeerId peer) const {
  return "mem peer " + std::to_string(peer);
}

void MemServerTransport::bind_session(PeerId peer, const Key256& session_key,
                                      std::uint32_t protection) {
  bindings_[peer] = Binding{session_key, protection};
}

void MemServerTransport::for_each_peer(
    const std::function<void(PeerId, const TransportStats&)>& f) const {
  for (const auto& [peer, link] : clients_) {
    if (link->client != nullptr && !peer_closed(peer)) f(peer, link->client->stats());
  }
}

MemClientTransport::MemClientTransport(std::shared_ptr<MemServerTransport::Link> link, PeerId peer,
                                       std::uint32_t epoch)
    : link_(std::move(link)), peer_(peer), epoch_(epoch) {}

MemClientTransport::~MemClientTransport() {
  if (open_) close();
  link_->client = nullptr;
}

Errc MemClientTransport::send(Bytes message) {
  if (!open_) return Errc::kConnectionLost;
  stats_.messages_sent++;
  stats_.bytes_sent += message.size();
  asio::post(*link_->io, [link = link_, peer = peer_, m = std::move(message)]() mutable {
    if (link->server && link->client) link->server->receive(peer, std::move(m));
  });
  return Errc::kOk;
}

void MemClientTransport::close() {
  if (!open_) return;
  open_ = false;
  asio::post(*link_->io, [link = link_, peer = peer_] {
    MemServerTransport* s = link->server;
    if (s == nullptr || s->peer_closed(peer)) return;
    s->closed_peers_[peer] = true;
    if (s->on_peer_closed) s->on_peer_closed(peer);
  });
}

bool MemClientTransport::is_open() const { return open_; }

std::string MemClientTransport::describe() const { return "mem peer " + std::to_string(peer_); }

void MemClientTransport::bind_session(std::uint64_t session_id, const Key256& session_key) {
  session_id_ = session_id;
  session_key_ = session_key;
}

void MemClientTransport::deliver(Bytes message) {
  if (!open_) return;
  stats_.messages_received++;
  stats_.bytes_received += message.size();
  if (on_message) on_message(std::move(message));
}

void MemClientTransport::lost(Errc why) {
  if (!open_) return;
  open_ = false;
  if (on_closed) on_closed(why);
}

}  // namespace ipsan::proto
