// Record protection on TCP (`--transport-security encrypted`): bind record, sealed records in both
// directions, reconnect through session_lookup, and the refusals (tag, clear record where
// ciphertext is due, a session that is not encrypted). The capture tap must never see clear data.
#include <utility>

#include <gtest/gtest.h>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "ipsan/base/crypto.h"
#include "ipsan/base/rng.h"
#include "ipsan/proto/tcp_transport.h"

namespace ipsan::proto {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

Key256 test_key(std::uint8_t fill) {
  Key256 k;
  k.fill(fill);
  return k;
}

Bytes random_message(Rng& rng, std::size_t n) {
  Bytes m(n);
  for (auto& b : m) b = static_cast<std::uint8_t>(rng.next());
  return m;
}

bool contains(const Bytes& hay, const Bytes& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

TEST(TcpRecordProtection, BindRecordRoundTripAndTag) {
  ASSERT_TRUE(crypto_init());
  TcpBindRecord b;
  b.session_id = 0x1122334455667788ull;
  random_bytes(b.salt);
  const Key256 k = test_key(7);
  Bytes rec = encode_tcp_bind(b, k);
  ASSERT_EQ(rec.size(), kTcpBindRecordSize);
  auto p = parse_tcp_bind(rec);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->session_id, b.session_id);
  EXPECT_EQ(p->salt, b.salt);
  EXPECT_TRUE(verify_tcp_bind(rec, k));
  EXPECT_FALSE(verify_tcp_bind(rec, test_key(8)));  // another session's key
  for (std::size_t i = 8; i < rec.size(); ++i) {
    Bytes t = rec;
    t[i] ^= 0x01;
    EXPECT_FALSE(verify_tcp_bind(t, k)) << "byte " << i;
  }
  // An RPC call (msg_type CALL = 0 in the second word) is never taken for a bind record.
  Bytes call = rec;
  store_be32(call.data() + 4, 0);
  EXPECT_FALSE(parse_tcp_bind(call));
  rec.push_back(0);
  EXPECT_FALSE(parse_tcp_bind(rec));
}

TEST(TcpRecordProtection, SealOpenInOrderOnly) {
  ASSERT_TRUE(crypto_init());
  const std::uint64_t seed = 11;
  std::printf("seed=%llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  std::array<std::uint8_t, 32> salt{};
  random_bytes(salt);
  const Key256 k = test_key(3);
  RecordCipher ctx(k, salt, true, true), srx(k, salt, false, false);
  RecordCipher stx(k, salt, false, true), crx(k, salt, true, false);
  std::vector<Bytes> sealed;
  for (int i = 0; i < 5; ++i) {
    Bytes m = random_message(rng, 1 + rng.below(3000));
    Bytes c = m;
    ctx.seal(c);
    ASSERT_EQ(c.size(), m.size() + 16);
    EXPECT_FALSE(contains(c, m));
    Bytes o = c;
    ASSERT_TRUE(srx.open(o));
    EXPECT_EQ(o, m);
    sealed.push_back(c);
  }
  // A replayed (old counter) record fails, and so does the other direction's key.
  Bytes replay = sealed[2];
  EXPECT_FALSE(srx.open(replay));
  Bytes m = random_message(rng, 100);
  Bytes c = m;
  stx.seal(c);
  Bytes wrong = c;
  EXPECT_FALSE(srx.open(wrong));  // s2c key is not the c2s key
  Bytes flipped = c;
  flipped[10] ^= 0x80;
  EXPECT_FALSE(crx.open(flipped));
  ASSERT_TRUE(crx.open(c));  // a failed open does not advance the counter
  EXPECT_EQ(c, m);
  Bytes tiny(15);
  EXPECT_FALSE(crx.open(tiny));
}

// A loopback server and client with record protection; the "login" is simulated: the first
// client message is clear, its reply is clear, then both sides bind.
struct Pair {
  asio::io_context io;
  Key256 key = test_key(0x42);
  std::uint64_t session_id = 77;
  std::uint32_t session_protection = 2;
  std::unique_ptr<ServerTransport> server;
  std::unique_ptr<ClientTransport> client;
  Bytes tapped;  // every byte the server's capture tap saw
  std::vector<Bytes> at_server;
  std::vector<Bytes> at_client;
  int server_closed = 0;
  Errc client_closed = Errc::kOk;

  explicit Pair(bool reply_echo = true) {
    TcpConfig scfg;
    scfg.tap = [this](const TcpTapEvent& e) {
      tapped.insert(tapped.end(), e.data.begin(), e.data.end());
    };
    server = make_tcp_server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), scfg);
    server->session_lookup = [this](std::uint64_t sid) -> std::optional<ServerTransport::SessionLookup> {
      if (sid != session_id) return std::nullopt;
      return ServerTransport::SessionLookup{key, session_protection};
    };
    server->on_peer_closed = [this](PeerId) { ++server_closed; };
    server->on_message = [this, reply_echo](PeerId peer, Bytes m) {
      const bool login = at_server.empty() && m.size() == 5 && m[0] == 'L';
      at_server.push_back(m);
      if (!reply_echo) return;
      std::reverse(m.begin(), m.end());
      ASSERT_EQ(server->send(peer, std::move(m)), Errc::kOk);
      if (login) server->bind_session(peer, key, session_protection);
    };
  }
  std::unique_ptr<ClientTransport> connect(std::uint32_t protection = 2) {
    TcpConfig ccfg;
    ccfg.protection = protection;
    auto c = make_tcp_client(
        io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->local_port()), ccfg);
    c->on_closed = [this](Errc e) { client_closed = e; };
    return c;
  }
  void run_until(const std::function<bool()>& done) {
    asio::steady_timer guard(io, std::chrono::seconds(20));
    guard.async_wait([&](auto ec) {
      if (!ec) io.stop();
    });
    asio::steady_timer poll(io);
    std::function<void()> check = [&] {
      if (done()) {
        io.stop();
        return;
      }
      poll.expires_after(std::chrono::milliseconds(1));
      poll.async_wait([&](auto) { check(); });
    };
    check();
    io.restart();
    io.run();
  }
};

