// End-to-end: UdpClientTransport <-> UdpServerTransport over 127.0.0.1 (port 0), real sockets.
// Bounded by io_context::run_for; no sleeps used for synchronisation.
#include <utility>  // before Asio

#include "ipsan/proto/rudp/udp_transport.h"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <set>

#include "link.h"

namespace ipsan::proto::rudp::test {
namespace {

namespace asio = boost::asio;
using asio::ip::udp;

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

// 0: one datagram per syscall; 1: recvmmsg/sendmmsg; 2: plus UDP GSO.
class UdpTransportTest : public ::testing::TestWithParam<int> {};

TEST_P(UdpTransportTest, EchoSmallAndLargeMessages) {
  asio::io_context io;
  UdpOptions opt;
  opt.batch_syscalls = GetParam() >= 1;
  opt.gso = GetParam() == 2;
  Config cfg;
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

INSTANTIATE_TEST_SUITE_P(Batching, UdpTransportTest, ::testing::Values(0, 1, 2));

TEST(UdpTransport, SeveralClientsConcurrently) {
  asio::io_context io;
  Config cfg;
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
  Config cfg;
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
  Config cfg;
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
  Config cfg;
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
  Config cfg;
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

TEST(UdpTransport, DestroyFromCallbackIsSafe) {
  asio::io_context io;
  Config cfg;
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
