// Attacks on the reliable-UDP transport with real sockets on 127.0.0.1 (port 0): a raw UDP
// socket plays the attacker against UdpServerTransport / UdpClientTransport while a legitimate
// client keeps working. Figures (memory, latency) are printed; bounds are generous (a loaded
// 2-core machine) but each test fails on the transport before packet protection: the spoofed
// RESET ended the connection, the HELLO flood filled the table (legit client refused), the
// first-fragment flood reserved 8 MiB per message.
#include <utility>  // before Asio

#include "ipsan/proto/rudp/udp_transport.h"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

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
    io.run_for(std::chrono::milliseconds(2));
    if (io.stopped()) io.restart();
  }
}

std::uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * 4096;
}

Key256 test_key() {
  Key256 k{};
  k.fill(0x42);
  return k;
}

// An echo server and a client whose connection is protected as after a login.
struct EchoPair {
  asio::io_context io;
  std::unique_ptr<ServerTransport> server;
  std::unique_ptr<ClientTransport> client;
  PeerId peer = 0;
  std::vector<Bytes> got;
  bool closed = false;

  explicit EchoPair(Config cfg = {}) {
    server = make_udp_server(io, loopback(0), 0x5eed, cfg);
    server->on_message = [this](PeerId p, Bytes m) {
      peer = p;
      server->send(p, std::move(m));
    };
    client = make_udp_client(io, loopback(server->local_port()), cfg);
    client->on_message = [this](Bytes m) { got.push_back(std::move(m)); };
    client->on_closed = [this](Errc) { closed = true; };
  }
  // One echo round trip; returns its latency (or a large value on failure).
  std::chrono::microseconds echo(std::size_t size = 100) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::size_t want = got.size() + 1;
    client->send(make_message(got.size() + 1, size));
    run_until(io, [&] { return got.size() >= want || closed; });
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                 t0);
  }
  void login() {
    ASSERT_LT(echo().count(), 5'000'000);
    server->bind_session(peer, test_key(), 1);
    client->bind_session(1, test_key());
    for (int i = 0; i < 3; ++i) echo();
  }
  std::uint16_t client_port() const {
    const std::string n = server->peer_name(peer);  // "udp 127.0.0.1:PORT conn ID"
    const auto colon = n.find(':');
    return static_cast<std::uint16_t>(std::stoi(n.substr(colon + 1)));
  }
};

