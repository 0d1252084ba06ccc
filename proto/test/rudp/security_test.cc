// rudp attack tests on the sans-I/O engine (in-memory link, virtual clock): one test per defence
// of docs/RUDP.md "Packet protection" and "Denial of service". Each fails on the engine before
// packet protection (any RESET closed a connection, any ACK was believed, a first fragment
// reserved its declared length, every HELLO got state and a full-size answer).
#include <algorithm>
#include <cstring>
#include <set>

#include <gtest/gtest.h>

#include "link.h"

namespace ipsan::proto::rudp::test {
namespace {

Config cfg() {
  Config c;
  c.idle_timeout = 5s;
  return c;
}

Key256 session_key() {
  Key256 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return k;
}

// A link whose connection is established, protected with `p`, and has exchanged messages in
// both directions (so both ends have switched and the client holds its reset token).
void establish_protected(Link& link, Protection p) {
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kEstablished; }, 1s));
  link.protect(session_key(), p);
  ASSERT_EQ(link.client().send(make_message(1, 100), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 1; }, 1s));
  link.server().find(link.client().id())->send(make_message(2, 100), link.clock().now());
  ASSERT_TRUE(link.run_until([&] { return link.client_received().size() == 1; }, 1s));
  link.run_for(20ms);
  if (p != Protection::kOff) {
    ASSERT_TRUE(link.client().sends_protected());
    ASSERT_TRUE(link.client().peer_protected());
    ASSERT_TRUE(link.server_conn()->sends_protected());
    ASSERT_TRUE(link.server_conn()->peer_protected());
  }
}

Bytes reset_packet(std::uint64_t conn_id, std::uint32_t epoch, const ResetToken* token) {
  Bytes b(64);
  b.resize(write_reason_packet(b, PacketType::kReset, conn_id, epoch, 99, Errc::kStaleSession,
                               token));
  return b;
}

TEST(RudpSecurity, SpoofedResetIsIgnored) {
  Link link(101, cfg(), cfg(), /*epoch=*/7);
  establish_protected(link, Protection::kIntegrity);
  const std::uint64_t id = link.client().id();
  // The 32-byte RESET of the attack review (any epoch), and one with a made-up token.
  link.inject(Dir::kToClient, reset_packet(id, 7, nullptr));
  link.inject(Dir::kToClient, reset_packet(id, 8, nullptr));
  ResetToken fake{};
  fake.fill(0x5a);
  link.inject(Dir::kToClient, reset_packet(id, 8, &fake));
  EXPECT_EQ(link.client().state(), State::kEstablished);
  EXPECT_GE(link.client().stats().dropped_unauthenticated, 3u);
  // The connection still works.
  ASSERT_EQ(link.client().send(make_message(3, 5000), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 2; }, 1s));
}

TEST(RudpSecurity, GenuineStatelessResetAfterRestartEndsConnection) {
  Link link(102, cfg(), cfg(), /*epoch=*/7);
  establish_protected(link, Protection::kIntegrity);
  // The server restarts with the same secret (derived from its key ring): it has lost the
  // connection, but its RESET carries the token the client holds.
  link.restart_server(8);
  const TimePoint t0 = link.clock().now();
  ASSERT_EQ(link.client().send(make_message(4, 100), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kClosed; }, 5s));
  EXPECT_EQ(link.client().close_reason(), Errc::kStaleSession);
  EXPECT_LT(link.clock().now() - t0, 100ms);  // at once, not after the idle timeout
}

TEST(RudpSecurity, ForgedAckDoesNotAcknowledge) {
  Link link(103, cfg(), cfg());
  establish_protected(link, Protection::kIntegrity);
  // Nothing reaches the server for a while; an attacker acknowledges everything.
  bool block = true;
  link.filter = [&](Dir d, ByteSpan) { return block && d == Dir::kToServer; };
  ASSERT_EQ(link.client().send(make_message(5, 20000), link.clock().now()), Errc::kOk);
  link.run_for(1ms);
  const std::uint64_t sent_before = link.client().stats().messages_sent;
  Bytes d(1452);
  for (std::uint16_t flags : {std::uint16_t{0}, kFlagKeyPhase}) {
    PacketWriter w(d, Header{kVersion, PacketType::kData, link.client().id(), 7, 1ull << 41, flags},
                   flags ? kTagSize : kCrcSize);
    AckRange all{1, (1ull << 40) + 1000000};
    ASSERT_TRUE(w.put_ack(all.hi, 0, &all, 1));
    std::size_t n = w.finish();
    if (flags) {  // a made-up tag
      n = w.size() + kTagSize;
      std::memset(d.data() + w.size(), 0x33, kTagSize);
    }
    link.inject(Dir::kToClient, ByteSpan(d.data(), n));
  }
  EXPECT_EQ(link.client().stats().messages_sent, sent_before);
  EXPECT_GE(link.client().stats().dropped_unauthenticated, 2u);
  block = false;
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 2; }, 2s));
  EXPECT_EQ(link.server_received()[1].second, make_message(5, 20000));
}