TEST(TcpRecordProtection, LoginThenEncryptedBothWaysAndNothingClearInTheCapture) {
  ASSERT_TRUE(crypto_init());
  const std::uint64_t seed = 5;
  std::printf("seed=%llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  Pair p;
  p.client = p.connect();
  std::vector<Bytes> secrets;
  p.client->on_message = [&](Bytes m) {
    std::reverse(m.begin(), m.end());
    p.at_client.push_back(std::move(m));
    if (p.at_client.size() == 1) {
      // The "login reply" verified: bind, then send the secrets (sealed).
      p.client->bind_session(p.session_id, p.key);
      for (int i = 0; i < 8; ++i) {
        Bytes s = random_message(rng, i == 7 ? (3u << 20) : 64 + rng.below(9000));
        secrets.push_back(s);
        ASSERT_EQ(p.client->send(std::move(s)), Errc::kOk);
      }
    }
  };
  Bytes login{'L', 'O', 'G', 'I', 'N'};
  ASSERT_EQ(p.client->send(login), Errc::kOk);
  p.run_until([&] { return p.at_client.size() == 9; });
  ASSERT_EQ(p.at_server.size(), 9u);
  ASSERT_EQ(p.at_client.size(), 9u);
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    EXPECT_EQ(p.at_server[i + 1], secrets[i]);
    EXPECT_EQ(p.at_client[i + 1], secrets[i]);  // the echo came back through s2c
  }
  EXPECT_TRUE(contains(p.tapped, login));  // before the bind: clear, as it should be
  for (auto& s : secrets) {
    Bytes probe(s.begin(), s.begin() + 32);
    EXPECT_FALSE(contains(p.tapped, probe)) << "clear data in the capture";
  }
  EXPECT_EQ(p.server_closed, 0);
}

