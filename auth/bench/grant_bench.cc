// Server and client CPU per login: a static key-ring login (HMAC-SHA256 proof) against a grant
// login (Ed25519 signature check + X25519 + the same HMAC proof), and the memory a server holds
// per revoked serial. Prints figures; asserts nothing (bench/RESULTS.md).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include "ipsan/auth/grant.h"
#include "ipsan/base/crypto.h"
#include "ipsan/proto/login.h"

namespace {

using namespace ipsan;

auth::Identity seeded(std::uint8_t n) {
  std::array<std::uint8_t, 32> s{};
  s.fill(n);
  return auth::identity_from_seed(s);
}

struct World {
  auth::Identity manager = seeded(1), server = seeded(2), client = seeded(3);
  Bytes grant;
  World() {
    auth::Grant g;
    g.serial = 1;
    g.issued = 1'800'000'000;
    g.expires = g.issued + 300;
    g.client_key = client.public_key;
    g.server_key = server.public_key;
    g.client_name = "alice";
    grant = auth::encode_grant(g, manager);
  }
};

void BM_ServerStaticKeyLogin(benchmark::State& st) {
  Key256 key{};
  key.fill(7);
  proto::LoginNonce cn{}, sn{};
  for (auto _ : st) {
    auto p = proto::login_client_proof(key, "alice", cn, sn);
    auto q = proto::login_client_proof(key, "alice", cn, sn);
    benchmark::DoNotOptimize(constant_time_equal(p, q));
  }
}
BENCHMARK(BM_ServerStaticKeyLogin);

void BM_ServerGrantLogin(benchmark::State& st) {
  World w;
  auth::GrantVerifier v(w.manager.public_key, w.server, [] { return 1'800'000'010ull; });
  proto::LoginNonce cn{}, sn{};
  for (auto _ : st) {
    auto r = v.verify(w.grant, "alice");
    auto p = proto::login_client_proof(r->login_key, "alice", cn, sn);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_ServerGrantLogin);

void BM_ClientGrantLoginKey(benchmark::State& st) {
  World w;
  for (auto _ : st) benchmark::DoNotOptimize(auth::client_login_key(w.client, w.grant));
}
BENCHMARK(BM_ClientGrantLoginKey);

void BM_RevocationMemory(benchmark::State& st) {
  World w;
  const auto n = static_cast<std::size_t>(st.range(0));
  for (auto _ : st) {
    auth::RevocationList l{1, {}};
    for (std::size_t i = 0; i < n; ++i) l.serials.push_back(i + 1);
    const Bytes signed_list = auth::encode_revocations(l, w.manager);
    l.serials.clear();
    l.serials.shrink_to_fit();
    const auto before = mallinfo2().uordblks;
    auto* v = new auth::GrantVerifier(w.manager.public_key, w.server);
    if (!v->update_revocations(signed_list)) st.SkipWithError("list refused");
    const auto after = mallinfo2().uordblks;
    st.counters["bytes_per_revoked_serial"] =
        static_cast<double>(after - before) / static_cast<double>(n);
    delete v;
  }
}
BENCHMARK(BM_RevocationMemory)->Arg(100000)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
