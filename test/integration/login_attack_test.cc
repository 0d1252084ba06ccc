// Login without a key (docs/PROTOCOL.md "Login"): a LOGIN_BEGIN flood fills nothing on the
// server, and a LOGIN_FINISH with someone else's server nonce cannot erase that login. Real
// server and transports on 127.0.0.1. Both fail on the server before stateless nonces (4,096
// pending logins filled the table for 30 s; a failed LOGIN_FINISH erased the pending entry).
#include <gtest/gtest.h>

#include "ipsan/proto/login.h"
#include "ipsan/proto/rpc.h"
#include "test_server.h"

namespace ipsan::testing {
namespace {

using proto::TransportKind;

backends::BackendPtr ram() { return *backends::RamBackend::create(1 << 20, {}); }

struct RawClient {
  std::unique_ptr<proto::ClientTransport> t;
  std::vector<Bytes> replies;
  RawClient(boost::asio::io_context& io, TransportKind k, std::uint16_t port) {
    t = factory(io, k, port)();
    t->on_message = [this](Bytes m) { replies.push_back(std::move(m)); };
  }
};

class LoginAttack : public ::testing::TestWithParam<TransportKind> {};

TEST_P(LoginAttack, LoginBeginFloodFillsNothing) {
  TestServer server({ram()});
  boost::asio::io_context io;
  RawClient flood(io, GetParam(), server.port(GetParam()));
  const std::uint32_t kFlood = 6000;  // more than the old 4,096-entry pending table
  for (std::uint32_t i = 0; i < kFlood; ++i) {
    proto::LoginBeginArgs a;
    a.client_name = "alice";
    random_bytes(a.client_nonce);
    flood.t->send(proto::encode_login_begin_call(i + 1, a));
  }
  ASSERT_TRUE(run_until(io, [&] { return flood.replies.size() == kFlood; }))
      << flood.replies.size() << " of " << kFlood << " answered";
  std::size_t ok = 0;
  for (const Bytes& m : flood.replies) {
    auto r = proto::parse_reply(m);
    ASSERT_TRUE(r);
    auto res = proto::decode_login_begin_res(r->results);
    ASSERT_TRUE(res);
    if (res->status == Errc::kOk) ++ok;
  }
  EXPECT_EQ(ok, kFlood);  // every one answered, none refused as busy: nothing is kept
  // A legitimate login right after the flood.
  client::ClientOptions o;
  o.client_name = "alice";
  o.key = test_key();
  client::SanClient c(io, factory(io, GetParam(), server.port(GetParam())), o);
  std::optional<Errc> result;
  const auto t0 = std::chrono::steady_clock::now();
  c.connect([&](Errc e) { result = e; });
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(*result, Errc::kOk);
  std::printf("legit login after %u LOGIN_BEGINs: %lld us\n", kFlood,
              static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::chrono::steady_clock::now() - t0)
                                         .count()));
}

TEST_P(LoginAttack, ForeignLoginFinishCannotEraseAPendingLogin) {
  TestServer server({ram()});
  boost::asio::io_context io;
  RawClient alice(io, GetParam(), server.port(GetParam()));
  RawClient mallory(io, GetParam(), server.port(GetParam()));
  proto::LoginBeginArgs b;
  b.client_name = "alice";
  random_bytes(b.client_nonce);
  alice.t->send(proto::encode_login_begin_call(1, b));
  ASSERT_TRUE(run_until(io, [&] { return alice.replies.size() == 1; }));
  auto r = proto::parse_reply(alice.replies[0]);
  ASSERT_TRUE(r);
  auto begin = proto::decode_login_begin_res(r->results);
  ASSERT_TRUE(begin && begin->status == Errc::kOk);
  // Mallory saw alice's nonces (on path) and sends a LOGIN_FINISH with a made-up proof.
  proto::LoginFinishArgs f;
  f.client_name = "alice";
  f.client_nonce = b.client_nonce;
  f.server_nonce = begin->server_nonce;
  f.proof.fill(0x11);
  mallory.t->send(proto::encode_login_finish_call(2, f));
  ASSERT_TRUE(run_until(io, [&] { return mallory.replies.size() == 1; }));
  auto mr = proto::parse_reply(mallory.replies[0]);
  ASSERT_TRUE(mr);
  auto mres = proto::decode_login_finish_res(mr->results);
  ASSERT_TRUE(mres);
  EXPECT_EQ(mres->status, Errc::kAuthFailed);
  // Alice's own LOGIN_FINISH still succeeds; a replay of it does not open a second session.
  f.proof = proto::login_client_proof(test_key(), "alice", b.client_nonce, begin->server_nonce);
  alice.t->send(proto::encode_login_finish_call(3, f));
  ASSERT_TRUE(run_until(io, [&] { return alice.replies.size() == 2; }));
  auto ar = proto::parse_reply(alice.replies[1]);
  ASSERT_TRUE(ar);
  auto ares = proto::decode_login_finish_res(ar->results);
  ASSERT_TRUE(ares);
  EXPECT_EQ(ares->status, Errc::kOk);
  mallory.t->send(proto::encode_login_finish_call(4, f));
  ASSERT_TRUE(run_until(io, [&] { return mallory.replies.size() == 2; }));
  auto rr = proto::parse_reply(mallory.replies[1]);
  ASSERT_TRUE(rr);
  auto rres = proto::decode_login_finish_res(rr->results);
  ASSERT_TRUE(rres);
  EXPECT_EQ(rres->status, Errc::kAuthFailed);
}

INSTANTIATE_TEST_SUITE_P(Transports, LoginAttack,
                         ::testing::Values(TransportKind::kUdp, TransportKind::kTcp),
                         [](const auto& param_info) {
                           return param_info.param == TransportKind::kUdp ? std::string("udp")
                                                                          : std::string("tcp");
                         });

}  // namespace
}  // namespace ipsan::testing
