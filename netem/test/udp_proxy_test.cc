// UdpProxy in-process on 127.0.0.1 port 0, against an echo server on the same io_context.
#include "ipsan/netem/udp_proxy.h"

#include <gtest/gtest.h>
#include "ipsan/base/log.h"

#include <filesystem>
#include <set>

#include <unistd.h>

#include "ipsan/netem/config.h"
#include "ipsan/netem/pcap.h"

namespace ipsan::netem {
namespace {

namespace asio = boost::asio;
using asio::ip::udp;
using std::chrono::milliseconds;

const udp::endpoint kLoopback0(asio::ip::make_address("127.0.0.1"), 0);

// Echoes every datagram back to its sender.
class EchoServer {
 public:
  explicit EchoServer(asio::io_context& io) : socket_(io, kLoopback0), buf_(65536) { receive(); }
  udp::endpoint endpoint() const { return socket_.local_endpoint(); }
  std::size_t echoed() const { return echoed_; }

 private:
  void receive() {
    socket_.async_receive_from(asio::buffer(buf_), from_,
                               [this](const boost::system::error_code& ec, std::size_t n) {
                                 if (ec) return;
                                 socket_.send_to(asio::buffer(buf_.data(), n), from_);
                                 ++echoed_;
                                 receive();
                               });
  }
  udp::socket socket_;
  Bytes buf_;
  udp::endpoint from_;
  std::size_t echoed_ = 0;
};

// Options of a proxy on 127.0.0.1 (any port) in front of `server`.
UdpProxyOptions proxy_to(const EchoServer& server) {
  UdpProxyOptions opt;
  opt.listen = kLoopback0;
  opt.forward = server.endpoint();
  return opt;
}

// A client socket collecting replies.
class Client {
 public:
  explicit Client(asio::io_context& io) : socket_(io, kLoopback0), buf_(65536) { receive(); }
  void send(const udp::endpoint& to, const Bytes& data) { socket_.send_to(asio::buffer(data), to); }
  udp::endpoint endpoint() const { return socket_.local_endpoint(); }
  const std::vector<Bytes>& replies() const { return replies_; }
  std::vector<TimePoint> reply_times;

