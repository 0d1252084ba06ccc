#include "ipsan/auth/grant.h"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace ipsan::auth {
namespace {

constexpr std::uint8_t kGrantMagic[4] = {'I', 'G', 'R', '1'};
constexpr std::uint8_t kRevMagic[4] = {'I', 'R', 'V', '1'};
constexpr std::uint8_t kGrantVersion = 1;
constexpr std::size_t kGrantFixed = 4 + 1 + 1 + 2 + 8 + 8 + 8 + 4 + 32 + 32 + 1;
constexpr std::size_t kMaxRevocations = 1u << 20;
constexpr std::string_view kLoginLabel = "ipsan-grant-login-v1";

void put64(Bytes& b, std::uint64_t v) {
  std::uint8_t t[8];
  store_be64(t, v);
  b.insert(b.end(), t, t + 8);
}
void put32(Bytes& b, std::uint32_t v) {
  std::uint8_t t[4];
  store_be32(t, v);
  b.insert(b.end(), t, t + 4);
}

bool printable_name(std::string_view n) {
  return !n.empty() && n.size() <= kMaxGrantName &&
         std::all_of(n.begin(), n.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

Bytes grant_body(const Grant& g) {
  Bytes b;
  b.reserve(kGrantFixed + g.client_name.size() + 64);
  b.insert(b.end(), kGrantMagic, kGrantMagic + 4);
  b.push_back(kGrantVersion);
  b.push_back(g.read_only ? 1 : 0);
  b.push_back(0);
  b.push_back(0);
  put64(b, g.serial);
  put64(b, g.issued);
  put64(b, g.expires);
  put32(b, g.device_id);
  b.insert(b.end(), g.client_key.begin(), g.client_key.end());
  b.insert(b.end(), g.server_key.begin(), g.server_key.end());
  b.push_back(static_cast<std::uint8_t>(g.client_name.size()));
  b.insert(b.end(), g.client_name.begin(), g.client_name.end());
  return b;
}

Key256 login_key_from(const std::array<std::uint8_t, 32>& dh, ByteSpan grant) {
  const Digest256 d = hmac_sha256(dh, {as_bytes(kLoginLabel), grant});
  Key256 k;
  std::copy(d.begin(), d.end(), k.begin());
  return k;
}

}  // namespace

Bytes encode_grant(const Grant& g, const Identity& manager) {
  Bytes b = grant_body(g);
  const Signature s = sign(manager, b);
  b.insert(b.end(), s.begin(), s.end());
  return b;
}

Result<Grant, Error> decode_grant(ByteSpan bytes) {
  if (bytes.size() > kMaxGrantBytes) return fail("grant too long");
  if (bytes.size() < kGrantFixed + 1 + 64) return fail("grant truncated");
  const std::uint8_t* p = bytes.data();
  if (std::memcmp(p, kGrantMagic, 4) != 0) return fail("not a grant (bad magic)");
  if (p[4] != kGrantVersion) return fail("grant version " + std::to_string(p[4]) + " unknown");
  if ((p[5] & ~1u) != 0 || p[6] != 0 || p[7] != 0) return fail("grant has unknown flags");
  Grant g;
  g.read_only = (p[5] & 1) != 0;
  g.serial = load_be64(p + 8);
  g.issued = load_be64(p + 16);
  g.expires = load_be64(p + 24);
  g.device_id = load_be32(p + 32);
  std::memcpy(g.client_key.data(), p + 36, 32);
  std::memcpy(g.server_key.data(), p + 68, 32);
  const std::size_t n = p[100];
  if (bytes.size() != kGrantFixed + n + 64) return fail("grant length does not match its name");
  g.client_name.assign(reinterpret_cast<const char*>(p + kGrantFixed), n);
  if (!printable_name(g.client_name)) return fail("grant client name is not 1-64 printable characters");
  if (g.expires <= g.issued) return fail("grant expires before it is issued");
  return g;
}

Result<Grant, Error> open_grant(ByteSpan bytes, const PublicKey& manager) {
  auto g = decode_grant(bytes);
  if (!g) return g;
  Signature s;
  std::memcpy(s.data(), bytes.data() + bytes.size() - 64, 64);
  if (!verify_signature(manager, bytes.first(bytes.size() - 64), s))
    return fail("grant signature is not the manager's (tampered or signed by another manager)");
  return g;
}

Bytes encode_revocations(const RevocationList& list, const Identity& manager) {
  std::vector<std::uint64_t> s = list.serials;
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  Bytes b;
  b.insert(b.end(), kRevMagic, kRevMagic + 4);
  put64(b, list.issued);
  put32(b, static_cast<std::uint32_t>(s.size()));
  for (auto v : s) put64(b, v);
  const Signature sig = sign(manager, b);
  b.insert(b.end(), sig.begin(), sig.end());
  return b;
}

Result<RevocationList, Error> open_revocations(ByteSpan bytes, const PublicKey& manager) {
  if (bytes.size() < 16 + 64) return fail("revocation list truncated");
  if (std::memcmp(bytes.data(), kRevMagic, 4) != 0) return fail("not a revocation list");
  RevocationList l;
  l.issued = load_be64(bytes.data() + 4);
  const std::uint32_t n = load_be32(bytes.data() + 12);
  if (n > kMaxRevocations || bytes.size() != 16 + std::size_t{n} * 8 + 64)
    return fail("revocation list length does not match its count");
  Signature s;
  std::memcpy(s.data(), bytes.data() + bytes.size() - 64, 64);
  if (!verify_signature(manager, bytes.first(bytes.size() - 64), s))
    return fail("revocation list signature is not the manager's");
  l.serials.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) l.serials.push_back(load_be64(bytes.data() + 16 + 8 * i));
  return l;
}

Result<Key256, Error> client_login_key(const Identity& client, ByteSpan grant) {
  auto g = decode_grant(grant);
  if (!g) return make_unexpected(g.error());
  if (g->client_key != client.public_key) return fail("the grant is for another client key");
  auto dh = shared_secret(client, g->server_key);
  if (!dh) return make_unexpected(dh.error());
  Key256 k = login_key_from(*dh, grant);
  sodium_memzero(dh->data(), dh->size());
  return k;
}

std::uint64_t system_unix_seconds() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

GrantVerifier::GrantVerifier(PublicKey manager, Identity server, UnixClock clock)
    : manager_(manager), server_(server), clock_(std::move(clock)) {
  crypto_init();
}

Result<VerifiedGrant, Error> GrantVerifier::verify(ByteSpan grant,
                                                   std::string_view client_name) const {
  auto g = open_grant(grant, manager_);
  if (!g) return make_unexpected(g.error());
  if (g->server_key != server_.public_key) return fail("grant is for another server");
  if (g->client_name != client_name)
    return fail("grant is for client '" + g->client_name + "', not '" + std::string(client_name) +
                "'");
  const std::uint64_t now = clock_();
  if (g->issued > now + kClockSkewSeconds) return fail("grant is not valid yet (clock skew?)");
  if (now >= g->expires)
    return fail("grant expired " + std::to_string(now - g->expires) + " s ago");
  {
    std::lock_guard lock(mu_);
    if (revoked_.count(g->serial)) return fail("grant " + std::to_string(g->serial) + " is revoked");
  }
  auto dh = shared_secret(server_, g->client_key);
  if (!dh) return fail("grant client key: " + dh.error().message);
  VerifiedGrant v;
  v.login_key = login_key_from(*dh, grant);
  sodium_memzero(dh->data(), dh->size());
  v.grant = std::move(*g);
  return v;
}

bool GrantVerifier::still_valid(std::uint64_t serial, std::uint64_t expires) const {
  if (clock_() >= expires) return false;
  std::lock_guard lock(mu_);
  return revoked_.count(serial) == 0;
}

Result<void, Error> GrantVerifier::update_revocations(ByteSpan signed_list) {
  auto l = open_revocations(signed_list, manager_);
  if (!l) return make_unexpected(l.error());
  std::lock_guard lock(mu_);
  if (l->issued < revocations_issued_) return fail("revocation list is older than the one in use");
  revoked_ = std::set<std::uint64_t>(l->serials.begin(), l->serials.end());
  revocations_issued_ = l->issued;
  return {};
}

std::uint64_t GrantVerifier::revocations_issued() const {
  std::lock_guard lock(mu_);
  return revocations_issued_;
}

std::size_t GrantVerifier::revoked_count() const {
  std::lock_guard lock(mu_);
  return revoked_.size();
}

}  // namespace ipsan::auth
