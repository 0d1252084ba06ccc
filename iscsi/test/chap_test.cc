// CHAP (RFC 7143 12.1.3) in the target's login negotiation: MD5 and SHA-256, one-way and mutual,
// and every refusal with its login status class: wrong secret, unknown name, no authentication
// offered, skipped security stage, reflected challenge, initiator not on the allow-list.
#include <gtest/gtest.h>

#include "ipsan/base/crypto.h"
#include "ipsan/iscsi/login.h"

namespace ipsan::iscsi {
namespace {

std::string value(const TextPairs& keys, const std::string& k) {
  for (const auto& [key, v] : keys) {
    if (key == k) return v;
  }
  return "<absent>";
}

std::string hex(ByteSpan b) { return "0x" + to_hex(b); }

LoginSecurity security() {
  LoginSecurity s;
  s.chap_initiators["alice"] = "alice-secret-123";
  s.chap_target_name = "iqn.t";
  s.chap_target_secret = "target-secret-456";
  return s;
}

struct Chap {
  explicit Chap(const LoginSecurity* s)
      : n(TargetLimits{}, [](std::string_view t) { return t == "iqn.t"; }, 1, s) {}
  LoginStep start(const std::string& methods = "CHAP,None", std::uint8_t csg = 0) {
    return n.on_request(csg, csg == 0 ? 1 : 3, true, false,
                        encode_text({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"},
                                     {"SessionType", "Normal"}, {"AuthMethod", methods}}));
  }
  LoginStep algorithms(const std::string& a) {
    return n.on_request(0, 1, false, false, encode_text({{"CHAP_A", a}}));
  }
  LoginStep respond(const TextPairs& keys) {
    return n.on_request(0, 1, true, false, encode_text(keys));
  }
  LoginNegotiator n;
};

// The full exchange for one algorithm: returns the final step.
LoginStep exchange(const LoginSecurity& s, const std::string& alg, const std::string& name,
                   const std::string& secret, bool mutual, Bytes* my_challenge = nullptr) {
  Chap c(&s);
  auto s1 = c.start();
  EXPECT_EQ(s1.status, kLoginSuccess) << s1.reason;
  EXPECT_EQ(value(s1.keys, "AuthMethod"), "CHAP");
  EXPECT_FALSE(s1.transit);  // CHAP runs first: T=0 (RFC 7143 6.3)
  auto s2 = c.algorithms(alg);
  if (s2.status != kLoginSuccess) return s2;
  const auto a = static_cast<ChapAlgorithm>(std::stoi(value(s2.keys, "CHAP_A")));
  const auto id = static_cast<std::uint8_t>(std::stoi(value(s2.keys, "CHAP_I")));
  auto challenge = decode_chap_binary(value(s2.keys, "CHAP_C"));
  EXPECT_TRUE(challenge.has_value());
  TextPairs keys = {{"CHAP_N", name},
                    {"CHAP_R", hex(chap_response(a, id, secret, challenge.value_or(Bytes{})))}};
  if (mutual) {
    Bytes mine(16);
    random_bytes(mine);
    if (my_challenge != nullptr && !my_challenge->empty()) mine = *my_challenge;
    if (my_challenge != nullptr && my_challenge->empty()) mine = challenge.value_or(Bytes{});
    keys.emplace_back("CHAP_I", "77");
    keys.emplace_back("CHAP_C", hex(mine));
    auto s3 = c.respond(keys);
    if (s3.status == kLoginSuccess) {
      // The target proves it knows its own secret.
      EXPECT_EQ(value(s3.keys, "CHAP_N"), "iqn.t");
      EXPECT_EQ(value(s3.keys, "CHAP_R"), hex(chap_response(a, 77, "target-secret-456", mine)));
      EXPECT_TRUE(s3.transit);
    }
    return s3;
  }
  return c.respond(keys);
}

TEST(Chap, Md5AndSha256OneWayAndMutual) {
  const auto s = security();
  for (const char* alg : {"5", "7", "7,5", "5,7", "0x5"}) {
    for (bool mutual : {false, true}) {
      auto r = exchange(s, alg, "alice", "alice-secret-123", mutual);
      EXPECT_EQ(r.status, kLoginSuccess) << alg << " " << mutual << ": " << r.reason;
      EXPECT_TRUE(r.transit);
    }
  }
}

TEST(Chap, KnownAnswer) {
  // RFC 1994 construction: MD5(0x01 || "secret-secret" || 0x00..0x0f) computed independently.
  Bytes c(16);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(to_hex(chap_response(ChapAlgorithm::kMd5, 1, "secret-secret", c)).size(), 32u);
  EXPECT_EQ(to_hex(chap_response(ChapAlgorithm::kSha256, 1, "secret-secret", c)).size(), 64u);
  EXPECT_NE(chap_response(ChapAlgorithm::kMd5, 1, "secret-secret", c),
            chap_response(ChapAlgorithm::kMd5, 2, "secret-secret", c));
  // Binary encodings: hex (odd length allowed) and base64.
  EXPECT_EQ(decode_chap_binary("0x0a0B"), (Bytes{0x0a, 0x0b}));
  EXPECT_EQ(decode_chap_binary("0xa0b"), (Bytes{0x0a, 0x0b}));
  EXPECT_EQ(decode_chap_binary("0bAAEC"), (Bytes{0, 1, 2}));
  EXPECT_FALSE(decode_chap_binary("0xzz"));
  EXPECT_FALSE(decode_chap_binary("1234"));
  EXPECT_FALSE(decode_chap_binary("0x"));
  EXPECT_FALSE(decode_chap_binary("0x" + std::string(4096, 'a')));
}

TEST(Chap, WrongSecretOrUnknownNameIsAnAuthenticationFailure) {
  const auto s = security();
  auto wrong = exchange(s, "5", "alice", "alice-secret-124", false);
  EXPECT_EQ(wrong.status, kLoginAuthFailure) << wrong.reason;
  auto unknown = exchange(s, "5", "mallory", "alice-secret-123", false);
  EXPECT_EQ(unknown.status, kLoginAuthFailure) << unknown.reason;
  // Target secret used as the initiator's: refused too.
  auto swapped = exchange(s, "7", "alice", "target-secret-456", true);
  EXPECT_EQ(swapped.status, kLoginAuthFailure);
}

TEST(Chap, NoAuthenticationIsRefusedWhenChapIsConfigured) {
  const auto s = security();
  Chap none(&s);
  auto r = none.start("None");
  EXPECT_EQ(r.status, kLoginAuthFailure) << r.reason;
  Chap skip(&s);  // straight to the operational stage
  auto k = skip.start("None", 1);
  EXPECT_EQ(k.status, kLoginAuthFailure) << k.reason;
  Chap quiet(&s);  // no AuthMethod at all, transit requested
  auto q = quiet.n.on_request(0, 1, true, false,
                              encode_text({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}}));
  EXPECT_EQ(q.status, kLoginAuthFailure) << q.reason;
  Chap bad_alg(&s);
  ASSERT_EQ(bad_alg.start().status, kLoginSuccess);
  auto a = bad_alg.algorithms("6,99");
  EXPECT_EQ(a.status, kLoginAuthFailure);
  EXPECT_EQ(value(a.keys, "CHAP_A"), "Reject");
  // Leaving the security stage after the challenge but without a response: refused.
  Chap early(&s);
  ASSERT_EQ(early.start().status, kLoginSuccess);
  ASSERT_EQ(early.algorithms("5").status, kLoginSuccess);
  auto e = early.n.on_request(1, 3, true, false, encode_text({{"HeaderDigest", "None"}}));
  EXPECT_NE(e.status, kLoginSuccess);
}

TEST(Chap, MutualRefusals) {
  auto s = security();
  Bytes reflect;  // empty: the target's own challenge sent back
  auto r = exchange(s, "5", "alice", "alice-secret-123", true, &reflect);
  EXPECT_EQ(r.status, kLoginAuthFailure) << r.reason;
  Bytes tiny{1, 2, 3};
  auto t = exchange(s, "5", "alice", "alice-secret-123", true, &tiny);
  EXPECT_EQ(t.status, kLoginAuthFailure) << t.reason;
  s.chap_target_name.clear();  // mutual asked for, none configured
  auto m = exchange(s, "5", "alice", "alice-secret-123", true);
  EXPECT_EQ(m.status, kLoginAuthFailure) << m.reason;
}

TEST(Chap, AllowListIsAnAuthorizationFailure) {
  LoginSecurity s;  // no CHAP, only the allow-list
  s.initiator_allowed = [](std::string_view, std::string_view i) { return i == "iqn.good"; };
  LoginNegotiator bad(TargetLimits{}, [](std::string_view t) { return t == "iqn.t"; }, 1, &s);
  auto r = bad.on_request(0, 1, true, false,
                          encode_text({{"InitiatorName", "iqn.made-up"}, {"TargetName", "iqn.t"}}));
  EXPECT_EQ(r.status, kLoginAuthorizationFailure) << r.reason;
  LoginNegotiator good(TargetLimits{}, [](std::string_view t) { return t == "iqn.t"; }, 1, &s);
  auto g = good.on_request(0, 1, true, false,
                           encode_text({{"InitiatorName", "iqn.good"}, {"TargetName", "iqn.t"}}));
  EXPECT_EQ(g.status, kLoginSuccess) << g.reason;
}

TEST(Chap, SecretsFile) {
  auto s = parse_chap_secrets("# x\ninitiator alice alice-secret-123\ntarget iqn.t t-secret-4567\n", "f");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->chap_initiators.at("alice"), "alice-secret-123");
  EXPECT_EQ(s->chap_target_secret, "t-secret-4567");
  EXPECT_FALSE(parse_chap_secrets("initiator alice short\n", "f"));
  EXPECT_FALSE(parse_chap_secrets("initiator alice same-secret-1\ntarget t same-secret-1\n", "f"));
  EXPECT_FALSE(parse_chap_secrets("target t only-target-secret\n", "f"));
  EXPECT_FALSE(parse_chap_secrets("user alice alice-secret-123\n", "f"));
  EXPECT_FALSE(parse_chap_secrets("initiator alice a-secret-1234 extra\n", "f"));
  EXPECT_FALSE(parse_chap_secrets("initiator a x-secret-12345\ninitiator a y-secret-12345\n", "f"));
  auto err = parse_chap_secrets("\n\ninitiator alice short\n", "chap.txt");
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().message.find("chap.txt:3:"), std::string::npos) << err.error().message;
}

}  // namespace
}  // namespace ipsan::iscsi
