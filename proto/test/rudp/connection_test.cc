// rudp engine tests over the in-memory lossy link (link.h) with a virtual clock.
#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "link.h"

namespace ipsan::proto::rudp::test {
namespace {

Config test_config() {
  Config c;
  c.idle_timeout = 5s;
  return c;
}

TEST(RudpConnection, Handshake) {
  Link link(1, test_config(), test_config(), /*epoch=*/42);
  std::vector<std::size_t> hello_sizes;
  link.tap = [&](Dir d, ByteSpan b, TimePoint) {
    if (d == Dir::kToServer && b.size() > 1 && b[1] == static_cast<std::uint8_t>(PacketType::kHello)) {
      hello_sizes.push_back(b.size());
    }
  };
  EXPECT_EQ(link.client().state(), State::kHandshake);
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kEstablished; }, 1s));
  EXPECT_EQ(link.client().peer_epoch(), 42u);
  EXPECT_EQ(link.server().connection_count(), 1u);
  EXPECT_GT(link.client().stats().srtt_us, 0.0);
  // HELLO is padded to a full datagram (path MTU check at connect time); the first one gets a
  // RETRY cookie, the second echoes it (docs/RUDP.md "Denial of service").
  EXPECT_EQ(hello_sizes, std::vector<std::size_t>(2, test_config().max_datagram));
  EXPECT_EQ(link.server().stats().retries_sent, 1u);
}

TEST(RudpConnection, MessagesBeforeHandshakeAreQueued) {
  Link link(2, test_config(), test_config());
  ASSERT_EQ(link.client().send(make_message(1, 100), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 1; }, 1s));
  EXPECT_EQ(link.server_received()[0].second, make_message(1, 100));
  EXPECT_EQ(link.server_received()[0].first, link.client().id());
}

TEST(RudpConnection, RequestReplyAndEmptyMessage) {
  Link link(3, test_config(), test_config());
  ASSERT_EQ(link.client().send(make_message(1, 200), link.clock().now()), Errc::kOk);
  ASSERT_EQ(link.client().send(Bytes{}, link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 2; }, 1s));
  ASSERT_NE(link.server_conn(), nullptr);
  ASSERT_EQ(link.server_conn()->send(make_message(2, 300), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.client_received().size() == 1; }, 1s));
  EXPECT_EQ(link.client_received()[0], make_message(2, 300));
  std::multiset<std::size_t> sizes;
  for (auto& [id, m] : link.server_received()) sizes.insert(m.size());
  EXPECT_EQ(sizes, (std::multiset<std::size_t>{0, 200}));
}

TEST(RudpConnection, TooLargeRejected) {
  Config c = test_config();
  c.max_message_bytes = 1000;
  Link link(4, c, c);
  EXPECT_EQ(link.client().send(Bytes(1001), link.clock().now()), Errc::kTooLarge);
  EXPECT_EQ(link.client().send(Bytes(1000), link.clock().now()), Errc::kOk);
}

TEST(RudpConnection, FourMiBMessage) {
  Link link(5, test_config(), test_config());
  const Bytes big = make_message(9, 4 * 1024 * 1024);
  ASSERT_EQ(link.client().send(big, link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 1; }, 10s));
  EXPECT_TRUE(link.server_received()[0].second == big);
  // Never a datagram above max_datagram.
  EXPECT_LE(link.client().stats().bytes_sent,
            link.client().stats().packets_sent * test_config().max_datagram);
}

TEST(RudpConnection, DatagramsNeverExceedMaxDatagram) {
  Config c = test_config();
  c.max_datagram = 600;
  Link link(6, c, c);
  std::size_t biggest = 0;
  link.tap = [&](Dir, ByteSpan d, TimePoint) { biggest = std::max(biggest, d.size()); };
  ASSERT_EQ(link.client().send(make_message(1, 100000), link.clock().now()), Errc::kOk);
  ASSERT_TRUE(link.run_until([&] { return link.server_received().size() == 1; }, 5s));
  EXPECT_EQ(biggest, 600u);
  EXPECT_EQ(link.server_received()[0].second, make_message(1, 100000));
}