TEST(RudpSecurity, ReplayedPacketsOfEveryTypeChangeNothing) {
  Link link(104, cfg(), cfg());
  std::vector<std::pair<Dir, Bytes>> captured;
  link.tap = [&](Dir d, ByteSpan b, TimePoint) { captured.emplace_back(d, Bytes(b.begin(), b.end())); };
  establish_protected(link, Protection::kIntegrity);
  for (int i = 0; i < 5; ++i) {
    link.client().send(make_message(10 + i, 3000), link.clock().now());
  }
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 6; }, 1s));
  link.run_for(10ms);
  const auto server_msgs = link.server_received().size();
  const auto client_msgs = link.client_received().size();
  link.tap = nullptr;
  // Replay every captured datagram (HELLO, HELLO_ACK, RETRY, DATA with ACK/MESSAGE/PING/FLOW,
  // protected or not) in both directions, twice.
  for (int round = 0; round < 2; ++round) {
    for (const auto& [d, b] : captured) link.inject(d, b);
    link.run_for(5ms);
  }
  EXPECT_EQ(link.server_received().size(), server_msgs);
  EXPECT_EQ(link.client_received().size(), client_msgs);
  EXPECT_EQ(link.client().state(), State::kEstablished);
  EXPECT_EQ(link.server().connection_count(), 1u);
  EXPECT_GT(link.server_conn()->stats().dropped_duplicate +
                link.server_conn()->stats().dropped_unauthenticated,
            0u);
  ASSERT_EQ(link.client().send(make_message(30, 100), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == server_msgs + 1; }, 1s));
}

TEST(RudpSecurity, ProtectedCloseOnlyFromThePeer) {
  Link link(105, cfg(), cfg());
  establish_protected(link, Protection::kIntegrity);
  Bytes b(64);
  b.resize(write_reason_packet(b, PacketType::kClose, link.client().id(), 7, 1ull << 39,
                               Errc::kShutdown));
  link.inject(Dir::kToClient, b);
  link.inject(Dir::kToServer, b);
  EXPECT_EQ(link.client().state(), State::kEstablished);
  EXPECT_EQ(link.server_conn()->state(), State::kEstablished);
  // A genuine close still works (protected CLOSE).
  link.client().close(link.clock().now());
  ASSERT_TRUE(link.run_until([&] { return link.server().connection_count() == 0; }, 1s));
}

TEST(RudpSecurity, PacketNumbersStartAtRandom) {
  std::set<std::uint64_t> firsts;
  for (int i = 0; i < 8; ++i) {
    Connection c = Connection::make_client(1000 + i, cfg(), TimePoint{});
    Bytes buf(1452);
    const std::size_t n = c.poll_transmit(buf, TimePoint{});
    auto p = parse_packet(ByteSpan(buf.data(), n));
    ASSERT_TRUE(p);
    EXPECT_GE(p->header.packet_number, 1ull << 20);
    firsts.insert(p->header.packet_number);
  }
  EXPECT_EQ(firsts.size(), 8u);
}

TEST(RudpSecurity, EncryptionHidesDataIntegrityDoesNot) {
  for (Protection p : {Protection::kOff, Protection::kIntegrity, Protection::kEncrypted}) {
    Link link(106, cfg(), cfg());
    establish_protected(link, p);
    Bytes secret = make_message(0x51ec7e7, 4000);
    bool seen = false;
    link.tap = [&](Dir, ByteSpan b, TimePoint) {
      // Look for any 64-byte run of the payload.
      for (std::size_t off = 100; off + 64 <= secret.size(); off += 32) {
        if (std::search(b.begin(), b.end(), secret.begin() + off, secret.begin() + off + 64) !=
            b.end()) {
          seen = true;
        }
      }
    };
    ASSERT_EQ(link.client().send(secret, link.clock().now()), Errc::kOk);
    ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 2; }, 1s));
    EXPECT_EQ(link.server_received()[1].second, secret);
    EXPECT_EQ(seen, p != Protection::kEncrypted) << protection_name(p);
  }
}

TEST(RudpSecurity, PeerThatNeverSwitchesIsClosed) {
  Link link(107, cfg(), cfg());
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kEstablished; }, 1s));
  // The server arms keys (a login verified) but the client never switches (or cannot).
  link.server().protect(link.client().id(), session_key(), Protection::kIntegrity,
                        link.clock().now());
  ASSERT_TRUE(link.run_until([&] { return link.server().connection_count() == 0; }, 15s));
}

