// Tests of the LOGIN messages and the proof / session-key derivations (login.h).
#include "ipsan/proto/login.h"

#include <gtest/gtest.h>

#include "ipsan/proto/codec.h"

namespace ipsan::proto {
namespace {

class Login : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto_init());
    for (std::size_t i = 0; i < key_.size(); ++i) key_[i] = static_cast<std::uint8_t>(0x40 + i);
    cn_.fill(0xc1);
    sn_.fill(0x5e);
  }
  Key256 key_{};
  LoginNonce cn_{};
  LoginNonce sn_{};
};

TEST_F(Login, BeginRoundTrip) {
  const Bytes call = encode_login_begin_call(11, {"initiator-1", cn_});
  auto c = parse_call(call);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->op, Op::kLoginBegin);
  EXPECT_EQ(c->flavor, kAuthNone);
  auto a = decode_login_begin_args(c->args);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->client_name, "initiator-1");
  EXPECT_EQ(a->client_nonce, cn_);

  LoginBeginRes res;
  res.server_nonce = sn_;
  res.boot_epoch = 0xabcdef;
  const Bytes r_msg = encode_login_begin_reply(11, res);
  auto r = parse_reply(r_msg);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->xid, 11u);
  EXPECT_EQ(r->verf_flavor, kAuthNone);
  auto d = decode_login_begin_res(r->results);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, Errc::kOk);
  EXPECT_EQ(d->server_nonce, sn_);
  EXPECT_EQ(d->boot_epoch, 0xabcdefu);
  auto generic = decode_results(Op::kLoginBegin, r->results);
  ASSERT_TRUE(generic);
  EXPECT_EQ(generic->status, Errc::kOk);

  LoginBeginRes busy;
  busy.status = Errc::kBusy;
  const Bytes rb_msg = encode_login_begin_reply(12, busy);
  auto rb = parse_reply(rb_msg);
  ASSERT_TRUE(rb);
  EXPECT_EQ(rb->results.size(), 4u);  // status only
  EXPECT_EQ(decode_login_begin_res(rb->results)->status, Errc::kBusy);
}

TEST_F(Login, FinishRoundTrip) {
  LoginFinishArgs args{"initiator-1", cn_, sn_, login_client_proof(key_, "initiator-1", cn_, sn_)};
  const Bytes c_msg = encode_login_finish_call(13, args);
  auto c = parse_call(c_msg);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->op, Op::kLoginFinish);
  auto a = decode_login_finish_args(c->args);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->client_name, args.client_name);
  EXPECT_EQ(a->client_nonce, cn_);
  EXPECT_EQ(a->server_nonce, sn_);
  EXPECT_EQ(a->proof, args.proof);

  LoginFinishRes res;
  res.session_id = 0x0102030405060708ull;
  res.boot_epoch = 9;
  res.slot_count = 64;
  res.max_request_bytes = (8u << 20) + 4096;
  res.server_proof = login_server_proof(key_, "initiator-1", cn_, sn_, res.session_id);
  const Bytes r_msg = encode_login_finish_reply(13, res);
  auto r = parse_reply(r_msg);
  ASSERT_TRUE(r);
  auto d = decode_login_finish_res(r->results);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, Errc::kOk);
  EXPECT_EQ(d->session_id, res.session_id);
  EXPECT_EQ(d->boot_epoch, 9u);
  EXPECT_EQ(d->slot_count, 64u);
  EXPECT_EQ(d->max_request_bytes, res.max_request_bytes);
  EXPECT_EQ(d->server_proof, res.server_proof);

  LoginFinishRes denied;
  denied.status = Errc::kAuthFailed;
  const Bytes rd_msg = encode_login_finish_reply(14, denied);
  auto rd = parse_reply(rd_msg);
  ASSERT_TRUE(rd);
  EXPECT_EQ(decode_login_finish_res(rd->results)->status, Errc::kAuthFailed);
}

// The whole handshake as client and server would run it, then one MAC'd call each way.
TEST_F(Login, MutualHandshakeYieldsSharedSessionKey) {
  const std::string name = "host-b";
  // Client proves knowledge of the key.
  const Digest256 proof = login_client_proof(key_, name, cn_, sn_);
  const Bytes fin_msg = encode_login_finish_call(1, {name, cn_, sn_, proof});
  auto fin = decode_login_finish_args(parse_call(fin_msg)->args);
  ASSERT_TRUE(fin);
  // Server checks it with its copy of the key.
  EXPECT_TRUE(
      proof_equal(login_client_proof(key_, fin->client_name, fin->client_nonce, fin->server_nonce),
                  fin->proof));
  Key256 wrong = key_;
  wrong[0] ^= 1;
  EXPECT_FALSE(proof_equal(login_client_proof(wrong, name, cn_, sn_), proof));
  // Server proves itself; client checks.
  const std::uint64_t sid = 0x5e55;
  const Digest256 sproof = login_server_proof(key_, name, cn_, sn_, sid);
  EXPECT_TRUE(proof_equal(sproof, login_server_proof(key_, name, cn_, sn_, sid)));
  EXPECT_FALSE(proof_equal(sproof, login_server_proof(wrong, name, cn_, sn_, sid)));
  // Both derive the same session key; a MAC'd call from the client verifies on the server.
  const Key256 ck = derive_session_key(key_, name, cn_, sn_, sid);
  const Key256 sk =
      derive_session_key(key_, fin->client_name, fin->client_nonce, fin->server_nonce, sid);
  EXPECT_EQ(ck, sk);
  const SlotCred cred{sid, 0, 1};
  Request req;
  req.op = Op::kFlush;
  const Bytes call_msg = encode_call(2, cred, ck, req);
  auto call = parse_call(call_msg);
  ASSERT_TRUE(call);
  EXPECT_TRUE(verify_call(*call, sk));
  EXPECT_FALSE(verify_call(*call, derive_session_key(key_, name, cn_, sn_, sid + 1)));
}

