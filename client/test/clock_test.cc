// SanClient on an injected clock (ClientOptions::clock): the login deadline and the request
// deadline are measured on it, not on the wall clock, so expiry is tested exactly. Real time
// passes too (the io_context's tick timer fires every tick_interval), but with the virtual clock
// stopped nothing may expire, however long the test runs; advancing it expires at once.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "ipsan/backends/fault.h"
#include "ipsan/backends/ram.h"
#include "ipsan/client/runtime.h"
#include "ipsan/client/san_client.h"
#include "ipsan/testing/server_thread.h"

namespace ipsan::client {
namespace {

using namespace std::chrono_literals;

// A clock the test thread advances while the client's io thread reads it.
struct SharedClock {
  std::atomic<std::int64_t> ns{1'000'000'000'000};
  TimePoint now() const { return TimePoint(Duration(ns.load())); }
  void advance(Duration d) { ns += d.count(); }
  std::function<TimePoint()> fn() {
    return [this] { return now(); };
  }
};

// A transport that accepts everything and never answers (a server that is not there).
class SilentTransport final : public proto::ClientTransport {
 public:
  Errc send(Bytes) override {
    ++sent;
    return Errc::kOk;
  }
  void close() override { open = false; }
  bool is_open() const override { return open; }
  std::uint32_t peer_epoch() const override { return 0; }
  proto::TransportStats stats() const override { return {}; }
  std::string describe() const override { return "silent"; }
  int sent = 0;
  bool open = true;
};

// Runs `io` in real-time slices until `cond` holds or `limit` passed; true if it holds.
template <class Cond>
bool run_until(boost::asio::io_context& io, Cond cond, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    io.run_for(5ms);
    io.restart();
  }
  return true;
}

TEST(SanClientClock, LoginDeadlineFollowsTheInjectedClock) {
  boost::asio::io_context io;
  SharedClock clock;
  int transports = 0;
  ClientOptions o;
  o.clock = clock.fn();
  o.tick_interval = 2ms;
  o.login_timeout = 50ms;
  o.request_timeout = 100ms;
  o.reconnect_min = 1ms;
  o.reconnect_max = 1ms;
  SanClient c(io, [&] {
    ++transports;
    return std::make_unique<SilentTransport>();
  }, o);
  std::optional<Errc> result;
  c.connect([&](Errc e) { result = e; });
  // 300 ms of real time, six login timeouts' worth: with the clock stopped, nothing expires.
  io.run_for(300ms);
  io.restart();
  EXPECT_EQ(transports, 1);
  EXPECT_FALSE(result.has_value());
  // Past the login deadline: the login is given up and tried again on a new transport.
  clock.advance(51ms);
  ASSERT_TRUE(run_until(io, [&] { return transports >= 2; }));
  EXPECT_FALSE(result.has_value());
  // A connect() waiter is told after the login deadline plus the request timeout.
  clock.advance(200ms);
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, Errc::kTimeout);
  c.close();
}

TEST(SanClientClock, RequestDeadlineFollowsTheInjectedClock) {
  // A server whose back end holds every completion: the write is received but not answered.
  auto fault = std::make_shared<backends::FaultInjectingBackend>(
      *backends::RamBackend::create(1 << 20, backends::RamOptions{}));
  fault->set_hold(true);
  Key256 key{};
  key[0] = 7;
  testing::ServerThreadOptions so;
  so.clients = {{"alice", key}};
  so.udp = false;
  testing::ServerThread server(so, [&](std::vector<server::Export>& ex) {
    ex.push_back(server::Export{0, "disk0", fault, false, {}});
    return std::string();
  });
  ASSERT_EQ(server.error(), "");

  SharedClock clock;
  RuntimeOptions ro;
  ro.transport.kind = proto::TransportKind::kTcp;
  ro.transport.port = server.tcp_port();
  ro.client.client_name = "alice";
  ro.client.key = key;
  ro.client.clock = clock.fn();
  ro.client.tick_interval = 2ms;
  ro.client.request_timeout = 100ms;
  ro.client.fence_timeout = 10s;
  auto rt = Runtime::start(ro);
  ASSERT_TRUE(rt) << rt.error().message;

  std::promise<proto::Reply> reply;
  auto got = reply.get_future();
  proto::Request w;
  w.op = proto::Op::kWrite;
  w.lba = 0;
  w.blocks = 1;
  w.data.assign(512, 0xAB);
  (*rt)->execute(std::move(w), [&](proto::Reply r) { reply.set_value(std::move(r)); });
  // Three request timeouts of real time: with the clock stopped, no fence and no reply.
  EXPECT_EQ(got.wait_for(300ms), std::future_status::timeout);
  EXPECT_EQ((*rt)->stats().fences, 0u);
  EXPECT_EQ(fault->held(), 1u);
  // Past the deadline: the client fences the slot before it may report the timeout.
  clock.advance(101ms);
  const auto end = std::chrono::steady_clock::now() + 10s;
  while ((*rt)->stats().fences == 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(2ms);  // polling a condition, bounded
  }
  EXPECT_EQ((*rt)->stats().fences, 1u);
  EXPECT_EQ(got.wait_for(50ms), std::future_status::timeout);  // not before the fence's answer
  // The back end finishes the write; the server then answers the fence: kTimeout is reported
  // (the write ran, but its reply was abandoned; it can never run again).
  fault->set_hold(false);
  fault->release_all();
  // A fence the server could not answer while the write ran is asked again after fence_retry
  // (500 ms), on the same clock.
  clock.advance(600ms);
  ASSERT_EQ(got.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(got.get().status, Errc::kTimeout);
  EXPECT_EQ((*rt)->stats().timeouts, 1u);
  (*rt)->stop();
}

}  // namespace
}  // namespace ipsan::client
