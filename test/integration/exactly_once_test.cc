// Exactly-once and authentication through the real server: a duplicated old WRITE injected after a
// newer one never changes data; forged calls touch nothing; a server restart is survived.
#include <gtest/gtest.h>

#include "ipsan/proto/codec.h"
#include "ipsan/testing/tap_transport.h"
#include "test_server.h"

namespace ipsan::testing {
namespace {

using proto::Op;
using proto::TransportKind;

class ExactlyOnce : public ::testing::TestWithParam<TransportKind> {
 protected:
  void SetUp() override {
    backends::RamOptions o;
    disk_ = *backends::RamBackend::create(1 << 20, o);
  }
  std::unique_ptr<client::SanClient> make_client(boost::asio::io_context& io, TestServer& s,
                                                 TapTransport** tap_out) {
    auto inner = factory(io, GetParam(), s.port(GetParam()));
    client::ClientOptions o;
    o.client_name = "alice";
    o.key = test_key();
    o.max_slots = 1;  // every call on slot 0: sequences 1, 2, 3, ...
    o.request_timeout = std::chrono::seconds(20);
    return std::make_unique<client::SanClient>(
        io,
        [inner, tap_out]() -> std::unique_ptr<proto::ClientTransport> {
          auto t = std::make_unique<TapTransport>(inner());
          *tap_out = t.get();
          return t;
        },
        o);
  }
  proto::Reply call(boost::asio::io_context& io, client::SanClient& c, proto::Request req) {
    std::optional<proto::Reply> out;
    c.execute(std::move(req), [&](proto::Reply r) { out = std::move(r); });
    EXPECT_TRUE(run_until(io, [&] { return out.has_value(); }));
    return out.value_or(proto::Reply{Errc::kTimeout, {}, {}, {}});
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
  backends::BackendPtr disk_;
};

TEST_P(ExactlyOnce, LateDuplicateOfOldWriteNeverOverwritesNewerData) {
  TestServer server({disk_});
  boost::asio::io_context io;
  TapTransport* tap = nullptr;
  auto c = make_client(io, server, &tap);
  ASSERT_EQ(call(io, *c, write(7, 0xAA)).status, Errc::kOk);
  Bytes old_write = tap->state()->sent.back();  // WRITE 0xAA, slot 0, seq 1
  ASSERT_EQ(call(io, *c, write(7, 0xBB)).status, Errc::kOk);
  auto before = server.stats();
  // The old WRITE arrives again, late (as a duplicate a network or a retrying peer could deliver).
  ASSERT_EQ(tap->inject(old_write), Errc::kOk);
  ASSERT_TRUE(run_until(
      io, [&] { return server.stats().misordered > before.misordered; }, std::chrono::seconds(10)));
  auto r = call(io, *c, read(7));
  ASSERT_EQ(r.status, Errc::kOk);
  EXPECT_EQ(r.data, Bytes(512, 0xBB));
  auto after = server.stats();
  EXPECT_EQ(after.bytes_written, before.bytes_written);  // nothing more was written
  // An immediate retransmission of the newest call is answered from the cache, not re-run.
  Bytes newest = tap->state()->sent.back();  // the READ above
  ASSERT_EQ(call(io, *c, write(8, 0xCC)).status, Errc::kOk);
  Bytes last_write = tap->state()->sent.back();
  before = server.stats();
  ASSERT_EQ(tap->inject(last_write), Errc::kOk);
  ASSERT_TRUE(run_until(
      io, [&] { return server.stats().replayed > before.replayed; }, std::chrono::seconds(10)));
  EXPECT_EQ(server.stats().bytes_written, before.bytes_written);
  (void)newest;
}

TEST_P(ExactlyOnce, ForgedCallIsRefusedAndTouchesNoData) {
  TestServer server({disk_});
  boost::asio::io_context io;
  TapTransport* tap = nullptr;
  auto c = make_client(io, server, &tap);
  ASSERT_EQ(call(io, *c, write(3, 0x11)).status, Errc::kOk);
  tap->state()->tamper_next = true;
  auto r = call(io, *c, write(3, 0x22));
  EXPECT_EQ(r.status, Errc::kAuthFailed);
  EXPECT_GE(server.stats().auth_failures, 1u);
  // A call under a session the server never issued is refused too.
  Key256 k{};
  proto::Request w = write(3, 0x33);
  auto before = server.stats().auth_failures;  // read first: the server may answer at once
  ASSERT_EQ(tap->inject(proto::encode_call(4242, proto::SlotCred{0x1234, 0, 1}, k, w)), Errc::kOk);
  ASSERT_TRUE(run_until(
      io, [&] { return server.stats().auth_failures > before; }, std::chrono::seconds(10)));
  // The client retired the slot of the refused call; it logs in again and reads the old data.
  auto back = call(io, *c, read(3));
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, Bytes(512, 0x11));
}

TEST_P(ExactlyOnce, ServerRestartIsDetectedAndUnansweredWorkIsRedriven) {
  auto s1 = std::make_unique<TestServer>(std::vector<backends::BackendPtr>{disk_}, 111);
  std::uint16_t udp = s1->udp_port(), tcp = s1->tcp_port();
  boost::asio::io_context io;
  TapTransport* tap = nullptr;
  auto c = make_client(io, *s1, &tap);
  ASSERT_EQ(call(io, *c, write(1, 0x01)).status, Errc::kOk);
  EXPECT_EQ(c->boot_epoch(), 111u);
  auto first_session = c->session_id();
  s1.reset();  // server gone; the disk (a shared back end) survives, like a real disk would
  // A write issued while the server is down stays unanswered until a new server is there.
  std::optional<proto::Reply> pending;
  c->execute(write(2, 0x02), [&](proto::Reply rep) { pending = std::move(rep); });
  run_until(
      io, [] { return false; }, std::chrono::seconds(1));  // let it try the dead server
  EXPECT_FALSE(pending.has_value());
  auto s2 = std::make_unique<TestServer>(std::vector<backends::BackendPtr>{disk_}, 222, udp, tcp);
  ASSERT_TRUE(run_until(io, [&] { return pending.has_value(); }));
  ASSERT_EQ(pending->status, Errc::kOk) << to_string(pending->status);
  EXPECT_EQ(c->boot_epoch(), 222u);
  EXPECT_NE(c->session_id(), first_session);
  auto back = call(io, *c, read(1));
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, Bytes(512, 0x01));
  back = call(io, *c, read(2));
  EXPECT_EQ(back.data, Bytes(512, 0x02));
  EXPECT_GE(c->stats().logins, 2u);
}

INSTANTIATE_TEST_SUITE_P(Transports, ExactlyOnce,
                         ::testing::Values(TransportKind::kUdp, TransportKind::kTcp),
                         [](const auto& param_info) {
                           return param_info.param == TransportKind::kUdp ? std::string("udp")
                                                                          : std::string("tcp");
                         });

}  // namespace
}  // namespace ipsan::testing