TEST_F(Login, DerivationsAreDistinctAndBindEveryInput) {
  const std::uint64_t sid = 1;
  const Digest256 cp = login_client_proof(key_, "n", cn_, sn_);
  const Digest256 sp = login_server_proof(key_, "n", cn_, sn_, sid);
  const Key256 sk = derive_session_key(key_, "n", cn_, sn_, sid);
  EXPECT_NE(cp, sp);
  EXPECT_NE(Digest256(sk), sp);
  EXPECT_NE(Digest256(sk), cp);
  LoginNonce other = cn_;
  other[15] ^= 0x80;
  EXPECT_NE(login_client_proof(key_, "n", other, sn_), cp);
  EXPECT_NE(login_client_proof(key_, "n", cn_, other), cp);
  EXPECT_NE(login_client_proof(key_, "m", cn_, sn_), cp);
  EXPECT_NE(login_server_proof(key_, "n", cn_, sn_, sid + 1), sp);
  EXPECT_NE(derive_session_key(key_, "n", other, sn_, sid), sk);
}

// Known answer: the HMAC input is exactly len(label) label len(name) name cn sn [sid], BE lengths.
TEST_F(Login, KnownAnswerHmacInput) {
  const std::string label = "ipsan-session-v1";
  Bytes input = {0, 0, 0, static_cast<std::uint8_t>(label.size())};
  input.insert(input.end(), label.begin(), label.end());
  input.insert(input.end(), {0, 0, 0, 2, 'a', 'b'});
  input.insert(input.end(), cn_.begin(), cn_.end());
  input.insert(input.end(), sn_.begin(), sn_.end());
  input.insert(input.end(), {0, 0, 0, 0, 0, 0, 0x12, 0x34});
  const Digest256 want = hmac_sha256(key_, {input});
  const Key256 got = derive_session_key(key_, "ab", cn_, sn_, 0x1234);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin()));

  const std::string clabel = "ipsan-login-v1 client";
  Bytes cin = {0, 0, 0, static_cast<std::uint8_t>(clabel.size())};
  cin.insert(cin.end(), clabel.begin(), clabel.end());
  cin.insert(cin.end(), {0, 0, 0, 2, 'a', 'b'});
  cin.insert(cin.end(), cn_.begin(), cn_.end());
  cin.insert(cin.end(), sn_.begin(), sn_.end());
  EXPECT_EQ(hmac_sha256(key_, {cin}), login_client_proof(key_, "ab", cn_, sn_));
}

TEST_F(Login, ClientNameValidation) {
  EXPECT_TRUE(valid_client_name("a"));
  EXPECT_TRUE(valid_client_name(std::string(64, 'x')));
  EXPECT_FALSE(valid_client_name(""));
  EXPECT_FALSE(valid_client_name(std::string(65, 'x')));
  EXPECT_FALSE(valid_client_name("tab\there"));
  EXPECT_FALSE(valid_client_name("\xc3\xa9"));
  for (const std::string& bad : {std::string(), std::string(65, 'x'), std::string("nl\n")}) {
    const Bytes c_msg = encode_login_begin_call(1, {bad, cn_});
    auto c = parse_call(c_msg);
    ASSERT_TRUE(c);
    EXPECT_FALSE(decode_login_begin_args(c->args)) << bad;
    const Bytes f_msg = encode_login_finish_call(1, {bad, cn_, sn_, {}});
    auto f = parse_call(f_msg);
    ASSERT_TRUE(f);
    EXPECT_FALSE(decode_login_finish_args(f->args)) << bad;
  }
}

