// Grants: encoding, signature, every refusal (expired, not yet valid, revoked, tampered, wrong
// server, wrong client name, another client's grant), revocation lists, and the login key both
// sides derive. Virtual clock throughout.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "ipsan/auth/grant.h"
#include "ipsan/auth/identity.h"

namespace ipsan::auth {
namespace {

Identity seeded(std::uint8_t n) {
  std::array<std::uint8_t, 32> seed{};
  seed.fill(n);
  return identity_from_seed(seed);
}

struct Fixture : ::testing::Test {
  Identity manager = seeded(1), server = seeded(2), other_server = seeded(3), alice = seeded(4),
           bob = seeded(5);
  std::uint64_t now = 1'800'000'000;
  GrantVerifier verifier{manager.public_key, server, [this] { return now; }};

  Grant grant_for(const Identity& client, std::string name) {
    Grant g;
    g.serial = 7;
    g.issued = now;
    g.expires = now + 60;
    g.device_id = 3;
    g.read_only = false;
    g.client_key = client.public_key;
    g.server_key = server.public_key;
    g.client_name = std::move(name);
    return g;
  }
};

TEST_F(Fixture, EncodeDecodeRoundTrip) {
  Grant g = grant_for(alice, "alice");
  g.read_only = true;
  Bytes b = encode_grant(g, manager);
  EXPECT_LE(b.size(), kMaxGrantBytes);
  auto d = open_grant(b, manager.public_key);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(*d, g);
}

TEST_F(Fixture, ValidGrantGivesTheSameLoginKeyOnBothSides) {
  Bytes b = encode_grant(grant_for(alice, "alice"), manager);
  auto v = verifier.verify(b, "alice");
  ASSERT_TRUE(v) << v.error().message;
  auto k = client_login_key(alice, b);
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(v->login_key, *k);
  EXPECT_EQ(v->grant.device_id, 3u);
  // Bob holding Alice's grant computes another key: his login proof cannot match.
  EXPECT_FALSE(client_login_key(bob, b));
  Grant fake = grant_for(alice, "alice");
  Bytes fb = encode_grant(fake, manager);
  Identity bob_claiming = bob;
  bob_claiming.public_key = alice.public_key;  // claims Alice's public key, has Bob's secret
  auto bk = client_login_key(bob_claiming, fb);
  ASSERT_TRUE(bk);
  EXPECT_NE(*bk, v->login_key);
}

TEST_F(Fixture, ExpiryAndNotYetValidFollowTheVirtualClock) {
  Bytes b = encode_grant(grant_for(alice, "alice"), manager);
  now += 59;
  EXPECT_TRUE(verifier.verify(b, "alice"));
  EXPECT_TRUE(verifier.still_valid(7, 1'800'000'060));
  now += 1;
  auto v = verifier.verify(b, "alice");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("expired"), std::string::npos);
  EXPECT_FALSE(verifier.still_valid(7, 1'800'000'060));
  now = 1'800'000'000 - kClockSkewSeconds - 1;
  v = verifier.verify(b, "alice");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("not valid yet"), std::string::npos);
}

TEST_F(Fixture, WrongServerWrongNameAndAnotherManagerAreRefused) {
  Grant g = grant_for(alice, "alice");
  g.server_key = other_server.public_key;
  auto v = verifier.verify(encode_grant(g, manager), "alice");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("another server"), std::string::npos);
  v = verifier.verify(encode_grant(grant_for(alice, "alice"), manager), "mallory");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("not 'mallory'"), std::string::npos);
  v = verifier.verify(encode_grant(grant_for(alice, "alice"), bob), "alice");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("signature"), std::string::npos);
}

TEST_F(Fixture, EveryTamperedByteIsRefused) {
  const Bytes b = encode_grant(grant_for(alice, "alice"), manager);
  for (std::size_t i = 0; i < b.size(); ++i) {
    Bytes t = b;
    t[i] ^= 0x01;
    EXPECT_FALSE(verifier.verify(t, "alice")) << "byte " << i;
  }
  for (std::size_t n = 0; n < b.size(); ++n)
    EXPECT_FALSE(verifier.verify(ByteSpan(b.data(), n), "alice")) << "length " << n;
  Bytes longer = b;
  longer.push_back(0);
  EXPECT_FALSE(verifier.verify(longer, "alice"));
}

TEST_F(Fixture, RevocationListsAreSignedAndNeverRolledBack) {
  Bytes b = encode_grant(grant_for(alice, "alice"), manager);
  RevocationList l{now, {7, 9}};
  ASSERT_TRUE(verifier.update_revocations(encode_revocations(l, manager)));
  auto v = verifier.verify(b, "alice");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("revoked"), std::string::npos);
  EXPECT_FALSE(verifier.still_valid(7, now + 60));
  // Older list: refused (a replayed list cannot un-revoke).
  RevocationList older{now - 1, {}};
  EXPECT_FALSE(verifier.update_revocations(encode_revocations(older, manager)));
  EXPECT_FALSE(verifier.verify(b, "alice"));
  // Signed by someone else: refused.
  RevocationList forged{now + 10, {}};
  EXPECT_FALSE(verifier.update_revocations(encode_revocations(forged, bob)));
  // Tampered: refused.
  Bytes t = encode_revocations(RevocationList{now + 10, {}}, manager);
  t[10] ^= 1;
  EXPECT_FALSE(verifier.update_revocations(t));
  // A newer genuine list without 7 reinstates nothing by accident: only what it lists counts.
  ASSERT_TRUE(verifier.update_revocations(encode_revocations(RevocationList{now + 1, {9}}, manager)));
  EXPECT_TRUE(verifier.verify(b, "alice"));
  EXPECT_EQ(verifier.revoked_count(), 1u);
}