TEST(RudpSecurity, ReconnectBindsSessionInHandshake) {
  Link link(108, cfg(), cfg());
  link.auto_verify = false;
  link.server().session_key = [](std::uint64_t sid) -> std::optional<Listener::SessionKey> {
    if (sid != 77) return std::nullopt;
    return Listener::SessionKey{session_key(), Protection::kIntegrity};
  };
  link.client().set_bind(77, derive_packet_keys(session_key(), link.client().id(), true, false));
  // A large message right away: the bound connection is verified, so it is accepted.
  ASSERT_EQ(link.client().send(make_message(9, 100000), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 1; }, 1s));
  EXPECT_TRUE(link.client().sends_protected());
  EXPECT_TRUE(link.server_conn()->peer_protected());

  Link other(109, cfg(), cfg());
  other.auto_verify = false;
  other.server().session_key = [](std::uint64_t) { return std::nullopt; };
  other.client().set_bind(78, derive_packet_keys(session_key(), other.client().id(), true, false));
  ASSERT_TRUE(other.run_until([&] { return other.client().state() == State::kClosed; }, 1s));
  EXPECT_EQ(other.client().close_reason(), Errc::kStaleSession);
}

// ---- Denial of service without a key ----

Bytes hello(std::uint64_t conn_id, std::size_t pad_to, std::uint64_t pn = 1ull << 30) {
  Bytes b(std::max<std::size_t>(pad_to, kPacketOverhead));
  PacketWriter w(b, Header{kVersion, PacketType::kHello, conn_id, 0, pn});
  w.put_padding(w.room());
  b.resize(w.finish());
  return b;
}

TEST(RudpSecurity, HelloFloodKeepsNoStateAndAnswersAtMostThreeTimes) {
  Config c = cfg();
  c.max_connections = 16;
  Listener l(7, c);
  const Bytes src{10, 0, 0, 1};
  std::array<std::uint8_t, 64> out{};
  std::uint64_t in_bytes = 0, out_bytes = 0;
  for (std::uint64_t i = 1; i <= 5000; ++i) {
    const Bytes h = hello(i, 28);  // the 28-byte HELLO of the attack review
    const auto r = l.on_datagram(h, TimePoint{} + std::chrono::microseconds(i), out, src);
    in_bytes += h.size();
    out_bytes += r.reset_size;
    EXPECT_LE(r.reset_size, 3 * h.size());
    EXPECT_FALSE(r.conn_id);
  }
  EXPECT_EQ(l.connection_count(), 0u);
  EXPECT_LE(out_bytes, 3 * in_bytes);
  std::printf("5000 HELLOs: %llu bytes in, %llu bytes out, %zu connections\n",
              static_cast<unsigned long long>(in_bytes), static_cast<unsigned long long>(out_bytes),
              l.connection_count());
  // A legitimate client still gets in (its HELLO echoes the cookie).
  Link link(110, cfg(), c);
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kEstablished; }, 1s));
  EXPECT_GE(link.server().stats().retries_sent, 1u);
}

// On a path whose RTT is far above the initial RTT the client has resent its HELLO before the
// RETRY arrives: the RETRY of an older HELLO must still be taken (regression: a WAN profile never
// connected when only the newest HELLO's RETRY counted).
TEST(RudpSecurity, RetryOnLongPathStillConnects) {
  Link link(111, cfg(), cfg());
  link.to_server.delay = 20ms;
  link.to_client.delay = 20ms;
  const TimePoint t0 = link.clock().now();
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kEstablished; }, 2s));
  EXPECT_LT(link.clock().now() - t0, 500ms);
}

TEST(RudpSecurity, CookieIsBoundToAddressAndTime) {
  Listener l(7, cfg());
  const Bytes a{10, 0, 0, 1}, b{10, 0, 0, 2};
  const Cookie ck = l.make_cookie(5, a, TimePoint{} + 1s);
  EXPECT_TRUE(l.check_cookie(ck, 5, a, TimePoint{} + 2s));
  EXPECT_FALSE(l.check_cookie(ck, 5, b, TimePoint{} + 2s));   // other address
  EXPECT_FALSE(l.check_cookie(ck, 6, a, TimePoint{} + 2s));   // other connection id
  EXPECT_FALSE(l.check_cookie(ck, 5, a, TimePoint{} + 30s));  // expired
  Cookie bad = ck;
  bad[10] ^= 1;
  EXPECT_FALSE(l.check_cookie(bad, 5, a, TimePoint{} + 2s));
}

