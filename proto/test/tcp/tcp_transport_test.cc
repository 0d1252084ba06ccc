#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "ipsan/proto/tcp_transport.h"

namespace ipsan::proto {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

TEST(TcpTransport, EchoManyMessagesBothWays) {
  asio::io_context io;
  auto server = make_tcp_server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ASSERT_NE(server->local_port(), 0);
  server->on_message = [&](PeerId peer, Bytes m) {
    std::reverse(m.begin(), m.end());
    EXPECT_EQ(server->send(peer, std::move(m)), Errc::kOk);
  };
  auto client = make_tcp_client(
      io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->local_port()));
  std::vector<Bytes> sent, got;
  for (int i = 0; i < 20; ++i) {
    Bytes m(static_cast<std::size_t>(i) * 100000 + 1, static_cast<std::uint8_t>(i));
    m[0] = 0xEE;
    sent.push_back(m);
    ASSERT_EQ(client->send(std::move(m)), Errc::kOk);
  }
  client->on_message = [&](Bytes m) {
    std::reverse(m.begin(), m.end());
    got.push_back(std::move(m));
    if (got.size() == sent.size()) io.stop();
  };
  asio::steady_timer guard(io, std::chrono::seconds(20));
  guard.async_wait([&](auto) { io.stop(); });
  io.run();
  EXPECT_EQ(got, sent);  // TCP keeps order
  EXPECT_GE(server->stats().messages_received, 20u);
}

TEST(TcpTransport, ConnectFailureReportsClosed) {
  asio::io_context io;
  // Bind a listener, note its port, close it: connecting there is refused.
  std::uint16_t port;
  {
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  auto client = make_tcp_client(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  Errc why = Errc::kOk;
  client->on_closed = [&](Errc e) { why = e; };
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(why, Errc::kConnectionLost);
  EXPECT_EQ(client->send(Bytes{1}), Errc::kConnectionLost);
}

TEST(TcpTransport, OversizeRecordClosesOnlyThatPeer) {
  asio::io_context io;
  TcpConfig cfg;
  cfg.max_message = 1000;
  auto server = make_tcp_server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), cfg);
  int closed = 0, received = 0;
  auto check = [&] {
    if (closed == 1 && received == 1) io.stop();
  };
  server->on_peer_closed = [&](PeerId) {
    ++closed;
    check();
  };
  server->on_message = [&](PeerId, Bytes) {
    ++received;
    check();
  };
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), server->local_port());
  auto bad = make_tcp_client(io, ep);  // client default max is larger: it can send 2000 bytes
  auto good = make_tcp_client(io, ep);
  ASSERT_EQ(bad->send(Bytes(2000, 1)), Errc::kOk);
  ASSERT_EQ(good->send(Bytes(10, 2)), Errc::kOk);
  io.run_for(std::chrono::seconds(10));
  EXPECT_EQ(closed, 1);
  EXPECT_EQ(received, 1);
}

}  // namespace
}  // namespace ipsan::proto
