// End-to-end: UdpClientTransport <-> UdpServerTransport over 127.0.0.1 (port 0), real sockets.
// Bounded by io_context::run_for; no sleeps used for synchronisation.
#include <utility>  // before Asio

#include "ipsan/proto/rudp/udp_transport.h"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <array>
#include <set>

#include "link.h"

namespace ipsan::proto::rudp::test {
namespace {

namespace asio = boost::asio;
using asio::ip::udp;

// These tests move messages without a login: let the server accept large ones from connections
// no session has verified (the default is 4 KiB, docs/RUDP.md "Denial of service").
Config raw_config() {
  Config c;
  c.unverified_max_message = 8u << 20;
  c.unverified_budget_bytes = 64u << 20;
  return c;
}

udp::endpoint loopback(std::uint16_t port) {
  return udp::endpoint(asio::ip::make_address("127.0.0.1"), port);
}

void run_until(asio::io_context& io, const std::function<bool()>& pred,
               std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < end) {
    io.run_for(std::chrono::milliseconds(5));
    if (io.stopped()) io.restart();
  }
}

// 0: one datagram per syscall; 1: recvmmsg/sendmmsg; 2: plus UDP GSO; 3: plus UDP GRO (on
// loopback a GSO send then arrives as one buffer that the binding cuts into datagrams again).
class UdpTransportTest : public ::testing::TestWithParam<int> {};

TEST_P(UdpTransportTest, EchoSmallAndLargeMessages) {
  asio::io_context io;
  UdpOptions opt;
  opt.batch_syscalls = GetParam() >= 1;
  opt.gso = GetParam() >= 2;
  opt.gro = GetParam() >= 3;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 0xabc, cfg, opt);
  ASSERT_NE(server->local_port(), 0);
  server->on_message = [&](PeerId p, Bytes m) {
    EXPECT_EQ(server->send(p, std::move(m)), Errc::kOk);
  };
  auto client = make_udp_client(io, loopback(server->local_port()), cfg, opt);
  std::vector<Bytes> got;
  bool closed = false;
  client->on_message = [&](Bytes m) { got.push_back(std::move(m)); };
  client->on_closed = [&](Errc) { closed = true; };
  const std::vector<std::size_t> sizes = {0, 1, 100, 1452, 70000, 1 << 20, 4 << 20};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(client->send(make_message(i + 1, sizes[i])), Errc::kOk);
  }
  run_until(
      io, [&] { return got.size() == sizes.size(); }, std::chrono::milliseconds(20000));
  ASSERT_EQ(got.size(), sizes.size());
  std::multiset<std::size_t> got_sizes;
  for (const Bytes& m : got) {
    got_sizes.insert(m.size());
    if (m.size() >= 8) {
      EXPECT_EQ(m, make_message(message_tag(m), m.size()));
    }
  }
  EXPECT_EQ(got_sizes, std::multiset<std::size_t>(sizes.begin(), sizes.end()));
  EXPECT_EQ(client->peer_epoch(), 0xabcu);
  EXPECT_TRUE(client->is_open());
  EXPECT_FALSE(closed);
  EXPECT_GT(client->stats().datagrams_sent, 3000u);
  EXPECT_NE(client->describe().find("127.0.0.1"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Batching, UdpTransportTest, ::testing::Values(0, 1, 2, 3));

TEST(UdpTransport, SeveralClientsConcurrently) {
  asio::io_context io;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 77, cfg);
  std::set<PeerId> peers;
  server->on_message = [&](PeerId p, Bytes m) {
    peers.insert(p);
    server->send(p, std::move(m));
  };
  constexpr int kClients = 4;
  constexpr int kPerClient = 20;
  std::vector<std::unique_ptr<ClientTransport>> clients;
  std::vector<int> got(kClients, 0);
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(make_udp_client(io, loopback(server->local_port()), cfg));
    clients.back()->on_message = [&, c](Bytes m) {
      // Each client gets back only its own messages, intact.
      EXPECT_EQ(message_tag(m) / 1000, static_cast<std::uint64_t>(c + 1));
      EXPECT_EQ(m, make_message(message_tag(m), m.size()));
      ++got[c];
    };
    for (int i = 0; i < kPerClient; ++i) {
      clients.back()->send(make_message((c + 1) * 1000 + i, 100 + 3000 * i));
    }
  }
  run_until(io, [&] {
    return std::all_of(got.begin(), got.end(), [](int n) { return n == kPerClient; });
  });
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(got[c], kPerClient) << "client " << c;
  EXPECT_EQ(peers.size(), static_cast<std::size_t>(kClients));
  EXPECT_GE(server->stats().messages_received, static_cast<std::uint64_t>(kClients * kPerClient));
}