TEST(RudpSecurity, PerSourceConnectionLimit) {
  Config c = cfg();
  c.max_connections_per_source = 4;
  Listener l(7, c);
  const Bytes src{10, 0, 0, 9};
  std::array<std::uint8_t, 64> out{};
  std::size_t accepted = 0;
  for (std::uint64_t id = 1; id <= 10; ++id) {
    Bytes h(1452);
    PacketWriter w(h, Header{kVersion, PacketType::kHello, id, 0, 1ull << 30});
    w.put_cookie(l.make_cookie(id, src, TimePoint{}));
    w.put_padding(w.room());
    h.resize(w.finish());
    if (l.on_datagram(h, TimePoint{}, out, src).conn_id) ++accepted;
  }
  EXPECT_EQ(accepted, 4u);
  EXPECT_EQ(l.stats().refused_per_source, 6u);
}

// A server connection made by a valid (cookie) HELLO, not verified: what a keyless attacker gets.
std::uint64_t attacker_connection(Listener& l, std::uint64_t id, const Bytes& src, TimePoint now) {
  std::array<std::uint8_t, 64> out{};
  Bytes h(1452);
  PacketWriter w(h, Header{kVersion, PacketType::kHello, id, 0, 1ull << 30});
  w.put_cookie(l.make_cookie(id, src, now));
  w.put_padding(w.room());
  h.resize(w.finish());
  EXPECT_TRUE(l.on_datagram(h, now, out, src).conn_id);
  return id;
}

Bytes first_fragment(std::uint64_t id, std::uint32_t epoch, std::uint64_t pn, std::uint64_t msg,
                     std::uint32_t total) {
  Bytes d(1452);
  PacketWriter w(d, Header{kVersion, PacketType::kData, id, epoch, pn});
  Bytes part(1000, 0xab);
  w.put_message(msg, total, 0, part);
  d.resize(w.finish());
  return d;
}

TEST(RudpSecurity, LargeFirstFragmentBeforeVerificationAllocatesNothing) {
  Listener l(7, cfg());
  const Bytes src{10, 0, 0, 3};
  std::array<std::uint8_t, 64> out{};
  std::uint64_t held = 0;
  for (std::uint64_t id = 1; id <= 40; ++id) {
    attacker_connection(l, id, src, TimePoint{});
    for (std::uint64_t m = 1; m <= 4; ++m) {
      l.on_datagram(first_fragment(id, 7, (1ull << 30) + m, m, 8u << 20), TimePoint{}, out, src);
    }
    held += l.find(id)->stats().recv_buffered;
  }
  // Before: 40 connections x 8 MiB reserved and zeroed (the review's 60 -> 657 MiB).
  EXPECT_EQ(held, 0u);
  EXPECT_EQ(l.budget().used, 0u);
  std::printf("40 connections x 4 first fragments of 8 MiB: %llu bytes held\n",
              static_cast<unsigned long long>(held));
}

TEST(RudpSecurity, UnverifiedReassemblyHasAGlobalBudget) {
  Config c = cfg();
  c.unverified_budget_bytes = 64 * 1024;
  Listener l(7, c);
  const Bytes src{10, 0, 0, 4};
  std::array<std::uint8_t, 64> out{};
  for (std::uint64_t id = 1; id <= 200; ++id) {
    attacker_connection(l, id, src, TimePoint{});
    for (std::uint64_t m = 1; m <= 8; ++m) {  // small messages, never completed
      l.on_datagram(first_fragment(id, 7, (1ull << 30) + m, m, 4000), TimePoint{}, out, src);
    }
  }
  EXPECT_LE(l.budget().unverified_used, 64u * 1024);
  EXPECT_LE(l.budget().used, 64u * 1024);
  EXPECT_GT(l.budget().refused, 0u);
  // Closing them gives the budget back.
  l.close_all(TimePoint{});
  Bytes buf(1452);
  while (l.poll_transmit(buf, TimePoint{})) {
  }
  while (l.poll_closed()) {
  }
  EXPECT_EQ(l.budget().used, 0u);
  EXPECT_EQ(l.budget().unverified_used, 0u);
}

TEST(RudpSecurity, TinyDatagramsGetNoAnswer) {
  Listener l(7, cfg());
  std::array<std::uint8_t, 64> out{};
  // A 28-byte DATA for an unknown connection: a 48-byte RESET would amplify; nothing is sent.
  Bytes d(64);
  PacketWriter w(d, Header{kVersion, PacketType::kData, 5, 7, 1});
  d.resize(w.finish());
  EXPECT_EQ(l.on_datagram(d, TimePoint{}, out).reset_size, 0u);
  EXPECT_EQ(l.stats().not_answered, 1u);
}

}  // namespace
}  // namespace ipsan::proto::rudp::test
