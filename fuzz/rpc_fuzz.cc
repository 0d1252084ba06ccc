// fuzz/rpc_fuzz.cc: libFuzzer target for the ONC-RPC framing and the ipsan procedure codec.
//
// Feeds one input to every decoder that sees network bytes: parse_call (+ MAC check with a fixed
// key), decode_request / login argument decoding for every procedure (on the parsed arguments and
// on the raw input, so argument decoders are reached without forging a MAC), and parse_reply +
// decode_results / login result decoding for every op. Decoders must never crash, read out of
// bounds or allocate unboundedly; a few invariants are checked with __builtin_trap().
// Seeds: fuzz/corpus/rpc/ (valid messages of each kind, written by proto_codec_test).
#include <cstddef>
#include <cstdint>

#include "ipsan/proto/codec.h"

namespace {

using namespace ipsan;
using namespace ipsan::proto;

constexpr Op kOps[] = {Op::kNull,  Op::kLoginBegin, Op::kLoginFinish, Op::kLogout,
                       Op::kReady, Op::kIdentify,   Op::kCapacity,    Op::kRead,
                       Op::kWrite, Op::kFlush,      Op::kTrim,        Op::kWriteZeroes};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void decode_args_all(ByteSpan args) {
  for (Op op : kOps) {
    if (auto v = decode_request(op, args)) {
      check(v->data.size() <= kMaxIoBytes);
      check(v->data.empty() || op == Op::kWrite);
    }
  }
  if (auto a = decode_login_begin_args(args)) check(valid_client_name(a->client_name));
  if (auto a = decode_login_finish_args(args)) check(valid_client_name(a->client_name));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool crypto_ok = crypto_init();
  if (!crypto_ok) return 0;
  const ByteSpan in(data, size);
  Key256 key{};
  key[0] = 1;

  auto call = parse_call(in);
  if (call) {
    check(call->args.size() <= size);
    if (call->flavor == kAuthIpsan) {
      check(call->covered_before.size() + kMacBytes + call->covered_after.size() == size);
      (void)verify_call(*call, key);
    }
    decode_args_all(call->args);
    // Re-encoding the decoded request must give arguments that decode to the same values.
    if (auto v = decode_request(call->op, call->args); v && is_device_op(call->op)) {
      const Bytes again = encode_call(call->xid, call->cred, key, to_request(*v));
      auto back = parse_call(again);
      check(back.has_value());
      auto v2 = decode_request(back->op, back->args);
      check(v2.has_value() && v2->lba == v->lba && v2->blocks == v->blocks &&
            v2->data.size() == v->data.size());
    }
  } else {
    (void)encode_reject(call.error());
  }
  decode_args_all(in);

  if (auto reply = parse_reply(in)) {
    (void)reply->to_errc();
    (void)verify_reply(*reply, key, SlotCred{});
    for (Op op : kOps) (void)decode_results(op, reply->results);
    (void)decode_login_begin_res(reply->results);
    (void)decode_login_finish_res(reply->results);
  }
  for (Op op : kOps) {
    if (auto r = decode_results(op, in)) check(r->data.size() <= kMaxIoBytes);
  }
  (void)decode_login_begin_res(in);
  (void)decode_login_finish_res(in);
  return 0;
}