// Every message delivered exactly once and intact, both directions, under impairments.
void run_exchange(std::uint64_t seed, const Impairment& im, std::size_t count, std::size_t max_len,
                  Duration limit = 60s, const Config& cfg = test_config()) {
  Link link(seed, cfg, cfg);
  link.to_server = im;
  link.to_client = im;
  Rng rng(seed ^ 0x55);
  std::map<std::uint64_t, std::size_t> expect_server;
  std::map<std::uint64_t, std::size_t> expect_client;
  for (std::size_t i = 1; i <= count; ++i) {
    const std::size_t len = 8 + rng.below(max_len);
    expect_server[i] = len;
    ASSERT_EQ(link.client().send(make_message(i, len), link.clock().now()), Errc::kOk);
  }
  ASSERT_TRUE(link.run_until([&] { return link.client().state() == State::kEstablished; }, 10s))
      << "seed " << seed;
  ASSERT_TRUE(link.run_until([&] { return link.server_conn() != nullptr; }, 10s));
  for (std::size_t i = 1; i <= count; ++i) {
    const std::size_t len = 8 + rng.below(max_len);
    expect_client[1000000 + i] = len;
    ASSERT_EQ(link.server_conn()->send(make_message(1000000 + i, len), link.clock().now()),
              Errc::kOk);
  }
  ASSERT_TRUE(link.run_until(
      [&] {
        return link.server_received().size() >= count && link.client_received().size() >= count;
      },
      limit))
      << "seed " << seed << " server got " << link.server_received().size() << " client got "
      << link.client_received().size();
  link.run_for(50ms);  // any late duplicate would show up here
  ASSERT_EQ(link.server_received().size(), count) << "seed " << seed;
  ASSERT_EQ(link.client_received().size(), count) << "seed " << seed;
  for (auto& [id, m] : link.server_received()) {
    const std::uint64_t tag = message_tag(m);
    ASSERT_TRUE(expect_server.count(tag)) << "seed " << seed << " unexpected or duplicate " << tag;
    EXPECT_EQ(m, make_message(tag, expect_server[tag])) << "seed " << seed;
    expect_server.erase(tag);
  }
  for (auto& m : link.client_received()) {
    const std::uint64_t tag = message_tag(m);
    ASSERT_TRUE(expect_client.count(tag)) << "seed " << seed << " unexpected or duplicate " << tag;
    EXPECT_EQ(m, make_message(tag, expect_client[tag])) << "seed " << seed;
    expect_client.erase(tag);
  }
  EXPECT_EQ(link.client().state(), State::kEstablished);
  if (im.loss > 0 || im.burst_start > 0) {
    EXPECT_GT(link.client().stats().fragments_retransmitted +
                  link.server_conn()->stats().fragments_retransmitted,
              0u);
  }
  if (im.corrupt > 0) {
    EXPECT_GT(link.client().stats().dropped_bad_crc + link.server_conn()->stats().dropped_bad_crc +
                  link.server().stats().dropped_bad_crc,
              0u);
  }
}

TEST(RudpConnection, ManyMessagesInFlight) { run_exchange(10, Impairment{}, 300, 20000); }

class RudpLoss : public ::testing::TestWithParam<double> {};

TEST_P(RudpLoss, RandomLossExactlyOnce) {
  Impairment im;
  im.loss = GetParam();
  run_exchange(100 + static_cast<std::uint64_t>(GetParam() * 1000), im, 60, 30000);
}

INSTANTIATE_TEST_SUITE_P(Loss, RudpLoss, ::testing::Values(0.01, 0.05, 0.20));

TEST(RudpConnection, BurstLoss) {
  Impairment im;
  im.burst_start = 0.01;
  im.burst_length = 20;
  run_exchange(20, im, 60, 30000);
}

TEST(RudpConnection, DuplicationReorderCorruption) {
  Impairment im;
  im.duplicate = 0.1;
  im.reorder = 0.1;
  im.corrupt = 0.05;
  im.jitter = 50us;
  run_exchange(21, im, 60, 30000);
}

TEST(RudpConnection, EverythingAtOnce) {
  Impairment im;
  im.loss = 0.05;
  im.duplicate = 0.05;
  im.reorder = 0.05;
  im.corrupt = 0.02;
  im.burst_start = 0.002;
  im.burst_length = 10;
  for (std::uint64_t seed = 30; seed < 33; ++seed) run_exchange(seed, im, 30, 20000);
}

// Random impairments and random configurations (small datagrams, small windows, few messages in
// flight, pacing off); the seed of each case is printed by the link.
TEST(RudpConnection, RandomizedSoak) {
  for (std::uint64_t seed = 1000; seed < 1004; ++seed) {
    Rng r(seed * 7919);
    Impairment im;
    im.loss = r.uniform() * 0.2;
    im.duplicate = r.uniform() * 0.1;
    im.reorder = r.uniform() * 0.2;
    im.corrupt = r.uniform() * 0.05;
    im.jitter = Duration(r.below(200000));
    if (r.chance(0.5)) {
      im.burst_start = 0.005;
      im.burst_length = 1 + static_cast<int>(r.below(10));
    }
    Config cfg = test_config();
    cfg.max_datagram = 256 + r.below(1200);
    cfg.recv_window_bytes = 1 << 20;
    cfg.max_message_bytes = 1 << 20;
    cfg.max_messages_in_flight = 1 + static_cast<std::uint32_t>(r.below(8));
    cfg.pacing = r.chance(0.5);
    std::printf("soak seed=%llu datagram=%zu in_flight=%u pacing=%d\n",
                static_cast<unsigned long long>(seed), cfg.max_datagram, cfg.max_messages_in_flight,
                cfg.pacing);
    run_exchange(seed, im, 20, 60000, 120s, cfg);
  }
}

}  // namespace
}  // namespace ipsan::proto::rudp::test