TEST(TcpRecordProtection, ReconnectBindsThroughSessionLookup) {
  ASSERT_TRUE(crypto_init());
  Pair p;
  p.client = p.connect();
  p.client->bind_session(p.session_id, p.key);  // a session that survived a reconnect
  Bytes m(4000, 0x5A);
  p.client->on_message = [&](Bytes r) { p.at_client.push_back(std::move(r)); };
  ASSERT_EQ(p.client->send(m), Errc::kOk);
  p.run_until([&] { return !p.at_client.empty(); });
  ASSERT_EQ(p.at_server.size(), 1u);
  EXPECT_EQ(p.at_server[0], m);
  EXPECT_FALSE(contains(p.tapped, Bytes(64, 0x5A)));
}

TEST(TcpRecordProtection, RefusedBindsCloseTheConnection) {
  ASSERT_TRUE(crypto_init());
  {  // unknown session
    Pair p;
    p.client = p.connect();
    p.client->bind_session(999, p.key);
    ASSERT_EQ(p.client->send(Bytes(100, 1)), Errc::kOk);
    p.run_until([&] { return p.server_closed == 1; });
    EXPECT_EQ(p.server_closed, 1);
    EXPECT_TRUE(p.at_server.empty());
  }
  {  // the session is integrity-only: a bind record is a mismatch
    Pair p;
    p.session_protection = 1;
    p.client = p.connect();
    p.client->bind_session(p.session_id, p.key);
    ASSERT_EQ(p.client->send(Bytes(100, 1)), Errc::kOk);
    p.run_until([&] { return p.server_closed == 1; });
    EXPECT_TRUE(p.at_server.empty());
  }
  {  // the wrong key (a client presenting someone else's session id)
    Pair p;
    p.client = p.connect();
    p.client->bind_session(p.session_id, test_key(9));
    ASSERT_EQ(p.client->send(Bytes(100, 1)), Errc::kOk);
    p.run_until([&] { return p.server_closed == 1; });
    EXPECT_TRUE(p.at_server.empty());
  }
}

TEST(TcpRecordProtection, ClearRecordAfterAnEncryptedLoginIsRefusedAndRepliesStayHeld) {
  ASSERT_TRUE(crypto_init());
  Pair p;
  p.client = p.connect(/*protection=*/1);  // a client that does not protect records
  p.client->on_message = [&](Bytes r) {
    p.at_client.push_back(std::move(r));
    if (p.at_client.size() == 1) {
      p.client->bind_session(p.session_id, p.key);  // no-op at protection 1
      ASSERT_EQ(p.client->send(Bytes(100, 0x33)), Errc::kOk);
    }
  };
  ASSERT_EQ(p.client->send(Bytes{'L', 'O', 'G', 'I', 'N'}), Errc::kOk);
  p.run_until([&] { return p.server_closed == 1; });
  EXPECT_EQ(p.server_closed, 1);
  EXPECT_EQ(p.at_server.size(), 1u);  // only the clear login
  EXPECT_EQ(p.at_client.size(), 1u);
}

TEST(TcpRecordProtection, TamperedCiphertextClosesTheConnection) {
  ASSERT_TRUE(crypto_init());
  Pair p;
  // A raw socket plays the client: a valid bind record, then a sealed record with a flipped bit.
  tcp::socket raw(p.io);
  raw.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), p.server->local_port()));
  TcpBindRecord b;
  b.session_id = p.session_id;
  random_bytes(b.salt);
  RecordCipher tx(p.key, b.salt, true, true);
  Bytes good(50, 0x11), bad(50, 0x22);
  tx.seal(good);
  tx.seal(bad);
  bad[3] ^= 0x04;
  Bytes stream;
  append_record(stream, encode_tcp_bind(b, p.key), 1 << 20);
  append_record(stream, good, 1 << 20);
  append_record(stream, bad, 1 << 20);
  asio::write(raw, asio::buffer(stream));
  p.run_until([&] { return p.server_closed == 1; });
  EXPECT_EQ(p.server_closed, 1);
  ASSERT_EQ(p.at_server.size(), 1u);  // the good one only
  EXPECT_EQ(p.at_server[0], Bytes(50, 0x11));
}

}  // namespace
}  // namespace ipsan::proto
