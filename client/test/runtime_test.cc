// client::Runtime against in-process servers on 127.0.0.1 (port 0): what a front end sees at
// start-up (no server, refused, wrong key), calls from another thread, netem in between, stop.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>

#include "ipsan/backends/ram.h"
#include "ipsan/client/runtime.h"
#include "ipsan/testing/server_thread.h"

namespace ipsan::client {
namespace {

using namespace std::chrono_literals;
using proto::TransportKind;

Key256 test_key() {
  Key256 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i * 3 + 1);
  return k;
}

std::unique_ptr<testing::ServerThread> start_server() {
  testing::ServerThreadOptions so;
  so.clients = {{"alice", test_key()}};
  auto s = std::make_unique<testing::ServerThread>(so, [](std::vector<server::Export>& ex) {
    auto ram = backends::RamBackend::create(4 << 20, backends::RamOptions{});
    if (!ram) return ram.error().message;
    ex.push_back(server::Export{0, "disk0", *ram, false, {}});
    return std::string();
  });
  return s;
}

RuntimeOptions options(TransportKind kind, std::uint16_t port) {
  RuntimeOptions o;
  o.transport.kind = kind;
  o.transport.host = "127.0.0.1";
  o.transport.port = port;
  o.client.client_name = "alice";
  o.client.key = test_key();
  o.client.request_timeout = 10s;
  o.client.login_timeout = 5s;
  o.connect_timeout = 10s;
  return o;
}

// A TCP port nobody listens on (bound, then closed).
std::uint16_t dead_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

void write_read_back(Runtime& rt, std::uint64_t lba, std::uint8_t fill) {
  proto::Request w;
  w.op = proto::Op::kWrite;
  w.lba = lba;
  w.blocks = 8;
  w.data.assign(8 * 512, fill);
  ASSERT_EQ(rt.call(std::move(w)).status, Errc::kOk);
  proto::Request r;
  r.op = proto::Op::kRead;
  r.lba = lba;
  r.blocks = 8;
  auto reply = rt.call(std::move(r));
  ASSERT_EQ(reply.status, Errc::kOk);
  ASSERT_EQ(reply.data.size(), 8u * 512);
  EXPECT_EQ(reply.data.front(), fill);
  EXPECT_EQ(reply.data.back(), fill);
}

class RuntimeBoth : public ::testing::TestWithParam<TransportKind> {};

TEST_P(RuntimeBoth, LogsInCallsFromAnyThreadAndStops) {
  auto server = start_server();
  ASSERT_EQ(server->error(), "");
  auto rt = Runtime::start(options(GetParam(), server->port(GetParam())));
  ASSERT_TRUE(rt) << rt.error().message;
  EXPECT_NE((*rt)->describe().find("127.0.0.1:"), std::string::npos);
  proto::Request id;
  id.op = proto::Op::kIdentify;
  auto ident = (*rt)->call(std::move(id));
  ASSERT_EQ(ident.status, Errc::kOk);
  EXPECT_EQ(ident.identity.block_count, (4u << 20) / 512);
  write_read_back(**rt, 16, 0x5A);
  EXPECT_EQ((*rt)->stats().logins, 1u);
  EXPECT_NE((*rt)->stats_line().find("requests="), std::string::npos);
  (*rt)->stop();
  (*rt)->stop();  // idempotent
  proto::Request after;
  after.op = proto::Op::kCapacity;
  EXPECT_EQ((*rt)->call(std::move(after)).status, Errc::kShutdown);
}

INSTANTIATE_TEST_SUITE_P(Transports, RuntimeBoth,
                         ::testing::Values(TransportKind::kUdp, TransportKind::kTcp),
                         [](const auto& p) {
                           return p.param == TransportKind::kUdp ? "udp" : "tcp";
                         });

TEST(Runtime, TcpWithNoServerIsRefusedAtOnce) {
  auto o = options(TransportKind::kTcp, dead_port());
  o.connect_timeout = 30s;
  const auto t0 = std::chrono::steady_clock::now();
  auto rt = Runtime::start(o);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(rt);
  EXPECT_EQ(rt.error().code, Errc::kConnectionLost);
  EXPECT_NE(rt.error().message.find("refused"), std::string::npos) << rt.error().message;
  EXPECT_NE(rt.error().message.find("over tcp"), std::string::npos) << rt.error().message;
  // Not the connect timeout (30 s): the refusal itself. A loaded machine may take a while.
  EXPECT_LT(took, 10s);
}

TEST(Runtime, UdpWithNoServerGivesUpAfterTheConnectTimeout) {
  // A UDP port nobody serves: bind one, keep it bound (so nothing else takes it) but never read.
  boost::asio::io_context io;
  boost::asio::ip::udp::socket quiet(
      io, boost::asio::ip::udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  auto o = options(TransportKind::kUdp, quiet.local_endpoint().port());
  o.connect_timeout = 300ms;
  auto rt = Runtime::start(o);
  ASSERT_FALSE(rt);
  EXPECT_EQ(rt.error().code, Errc::kTimeout);
  EXPECT_NE(rt.error().message.find("no server answered at 127.0.0.1:" +
                                    std::to_string(quiet.local_endpoint().port()) +
                                    " over udp within 300ms"),
            std::string::npos)
      << rt.error().message;
}

TEST(Runtime, WrongKeyIsNamed) {
  auto server = start_server();
  ASSERT_EQ(server->error(), "");
  for (auto kind : {TransportKind::kUdp, TransportKind::kTcp}) {
    auto o = options(kind, server->port(kind));
    o.client.key[5] ^= 1;
    auto rt = Runtime::start(o);
    ASSERT_FALSE(rt);
    EXPECT_EQ(rt.error().code, Errc::kAuthFailed);
    EXPECT_NE(rt.error().message.find("cannot log in"), std::string::npos) << rt.error().message;
  }
}

TEST(Runtime, ThroughNetem) {
  auto server = start_server();
  ASSERT_EQ(server->error(), "");
  auto o = options(TransportKind::kUdp, server->udp_port());
  o.netem = "lossy-1pct";
  o.netem_seed = 42;
  std::printf("netem seed %llu\n", static_cast<unsigned long long>(o.netem_seed));
  auto rt = Runtime::start(o);
  ASSERT_TRUE(rt) << rt.error().message;
  for (std::uint64_t i = 0; i < 20; ++i) write_read_back(**rt, i * 8, static_cast<std::uint8_t>(i));
  EXPECT_NE((*rt)->stats_line().find("netem_up_dropped="), std::string::npos);
}

TEST(Runtime, BadNetemIsAClearError) {
  auto o = options(TransportKind::kTcp, 5260);
  o.netem = "lossy-1pct";
  auto rt = Runtime::start(o);
  ASSERT_FALSE(rt);
  EXPECT_NE(rt.error().message.find("--netem needs --transport udp"), std::string::npos);
  o.transport.kind = TransportKind::kUdp;
  o.netem = "no-such-profile";
  rt = Runtime::start(o);
  ASSERT_FALSE(rt);
  EXPECT_EQ(rt.error().code, Errc::kInvalidArgument);
}

}  // namespace
}  // namespace ipsan::client