TEST(RudpAttack, SpoofedResetAndCloseDoNotEndASession) {
  EchoPair s;
  s.login();
  ASSERT_EQ(s.got.size(), 4u);
  // The attacker knows the connection id (on-path, or guessed): it sends the review's 32-byte
  // RESET (old and new epochs) and a CLOSE to the client, and a CLOSE to the server.
  udp::socket raw(s.io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::uint64_t id = s.peer;
  for (std::uint32_t epoch : {0x5eedu, 0x5eefu}) {
    std::array<std::uint8_t, 64> b{};
    std::size_t n = write_reason_packet(b, PacketType::kReset, id, epoch, 5, Errc::kStaleSession);
    raw.send_to(asio::buffer(b.data(), n), loopback(s.client_port()));
    n = write_reason_packet(b, PacketType::kClose, id, epoch, 6, Errc::kShutdown);
    raw.send_to(asio::buffer(b.data(), n), loopback(s.client_port()));
    raw.send_to(asio::buffer(b.data(), n), loopback(s.server->local_port()));
  }
  s.io.run_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(s.closed);
  EXPECT_TRUE(s.client->is_open());
  const auto lat = s.echo(20000);
  EXPECT_EQ(s.got.size(), 5u);
  std::printf("echo after spoofed RESET/CLOSE: %lld us\n", static_cast<long long>(lat.count()));
}

TEST(RudpAttack, HelloFloodDoesNotLockOutClients) {
  Config cfg;
  cfg.max_connections = 64;  // the flood below is 50x this
  asio::io_context io;
  auto server = make_udp_server(io, loopback(0), 0x77, cfg);
  server->on_message = [&](PeerId p, Bytes m) { server->send(p, std::move(m)); };
  udp::socket raw(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  raw.non_blocking(true);
  const std::uint64_t rss0 = rss_bytes();
  std::uint64_t sent_bytes = 0;
  // 3,200 28-byte HELLOs with distinct connection ids (the review's table filler), interleaved
  // with running the server.
  for (std::uint64_t i = 1; i <= 3200; ++i) {
    std::array<std::uint8_t, 64> b{};
    PacketWriter w(b, Header{kVersion, PacketType::kHello, 0x1000 + i, 0, 1ull << 30});
    const std::size_t n = w.finish();
    boost::system::error_code ec;
    raw.send_to(asio::buffer(b.data(), n), loopback(server->local_port()), 0, ec);
    sent_bytes += n;
    if (i % 64 == 0) io.poll();
  }
  io.run_for(std::chrono::milliseconds(50));
  // What came back to the attacker: at most 3x what it sent.
  std::uint64_t back = 0;
  for (;;) {
    std::array<std::uint8_t, 2048> b{};
    udp::endpoint from;
    boost::system::error_code ec;
    const std::size_t n = raw.receive_from(asio::buffer(b), from, 0, ec);
    if (ec) break;
    back += n;
  }
  EXPECT_LE(back, 3 * sent_bytes);
  // A legitimate client connects and echoes, with its latency measured during a second flood.
  auto client = make_udp_client(io, loopback(server->local_port()), cfg);
  std::size_t got = 0;
  bool closed = false;
  client->on_message = [&](Bytes) { ++got; };
  client->on_closed = [&](Errc) { closed = true; };
  std::vector<long long> lat;
  std::uint64_t flood_id = 0x100000;
  for (int k = 0; k < 50 && !closed; ++k) {
    for (int j = 0; j < 64; ++j) {
      std::array<std::uint8_t, 64> b{};
      PacketWriter w(b, Header{kVersion, PacketType::kHello, ++flood_id, 0, 1ull << 30});
      boost::system::error_code ec;
      raw.send_to(asio::buffer(b.data(), w.finish()), loopback(server->local_port()), 0, ec);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const std::size_t want = got + 1;
    client->send(make_message(k + 1, 100));
    run_until(io, [&] { return got >= want || closed; });
    lat.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count());
  }
  ASSERT_FALSE(closed);
  EXPECT_EQ(got, 50u);
  std::sort(lat.begin(), lat.end());
  const std::uint64_t rss1 = rss_bytes();
  std::printf("HELLO flood: %llu bytes sent, %llu answered; legit echo p50 %lld us p99 %lld us; "
              "RSS %+lld KiB\n",
              static_cast<unsigned long long>(sent_bytes), static_cast<unsigned long long>(back),
              lat[lat.size() / 2], lat[lat.size() * 99 / 100],
              static_cast<long long>((static_cast<std::int64_t>(rss1) - static_cast<std::int64_t>(rss0)) / 1024));
  EXPECT_LT(lat[lat.size() / 2], 500'000);
}

// A keyless attacker that passes the cookie exchange (it receives at its address) and sends
// first fragments declaring 8 MiB messages on 40 connections.
TEST(RudpAttack, FirstFragmentFloodHoldsNoMemory) {
  EchoPair s;
  s.login();
  udp::socket raw(s.io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  raw.non_blocking(true);
  const std::uint64_t rss0 = rss_bytes();
  auto exchange = [&](ByteSpan d) -> std::vector<Bytes> {
    boost::system::error_code ec;
    raw.send_to(asio::buffer(d.data(), d.size()), loopback(s.server->local_port()), 0, ec);
    s.io.run_for(std::chrono::milliseconds(2));
    std::vector<Bytes> replies;
    for (;;) {
      Bytes b(2048);
      udp::endpoint from;
      const std::size_t n = raw.receive_from(asio::buffer(b), from, 0, ec);
      if (ec) break;
      b.resize(n);
      replies.push_back(std::move(b));
    }
    return replies;
  };
  std::size_t connections = 0;
  for (std::uint64_t id = 0x9000; id < 0x9000 + 40; ++id) {
    Bytes h(1452);
    {
      PacketWriter w(h, Header{kVersion, PacketType::kHello, id, 0, 1ull << 30});
      w.put_padding(w.room());
      h.resize(w.finish());
    }
    std::optional<Cookie> cookie;
    for (const Bytes& r : exchange(h)) {
      auto p = parse_packet(r);
      if (p && p->header.type == PacketType::kRetry) cookie = parse_retry_cookie(p->body);
    }
    Bytes h2(1452);
    {
      PacketWriter w(h2, Header{kVersion, PacketType::kHello, id, 0, (1ull << 30) + 1});
      if (cookie) w.put_cookie(*cookie);
      w.put_padding(w.room());
      h2.resize(w.finish());
    }
    std::uint32_t epoch = 0;
    for (const Bytes& r : exchange(h2)) {
      auto p = parse_packet(r);
      if (p && p->header.type == PacketType::kHelloAck) epoch = p->header.epoch;
    }
    if (epoch == 0) continue;
    ++connections;
    for (std::uint64_t m = 1; m <= 4; ++m) {
      Bytes d(1452);
      PacketWriter w(d, Header{kVersion, PacketType::kData, id, epoch, (1ull << 30) + 1 + m});
      Bytes part(1000, 0xcd);
      w.put_message(m, 8u << 20, 0, part);
      d.resize(w.finish());
      exchange(d);
    }
  }
  EXPECT_EQ(connections, 40u);  // the cookie exchange works for anyone who can receive
  s.io.run_for(std::chrono::milliseconds(20));
  const std::uint64_t rss1 = rss_bytes();
  const auto grow = static_cast<std::int64_t>(rss1) - static_cast<std::int64_t>(rss0);
  const auto lat = s.echo(4096);
  std::printf("first-fragment flood (40 conns x 4 x 8 MiB declared): RSS %+lld KiB; legit echo "
              "%lld us\n",
              static_cast<long long>(grow / 1024), static_cast<long long>(lat.count()));
  // Before: 160 x 8 MiB reserved and zeroed (1.3 GB). Allow generous noise.
  EXPECT_LT(grow, 64ll << 20);
  EXPECT_FALSE(s.closed);
}

}  // namespace
}  // namespace ipsan::proto::rudp::test