// The optional manager grant after transport_security (docs/MANAGER.md): round trip, absent for
// an old client, and every truncation of a finish that carries one fails (except the forms
// without the grant / without the offer, which are the older encodings).
TEST_F(Login, FinishCarriesAnOptionalGrant) {
  LoginFinishArgs a{"alice", cn_, sn_, {}, 2, Bytes(101, 0x5a)};
  const Bytes msg = encode_login_finish_call(1, a);
  auto c = parse_call(msg);
  ASSERT_TRUE(c);
  auto d = decode_login_finish_args(c->args);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->grant, a.grant);
  EXPECT_EQ(d->transport_security, 2u);
  const std::size_t without_grant = c->args.size() - xdr_opaque_size(101);
  for (std::size_t n = 0; n < c->args.size(); ++n) {
    auto t = decode_login_finish_args(c->args.first(n));
    if (n == without_grant || n == without_grant - 4) {
      ASSERT_TRUE(t) << n;
      EXPECT_TRUE(t->grant.empty());
      continue;
    }
    EXPECT_FALSE(t) << n;
  }
  // Too long, or empty (an encoder never sends an empty grant): refused.
  a.grant.assign(kMaxLoginGrantBytes + 1, 1);
  const Bytes big_msg = encode_login_finish_call(1, a);
  auto big = parse_call(big_msg);
  ASSERT_TRUE(big);
  EXPECT_FALSE(decode_login_finish_args(big->args));
  Bytes empty(c->args.begin(), c->args.begin() + static_cast<std::ptrdiff_t>(without_grant));
  empty.insert(empty.end(), {0, 0, 0, 0});
  EXPECT_FALSE(decode_login_finish_args(empty));
}

TEST_F(Login, HostileArgsAndResults) {
  const Bytes begin = encode_login_begin_call(1, {"abc", cn_});
  const Bytes finish = encode_login_finish_call(1, {"abcde", cn_, sn_, {}});
  auto b = parse_call(begin);
  auto f = parse_call(finish);
  ASSERT_TRUE(b && f);
  // Every truncation fails, except the one that ends where the optional transport_security
  // offer begins: that is the form without the offer (read as 0, "off"; docs/PROTOCOL.md).
  for (std::size_t n = 0; n < b->args.size(); ++n) {
    auto d = decode_login_begin_args(b->args.first(n));
    if (n == b->args.size() - 4) {
      ASSERT_TRUE(d) << n;
      EXPECT_EQ(d->transport_security, 0u);
      continue;
    }
    EXPECT_FALSE(d) << n;
  }
  for (std::size_t n = 0; n < f->args.size(); ++n) {
    auto d = decode_login_finish_args(f->args.first(n));
    if (n == f->args.size() - 4) {
      ASSERT_TRUE(d) << n;
      EXPECT_EQ(d->transport_security, 0u);
      continue;
    }
    EXPECT_FALSE(d) << n;
  }
  Bytes trailing(b->args.begin(), b->args.end());
  trailing.insert(trailing.end(), {0, 0, 0, 0});
  EXPECT_FALSE(decode_login_begin_args(trailing));
  // Non-zero padding after the 3-byte name.
  Bytes badpad(b->args.begin(), b->args.end());
  badpad[7] = 1;
  EXPECT_FALSE(decode_login_begin_args(badpad));
  // Name length near 2^32.
  Bytes huge(b->args.begin(), b->args.end());
  store_be32(huge.data(), 0xfffffffd);
  EXPECT_FALSE(decode_login_begin_args(huge));

  LoginFinishRes res;
  res.session_id = 5;
  res.slot_count = 8;
  res.max_request_bytes = 4096;
  for (std::uint32_t slots : {0u, kMaxSlots + 1, 0xffffffffu}) {
    LoginFinishRes bad = res;
    bad.slot_count = slots;
    const Bytes r_msg = encode_login_finish_reply(1, bad);
    auto r = parse_reply(r_msg);
    ASSERT_TRUE(r);
    EXPECT_FALSE(decode_login_finish_res(r->results)) << slots;
  }
  {
    LoginFinishRes bad = res;
    bad.max_request_bytes = 0;
    const Bytes r_msg = encode_login_finish_reply(1, bad);
    auto r = parse_reply(r_msg);
    EXPECT_FALSE(decode_login_finish_res(r->results));
  }
  const Bytes good_msg = encode_login_finish_reply(1, res);
  auto good = parse_reply(good_msg);
  ASSERT_TRUE(good);
  ASSERT_TRUE(decode_login_finish_res(good->results));
  for (std::size_t n = 0; n < good->results.size(); ++n) {
    EXPECT_FALSE(decode_login_finish_res(good->results.first(n))) << n;
  }
  const Bytes gb_msg = encode_login_begin_reply(1, LoginBeginRes{Errc::kOk, sn_, 3});
  auto gb = parse_reply(gb_msg);
  ASSERT_TRUE(gb);
  for (std::size_t n = 0; n < gb->results.size(); ++n) {
    EXPECT_FALSE(decode_login_begin_res(gb->results.first(n))) << n;
  }
  Bytes bad_status(4);
  store_be32(bad_status.data(), 1000);
  EXPECT_FALSE(decode_login_begin_res(bad_status));
  EXPECT_FALSE(decode_login_finish_res(bad_status));
}

}  // namespace
}  // namespace ipsan::proto
