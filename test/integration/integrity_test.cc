// Data integrity under attack (issue 15): a WRITE the client reported as timed out never lands
// after a newer acknowledged WRITE, even when a delayed copy of it is delivered later (held back on
// the path, then released on a new connection of the same session); a captured READ re-sent many
// times is re-executed at most once. Real server, real client, UDP and TCP.
#include <gtest/gtest.h>

#include <functional>
#include <optional>

#include "ipsan/proto/codec.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/testing/tap_transport.h"
#include "test_server.h"

namespace ipsan::testing {
namespace {

using proto::Op;
using proto::TransportKind;

// The man-in-the-middle on the client's side (ipsan/testing/tap_transport.h): calls matching
// `hold` are kept back; the test re-sends them later as new messages on the current connection.
class Integrity : public ::testing::TestWithParam<TransportKind> {
 protected:
  void SetUp() override { disk_ = *backends::RamBackend::create(1 << 20, backends::RamOptions{}); }

  std::unique_ptr<client::SanClient> make_client(boost::asio::io_context& io, TestServer& s,
                                                 client::ClientOptions o) {
    auto inner = factory(io, GetParam(), s.port(GetParam()));
    o.client_name = "alice";
    o.key = test_key();
    auto st = state_;
    auto* cur = &current_;
    return std::make_unique<client::SanClient>(
        io,
        [inner, st, cur]() -> std::unique_ptr<proto::ClientTransport> {
          auto t = std::make_unique<TapTransport>(inner(), st);
          *cur = t.get();
          return t;
        },
        o);
  }
  proto::Reply call(boost::asio::io_context& io, client::SanClient& c, proto::Request req,
                    std::chrono::seconds limit = std::chrono::seconds(60)) {
    std::optional<proto::Reply> out;
    c.execute(std::move(req), [&](proto::Reply r) { out = std::move(r); });
    EXPECT_TRUE(run_until(io, [&] { return out.has_value(); }, limit));
    return out.value_or(proto::Reply{Errc::kShutdown, {}, {}, {}});
  }
  static proto::Request write(std::uint64_t lba, std::uint8_t fill) {
    proto::Request w;
    w.op = Op::kWrite;
    w.lba = lba;
    w.blocks = 1;
    w.data.assign(512, fill);
    return w;
  }
  static proto::Request read(std::uint64_t lba) {
    proto::Request r;
    r.op = Op::kRead;
    r.lba = lba;
    r.blocks = 1;
    return r;
  }
  // Delivers every held-back message now, on the client's current connection.
  void release_held() {
    for (auto& m : state_->held) ASSERT_EQ(current_->inject(m), Errc::kOk);
    state_->held.clear();
  }

  backends::BackendPtr disk_;
  std::shared_ptr<TapState> state_ = std::make_shared<TapState>();
  TapTransport* current_ = nullptr;
};

// The scenario of issue 15: WRITE B times out (held back on the path), WRITE C to the same block
// is acknowledged, then the held copy of B arrives: C must survive.
TEST_P(Integrity, TimedOutWriteNeverLandsAfterNewerAcknowledgedWrite) {
  TestServer server({disk_});
  boost::asio::io_context io;
  client::ClientOptions o;
  o.request_timeout = std::chrono::milliseconds(400);
  o.fence_timeout = std::chrono::seconds(20);
  o.fence_retry = std::chrono::milliseconds(100);
  auto c = make_client(io, server, o);
  ASSERT_EQ(call(io, *c, write(7, 0xAA)).status, Errc::kOk);
  const auto session = c->session_id();

  state_->hold = hold_calls([](Op op) { return op == Op::kWrite; });
  auto r = call(io, *c, write(7, 0xBB));
  EXPECT_EQ(r.status, Errc::kTimeout) << to_string(r.status);
  ASSERT_EQ(state_->held.size(), 1u);
  EXPECT_GE(c->stats().fences, 1u);
  EXPECT_EQ(c->session_id(), session);  // a fence, not a new session
  state_->hold = nullptr;

  ASSERT_EQ(call(io, *c, write(7, 0xCC)).status, Errc::kOk);
  auto before = server.stats();
  release_held();  // the delayed copy of WRITE B, same session, on the current connection
  ASSERT_TRUE(run_until(
      io, [&] { return server.stats().calls > before.calls; }, std::chrono::seconds(20)));
  auto back = call(io, *c, read(7));
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, Bytes(512, 0xCC)) << "the timed-out WRITE landed over newer data";
  EXPECT_EQ(server.stats().bytes_written, before.bytes_written);
  EXPECT_GT(server.stats().misordered, before.misordered);
}

// The fence itself is lost as well: the client gives the session up, ends it from a new session
// (END_SESSION) before anything else, and only then reports the timeout. The held WRITE, released
// afterwards, finds its session gone.
TEST_P(Integrity, LostFenceEndsTheSessionBeforeTheTimeoutIsReported) {
  TestServer server({disk_});
  boost::asio::io_context io;
  client::ClientOptions o;
  o.request_timeout = std::chrono::milliseconds(300);
  o.fence_timeout = std::chrono::milliseconds(600);
  o.fence_retry = std::chrono::milliseconds(100);
  auto c = make_client(io, server, o);
  ASSERT_EQ(call(io, *c, write(9, 0xAA)).status, Errc::kOk);
  const auto session = c->session_id();

  state_->hold = hold_calls([](Op op) { return op == Op::kWrite || op == Op::kSlotFence; });
  auto r = call(io, *c, write(9, 0xBB));
  EXPECT_EQ(r.status, Errc::kTimeout) << to_string(r.status);
  EXPECT_GE(c->stats().fences_failed, 1u);
  EXPECT_GE(c->stats().sessions_ended, 1u);
  EXPECT_NE(c->session_id(), session);
  EXPECT_GE(server.stats().sessions_ended, 1u);
  state_->hold = nullptr;

  ASSERT_EQ(call(io, *c, write(9, 0xCC)).status, Errc::kOk);
  auto before = server.stats();
  release_held();  // the WRITE and its fences, all of the ended session
  ASSERT_TRUE(run_until(
      io, [&] { return server.stats().auth_failures > before.auth_failures; },
      std::chrono::seconds(20)));
  EXPECT_EQ(server.stats().bytes_written, before.bytes_written);
  auto back = call(io, *c, read(9));
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, Bytes(512, 0xCC));
}

