// Micro-benchmarks of ipsan's per-request hot paths: XDR encode/decode of WRITE calls and READ
// replies (4 KiB and 1 MiB, MAC included, as on the wire), CRC32C and the per-call Poly1305 MAC.
// rudp_bench.cc (reliable-UDP engine) and dispatch_bench.cc (server dispatch) join this binary.
// Bytes/s figures are payload bytes. Run: build/.../bench/ipsan_micro_bench [--benchmark_filter=RE]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>

#include "ipsan/base/crc32c.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/rng.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/rpc.h"

namespace {

using ipsan::Bytes;
using ipsan::ByteSpan;
namespace proto = ipsan::proto;

Bytes random_bytes(std::size_t n, std::uint64_t seed = 1) {
  ipsan::Rng rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng.next());
  return b;
}

ipsan::Key256 bench_key() {
  ipsan::Key256 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return k;
}

// Client: WRITE call from a view (the data is copied once into the message) + MAC.
void BM_EncodeWriteCall(benchmark::State& state) {
  ipsan::crypto_init();
  const auto len = static_cast<std::size_t>(state.range(0));
  const Bytes data = random_bytes(len);
  const auto key = bench_key();
  proto::RequestView req;
  req.op = proto::Op::kWrite;
  req.blocks = static_cast<std::uint32_t>(len / 512);
  req.data = data;
  std::uint64_t seq = 1;
  for (auto _ : state) {
    Bytes m = proto::encode_call(1, proto::SlotCred{42, 3, seq++}, key, req);
    benchmark::DoNotOptimize(m.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * len));
}
BENCHMARK(BM_EncodeWriteCall)->Arg(4096)->Arg(1 << 20);

// Server: parse_call + verify_call (MAC) + decode_request of a WRITE call.
void BM_DecodeWriteCall(benchmark::State& state) {
  ipsan::crypto_init();
  const auto len = static_cast<std::size_t>(state.range(0));
  const Bytes data = random_bytes(len);
  const auto key = bench_key();
  proto::RequestView req;
  req.op = proto::Op::kWrite;
  req.blocks = static_cast<std::uint32_t>(len / 512);
  req.data = data;
  const Bytes msg = proto::encode_call(1, proto::SlotCred{42, 3, 7}, key, req);
  for (auto _ : state) {
    auto call = proto::parse_call(ByteSpan(msg));
    if (!call || !proto::verify_call(*call, key)) state.SkipWithError("bad call");
    auto r = proto::decode_request(call->op, call->args);
    benchmark::DoNotOptimize(r->data.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * len));
}
BENCHMARK(BM_DecodeWriteCall)->Arg(4096)->Arg(1 << 20);

// Server: READ reply laid out around the data (filled by memcpy, standing in for the back end)
// and sealed with the MAC.
void BM_EncodeReadReply(benchmark::State& state) {
  ipsan::crypto_init();
  const auto len = static_cast<std::size_t>(state.range(0));
  const Bytes data = random_bytes(len);
  const auto key = bench_key();
  std::uint64_t seq = 1;
  for (auto _ : state) {
    proto::ReadReplyBuilder b(1, proto::SlotCred{42, 3, seq++}, len);
    std::memcpy(b.data().data(), data.data(), len);
    Bytes m = b.finish(key);
    benchmark::DoNotOptimize(m.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * len));
}
BENCHMARK(BM_EncodeReadReply)->Arg(4096)->Arg(1 << 20);

// Client: parse_reply + verify_reply (MAC) + decode_results (copies the data into Reply::data).
void BM_DecodeReadReply(benchmark::State& state) {
  ipsan::crypto_init();
  const auto len = static_cast<std::size_t>(state.range(0));
  const Bytes data = random_bytes(len);
  const auto key = bench_key();
  const proto::SlotCred cred{42, 3, 7};
  proto::ReadReplyBuilder b(1, cred, len);
  std::memcpy(b.data().data(), data.data(), len);
  const Bytes msg = b.finish(key);
  for (auto _ : state) {
    auto r = proto::parse_reply(ByteSpan(msg));
    if (!r || !proto::verify_reply(*r, key, cred)) state.SkipWithError("bad reply");
    auto res = proto::decode_results(proto::Op::kRead, r->results);
    benchmark::DoNotOptimize(res->data.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * len));
}
BENCHMARK(BM_DecodeReadReply)->Arg(4096)->Arg(1 << 20);

// Client, as SanClient receives a READ reply: a message freshly delivered by the transport (the
// copy stands for the engine's reassembly buffer), parse + MAC check + decode, then both freed.
// Arg 1: decode_results(op, results, message) takes the data over in the message's buffer;
// arg 0: decode_results(op, results) copies it into a new one.
void BM_ClientReadReply(benchmark::State& state) {
  ipsan::crypto_init();
  const auto len = static_cast<std::size_t>(state.range(0));
  const bool take = state.range(1) != 0;
  const Bytes data = random_bytes(len);
  const auto key = bench_key();
  const proto::SlotCred cred{42, 3, 7};
  proto::ReadReplyBuilder b(1, cred, len);
  std::memcpy(b.data().data(), data.data(), len);
  const Bytes msg = b.finish(key);
  for (auto _ : state) {
    Bytes m = msg;
    auto r = proto::parse_reply(ByteSpan(m));
    if (!r || !proto::verify_reply(*r, key, cred)) state.SkipWithError("bad reply");
    auto res = take ? proto::decode_results(proto::Op::kRead, r->results, m)
                    : proto::decode_results(proto::Op::kRead, r->results);
    benchmark::DoNotOptimize(res->data.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * len));
}
BENCHMARK(BM_ClientReadReply)
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Args({1 << 20, 0})
    ->Args({1 << 20, 1});

void BM_Crc32c(benchmark::State& state) {
  const Bytes data = random_bytes(static_cast<std::size_t>(state.range(0)));
  std::uint32_t crc = 0;
  for (auto _ : state) {
    crc = ipsan::crc32c_extend(crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Crc32c)->Arg(1500)->Arg(1 << 20);

void BM_Crc32cPortable(benchmark::State& state) {
  const Bytes data = random_bytes(static_cast<std::size_t>(state.range(0)));
  std::uint32_t crc = 0;
  for (auto _ : state) {
    crc = ipsan::crc32c_extend_portable(crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Crc32cPortable)->Arg(1500)->Arg(1 << 20);

// The per-call MAC: XChaCha20 one-time key + Poly1305 over the message (two parts, as seal()).
void BM_AeadMac(benchmark::State& state) {
  ipsan::crypto_init();
  const Bytes data = random_bytes(static_cast<std::size_t>(state.range(0)));
  const auto key = bench_key();
  std::uint64_t seq = 1;
  const std::size_t half = data.size() / 2;
  for (auto _ : state) {
    auto nonce = proto::mac_nonce(proto::kDirCall, 3, seq++);
    auto tag =
        ipsan::aead_mac(key, nonce, {ByteSpan(data).first(half), ByteSpan(data).subspan(half)});
    benchmark::DoNotOptimize(tag);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_AeadMac)->Arg(96)->Arg(4096)->Arg(1 << 20);

// For scale: what a plain copy of the payload costs on this machine.
void BM_Memcpy(benchmark::State& state) {
  const auto len = static_cast<std::size_t>(state.range(0));
  const Bytes src = random_bytes(len);
  Bytes dst(len);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), len);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * len));
}
BENCHMARK(BM_Memcpy)->Arg(4096)->Arg(1 << 20)->Arg(64 << 20);

}  // namespace

BENCHMARK_MAIN();
