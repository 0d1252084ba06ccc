#include <utility>

#include <gtest/gtest.h>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

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
  auto client =
      make_tcp_client(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->local_port()));
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

// The capture tap sees each connection on both ends: opened first, every byte read or written
// (exactly the record-marked stream), closed last with who closed first.
TEST(TcpTransport, TapSeesEveryByteAndTheConnectionLifetime) {
  struct Log {
    std::vector<TcpTapEvent::Kind> kinds;
    std::uint64_t connection = 0;
    bool server_side = false;
    tcp::endpoint local, remote;
    Bytes received, sent;
    bool by_peer = false;
  };
  auto tap_into = [](Log& log) {
    return [&log](const TcpTapEvent& e) {
      if (log.kinds.empty()) {
        log.connection = e.connection;
        log.server_side = e.server_side;
        log.local = e.local;
        log.remote = e.remote;
      }
      EXPECT_EQ(e.connection, log.connection);
      log.kinds.push_back(e.kind);
      if (e.kind == TcpTapEvent::Kind::kReceived)
        log.received.insert(log.received.end(), e.data.begin(), e.data.end());
      if (e.kind == TcpTapEvent::Kind::kSent)
        log.sent.insert(log.sent.end(), e.data.begin(), e.data.end());
      if (e.kind == TcpTapEvent::Kind::kClosed) log.by_peer = e.by_peer;
    };
  };
  asio::io_context io;
  Log slog, clog;
  TcpConfig scfg, ccfg;
  scfg.max_fragment = 1000;  // several fragments per record
  scfg.tap = tap_into(slog);
  ccfg.tap = tap_into(clog);
  auto server = make_tcp_server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), scfg);
  std::vector<Bytes> requests = {Bytes(10, 1), Bytes(5000, 2), Bytes(300000, 3)};
  std::size_t answered = 0;
  bool peer_closed = false;
  server->on_message = [&](PeerId peer, Bytes m) {
    m.push_back(0xAA);
    EXPECT_EQ(server->send(peer, std::move(m)), Errc::kOk);
  };
  server->on_peer_closed = [&](PeerId) {
    peer_closed = true;
    io.stop();
  };
  auto client = make_tcp_client(
      io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->local_port()), ccfg);
  client->on_message = [&](Bytes) {
    if (++answered == requests.size()) client->close();  // the client closes first
  };
  for (const Bytes& r : requests) ASSERT_EQ(client->send(r), Errc::kOk);
  asio::steady_timer guard(io, std::chrono::seconds(20));
  guard.async_wait([&](auto) { io.stop(); });
  io.run();
  ASSERT_TRUE(peer_closed);
  Bytes framed_requests, framed_replies;
  for (const Bytes& r : requests) {
    append_record(framed_requests, r, TcpConfig{}.max_fragment);
    Bytes reply = r;
    reply.push_back(0xAA);
    append_record(framed_replies, reply, 1000);
  }
  for (const Log* log : {&slog, &clog}) {
    ASSERT_GE(log->kinds.size(), 3u);
    EXPECT_EQ(log->kinds.front(), TcpTapEvent::Kind::kOpened);
    EXPECT_EQ(log->kinds.back(), TcpTapEvent::Kind::kClosed);
    EXPECT_EQ(std::count(log->kinds.begin(), log->kinds.end(), TcpTapEvent::Kind::kOpened), 1);
    EXPECT_EQ(std::count(log->kinds.begin(), log->kinds.end(), TcpTapEvent::Kind::kClosed), 1);
  }
  EXPECT_TRUE(slog.server_side);
  EXPECT_FALSE(clog.server_side);
  EXPECT_NE(slog.connection, clog.connection);
  EXPECT_EQ(slog.local, clog.remote);
  EXPECT_EQ(slog.remote, clog.local);
  EXPECT_EQ(slog.received, framed_requests);
  EXPECT_EQ(clog.sent, framed_requests);
  EXPECT_EQ(slog.sent, framed_replies);
  EXPECT_EQ(clog.received, framed_replies);
  EXPECT_TRUE(slog.by_peer);   // the client's FIN came first
  EXPECT_FALSE(clog.by_peer);  // the client closed itself
}

}  // namespace
}  // namespace ipsan::proto
