// In-process link and virtual-time event loop.
#include "ipsan/netem/link.h"

#include <gtest/gtest.h>

#include "ipsan/netem/config.h"

namespace ipsan::netem {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST(Link, DeliversBothWaysWithPerDirectionDelay) {
  ImpairmentConfig ab, ba;
  ab.delay = milliseconds(10);
  ba.delay = milliseconds(30);
  VirtualClock clock;
  Link link(ab, ba, 7, clock.now());
  link.send_a_to_b(text("ping"), clock.now());
  link.send_b_to_a(text("pong"), clock.now());
  EXPECT_EQ(link.next_event(), clock.now() + milliseconds(10));
  EXPECT_FALSE(link.poll_b(clock.now()));
  clock.advance(milliseconds(10));
  EXPECT_EQ(link.poll_b(clock.now()), text("ping"));
  EXPECT_FALSE(link.poll_a(clock.now()));
  EXPECT_EQ(link.next_event(), clock.now() + milliseconds(20));
  clock.advance(milliseconds(20));
  EXPECT_EQ(link.poll_a(clock.now()), text("pong"));
  EXPECT_FALSE(link.next_event());
  EXPECT_EQ(link.a_to_b().counters().delivered, 1u);
  EXPECT_EQ(link.b_to_a().counters().delivered, 1u);
}

TEST(Link, DirectionsUseIndependentRandomStreams) {
  ImpairmentConfig c;
  c.loss = 0.5;
  VirtualClock clock;
  Link link(c, 99, clock.now());
  std::vector<bool> ab, ba;
  for (int i = 0; i < 200; ++i) {
    link.send_a_to_b(text("x"), clock.now());
    link.send_b_to_a(text("x"), clock.now());
    ab.push_back(link.poll_b(clock.now()).has_value());
    ba.push_back(link.poll_a(clock.now()).has_value());
  }
  EXPECT_NE(ab, ba);
}

// A toy stop-and-wait sender driven through a lossy link: the shape of how rudp tests will use
// the loop (engine with a next-timeout, datagrams in, datagrams out).
TEST(EventLoop, StopAndWaitCompletesOverLossyLinkInVirtualTime) {
  const std::uint64_t seed = 1234;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  ImpairmentConfig c = *parse_spec("delay=10ms loss=20%");
  VirtualClock clock;
  const TimePoint start = clock.now();
  Link link(c, seed, clock.now());
  EventLoop loop(clock, link);

  const std::uint32_t kMessages = 50;
  std::uint32_t next_to_send = 0;       // sender state
  std::optional<TimePoint> rto_at;      // sender's retransmission deadline
  std::uint32_t receiver_expected = 0;  // receiver state
  std::uint32_t retransmissions = 0;

  auto send_current = [&](TimePoint now) {
    Bytes b(4);
    store_be32(b.data(), next_to_send);
    link.send_a_to_b(b, now);
    rto_at = now + milliseconds(50);
  };
  loop.on_receive_b([&](Bytes d, TimePoint now) {
    const std::uint32_t seq = load_be32(d.data());
    if (seq == receiver_expected) ++receiver_expected;
    Bytes ack(4);
    store_be32(ack.data(), receiver_expected);
    link.send_b_to_a(ack, now);
  });
  loop.on_receive_a([&](Bytes d, TimePoint now) {
    const std::uint32_t acked = load_be32(d.data());
    if (acked > next_to_send) {
      next_to_send = acked;
      rto_at.reset();
      if (next_to_send < kMessages) send_current(now);
    }
  });
  loop.add_source([&] { return rto_at; },
                  [&](TimePoint now) {
                    ++retransmissions;
                    send_current(now);
                  });
  send_current(clock.now());
  const bool done = loop.run_until([&] { return next_to_send == kMessages; }, start + seconds(60));
  ASSERT_TRUE(done);
  EXPECT_EQ(receiver_expected, kMessages);
  EXPECT_GT(retransmissions, 0u);  // 20 % loss each way: some retransmissions are certain
  // Every attempt either succeeds (a 20 ms round trip) or times out (50 ms); the RTO exceeds the
  // RTT, so no stale acknowledgement arrives: the virtual time taken is exact.
  EXPECT_EQ(clock.now() - start, kMessages * milliseconds(20) + retransmissions * milliseconds(50));
}

TEST(EventLoop, DeadlinesFireInOrderAndCanBeCancelled) {
  VirtualClock clock;
  Link link(ImpairmentConfig{}, 1, clock.now());
  EventLoop loop(clock, link);
  const TimePoint t0 = clock.now();
  std::vector<int> fired;
  loop.add_deadline(t0 + milliseconds(30), [&](TimePoint) { fired.push_back(3); });
  loop.add_deadline(t0 + milliseconds(10), [&](TimePoint now) {
    fired.push_back(1);
    EXPECT_EQ(now, t0 + milliseconds(10));
    loop.add_deadline(now + milliseconds(5), [&](TimePoint) { fired.push_back(2); });
  });
  const auto cancelled =
      loop.add_deadline(t0 + milliseconds(20), [&](TimePoint) { fired.push_back(99); });
  loop.cancel(cancelled);
  EXPECT_EQ(loop.run_until(t0 + milliseconds(25)), 2u);
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
  EXPECT_EQ(clock.now(), t0 + milliseconds(15));  // never past the last event run
  EXPECT_EQ(loop.next_time(), t0 + milliseconds(30));
  EXPECT_TRUE(loop.step());
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(loop.step());
}

TEST(EventLoop, AdvancesToLinkDeliveries) {
  ImpairmentConfig c;
  c.delay = milliseconds(7);
  VirtualClock clock;
  const TimePoint t0 = clock.now();
  Link link(c, 1, clock.now());
  EventLoop loop(clock, link);
  std::vector<TimePoint> at_b;
  loop.on_receive_b([&](Bytes, TimePoint now) { at_b.push_back(now); });
  link.send_a_to_b(text("a"), t0);
  link.send_a_to_b(text("b"), t0 + milliseconds(1));
  EXPECT_EQ(loop.run_until(t0 + seconds(1)), 2u);
  EXPECT_EQ(at_b, (std::vector<TimePoint>{t0 + milliseconds(7), t0 + milliseconds(8)}));
}

TEST(EventLoop, StuckSourceStopsInsteadOfHanging) {
  VirtualClock clock;
  const TimePoint t0 = clock.now();
  Link link(ImpairmentConfig{}, 1, clock.now());
  EventLoop loop(clock, link);
  std::size_t fired = 0;
  loop.add_source([&] { return std::optional<TimePoint>(t0); }, [&](TimePoint) { ++fired; });
  EXPECT_FALSE(loop.run_until([] { return false; }, t0 + seconds(1)));
  EXPECT_EQ(fired, EventLoop::kMaxStepsWithoutProgress);
}

}  // namespace
}  // namespace ipsan::netem
