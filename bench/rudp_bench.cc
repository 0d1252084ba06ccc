// Micro-benchmarks of the reliable-UDP engine, sans I/O: a client rudp::Connection and a server
// rudp::Listener exchange datagrams back to back in memory under a virtual clock (no loss), so
// the figures are the engine's own CPU cost: per datagram (items/s = datagrams/s, both directions,
// ACKs included) and per message of 4 KiB (a 4 KiB WRITE call) and 1 MiB.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "ipsan/base/clock.h"
#include "ipsan/proto/rudp/connection.h"
#include "ipsan/proto/rudp/listener.h"

namespace {

using ipsan::Bytes;
using ipsan::ByteSpan;
using ipsan::VirtualClock;
namespace rudp = ipsan::proto::rudp;
using namespace std::chrono_literals;

class Pair {
 public:
  explicit Pair(const rudp::Config& cfg)
      : cfg_(cfg),
        client_(rudp::Connection::make_client(0x1234, cfg, clock_.now())),
        listener_(7, cfg),
        buf_(cfg.max_datagram),
        reset_(rudp::kRetrySize) {}

  rudp::Connection& client() { return client_; }
  rudp::Listener& listener() { return listener_; }
  std::uint64_t datagrams() const { return datagrams_; }

  // Moves datagrams both ways until `done()` or nothing can move even after the timers ran.
  // Each exchange round costs 1 us of virtual time (a loopback RTT is ~10-50 us; 1 us keeps the
  // pacer and the RTT estimate realistic without long virtual waits).
  template <class Done>
  bool pump(Done done) {
    for (int idle = 0; idle < 1000;) {
      if (done()) return true;
      bool moved = false;
      while (std::size_t n = client_.poll_transmit(buf_, clock_.now())) {
        const auto r = listener_.on_datagram(ByteSpan(buf_.data(), n), clock_.now(), reset_);
        if (r.reset_size) client_.on_datagram(ByteSpan(reset_.data(), r.reset_size), clock_.now());
        if (r.conn_id) {  // as a login would: large messages allowed
          listener_.protect(*r.conn_id, ipsan::Key256{}, rudp::Protection::kOff, clock_.now());
        }
        ++datagrams_;
        moved = true;
      }
      while (auto t = listener_.poll_transmit(buf_, clock_.now())) {
        client_.on_datagram(ByteSpan(buf_.data(), t->second), clock_.now());
        ++datagrams_;
        moved = true;
      }
      clock_.advance(1us);
      if (moved) {
        idle = 0;
        continue;
      }
      ++idle;
      auto a = client_.next_deadline();
      auto b = listener_.next_deadline();
      auto next = a && b ? std::min(*a, *b) : a ? *a : b ? *b : clock_.now();
      clock_.advance_to(next);
      if (a && clock_.now() >= *a) client_.on_timer(clock_.now());
      if (b && clock_.now() >= *b) listener_.on_timer(clock_.now());
    }
    return done();
  }

  bool handshake() {
    return pump([&] { return client_.state() == rudp::State::kEstablished; });
  }
  VirtualClock& clock() { return clock_; }

 private:
  rudp::Config cfg_;
  VirtualClock clock_;
  rudp::Connection client_;
  rudp::Listener listener_;
  Bytes buf_;
  Bytes reset_;
  std::uint64_t datagrams_ = 0;
};

// One message client -> server per iteration; `state.range(0)` bytes.
void BM_RudpMessage(benchmark::State& state) {
  rudp::Config cfg;
  Pair p(cfg);
  if (!p.handshake()) {
    state.SkipWithError("handshake failed");
    return;
  }
  const Bytes msg(static_cast<std::size_t>(state.range(0)), 0xab);
  const std::uint64_t dg0 = p.datagrams();
  for (auto _ : state) {
    if (p.client().send(msg, p.clock().now()) != ipsan::Errc::kOk) {
      state.SkipWithError("send failed");
      break;
    }
    std::optional<std::pair<std::uint64_t, Bytes>> got;
    if (!p.pump([&] { return (got = p.listener().poll_message()).has_value(); })) {
      state.SkipWithError("message not delivered");
      break;
    }
    benchmark::DoNotOptimize(got->second.data());
  }
  const auto dgrams = p.datagrams() - dg0;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  state.counters["datagrams/msg"] =
      benchmark::Counter(static_cast<double>(dgrams) / static_cast<double>(state.iterations()));
  state.counters["s/datagram"] = benchmark::Counter(
      static_cast<double>(dgrams), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_RudpMessage)->Arg(100)->Arg(4096 + 120)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);

// Many 4 KiB messages in flight at once (QD32-like): 32 sends, then pump until all arrive.
void BM_RudpBurst32x4K(benchmark::State& state) {
  rudp::Config cfg;
  Pair p(cfg);
  if (!p.handshake()) {
    state.SkipWithError("handshake failed");
    return;
  }
  const Bytes msg(4096 + 120, 0xcd);
  const std::uint64_t dg0 = p.datagrams();
  for (auto _ : state) {
    for (int i = 0; i < 32; ++i) (void)p.client().send(msg, p.clock().now());
    int got = 0;
    if (!p.pump([&] {
          while (p.listener().poll_message()) ++got;
          return got == 32;
        })) {
      state.SkipWithError("messages not delivered");
      break;
    }
  }
  const auto dgrams = p.datagrams() - dg0;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 32);
  state.counters["s/datagram"] = benchmark::Counter(
      static_cast<double>(dgrams), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_RudpBurst32x4K)->Unit(benchmark::kMicrosecond);

}  // namespace
