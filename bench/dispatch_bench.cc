// Micro-benchmark of request dispatch: a StorageServer handling an authenticated call end to end
// (parse, session and slot lookup, MAC check, decode, RamBackend read/write, reply encode + MAC,
// completion hop through the io_context) through proto's in-memory transport (mem_transport.h).
// Calls are encoded ahead in batches outside the timed region, so the figure is the server's cost
// alone.
#include <benchmark/benchmark.h>

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <vector>

#include "ipsan/backends/ram.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/mem_transport.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/server/server.h"

namespace {

using ipsan::Bytes;
using ipsan::ByteSpan;
using ipsan::Errc;
namespace proto = ipsan::proto;
namespace server = ipsan::server;

class Rig {
 public:
  Rig() {
    ipsan::crypto_init();
    ipsan::parse_key("dispatch-bench", key_);
    server::KeyRing keys;
    (void)keys.add("bench", key_);
    std::vector<server::Export> exports(1);
    exports[0].name = "ram0";
    exports[0].backend = *ipsan::backends::RamBackend::create(256u << 20);
    server_ = std::make_unique<server::StorageServer>(io_, server::ServerOptions{}, std::move(keys),
                                                      std::move(exports));
    auto t = std::make_unique<proto::MemServerTransport>();
    t_ = t.get();
    server_->attach(std::move(t));
    login();
  }

  bool ok() const { return session_ != 0; }
  std::uint32_t slots() const { return slots_; }

  // Delivers one call and runs the io_context until its reply is out.
  void deliver(Bytes msg) {
    t_->receive(1, std::move(msg));
    while (t_->sent_count() == 0) {
      if (io_.poll() == 0) break;
    }
    io_.restart();
    auto sent = t_->take_sent();
    if (!sent.empty()) last_ = std::move(sent.back().message);
  }
  const Bytes& last_reply() const { return last_; }

  Bytes call(proto::Op op, std::uint64_t lba, std::uint32_t blocks, ByteSpan data) {
    const std::uint32_t slot = next_slot_++ % slots_;
    proto::RequestView v;
    v.op = op;
    v.lba = lba;
    v.blocks = blocks;
    v.data = data;
    return proto::encode_call(xid_++, proto::SlotCred{session_, slot, ++seq_[slot]}, session_key_,
                              v);
  }

 private:
  void login() {
    proto::LoginBeginArgs b;
    b.client_name = "bench";
    ipsan::random_bytes(b.client_nonce);
    deliver(proto::encode_login_begin_call(xid_++, b));
    auto r1 = proto::parse_reply(ByteSpan(last_));
    if (!r1 || !r1->success()) return;
    auto begin = proto::decode_login_begin_res(r1->results);
    if (!begin || begin->status != Errc::kOk) return;
    proto::LoginFinishArgs f;
    f.client_name = "bench";
    f.client_nonce = b.client_nonce;
    f.server_nonce = begin->server_nonce;
    f.proof = proto::login_client_proof(key_, "bench", f.client_nonce, f.server_nonce);
    deliver(proto::encode_login_finish_call(xid_++, f));
    auto r2 = proto::parse_reply(ByteSpan(last_));
    if (!r2 || !r2->success()) return;
    auto fin = proto::decode_login_finish_res(r2->results);
    if (!fin || fin->status != Errc::kOk) return;
    session_key_ =
        proto::derive_session_key(key_, "bench", f.client_nonce, f.server_nonce, fin->session_id);
    slots_ = fin->slot_count;
    seq_.assign(slots_, 0);
    session_ = fin->session_id;
  }

  boost::asio::io_context io_;
  ipsan::Key256 key_{};
  ipsan::Key256 session_key_{};
  std::unique_ptr<server::StorageServer> server_;
  proto::MemServerTransport* t_ = nullptr;
  Bytes last_;
  std::uint64_t session_ = 0;
  std::uint32_t slots_ = 0;
  std::uint32_t next_slot_ = 0;
  std::uint32_t xid_ = 1;
  std::vector<std::uint64_t> seq_;
};

void run_dispatch(benchmark::State& state, proto::Op op) {
  Rig rig;
  if (!rig.ok()) {
    state.SkipWithError("login failed");
    return;
  }
  const auto len = static_cast<std::uint32_t>(state.range(0));
  const Bytes data(op == proto::Op::kWrite ? len : 0, 0x5a);
  const std::uint64_t span_blocks = (256u << 20) / 512 - len / 512;
  constexpr std::size_t kBatch = 256;
  std::vector<Bytes> batch;
  std::size_t next = kBatch;
  std::uint64_t lba = 0;
  for (auto _ : state) {
    if (next == kBatch) {
      state.PauseTiming();
      batch.clear();
      for (std::size_t i = 0; i < kBatch; ++i) {
        batch.push_back(rig.call(op, lba, len / 512, data));
        lba = (lba + len / 512) % span_blocks;
      }
      next = 0;
      state.ResumeTiming();
    }
    rig.deliver(std::move(batch[next++]));
  }
  auto r = proto::parse_reply(ByteSpan(rig.last_reply()));
  if (!r || !r->success()) state.SkipWithError("last call failed");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * len);
}

void BM_DispatchRead(benchmark::State& state) { run_dispatch(state, proto::Op::kRead); }
void BM_DispatchWrite(benchmark::State& state) { run_dispatch(state, proto::Op::kWrite); }
BENCHMARK(BM_DispatchRead)->Arg(4096)->Arg(1 << 20);
BENCHMARK(BM_DispatchWrite)->Arg(4096)->Arg(1 << 20);

}  // namespace
