// Unit tests of the target-side login negotiation.
#include "ipsan/iscsi/login.h"

#include <gtest/gtest.h>

namespace ipsan::iscsi {
namespace {

Bytes text(const TextPairs& p) { return encode_text(p); }

std::string value(const TextPairs& keys, const std::string& k) {
  for (const auto& [key, v] : keys) {
    if (key == k) return v;
  }
  return "<absent>";
}

LoginNegotiator make() {
  return LoginNegotiator(TargetLimits{}, [](std::string_view n) { return n == "iqn.t"; });
}

TEST(Login, SecurityThenOperationalThenFullFeature) {
  auto n = make();
  auto s1 = n.on_request(0, 1, true, false,
                         text({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"},
                               {"SessionType", "Normal"}, {"AuthMethod", "CHAP,None"}}));
  ASSERT_EQ(s1.status, kLoginSuccess) << s1.reason;
  EXPECT_EQ(value(s1.keys, "AuthMethod"), "None");
  EXPECT_EQ(value(s1.keys, "TargetPortalGroupTag"), "1");
  EXPECT_TRUE(s1.transit);
  EXPECT_EQ(s1.nsg, 1);
  auto s2 = n.on_request(1, 3, true, false,
                         text({{"HeaderDigest", "CRC32C,None"}, {"DataDigest", "None"},
                               {"MaxRecvDataSegmentLength", "4096"}, {"MaxBurstLength", "16776192"},
                               {"FirstBurstLength", "8192"}, {"InitialR2T", "No"},
                               {"ImmediateData", "Yes"}, {"MaxOutstandingR2T", "8"},
                               {"ErrorRecoveryLevel", "2"}, {"X-vendor", "1"}}));
  ASSERT_EQ(s2.status, kLoginSuccess) << s2.reason;
  EXPECT_TRUE(s2.complete);
  EXPECT_EQ(value(s2.keys, "HeaderDigest"), "CRC32C");
  EXPECT_EQ(value(s2.keys, "MaxBurstLength"), "1048576");
  EXPECT_EQ(value(s2.keys, "InitialR2T"), "No");
  EXPECT_EQ(value(s2.keys, "MaxOutstandingR2T"), "1");
  EXPECT_EQ(value(s2.keys, "ErrorRecoveryLevel"), "0");
  EXPECT_EQ(value(s2.keys, "X-vendor"), "NotUnderstood");
  EXPECT_EQ(value(s2.keys, "MaxRecvDataSegmentLength"), "262144");
  const auto& p = n.params();
  EXPECT_TRUE(p.digests.header);
  EXPECT_FALSE(p.digests.data);
  EXPECT_EQ(p.initiator_max_recv_dsl, 4096u);
  EXPECT_EQ(p.first_burst_length, 8192u);
  EXPECT_FALSE(p.initial_r2t);
  EXPECT_TRUE(n.complete());
}

TEST(Login, DiscoverySessionNeedsNoTarget) {
  auto n = make();
  auto s = n.on_request(1, 3, true, false,
                        text({{"InitiatorName", "iqn.i"}, {"SessionType", "Discovery"},
                              {"MaxBurstLength", "4096"}}));
  ASSERT_EQ(s.status, kLoginSuccess);
  EXPECT_TRUE(n.params().discovery);
  EXPECT_EQ(value(s.keys, "MaxBurstLength"), "Irrelevant");
}

TEST(Login, FailuresCarryTheRightStatus) {
  {
    auto n = make();
    EXPECT_EQ(n.on_request(0, 1, true, false, text({{"TargetName", "iqn.t"}})).status,
              kLoginMissingParameter);
  }
  {
    auto n = make();
    EXPECT_EQ(n.on_request(0, 1, true, false,
                           text({{"InitiatorName", "i"}, {"TargetName", "iqn.other"}}))
                  .status,
              kLoginNotFound);
  }
  {
    auto n = make();
    EXPECT_EQ(n.on_request(0, 1, true, false, text({{"InitiatorName", "i"}})).status,
              kLoginMissingParameter);  // normal session without TargetName
  }
  {
    auto n = make();
    EXPECT_EQ(n.on_request(0, 1, true, false,
                           text({{"InitiatorName", "i"}, {"SessionType", "Bogus"}}))
                  .status,
              kLoginSessionTypeUnsupported);
  }
  {
    auto n = make();
    EXPECT_EQ(n.on_request(0, 1, true, false,
                           text({{"InitiatorName", "i"}, {"TargetName", "iqn.t"},
                                 {"AuthMethod", "CHAP"}}))
                  .status,
              kLoginAuthFailure);
  }
  {
    auto n = make();
    EXPECT_EQ(n.on_request(0, 1, true, false,
                           text({{"InitiatorName", "i"}, {"TargetName", "iqn.t"},
                                 {"MaxBurstLength", "1"}, {"MaxBurstLength", "2"}}))
                  .status,
              kLoginInitiatorError);  // a key twice
  }
  {
    auto n = make();
    EXPECT_EQ(n.on_request(2, 3, true, false, text({{"InitiatorName", "i"}})).status,
              kLoginInitiatorError);  // reserved stage
    auto m = make();
    EXPECT_EQ(m.on_request(1, 0, true, false, text({{"InitiatorName", "i"}})).status,
              kLoginInitiatorError);  // going backwards
    auto o = make();
    Bytes junk = {'a', 'b', 0};
    EXPECT_EQ(o.on_request(0, 1, true, false, junk).status, kLoginInitiatorError);
  }
}

TEST(Login, OutOfRangeValuesAreRejectedNotFatal) {
  auto n = make();
  auto s = n.on_request(1, 3, true, false,
                        text({{"InitiatorName", "i"}, {"TargetName", "iqn.t"},
                              {"MaxBurstLength", "99999999999"}, {"InitialR2T", "Maybe"},
                              {"MaxRecvDataSegmentLength", "12"}}));
  ASSERT_EQ(s.status, kLoginSuccess);
  EXPECT_EQ(value(s.keys, "MaxBurstLength"), "Reject");
  EXPECT_EQ(value(s.keys, "InitialR2T"), "Reject");
  EXPECT_EQ(n.params().max_burst_length, 262144u);  // the RFC default stays
  EXPECT_EQ(n.params().initiator_max_recv_dsl, 8192u);
}

TEST(Login, ContinuedTextIsAssembled) {
  auto n = make();
  Bytes all = text({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}});
  Bytes first(all.begin(), all.begin() + 7), rest(all.begin() + 7, all.end());
  auto s1 = n.on_request(0, 1, false, true, first);
  ASSERT_EQ(s1.status, kLoginSuccess);
  EXPECT_TRUE(s1.keys.empty());
  auto s2 = n.on_request(0, 1, true, false, rest);
  ASSERT_EQ(s2.status, kLoginSuccess) << s2.reason;
  EXPECT_EQ(n.params().initiator_name, "iqn.i");
}

TEST(Login, SendTargets) {
  auto all = send_targets_response("All", {"iqn.a", "iqn.b"}, "127.0.0.1:3260,1", "");
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[2].second, "iqn.b");
  EXPECT_EQ(send_targets_response("", {"iqn.a", "iqn.b"}, "x", "iqn.b").size(), 2u);
}

}  // namespace
}  // namespace ipsan::iscsi