 private:
  void receive() {
    socket_.async_receive(
        asio::buffer(buf_), [this](const boost::system::error_code& ec, std::size_t n) {
          if (ec) return;
          replies_.emplace_back(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
          reply_times.push_back(steady_now());
          receive();
        });
  }
  udp::socket socket_;
  Bytes buf_;
  std::vector<Bytes> replies_;
};

// Runs the io_context until `done` holds; bounded at 10 s so a bug fails instead of hanging.
bool run_until(asio::io_context& io, const std::function<bool()>& done) {
  const TimePoint deadline = steady_now() + std::chrono::seconds(10);
  while (!done() && steady_now() < deadline) {
    io.restart();
    io.run_one_for(milliseconds(20));
  }
  return done();
}

Bytes message(std::uint32_t client, std::uint32_t seq, std::size_t size = 64) {
  Bytes b(size, 0x5A);
  store_be32(b.data(), client);
  store_be32(b.data() + 4, seq);
  return b;
}

TEST(UdpProxy, ForwardsBothWaysWithLoss) {
  asio::io_context io;
  EchoServer server(io);
  UdpProxyOptions opt = proxy_to(server);
  opt.up.loss = 0.2;
  opt.down.loss = 0.1;
  opt.seed = 2024;
  std::printf("seed %llu\n", static_cast<unsigned long long>(opt.seed));
  auto proxy = UdpProxy::create(io, opt);
  ASSERT_TRUE(proxy) << proxy.error().message;
  const udp::endpoint at = (*proxy)->local_endpoint();
  ASSERT_NE(at.port(), 0);
  EXPECT_TRUE(at.address().is_loopback());

  Client client(io);
  constexpr std::uint32_t kCount = 500;
  std::set<Bytes> sent;
  auto& p = **proxy;
  // Batches of 50 keep well inside the sockets' receive buffers (the kernel would drop bursts).
  for (std::uint32_t i = 0; i < kCount; ++i) {
    sent.insert(message(0, i));
    client.send(at, message(0, i));
    if (i % 50 == 49) {
      ASSERT_TRUE(run_until(io, [&] { return p.up_counters().entered == i + 1; }));
    }
  }
  ASSERT_TRUE(run_until(io,
                        [&] {
                          const auto up = p.up_counters();
                          const auto down = p.down_counters();
                          return up.entered == kCount && server.echoed() == up.delivered &&
                                 down.entered == up.delivered &&
                                 client.replies().size() == down.delivered;
                        }))
      << "up: " << p.up_counters().entered << " in, " << p.up_counters().delivered
      << " out; echoed " << server.echoed() << "; down: " << p.down_counters().entered << " in, "
      << p.down_counters().delivered << " out; replies " << client.replies().size();
  const auto up = p.up_counters();
  const auto down = p.down_counters();
  EXPECT_EQ(up.dropped_random + up.delivered, kCount);
  EXPECT_EQ(down.dropped_random + down.delivered, down.entered);
  EXPECT_GT(up.dropped_random, 60u);  // ~100 expected
  EXPECT_LT(up.dropped_random, 140u);
  EXPECT_GT(down.dropped_random, 15u);  // ~40 expected
  EXPECT_LT(down.dropped_random, 70u);
  for (const auto& r : client.replies()) EXPECT_TRUE(sent.count(r)) << "unexpected reply";
  EXPECT_EQ(p.clients(), 1u);
}

// Datagrams the kernel drops because the proxy fell behind are counted apart from impairments:
// with the proxy not running (its io_context idle) and a small receive buffer, a burst overflows
// the listen socket. Once it runs, what was queued is forwarded; socket_drops() stays.
TEST(UdpProxy, CountsItsOwnSocketDrops) {
  asio::io_context io;
  EchoServer server(io);
  UdpProxyOptions opt = proxy_to(server);
  opt.socket_buffer_bytes = 16384;
  auto proxy = UdpProxy::create(io, opt);
  ASSERT_TRUE(proxy) << proxy.error().message;
  auto& p = **proxy;
  EXPECT_EQ(p.socket_drops(), 0u);
  Client client(io);
  for (std::uint32_t i = 0; i < 200; ++i) client.send(p.local_endpoint(), message(0, i, 1000));
  const std::uint64_t drops = p.socket_drops();
  EXPECT_GT(drops, 0u);
  ASSERT_TRUE(run_until(io, [&] { return p.up_counters().entered + drops == 200; }));
  EXPECT_EQ(p.up_counters().dropped_random, 0u);  // not an impairment
  p.stop();
  EXPECT_EQ(p.socket_drops(), drops);  // kept after the sockets close
}

TEST(UdpProxy, ManyClientsGetTheirOwnReplies) {
  asio::io_context io;
  EchoServer server(io);
  UdpProxyOptions opt = proxy_to(server);
  opt.seed = 1;
  auto proxy = UdpProxy::create(io, opt);
  ASSERT_TRUE(proxy) << proxy.error().message;
  std::vector<std::unique_ptr<Client>> clients;
  constexpr std::uint32_t kClients = 8, kEach = 20;
  for (std::uint32_t c = 0; c < kClients; ++c) clients.push_back(std::make_unique<Client>(io));
  for (std::uint32_t i = 0; i < kEach; ++i) {
    for (std::uint32_t c = 0; c < kClients; ++c) {
      clients[c]->send((*proxy)->local_endpoint(), message(c, i));
    }
    ASSERT_TRUE(
        run_until(io, [&] { return (*proxy)->up_counters().entered == (i + 1) * kClients; }));
  }
  ASSERT_TRUE(run_until(io, [&] {
    for (const auto& c : clients) {
      if (c->replies().size() < kEach) return false;
    }
    return true;
  }));
  for (std::uint32_t c = 0; c < kClients; ++c) {
    ASSERT_EQ(clients[c]->replies().size(), kEach);
    for (const auto& r : clients[c]->replies()) EXPECT_EQ(load_be32(r.data()), c);
  }
  EXPECT_EQ((*proxy)->clients(), kClients);
  EXPECT_EQ((*proxy)->up_counters().delivered, kClients * kEach);
}

TEST(UdpProxy, DelaysEachDirection) {
  asio::io_context io;
  EchoServer server(io);
  UdpProxyOptions opt = proxy_to(server);
  opt.up.delay = milliseconds(15);
  opt.down.delay = milliseconds(25);
  auto proxy = UdpProxy::create(io, opt);
  ASSERT_TRUE(proxy);
  Client client(io);
  const TimePoint sent = steady_now();
  client.send((*proxy)->local_endpoint(), message(0, 0));
  ASSERT_TRUE(run_until(io, [&] { return client.replies().size() == 1; }));
  EXPECT_GE(client.reply_times[0] - sent, milliseconds(40));
}

// A harness changes a running proxy's link: partition it, then heal it; the client's mapping
// survives and datagrams flow again.
TEST(UdpProxy, SetImpairmentPartitionsAndHealsMidRun) {
  asio::io_context io;
  EchoServer server(io);
  auto proxy = UdpProxy::create(io, proxy_to(server));
  ASSERT_TRUE(proxy);
  auto& p = **proxy;
  Client client(io);
  client.send(p.local_endpoint(), message(0, 0));
  ASSERT_TRUE(run_until(io, [&] { return client.replies().size() == 1; }));
  ImpairmentConfig down;
  down.partitions.push_back({Duration::zero(), std::chrono::hours(1), {}});
  p.set_impairment(down, down);
  for (std::uint32_t i = 1; i <= 5; ++i) client.send(p.local_endpoint(), message(0, i));
  ASSERT_TRUE(run_until(io, [&] { return p.up_counters().entered == 6; }));
  EXPECT_EQ(p.up_counters().dropped_partition, 5u);
  EXPECT_EQ(server.echoed(), 1u);
  p.set_impairment({}, {});
  client.send(p.local_endpoint(), message(0, 6));
  ASSERT_TRUE(run_until(io, [&] { return client.replies().size() == 2; }));
  EXPECT_EQ(load_be32(client.replies()[1].data() + 4), 6u);
  EXPECT_EQ(p.clients(), 1u);
}

TEST(UdpProxy, CapturesRealAddresses) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("ipsan_netem_proxy_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "p.pcap").string();
  asio::io_context io;
  EchoServer server(io);
  Client client(io);
  {
    UdpProxyOptions opt = proxy_to(server);
    opt.capture_path = path;
    auto proxy = UdpProxy::create(io, opt);
    ASSERT_TRUE(proxy) << proxy.error().message;
    for (std::uint32_t i = 0; i < 3; ++i) client.send((*proxy)->local_endpoint(), message(9, i));
    ASSERT_TRUE(run_until(io, [&] { return client.replies().size() == 3; }));
    (*proxy)->stop();
  }
  auto out = read_pcap(path);
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_EQ(out->size(), 6u);  // 3 up, 3 down
  std::size_t up = 0, down = 0;
  for (const auto& r : *out) {
    if (r.dst.port == server.endpoint().port()) {
      ++up;
      EXPECT_EQ(r.src.to_string(), str_cat("127.0.0.1:", client.endpoint().port()));
    } else {
      ++down;
      EXPECT_EQ(r.src.port, server.endpoint().port());
    }
  }
  EXPECT_EQ(up, 3u);
  EXPECT_EQ(down, 3u);
  auto in = read_pcap(Capture::in_path(path));
  ASSERT_TRUE(in);
  EXPECT_EQ(in->size(), 6u);
  std::filesystem::remove_all(dir);
}

TEST(UdpProxy, CreateReportsBindErrorsAndBadConfig) {
  asio::io_context io;
  EchoServer server(io);
  UdpProxyOptions opt;
  opt.listen = server.endpoint();  // already bound
  opt.forward = server.endpoint();
  auto r = UdpProxy::create(io, opt);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("cannot listen"), std::string::npos) << r.error().message;
  opt.listen = kLoopback0;
  opt.up.loss = 2.0;
  r = UdpProxy::create(io, opt);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("loss"), std::string::npos);
}

TEST(UdpProxy, ParseEndpoint) {
  EXPECT_EQ(*parse_endpoint("127.0.0.1:5000"),
            udp::endpoint(asio::ip::make_address("127.0.0.1"), 5000));
  EXPECT_EQ(*parse_endpoint("localhost:7"), udp::endpoint(asio::ip::make_address("127.0.0.1"), 7));
  EXPECT_EQ(parse_endpoint("[::1]:9")->address(), asio::ip::make_address("::1"));
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000", "::1:9",
                          "host.example:9", "[::1:9"}) {
    EXPECT_FALSE(parse_endpoint(bad)) << bad;
  }
}

}  // namespace
}  // namespace ipsan::netem
