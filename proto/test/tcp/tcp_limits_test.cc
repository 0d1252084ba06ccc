// TCP server limits (issue 15): a connection cap that an idle flood cannot use to lock a talking
// client out, an idle timeout, a bounded send queue for a peer that does not read, and no busy
// spin when accept() runs out of file descriptors.
#include <utility>

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <vector>

#include "ipsan/base/log.h"
#include "ipsan/proto/tcp_transport.h"

namespace ipsan::proto {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

tcp::endpoint loopback(std::uint16_t port) {
  return tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);
}

template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(10ms);
    if (io.stopped()) io.restart();
  }
  return pred();
}

// Raw connections that never send anything (the flood).
std::vector<std::unique_ptr<tcp::socket>> open_idle(asio::io_context& io, std::uint16_t port,
                                                    int n) {
  std::vector<std::unique_ptr<tcp::socket>> v;
  for (int i = 0; i < n; ++i) {
    auto s = std::make_unique<tcp::socket>(io);
    s->connect(loopback(port));
    v.push_back(std::move(s));
  }
  return v;
}

// True once the server has closed `s` (read returns EOF or an error).
bool closed_by_server(tcp::socket& s) {
  s.non_blocking(true);
  std::uint8_t b;
  boost::system::error_code ec;
  s.read_some(asio::buffer(&b, 1), ec);
  return ec && ec != asio::error::would_block;
}

void echo(ServerTransport& server) {
  server.on_message = [&server](PeerId peer, Bytes m) { server.send(peer, std::move(m)); };
}

TEST(TcpLimits, IdleFloodCannotLockOutATalkingClient) {
  asio::io_context io;
  TcpConfig cfg;
  cfg.max_connections = 16;
  cfg.idle_timeout = std::chrono::milliseconds(0);  // only the cap at work here
  auto server = make_tcp_server(io, loopback(0), cfg);
  echo(*server);
  auto flood = open_idle(io, server->local_port(), 64);  // 4x the cap
  io.run_for(200ms);
  auto client = make_tcp_client(io, loopback(server->local_port()));
  std::optional<Bytes> got;
  client->on_message = [&](Bytes m) { got = std::move(m); };
  ASSERT_EQ(client->send(Bytes{1, 2, 3}), Errc::kOk);
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(*got, (Bytes{1, 2, 3}));
  // The server holds at most the cap: most of the flood was closed.
  int closed = 0;
  run_until(io, [&] { return false; }, 100ms);
  for (auto& s : flood) closed += closed_by_server(*s) ? 1 : 0;
  EXPECT_GE(closed, 64 - 16 + 1);
  EXPECT_GE(server->stats().connections_evicted, 49u);
}

TEST(TcpLimits, IdleConnectionIsClosed) {
  asio::io_context io;
  TcpConfig cfg;
  cfg.idle_timeout = 200ms;
  auto server = make_tcp_server(io, loopback(0), cfg);
  auto idle = open_idle(io, server->local_port(), 1);
  ASSERT_TRUE(run_until(io, [&] { return server->stats().connections_idle_closed >= 1; }, 10s));
  run_until(io, [&] { return false; }, 50ms);
  EXPECT_TRUE(closed_by_server(*idle[0]));
}

TEST(TcpLimits, PeerThatDoesNotReadIsDisconnected) {
  asio::io_context io;
  TcpConfig cfg;
  cfg.max_queued_bytes = 4u << 20;
  auto server = make_tcp_server(io, loopback(0), cfg);
  std::optional<PeerId> peer;
  server->on_message = [&](PeerId p, Bytes) { peer = p; };
  // A raw client that sends one record and then never reads.
  tcp::socket s(io);
  s.connect(loopback(server->local_port()));
  Bytes rec;
  append_record(rec, Bytes{9}, 1 << 20);
  asio::write(s, asio::buffer(rec));
  ASSERT_TRUE(run_until(io, [&] { return peer.has_value(); }));
  // Replies pile up (the socket buffers fill first); the queue bound ends the connection.
  Errc last = Errc::kOk;
  for (int i = 0; i < 64 && last == Errc::kOk; ++i) {
    last = server->send(*peer, Bytes(1u << 20, 0x55));
    io.poll();
  }
  EXPECT_EQ(last, Errc::kConnectionLost);
  EXPECT_GE(server->stats().send_queue_overflows, 1u);
}

TEST(TcpLimits, NoBusySpinWhenAcceptRunsOutOfDescriptors) {
  asio::io_context io;
  TcpConfig cfg;
  cfg.accept_backoff = 100ms;
  auto server = make_tcp_server(io, loopback(0), cfg);
  echo(*server);
  // Connections complete in the kernel's backlog (the server's io has not run yet), each with one
  // record already sent.
  auto waiting = open_idle(io, server->local_port(), 3);
  Bytes rec;
  append_record(rec, Bytes{7}, 1 << 20);
  for (auto& s : waiting) asio::write(*s, asio::buffer(rec));
  // Use up every descriptor below a lowered soft limit.
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  std::vector<int> fillers;
  int probe = ::dup(0);
  ASSERT_GE(probe, 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(probe + 8);
  ::close(probe);
  // No log lines while no descriptor is free: the sanitizer runtimes (UBSan's vptr check probes
  // memory through a pipe) need descriptors of their own and report false errors without them.
  const LogLevel level = log_level();
  set_log_level(LogLevel::kOff);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  for (;;) {
    int fd = ::dup(0);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  rusage before{}, after{};
  ::getrusage(RUSAGE_THREAD, &before);
  const auto t0 = std::chrono::steady_clock::now();
  io.run_for(1s);
  ::getrusage(RUSAGE_THREAD, &after);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto cpu = [](const rusage& r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  const double used = cpu(after) - cpu(before);
  for (int fd : fillers) ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  set_log_level(level);
  std::printf("at the fd limit for %.2f s: %.3f s CPU, %llu accept back-offs\n", wall, used,
              static_cast<unsigned long long>(server->stats().accept_backoffs));
  const auto backoffs = server->stats().accept_backoffs;
  EXPECT_GE(backoffs, 1u);
  EXPECT_LE(backoffs, 30u);  // ~10 per second at 100 ms, not thousands
  EXPECT_LT(used, 0.5 * wall);
  // Descriptors are back: the waiting connections are accepted and served.
  ASSERT_TRUE(run_until(io, [&] { return server->stats().messages_received >= 3; }));
}

}  // namespace
}  // namespace ipsan::proto
