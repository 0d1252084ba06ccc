// libFuzzer target: the storage manager's grant and revocation-list decoders (auth/grant.h) and
// the verifier a server runs on every grant login. Invariants: a decoded grant re-encodes to the
// same signed bytes; nothing signed by a key the fuzzer does not have is ever accepted.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ipsan/auth/grant.h"
#include "ipsan/auth/grant_keeper.h"

namespace {
const ipsan::auth::Identity& key(std::uint8_t n) {
  static ipsan::auth::Identity ids[2] = {
      ipsan::auth::identity_from_seed(std::array<std::uint8_t, 32>{1}),
      ipsan::auth::identity_from_seed(std::array<std::uint8_t, 32>{2})};
  return ids[n];
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipsan;
  const ByteSpan in(data, size);
  auto g = auth::decode_grant(in);
  if (g) {
    // The body (everything before the signature) round-trips exactly.
    const Bytes again = auth::encode_grant(*g, key(0));
    if (again.size() != size || std::memcmp(again.data(), data, size - 64) != 0) std::abort();
    if (g->client_name.empty() || g->client_name.size() > auth::kMaxGrantName) std::abort();
    if (g->expires <= g->issued) std::abort();
  }
  static auth::GrantVerifier verifier(key(0).public_key, key(1), [] { return 1'800'000'000ull; });
  // Only grants signed with key(0) can pass; the fuzzer cannot forge Ed25519.
  auto v = verifier.verify(in, g ? g->client_name : "x");
  if (v && !auth::open_grant(in, key(0).public_key)) std::abort();
  auto r = auth::open_revocations(in, key(0).public_key);
  (void)r;
  (void)verifier.update_revocations(in);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = auth::parse_grant_text(text);
  if (t) (void)auth::decode_grant(*t);
  return 0;
}