// While the server cannot confirm the fence, the timed-out request is not reported at all.
TEST_P(Integrity, TimeoutIsNotReportedWhileTheServerCannotConfirm) {
  TestServer server({disk_});
  boost::asio::io_context io;
  client::ClientOptions o;
  o.request_timeout = std::chrono::milliseconds(200);
  o.fence_timeout = std::chrono::milliseconds(300);
  o.fence_retry = std::chrono::milliseconds(100);
  o.login_timeout = std::chrono::milliseconds(300);
  auto c = make_client(io, server, o);
  ASSERT_EQ(call(io, *c, write(3, 0xAA)).status, Errc::kOk);
  // Everything after the WRITE is held back: fences, logins, END_SESSION.
  state_->hold = hold_calls([](Op) { return true; });
  std::optional<proto::Reply> out;
  c->execute(write(3, 0xBB), [&](proto::Reply rep) { out = std::move(rep); });
  run_until(io, [] { return false; }, std::chrono::seconds(3));  // many timeouts' worth
  EXPECT_FALSE(out.has_value());
  EXPECT_GE(c->unresolved(), 1u);
  // The path heals: the old session is ended, then the timeout is reported.
  state_->hold = nullptr;
  state_->held.clear();  // those copies are lost for good
  ASSERT_TRUE(run_until(io, [&] { return out.has_value(); }, std::chrono::seconds(30)));
  EXPECT_EQ(out->status, Errc::kTimeout) << to_string(out->status);
  EXPECT_GE(c->stats().sessions_ended, 1u);
  EXPECT_EQ(c->unresolved(), 0u);
}

// A captured READ call re-sent 40 times by someone on the path: the server reads at most once more
// and answers the rest with a small unauthenticated BUSY.
TEST_P(Integrity, ReplayedReadIsReexecutedAtMostOnce) {
  TestServer server({disk_});
  boost::asio::io_context io;
  client::ClientOptions o;
  auto c = make_client(io, server, o);
  ASSERT_EQ(call(io, *c, write(5, 0x5A)).status, Errc::kOk);
  proto::Request big = read(0);
  big.blocks = 256;  // 128 KiB
  ASSERT_EQ(call(io, *c, big).status, Errc::kOk);
  Bytes captured = state_->sent.back();
  ASSERT_EQ(proto::parse_call(captured)->op, Op::kRead);
  auto before = server.stats();
  for (int i = 0; i < 40; ++i) ASSERT_EQ(current_->inject(captured), Errc::kOk);
  ASSERT_TRUE(run_until(
      io, [&] { return server.stats().calls >= before.calls + 40; }, std::chrono::seconds(20)));
  run_until(io, [] { return false; }, std::chrono::seconds(1));  // replies go out
  auto after = server.stats();
  EXPECT_LE(after.executed, before.executed + 1);
  EXPECT_LE(after.bytes_read, before.bytes_read + 256 * 512);
  // (Copies arriving while the one re-execution runs are absorbed silently, later ones get BUSY:
  // how many of each depends on timing, the execution count does not.)
  // The client is not disturbed.
  auto back = call(io, *c, read(5));
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, Bytes(512, 0x5A));
}

INSTANTIATE_TEST_SUITE_P(Transports, Integrity,
                         ::testing::Values(TransportKind::kUdp, TransportKind::kTcp),
                         [](const auto& param_info) {
                           return param_info.param == TransportKind::kUdp ? std::string("udp")
                                                                          : std::string("tcp");
                         });

}  // namespace
}  // namespace ipsan::testing
