// The in-memory transport pair: injection and collection by hand, a connected client end (posted
// deliveries, in order), the recorded security bindings, closes in both directions, either end
// destroyed first.
#include <gtest/gtest.h>

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>

#include "ipsan/proto/mem_transport.h"

namespace ipsan::proto {
namespace {

Bytes msg(std::uint8_t b, std::size_t n = 3) { return Bytes(n, b); }

void drain(boost::asio::io_context& io) {
  io.restart();
  while (io.poll() != 0) {
  }
}

TEST(MemTransport, ReceiveRunsOnMessageAndSendsAreCollectedInOrder) {
  MemServerTransport t(4242);
  std::vector<std::pair<PeerId, Bytes>> got;
  t.on_message = [&](PeerId p, Bytes m) {
    got.emplace_back(p, m);
    EXPECT_EQ(t.send(p, msg(m[0] + 1)), Errc::kOk);
  };
  t.receive(7, msg(1));
  t.receive(8, msg(5));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 7u);
  EXPECT_EQ(t.sent_count(), 2u);
  auto sent = t.take_sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].peer, 7u);
  EXPECT_EQ(sent[0].message, msg(2));
  EXPECT_EQ(sent[1].peer, 8u);
  EXPECT_EQ(sent[1].message, msg(6));
  EXPECT_TRUE(t.take_sent().empty());
  EXPECT_EQ(t.local_port(), 4242);
  EXPECT_EQ(t.stats().messages_received, 2u);
  EXPECT_EQ(t.stats().messages_sent, 2u);
  EXPECT_EQ(t.stats().bytes_sent, 6u);
}

TEST(MemTransport, DroppedSendsAreCountedButNotDelivered) {
  MemServerTransport t;
  t.drop_next_sends(2);
  for (std::uint8_t i = 0; i < 3; ++i) EXPECT_EQ(t.send(1, msg(i)), Errc::kOk);
  auto sent = t.take_sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].message, msg(2));
  EXPECT_EQ(t.stats().messages_sent, 3u);
}

TEST(MemTransport, ClosedPeerAndClosedTransportRefuseTraffic) {
  MemServerTransport t;
  int calls = 0;
  t.on_message = [&](PeerId, Bytes) { ++calls; };
  t.close_peer(3);
  EXPECT_TRUE(t.peer_closed(3));
  t.receive(3, msg(1));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(t.send(3, msg(1)), Errc::kConnectionLost);
  t.receive(4, msg(1));
  EXPECT_EQ(calls, 1);
  t.close();
  EXPECT_TRUE(t.closed());
  t.receive(4, msg(1));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(t.send(4, msg(1)), Errc::kConnectionLost);
}

TEST(MemTransport, ConnectedClientExchangesMessagesThroughTheIoContext) {
  boost::asio::io_context io;
  MemServerTransport t;
  t.on_message = [&](PeerId p, Bytes m) {
    m.push_back(0xEE);
    t.send(p, std::move(m));
  };
  auto c = t.connect(io, 99);
  EXPECT_EQ(c->peer_epoch(), 99u);
  EXPECT_TRUE(c->is_open());
  std::vector<Bytes> replies;
  c->on_message = [&](Bytes m) { replies.push_back(std::move(m)); };
  ASSERT_EQ(c->send(msg(1, 1)), Errc::kOk);
  ASSERT_EQ(c->send(msg(2, 1)), Errc::kOk);
  EXPECT_TRUE(replies.empty());  // posted, never delivered inside send()
  drain(io);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0], (Bytes{1, 0xEE}));
  EXPECT_EQ(replies[1], (Bytes{2, 0xEE}));
  EXPECT_TRUE(t.take_sent().empty());  // went to the client end, not the collection
  EXPECT_EQ(c->stats().messages_received, 2u);
  std::size_t peers = 0;
  t.for_each_peer([&](PeerId p, const TransportStats& s) {
    EXPECT_EQ(p, c->peer());
    EXPECT_EQ(s.messages_sent, 2u);
    ++peers;
  });
  EXPECT_EQ(peers, 1u);
}

TEST(MemTransport, BindingsAreRecordedOnBothEndsAndLookupAsksTheServer) {
  boost::asio::io_context io;
  MemServerTransport t;
  EXPECT_FALSE(t.binding(1).has_value());
  Key256 k{};
  k[0] = 0x42;
  t.bind_session(1, k, 2);
  ASSERT_TRUE(t.binding(1).has_value());
  EXPECT_EQ(t.binding(1)->key, k);
  EXPECT_EQ(t.binding(1)->protection, 2u);
  EXPECT_FALSE(t.lookup_session(5).has_value());  // no session_lookup installed
  t.session_lookup = [&](std::uint64_t sid) -> std::optional<ServerTransport::SessionLookup> {
    if (sid != 5) return std::nullopt;
    return ServerTransport::SessionLookup{k, 1};
  };
  ASSERT_TRUE(t.lookup_session(5).has_value());
  EXPECT_EQ(t.lookup_session(5)->key, k);
  EXPECT_FALSE(t.lookup_session(6).has_value());
  auto c = t.connect(io);
  EXPECT_EQ(c->bound_session(), 0u);
  c->bind_session(5, k);
  EXPECT_EQ(c->bound_session(), 5u);
  EXPECT_EQ(c->bound_key(), k);
}

TEST(MemTransport, ClosesReachTheOtherEnd) {
  boost::asio::io_context io;
  MemServerTransport t;
  std::vector<PeerId> closed;
  t.on_peer_closed = [&](PeerId p) { closed.push_back(p); };
  auto a = t.connect(io);
  auto b = t.connect(io);
  EXPECT_NE(a->peer(), b->peer());
  std::optional<Errc> b_lost;
  b->on_closed = [&](Errc e) { b_lost = e; };
  a->close();
  EXPECT_FALSE(a->is_open());
  EXPECT_EQ(a->send(msg(1)), Errc::kConnectionLost);
  t.close_peer(b->peer());
  drain(io);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0], a->peer());
  EXPECT_EQ(b_lost, Errc::kConnectionLost);
  EXPECT_FALSE(b->is_open());
}

TEST(MemTransport, EitherEndMayGoFirst) {
  boost::asio::io_context io;
  std::optional<Errc> lost;
  std::unique_ptr<MemClientTransport> c;
  {
    MemServerTransport t;
    int got = 0;
    t.on_message = [&](PeerId, Bytes) { ++got; };
    c = t.connect(io);
    c->on_closed = [&](Errc e) { lost = e; };
    c->send(msg(1));
    {
      auto gone = t.connect(io);
      gone->send(msg(2));
    }  // destroyed with its message still queued: the server never sees it
    drain(io);
    EXPECT_EQ(got, 1);
    t.send(c->peer(), msg(3));  // queued, then the server goes away
  }
  drain(io);
  EXPECT_EQ(lost, Errc::kConnectionLost);
  EXPECT_EQ(c->send(msg(4)), Errc::kConnectionLost);
}

}  // namespace
}  // namespace ipsan::proto