TEST(UdpTransport, ClientTimesOutWhenServerSilent) {
  asio::io_context io;
  // A bound socket that never answers.
  udp::socket silent(io, loopback(0));
  Config cfg = raw_config();
  cfg.idle_timeout = 300ms;
  auto client = make_udp_client(io, loopback(silent.local_endpoint().port()), cfg);
  std::optional<Errc> closed;
  client->on_closed = [&](Errc e) { closed = e; };
  EXPECT_EQ(client->send(Bytes(10)), Errc::kOk);  // queued during the handshake
  run_until(
      io, [&] { return closed.has_value(); }, std::chrono::milliseconds(3000));
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(*closed, Errc::kTimeout);
  EXPECT_FALSE(client->is_open());
  EXPECT_EQ(client->send(Bytes(10)), Errc::kConnectionLost);
}

TEST(UdpTransport, ServerRestartGivesStaleSession) {
  asio::io_context io;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 1, cfg);
  const std::uint16_t port = server->local_port();
  server->on_message = [&](PeerId p, Bytes m) { server->send(p, std::move(m)); };
  auto client = make_udp_client(io, loopback(port), cfg);
  int replies = 0;
  std::optional<Errc> closed;
  client->on_message = [&](Bytes) { ++replies; };
  client->on_closed = [&](Errc e) { closed = e; };
  client->send(Bytes(100));
  run_until(io, [&] { return replies == 1; });
  ASSERT_EQ(replies, 1);
  server.reset();  // "crash"; a new incarnation binds the same port
  server = make_udp_server(io, loopback(port), 2, cfg);
  client->send(Bytes(100));
  run_until(io, [&] { return closed.has_value(); });
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(*closed, Errc::kStaleSession);
}

TEST(UdpTransport, OrderlyCloseReachesServer) {
  asio::io_context io;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 5, cfg);
  std::optional<PeerId> peer;
  bool peer_closed = false;
  server->on_message = [&](PeerId p, Bytes) { peer = p; };
  server->on_peer_closed = [&](PeerId p) { peer_closed = peer && *peer == p; };
  auto client = make_udp_client(io, loopback(server->local_port()), cfg);
  client->send(Bytes(10));
  run_until(io, [&] { return peer.has_value(); });
  ASSERT_TRUE(peer.has_value());
  EXPECT_NE(server->peer_name(*peer).find("127.0.0.1"), std::string::npos);
  client->close();
  EXPECT_FALSE(client->is_open());
  run_until(io, [&] { return peer_closed; });
  EXPECT_TRUE(peer_closed);
}

TEST(UdpTransport, ServerClosePeerReachesClient) {
  asio::io_context io;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 6, cfg);
  std::optional<PeerId> peer;
  bool reported = false;
  server->on_message = [&](PeerId p, Bytes) { peer = p; };
  server->on_peer_closed = [&](PeerId) { reported = true; };
  auto client = make_udp_client(io, loopback(server->local_port()), cfg);
  std::optional<Errc> closed;
  client->on_closed = [&](Errc e) { closed = e; };
  client->send(Bytes(10));
  run_until(io, [&] { return peer.has_value(); });
  ASSERT_TRUE(peer.has_value());
  server->close_peer(*peer);
  EXPECT_EQ(server->send(*peer, Bytes(1)), Errc::kConnectionLost);
  run_until(io, [&] { return closed.has_value(); });
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(*closed, Errc::kConnectionLost);
  EXPECT_FALSE(reported);  // closes the server asked for are not reported back to it
}