TEST_F(Fixture, DecoderRefusesOddFields) {
  Grant g = grant_for(alice, "alice");
  g.expires = g.issued;  // empty validity period
  EXPECT_FALSE(decode_grant(encode_grant(g, manager)));
  g = grant_for(alice, "has space");
  EXPECT_FALSE(decode_grant(encode_grant(g, manager)));
  g = grant_for(alice, std::string(65, 'x'));
  EXPECT_FALSE(decode_grant(encode_grant(g, manager)));
}

TEST(Identity, FileRoundTripModeAndRefusals) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ipsan-auth-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "id.key";
  std::filesystem::remove(path);
  const Identity id = generate_identity();
  ASSERT_TRUE(write_identity_file(path, id));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(write_identity_file(path, id));  // no silent overwrite
  auto back = read_identity_file(path);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->public_key, id.public_key);
  auto pk = load_public_key(public_key_hex(id.public_key));
  ASSERT_TRUE(pk);
  EXPECT_EQ(*pk, id.public_key);
  auto from_private = load_public_key(path.string());
  ASSERT_TRUE(from_private);
  EXPECT_EQ(*from_private, id.public_key);
  ::chmod(path.c_str(), 0644);
  auto open = read_identity_file(path);
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message.find("group or others"), std::string::npos);
  EXPECT_FALSE(parse_identity_text("ipsan-ed25519-v1 1234"));
  EXPECT_FALSE(parse_identity_text("ssh-ed25519 AAAA"));
  EXPECT_FALSE(parse_public_key("xyz"));
  std::filesystem::remove_all(dir);
}

TEST(Identity, SharedSecretIsSymmetricAndRefusesLowOrderKeys) {
  const Identity a = generate_identity(), b = generate_identity();
  auto ab = shared_secret(a, b.public_key), ba = shared_secret(b, a.public_key);
  ASSERT_TRUE(ab && ba);
  EXPECT_EQ(*ab, *ba);
  PublicKey zero{};  // not a valid point / low order
  EXPECT_FALSE(shared_secret(a, zero));
}

}  // namespace
}  // namespace ipsan::auth