// The binding re-arms its timer only when the engine's deadline moves earlier (asio_udp.cc); a
// missed deadline would stall a connection. An idle connection lives on keepalives alone: every
// PING moves the deadlines later, and the idle timeout closes it if one keepalive is missed.
TEST(UdpTransport, IdleConnectionLivesOnKeepalives) {
  asio::io_context io;
  Config cfg = raw_config();
  cfg.keepalive_interval = 40ms;
  cfg.idle_timeout = 400ms;  // generous: a loaded CI machine may stall the loop for a while
  auto server = make_udp_server(io, loopback(0), 8, cfg);
  bool peer_closed = false;
  server->on_message = [&](PeerId p, Bytes m) { server->send(p, std::move(m)); };
  server->on_peer_closed = [&](PeerId) { peer_closed = true; };
  auto client = make_udp_client(io, loopback(server->local_port()), cfg);
  int replies = 0;
  std::optional<Errc> closed;
  client->on_message = [&](Bytes) { ++replies; };
  client->on_closed = [&](Errc e) { closed = e; };
  client->send(Bytes(100));
  run_until(io, [&] { return replies == 1; });
  ASSERT_EQ(replies, 1);
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1200);
  while (std::chrono::steady_clock::now() < end) {  // no application traffic: 3 idle timeouts
    io.run_for(std::chrono::milliseconds(10));
    if (io.stopped()) io.restart();
  }
  EXPECT_FALSE(closed.has_value());
  EXPECT_FALSE(peer_closed);
  EXPECT_TRUE(client->is_open());
  client->send(Bytes(100));
  run_until(io, [&] { return replies == 2; });
  EXPECT_EQ(replies, 2);
}

// A relay that drops every 4th datagram in each direction: the messages arrive only if loss
// detection, probe timeouts and the pacer's deadlines all fire (tail losses need the PTO).
TEST(UdpTransport, LossyRelayNeedsEveryTimerAndStillDelivers) {
  asio::io_context io;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 9, cfg);
  server->on_message = [&](PeerId p, Bytes m) { server->send(p, std::move(m)); };
  udp::socket front(io, loopback(0));  // the client's view of the server
  udp::socket back(io, loopback(0));   // the server's view of the client
  const udp::endpoint server_at = loopback(server->local_port());
  udp::endpoint client_at;
  std::array<std::uint8_t, 65536> fbuf{}, bbuf{};
  udp::endpoint ffrom, bfrom;
  std::uint64_t up = 0, down = 0, dropped = 0;
  std::function<void()> pull_front, pull_back;
  pull_front = [&] {
    front.async_receive_from(asio::buffer(fbuf), ffrom,
                             [&](boost::system::error_code ec, std::size_t n) {
                               if (ec) return;
                               client_at = ffrom;
                               if (++up % 4 == 0) {
                                 ++dropped;
                               } else {
                                 back.send_to(asio::buffer(fbuf.data(), n), server_at, 0, ec);
                               }
                               pull_front();
                             });
  };
  pull_back = [&] {
    back.async_receive_from(asio::buffer(bbuf), bfrom,
                            [&](boost::system::error_code ec, std::size_t n) {
                              if (ec) return;
                              if (++down % 4 == 0) {
                                ++dropped;
                              } else {
                                front.send_to(asio::buffer(bbuf.data(), n), client_at, 0, ec);
                              }
                              pull_back();
                            });
  };
  pull_front();
  pull_back();
  auto client = make_udp_client(io, loopback(front.local_endpoint().port()), cfg);
  std::set<std::uint64_t> got;
  client->on_message = [&](Bytes m) {
    EXPECT_EQ(m, make_message(message_tag(m), m.size()));
    got.insert(message_tag(m));
  };
  constexpr int kMessages = 12;
  for (int i = 1; i <= kMessages; ++i) client->send(make_message(i, 1000 + 4000 * i));
  run_until(
      io, [&] { return got.size() == kMessages; }, std::chrono::milliseconds(15000));
  EXPECT_EQ(got.size(), static_cast<std::size_t>(kMessages));
  EXPECT_GT(dropped, 10u);
  EXPECT_GT(client->stats().retransmissions, 0u);
  EXPECT_TRUE(client->is_open());
}

TEST(UdpTransport, DestroyFromCallbackIsSafe) {
  asio::io_context io;
  Config cfg = raw_config();
  auto server = make_udp_server(io, loopback(0), 5, cfg);
  server->on_message = [&](PeerId p, Bytes m) { server->send(p, std::move(m)); };
  auto client = make_udp_client(io, loopback(server->local_port()), cfg);
  bool got = false;
  client->on_message = [&](Bytes) {
    got = true;
    client.reset();
  };
  for (int i = 0; i < 5; ++i) client->send(Bytes(3000));
  run_until(io, [&] { return got; });
  EXPECT_TRUE(got);
  EXPECT_EQ(client, nullptr);
  io.run_for(std::chrono::milliseconds(20));
}

}  // namespace
}  // namespace ipsan::proto::rudp::test
