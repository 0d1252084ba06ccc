// Tests of the ONC-RPC framing (rpc.h) and the ipsan procedure codec (codec.h): round trips,
// a byte-by-byte known-answer call, and hostile input (truncation, bit flips, bad headers).
#include "ipsan/proto/codec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "ipsan/base/rng.h"
#include "ipsan/proto/transport.h"

namespace ipsan::proto {
namespace {

constexpr Op kDeviceOps[] = {Op::kReady, Op::kIdentify, Op::kCapacity, Op::kRead,
                             Op::kWrite, Op::kFlush,    Op::kTrim,     Op::kWriteZeroes};
constexpr Op kAllOps[] = {Op::kNull,  Op::kLoginBegin, Op::kLoginFinish, Op::kLogout,
                          Op::kReady, Op::kIdentify,   Op::kCapacity,    Op::kRead,
                          Op::kWrite, Op::kFlush,      Op::kTrim,        Op::kWriteZeroes};

Key256 test_key(std::uint8_t base) {
  Key256 k;
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(base + i);
  return k;
}

class Codec : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto_init()); }
  const Key256 key_ = test_key(1);
  const SlotCred cred_{0x1122334455667788ull, 3, 42};
};

Request make_request(Op op) {
  Request r;
  r.op = op;
  r.device_id = 7;
  r.lba = 0x123456789aull;
  r.blocks = op == Op::kWrite ? 2 : 8;
  r.flags = op == Op::kWrite ? kFlagFua : 0;
  if (op == Op::kWrite) {
    r.data.resize(1026);  // deliberately not a multiple of 4: exercises padding
    for (std::size_t i = 0; i < r.data.size(); ++i) r.data[i] = static_cast<std::uint8_t>(i * 7);
  }
  return r;
}

Reply make_reply(Op op) {
  Reply r;
  if (op == Op::kRead) r.data = Bytes(1027, 0x5a);
  if (op == Op::kIdentify) {
    r.identity.vendor = "IPSAN";
    r.identity.product = "VirtualDisk";
    r.identity.revision = "0001";
    r.identity.serial = "SN-0123456789";
    for (std::size_t i = 0; i < 16; ++i) r.identity.uuid[i] = static_cast<std::uint8_t>(0xc0 + i);
    r.identity.block_size = 4096;
    r.identity.block_count = 1ull << 33;
    r.identity.capabilities = kCapFua | kCapFlush | kCapTrim;
    r.identity.max_transfer_blocks = 2048;
    r.identity.optimal_transfer_blocks = 256;
  }
  if (op == Op::kCapacity || op == Op::kReady) r.capacity = {512, 1000000};
  return r;
}

// ---------------------------------------------------------------------------------------------
// Known answer: a READ call checked byte by byte against RFC 5531 / docs/PROTOCOL.md.

TEST_F(Codec, KnownAnswerReadCall) {
  Request req;
  req.op = Op::kRead;
  req.device_id = 5;
  req.lba = 0x0102030405060708ull;
  req.blocks = 16;
  req.flags = 0;
  const Bytes m = encode_call(0xdeadbeef, cred_, key_, req);
  const std::string expected_hex =
      "deadbeef"                          // xid
      "00000000"                          // msg_type CALL
      "00000002"                          // rpcvers 2
      "20495341"                          // prog IPSAN_PROG
      "00000001"                          // vers 1
      "00000014"                          // proc 20 = READ
      "49505331"                          // cred flavor AUTH_IPSAN "IPS1"
      "00000014"                          // cred body length 20
      "1122334455667788"                  // session_id
      "00000003"                          // slot
      "000000000000002a"                  // seq 42
      "49505331"                          // verf flavor AUTH_IPSAN
      "00000010"                          // verf length 16
      "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@"  // MAC (checked below)
      "00000005"                          // device_id
      "0102030405060708"                  // lba
      "00000010"                          // blocks
      "00000000"                          // flags
      "00000000";                         // data<> empty
  ASSERT_EQ(m.size() * 2, expected_hex.size());
  const std::string got = to_hex(m);
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (expected_hex[i] == '@') continue;
    ASSERT_EQ(got[i], expected_hex[i]) << "hex digit " << i << " of " << got;
  }
  EXPECT_EQ(m.size(), kIpsanCallHeaderBytes + kIoArgsBytes);
  // MAC = Poly1305/XChaCha20 under the session key, nonce 'C', 7 zero, slot BE64, seq BE64,
  // over the message minus the 16 MAC bytes at offset 60.
  Nonce192 nonce{};
  nonce[0] = 0x43;
  nonce[15] = 3;
  nonce[23] = 42;
  EXPECT_EQ(mac_nonce(kDirCall, 3, 42), nonce);
  const ByteSpan all(m);
  const Tag128 tag = aead_mac(key_, nonce, {all.first(60), all.subspan(76)});
  EXPECT_TRUE(std::equal(tag.begin(), tag.end(), m.begin() + 60));
}

TEST_F(Codec, KnownAnswerNullCallAndRejects) {
  EXPECT_EQ(to_hex(encode_null_call(1)),
            "00000001000000000000000220495341000000010000000000000000000000000000000000000000");
  EXPECT_EQ(to_hex(encode_reject(9, {RejectKind::kAuthError, 0, AuthStat::kRejectedCred})),
            "00000009000000010000000100000001"
            "00000002");
  EXPECT_EQ(to_hex(encode_reject(9, {RejectKind::kRpcMismatch, 0, AuthStat::kOk})),
            "0000000900000001000000010000000000000002"
            "00000002");
  EXPECT_EQ(to_hex(encode_reject(9, {RejectKind::kProgMismatch, 0, AuthStat::kOk})),
            "00000009000000010000000000000000000000000000000200000001"
            "00000001");
  EXPECT_TRUE(encode_reject({RejectKind::kDrop, 9, AuthStat::kOk}).empty());
  EXPECT_EQ(encode_reject(make_reject(RejectKind::kAuthError, 9, AuthStat::kRejectedCred)),
            encode_reject(9, {RejectKind::kAuthError, 0, AuthStat::kRejectedCred}));
}

// ---------------------------------------------------------------------------------------------
// Round trips.

TEST_F(Codec, CallRoundTripEveryDeviceOp) {
  for (Op op : kDeviceOps) {
    SCOPED_TRACE(op_name(op));
    const Request req = make_request(op);
    const Bytes m = encode_call(77, cred_, key_, req);
    auto call = parse_call(m);
    ASSERT_TRUE(call);
    EXPECT_EQ(call->xid, 77u);
    EXPECT_EQ(call->op, op);
    EXPECT_EQ(call->proc, static_cast<std::uint32_t>(op));
    EXPECT_EQ(call->flavor, kAuthIpsan);
    EXPECT_EQ(call->cred.session_id, cred_.session_id);
    EXPECT_EQ(call->cred.slot, cred_.slot);
    EXPECT_EQ(call->cred.seq, cred_.seq);
    EXPECT_TRUE(verify_call(*call, key_));
    EXPECT_FALSE(verify_call(*call, test_key(2)));
    auto v = decode_request(call->op, call->args);
    ASSERT_TRUE(v);
    EXPECT_EQ(encode_call(77, cred_, key_, *v), m);  // the view overload gives the same bytes
    const Request back = to_request(*v);
    EXPECT_EQ(back.op, req.op);
    EXPECT_EQ(back.device_id, req.device_id);
    EXPECT_EQ(back.lba, req.lba);
    EXPECT_EQ(back.blocks, req.blocks);
    EXPECT_EQ(back.flags, req.flags);
    EXPECT_EQ(back.data, req.data);
    if (op == Op::kWrite) {
      // WRITE data is a view into the message, not a copy.
      EXPECT_GE(v->data.data(), m.data());
      EXPECT_LE(v->data.data() + v->data.size(), m.data() + m.size());
    }
  }
}

TEST_F(Codec, LargestWriteAndReadRoundTripOneByteMoreFails) {
  Request req = make_request(Op::kWrite);
  req.data.assign(kMaxIoBytes, 0xab);
  const Bytes m = encode_call(1, cred_, key_, req);
  auto c = parse_call(m);
  ASSERT_TRUE(c);
  EXPECT_TRUE(verify_call(*c, key_));
  auto v = decode_request(Op::kWrite, c->args);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->data.size(), kMaxIoBytes);
  req.data.push_back(0);
  const Bytes big = encode_call(2, cred_, key_, req);
  auto cb = parse_call(big);
  ASSERT_TRUE(cb);
  EXPECT_EQ(decode_request(Op::kWrite, cb->args).error(), Errc::kTooLarge);

  ReadReplyBuilder b(3, cred_, kMaxIoBytes);
  const Bytes rm = b.finish(key_);
  auto pr = parse_reply(rm);
  ASSERT_TRUE(pr);
  EXPECT_TRUE(verify_reply(*pr, key_, cred_));
  auto d = decode_results(Op::kRead, pr->results);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->data.size(), kMaxIoBytes);
}

TEST_F(Codec, DataIsSentOnlyForWrite) {
  Request req = make_request(Op::kRead);
  req.data = Bytes(64, 1);
  const Bytes m = encode_call(1, cred_, key_, req);
  auto v = decode_request(Op::kRead, parse_call(m)->args);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->data.empty());
}

TEST_F(Codec, NullAndLogoutCalls) {
  const Bytes null_call_msg = encode_null_call(5);
  auto null_call = parse_call(null_call_msg);
  ASSERT_TRUE(null_call);
  EXPECT_EQ(null_call->op, Op::kNull);
  EXPECT_EQ(null_call->flavor, kAuthNone);
  EXPECT_FALSE(verify_call(*null_call, key_));  // nothing to verify: not authenticated
  EXPECT_TRUE(decode_request(Op::kNull, null_call->args));

  const Bytes lo = encode_logout_call(6, cred_, key_);
  auto logout = parse_call(lo);
  ASSERT_TRUE(logout);
  EXPECT_EQ(logout->op, Op::kLogout);
  EXPECT_TRUE(verify_call(*logout, key_));
  EXPECT_TRUE(logout->args.empty());
  EXPECT_TRUE(decode_request(Op::kLogout, logout->args));

  // NULL may also carry the ipsan credential (a keep-alive inside a session).
  Request ping;
  const Bytes auth_null_msg = encode_call(7, cred_, key_, ping);
  auto auth_null = parse_call(auth_null_msg);
  ASSERT_TRUE(auth_null);
  EXPECT_TRUE(verify_call(*auth_null, key_));
}

TEST_F(Codec, ReplyRoundTripEveryOpAndStatus) {
  for (Op op : kDeviceOps) {
    for (Errc st : {Errc::kOk, Errc::kLbaOutOfRange, Errc::kMediumError}) {
      SCOPED_TRACE(std::string(op_name(op)) + " " + std::string(to_string(st)));
      Reply rep = make_reply(op);
      rep.status = st;
      const Bytes m = encode_reply(99, cred_, key_, op, rep);
      auto pr = parse_reply(m);
      ASSERT_TRUE(pr);
      EXPECT_EQ(pr->xid, 99u);
      EXPECT_TRUE(pr->success());
      EXPECT_EQ(pr->to_errc(), Errc::kOk);
      EXPECT_EQ(pr->verf_flavor, kAuthIpsan);
      EXPECT_TRUE(verify_reply(*pr, key_, cred_));
      EXPECT_FALSE(verify_reply(*pr, test_key(9), cred_));
      EXPECT_FALSE(verify_reply(*pr, key_, SlotCred{cred_.session_id, cred_.slot, cred_.seq + 1}));
      EXPECT_FALSE(verify_reply(*pr, key_, SlotCred{cred_.session_id, cred_.slot + 1, cred_.seq}));
      auto d = decode_results(op, pr->results);
      ASSERT_TRUE(d);
      EXPECT_EQ(d->status, st);
      if (st != Errc::kOk) continue;
      EXPECT_EQ(d->data, rep.data);
      if (op == Op::kIdentify) {
        EXPECT_EQ(d->identity.vendor, rep.identity.vendor);
        EXPECT_EQ(d->identity.product, rep.identity.product);
        EXPECT_EQ(d->identity.revision, rep.identity.revision);
        EXPECT_EQ(d->identity.serial, rep.identity.serial);
        EXPECT_EQ(d->identity.uuid, rep.identity.uuid);
        EXPECT_EQ(d->identity.block_size, rep.identity.block_size);
        EXPECT_EQ(d->identity.block_count, rep.identity.block_count);
        EXPECT_EQ(d->identity.capabilities, rep.identity.capabilities);
        EXPECT_EQ(d->identity.max_transfer_blocks, rep.identity.max_transfer_blocks);
        EXPECT_EQ(d->identity.optimal_transfer_blocks, rep.identity.optimal_transfer_blocks);
      }
      if (op == Op::kCapacity || op == Op::kReady) {
        EXPECT_EQ(d->capacity.block_size, rep.capacity.block_size);
        EXPECT_EQ(d->capacity.block_count, rep.capacity.block_count);
      }
    }
  }
}

TEST_F(Codec, LogoutAndNullReplies) {
  const Bytes pr_msg = encode_reply(3, cred_, key_, Op::kLogout, Reply{});
  auto pr = parse_reply(pr_msg);
  ASSERT_TRUE(pr);
  EXPECT_TRUE(verify_reply(*pr, key_, cred_));
  auto d = decode_results(Op::kLogout, pr->results);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, Errc::kOk);

  const Bytes nm = encode_unauthenticated_reply(4, Op::kNull, Reply{});
  EXPECT_EQ(to_hex(nm),
            "00000004"
            "00000001"
            "00000000"
            "00000000"
            "00000000"
            "00000000");
  auto np = parse_reply(nm);
  ASSERT_TRUE(np);
  EXPECT_TRUE(np->success());
  EXPECT_EQ(np->verf_flavor, kAuthNone);
  EXPECT_FALSE(verify_reply(*np, key_, cred_));
  EXPECT_TRUE(np->results.empty());
  EXPECT_TRUE(decode_results(Op::kNull, np->results));
}

TEST_F(Codec, UnauthenticatedSeqMisorderedForRead) {
  Reply rep;
  rep.status = Errc::kSeqMisordered;
  const Bytes m = encode_unauthenticated_reply(8, Op::kRead, rep);
  auto pr = parse_reply(m);
  ASSERT_TRUE(pr);
  EXPECT_TRUE(pr->success());
  EXPECT_FALSE(verify_reply(*pr, key_, cred_));  // a hint only
  auto d = decode_results(Op::kRead, pr->results);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, Errc::kSeqMisordered);
  EXPECT_TRUE(d->data.empty());
}

TEST_F(Codec, UnauthenticatedReplyRoundTrip) {
  Reply rep = make_reply(Op::kCapacity);
  const Bytes pr_msg = encode_unauthenticated_reply(8, Op::kCapacity, rep);
  auto pr = parse_reply(pr_msg);
  ASSERT_TRUE(pr);
  EXPECT_EQ(pr->verf_flavor, kAuthNone);
  auto d = decode_results(Op::kCapacity, pr->results);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->capacity.block_count, 1000000u);
}

TEST_F(Codec, ReadReplyBuilderMatchesEncodeReply) {
  for (std::size_t len : {0u, 1u, 3u, 4u, 4096u, 4099u}) {
    Reply rep;
    rep.data.resize(len);
    for (std::size_t i = 0; i < len; ++i) rep.data[i] = static_cast<std::uint8_t>(i ^ 0x33);
    ReadReplyBuilder b(1234, cred_, len);
    MutableByteSpan area = b.data();
    ASSERT_EQ(area.size(), len);
    std::copy(rep.data.begin(), rep.data.end(), area.begin());
    const Bytes built = b.finish(key_);
    EXPECT_EQ(built, encode_reply(1234, cred_, key_, Op::kRead, rep)) << len;
    auto pr = parse_reply(built);
    ASSERT_TRUE(pr);
    EXPECT_TRUE(verify_reply(*pr, key_, cred_));
    auto d = decode_results(Op::kRead, pr->results);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->data, rep.data);
  }
}

// decode_results(op, results, message): READ data handed over in the message's own buffer, the
// same Reply as the copying decoder; anything else falls back and leaves the message alone.
TEST_F(Codec, DecodeResultsTakesReadDataOverFromTheMessage) {
  for (std::size_t len : {1u, 3u, 4096u, 4099u}) {
    Reply rep;
    rep.data.resize(len);
    for (std::size_t i = 0; i < len; ++i) rep.data[i] = static_cast<std::uint8_t>(i * 7);
    Bytes m = encode_reply(77, cred_, key_, Op::kRead, rep);
    auto pr = parse_reply(m);
    ASSERT_TRUE(pr);
    auto copied = decode_results(Op::kRead, pr->results);
    ASSERT_TRUE(copied);
    const std::uint8_t* buffer = m.data();
    auto taken = decode_results(Op::kRead, pr->results, m);
    ASSERT_TRUE(taken);
    EXPECT_EQ(taken->status, Errc::kOk);
    EXPECT_EQ(taken->data, rep.data) << len;
    EXPECT_EQ(taken->data, copied->data);
    EXPECT_EQ(taken->data.data(), buffer);  // no new allocation
    EXPECT_TRUE(m.empty());
  }
  // Not a READ with data: decoded as before, message untouched.
  Reply st;
  st.status = Errc::kLbaOutOfRange;
  Bytes m = encode_reply(78, cred_, key_, Op::kRead, st);
  const Bytes keep = m;
  auto pr = parse_reply(m);
  ASSERT_TRUE(pr);
  auto d = decode_results(Op::kRead, pr->results, m);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, Errc::kLbaOutOfRange);
  EXPECT_EQ(m, keep);
  Bytes cm = encode_reply(79, cred_, key_, Op::kCapacity, make_reply(Op::kCapacity));
  auto pc = parse_reply(cm);
  ASSERT_TRUE(pc);
  auto dc = decode_results(Op::kCapacity, pc->results, cm);
  ASSERT_TRUE(dc);
  EXPECT_EQ(dc->capacity.block_count, 1000000u);
  EXPECT_FALSE(cm.empty());
  // Trailing garbage after the data: refused like the copying decoder, message untouched.
  Reply eight;
  eight.data = Bytes(8, 0x11);
  Bytes bad = encode_reply(80, cred_, key_, Op::kRead, eight);
  bad.insert(bad.end(), {0, 0, 0, 0});
  auto pb = parse_reply(bad);
  ASSERT_TRUE(pb);
  const std::size_t before = bad.size();
  EXPECT_FALSE(decode_results(Op::kRead, pb->results, bad));
  EXPECT_EQ(bad.size(), before);
}

TEST_F(Codec, RejectRepliesParse) {
  struct Case {
    RejectKind kind;
    AuthStat auth;
    Errc errc;
  };
  const Case cases[] = {
      {RejectKind::kRpcMismatch, AuthStat::kOk, Errc::kBadMessage},
      {RejectKind::kAuthError, AuthStat::kBadCred, Errc::kAuthFailed},
      {RejectKind::kAuthError, AuthStat::kRejectedCred, Errc::kStaleSession},
      {RejectKind::kAuthError, AuthStat::kBadVerf, Errc::kAuthFailed},
      {RejectKind::kAuthError, AuthStat::kTooWeak, Errc::kAuthFailed},
      {RejectKind::kProgUnavail, AuthStat::kOk, Errc::kNotSupported},
      {RejectKind::kProgMismatch, AuthStat::kOk, Errc::kNotSupported},
      {RejectKind::kProcUnavail, AuthStat::kOk, Errc::kNotSupported},
      {RejectKind::kGarbageArgs, AuthStat::kOk, Errc::kBadMessage},
      {RejectKind::kSystemErr, AuthStat::kOk, Errc::kInternal},
  };
  for (const Case& c : cases) {
    const Bytes m = encode_reject(31, {c.kind, 0, c.auth});
    auto pr = parse_reply(m);
    ASSERT_TRUE(pr) << static_cast<int>(c.kind);
    EXPECT_EQ(pr->xid, 31u);
    EXPECT_FALSE(pr->success());
    EXPECT_EQ(pr->to_errc(), c.errc) << static_cast<int>(c.kind);
    EXPECT_FALSE(verify_reply(*pr, key_, cred_));
    if (c.kind == RejectKind::kAuthError) {
      EXPECT_EQ(pr->auth_stat, c.auth);
    }
    if (c.kind == RejectKind::kRpcMismatch) {
      EXPECT_EQ(pr->mismatch_low, 2u);
      EXPECT_EQ(pr->mismatch_high, 2u);
    }
    if (c.kind == RejectKind::kProgMismatch) {
      EXPECT_EQ(pr->mismatch_low, kVersion);
      EXPECT_EQ(pr->mismatch_high, kVersion);
    }
  }
}

TEST_F(Codec, AuthenticatedAcceptError) {
  const Bytes m = encode_accept_error(12, cred_, key_, AcceptStat::kGarbageArgs);
  auto pr = parse_reply(m);
  ASSERT_TRUE(pr);
  EXPECT_EQ(pr->accept_stat, AcceptStat::kGarbageArgs);
  EXPECT_EQ(pr->to_errc(), Errc::kBadMessage);
  EXPECT_TRUE(verify_reply(*pr, key_, cred_));
}

// ---------------------------------------------------------------------------------------------
// Hostile calls: header fields.

Bytes with_u32(Bytes m, std::size_t offset, std::uint32_t v) {
  store_be32(m.data() + offset, v);
  return m;
}

RpcReject reject_of(const Bytes& m) {
  auto c = parse_call(m);
  EXPECT_FALSE(c);
  return c ? RpcReject{} : c.error();
}

TEST_F(Codec, CallHeaderRejections) {
  const Bytes read = encode_call(0x55, cred_, key_, make_request(Op::kRead));
  const Bytes login = encode_login_begin_call(0x56, {"host", {}});

  EXPECT_EQ(reject_of(with_u32(read, 8, 3)).kind, RejectKind::kRpcMismatch);
  EXPECT_EQ(reject_of(with_u32(read, 8, 3)).xid, 0x55u);
  EXPECT_EQ(reject_of(with_u32(read, 12, 100003)).kind, RejectKind::kProgUnavail);  // NFS
  EXPECT_EQ(reject_of(with_u32(read, 16, 2)).kind, RejectKind::kProgMismatch);
  for (std::uint32_t proc : {6u, 9u, 13u, 19u, 25u, 0xffffffffu}) {  // 4, 5: SLOT_FENCE, END_SESSION
    EXPECT_EQ(reject_of(with_u32(read, 20, proc)).kind, RejectKind::kProcUnavail) << proc;
  }
  // Not a call, or not even an xid: drop silently.
  EXPECT_EQ(reject_of(with_u32(read, 4, 1)).kind, RejectKind::kDrop);
  EXPECT_EQ(reject_of(Bytes{1, 2, 3}).kind, RejectKind::kDrop);
  EXPECT_EQ(reject_of(Bytes{}).kind, RejectKind::kDrop);

  auto auth = [&](const Bytes& m) {
    RpcReject r = reject_of(m);
    EXPECT_EQ(r.kind, RejectKind::kAuthError);
    return r.auth_stat;
  };
  // Unknown credential flavor (AUTH_SYS = 1).
  EXPECT_EQ(auth(with_u32(read, 24, 1)), AuthStat::kBadCred);
  // Ipsan credential body of the wrong length, otherwise well-formed.
  for (std::size_t len : {0u, 16u, 24u}) {
    XdrWriter w;
    for (std::uint32_t v : {0x57u, 0u, 2u, kProgram, kVersion, 20u, kAuthIpsan}) w.put_u32(v);
    w.put_opaque(Bytes(len, 1));
    w.put_u32(kAuthIpsan);
    w.put_opaque(Bytes(16, 2));
    EXPECT_EQ(auth(w.bytes()), AuthStat::kBadCred) << len;
  }
  // Credential body length beyond 400 or beyond the message.
  EXPECT_EQ(auth(with_u32(read, 28, 404)), AuthStat::kBadCred);
  EXPECT_EQ(auth(with_u32(read, 28, 0xfffffffc)), AuthStat::kBadCred);
  // Verifier of the wrong flavor / length.
  EXPECT_EQ(auth(with_u32(read, 52, kAuthNone)), AuthStat::kBadVerf);
  EXPECT_EQ(auth(with_u32(read, 56, 12)), AuthStat::kBadVerf);
  EXPECT_EQ(auth(with_u32(read, 56, 0xffffffff)), AuthStat::kBadVerf);
  // Device op and LOGOUT with AUTH_NONE: too weak.
  for (Op op : {Op::kRead, Op::kWrite, Op::kLogout, Op::kIdentify}) {
    EXPECT_EQ(auth(with_u32(encode_null_call(1), 20, static_cast<std::uint32_t>(op))),
              AuthStat::kTooWeak);
  }
  // Login with the ipsan credential: bad credential.
  EXPECT_EQ(auth(with_u32(read, 20, static_cast<std::uint32_t>(Op::kLoginBegin))),
            AuthStat::kBadCred);
  // AUTH_NONE with a non-empty body or verifier.
  EXPECT_EQ(auth(with_u32(login, 28, 4)), AuthStat::kBadCred);
  EXPECT_EQ(auth(with_u32(login, 32, kAuthIpsan)), AuthStat::kBadVerf);
}

TEST_F(Codec, MalformedIoArgs) {
  // io_args with data for a non-WRITE op: GARBAGE_ARGS.
  XdrWriter w;
  w.put_u32(1);
  w.put_u64(2);
  w.put_u32(3);
  w.put_u32(0);
  w.put_opaque(Bytes(8, 1));
  for (Op op : kDeviceOps) {
    if (op != Op::kWrite) {
      EXPECT_FALSE(decode_request(op, w.bytes())) << op_name(op);
    }
  }
  EXPECT_TRUE(decode_request(Op::kWrite, w.bytes()));
  // Trailing garbage.
  Bytes trailing = w.bytes();
  trailing.insert(trailing.end(), {0, 0, 0, 0});
  EXPECT_FALSE(decode_request(Op::kWrite, trailing));
  // NULL / LOGOUT with arguments.
  EXPECT_FALSE(decode_request(Op::kNull, w.bytes()));
  EXPECT_FALSE(decode_request(Op::kLogout, w.bytes()));
  // Login ops are not io_args; unknown ops fail.
  EXPECT_EQ(decode_request(Op::kLoginBegin, w.bytes()).error(), Errc::kInvalidArgument);
  EXPECT_FALSE(decode_request(static_cast<Op>(99), w.bytes()));
  // WRITE data length above kMaxIoBytes is refused before looking for the bytes.
  Bytes huge = w.bytes();
  store_be32(huge.data() + 20, static_cast<std::uint32_t>(kMaxIoBytes + 4));
  EXPECT_EQ(decode_request(Op::kWrite, huge).error(), Errc::kTooLarge);
  for (std::uint32_t len : {0xffffffffu, 0xfffffffcu, 12u}) {
    store_be32(huge.data() + 20, len);
    EXPECT_FALSE(decode_request(Op::kWrite, huge)) << len;
  }
  // Every truncation fails.
  for (std::size_t n = 0; n < w.size(); ++n) {
    EXPECT_FALSE(decode_request(Op::kWrite, ByteSpan(w.bytes()).first(n))) << n;
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile results.

TEST_F(Codec, MalformedResults) {
  // Status beyond the last Errc.
  Bytes st(4);
  store_be32(st.data(), kErrcMax + 1);
  for (Op op : kAllOps) {
    if (op != Op::kNull) {
      EXPECT_FALSE(decode_results(op, st)) << op_name(op);
    }
  }
  // Capacity with block sizes that are not powers of two in [512, 65536].
  for (std::uint32_t bs : {0u, 1u, 256u, 513u, 1000u, 3072u, 131072u, 0x80000000u}) {
    XdrWriter w;
    w.put_u32(0);
    w.put_u32(bs);
    w.put_u64(100);
    EXPECT_FALSE(decode_results(Op::kCapacity, w.bytes())) << bs;
    EXPECT_FALSE(decode_results(Op::kReady, w.bytes())) << bs;
    Reply rep = make_reply(Op::kIdentify);
    rep.identity.block_size = bs;
    EXPECT_FALSE(validate_identity(rep.identity));
    const Bytes pr_msg = encode_unauthenticated_reply(1, Op::kIdentify, rep);
    auto pr = parse_reply(pr_msg);
    ASSERT_TRUE(pr);
    EXPECT_FALSE(decode_results(Op::kIdentify, pr->results)) << bs;
  }
  for (std::uint32_t bs : {512u, 1024u, 4096u, 65536u}) EXPECT_TRUE(valid_block_size(bs));
  // Identity strings over their limits, or non-printable.
  {
    XdrWriter w;
    w.put_u32(0);
    w.put_string("123456789");  // vendor: 9 > 8
    EXPECT_FALSE(decode_results(Op::kIdentify, w.bytes()));
    Reply rep = make_reply(Op::kIdentify);
    rep.identity.serial = "bad\x01serial";
    EXPECT_FALSE(validate_identity(rep.identity));
    const Bytes pr_msg = encode_unauthenticated_reply(1, Op::kIdentify, rep);
    auto pr = parse_reply(pr_msg);
    EXPECT_FALSE(decode_results(Op::kIdentify, pr->results));
    EXPECT_TRUE(validate_identity(make_reply(Op::kIdentify).identity));
  }
  // The encoder cuts oversize identity strings so the peer can still decode.
  {
    Reply rep = make_reply(Op::kIdentify);
    rep.identity.product = std::string(40, 'p');
    const Bytes pr_msg = encode_unauthenticated_reply(1, Op::kIdentify, rep);
    auto pr = parse_reply(pr_msg);
    auto d = decode_results(Op::kIdentify, pr->results);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->identity.product, std::string(16, 'p'));
  }
  // READ data length near 2^32 / over the maximum.
  for (std::uint32_t len :
       {0xffffffffu, 0xfffffffcu, static_cast<std::uint32_t>(kMaxIoBytes + 4), 100u}) {
    Bytes b(8 + 16, 0);
    store_be32(b.data() + 4, len);
    EXPECT_FALSE(decode_results(Op::kRead, b)) << len;
  }
  // Non-OK status followed by bytes: trailing garbage.
  Bytes err_trailing(8, 0);
  store_be32(err_trailing.data(), static_cast<std::uint32_t>(Errc::kIoError));
  EXPECT_FALSE(decode_results(Op::kRead, err_trailing));
  EXPECT_FALSE(decode_results(Op::kNull, err_trailing));
}

bool reply_parses(const Bytes& m) { return parse_reply(m).has_value(); }

TEST_F(Codec, MalformedReplyHeaders) {
  const Bytes good = encode_reply(5, cred_, key_, Op::kFlush, Reply{});
  ASSERT_TRUE(parse_reply(good));
  EXPECT_FALSE(reply_parses(with_u32(good, 4, 0)));            // a CALL, not a REPLY
  EXPECT_FALSE(reply_parses(with_u32(good, 8, 2)));            // reply_stat
  EXPECT_FALSE(reply_parses(with_u32(good, 12, 1)));           // verf flavor AUTH_SYS
  EXPECT_FALSE(reply_parses(with_u32(good, 16, 8)));           // MAC length 8
  EXPECT_FALSE(reply_parses(with_u32(good, 16, 0xfffffff0)));  // verf length huge
  EXPECT_FALSE(reply_parses(with_u32(good, 36, 6)));           // accept_stat 6
  Bytes trailing = encode_reject(5, {RejectKind::kGarbageArgs, 0, AuthStat::kOk});
  trailing.push_back(0);
  EXPECT_FALSE(parse_reply(trailing));
  Bytes denied = encode_reject(5, {RejectKind::kAuthError, 0, AuthStat::kBadCred});
  EXPECT_FALSE(reply_parses(with_u32(denied, 12, 2)));  // reject_stat 2
}

// ---------------------------------------------------------------------------------------------
// Integrity: truncation at every offset, bit flips anywhere, trailing bytes.

std::vector<Bytes> authenticated_calls(const SlotCred& cred, const Key256& key) {
  std::vector<Bytes> out;
  for (Op op : kDeviceOps) {
    Request req = make_request(op);
    if (op == Op::kWrite) req.data.resize(37);
    out.push_back(encode_call(1000 + static_cast<std::uint32_t>(op), cred, key, req));
  }
  out.push_back(encode_logout_call(2000, cred, key));
  return out;
}

// True if the server would execute this message as a valid authenticated request.
bool server_accepts(ByteSpan m, const Key256& key) {
  auto c = parse_call(m);
  if (!c) return false;
  if (c->flavor != kAuthIpsan) return false;
  if (!verify_call(*c, key)) return false;
  return decode_request(c->op, c->args).has_value();
}

TEST_F(Codec, TruncatedAuthenticatedCallsNeverVerify) {
  for (const Bytes& m : authenticated_calls(cred_, key_)) {
    ASSERT_TRUE(server_accepts(m, key_));
    for (std::size_t n = 0; n < m.size(); ++n) {
      EXPECT_FALSE(server_accepts(ByteSpan(m).first(n), key_)) << "prefix " << n;
    }
    Bytes longer = m;
    longer.insert(longer.end(), {0, 0, 0, 0});
    EXPECT_FALSE(server_accepts(longer, key_));
  }
}

TEST_F(Codec, EveryBitFlipInAuthenticatedCallIsDetected) {
  for (const Bytes& m : authenticated_calls(cred_, key_)) {
    for (std::size_t bit = 0; bit < m.size() * 8; ++bit) {
      Bytes f = m;
      f[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      ASSERT_FALSE(server_accepts(f, key_)) << "bit " << bit << " of " << to_hex(m);
    }
  }
}

TEST_F(Codec, EveryBitFlipOrTruncationInAuthenticatedReplyIsDetected) {
  for (Op op : kDeviceOps) {
    Reply rep = make_reply(op);
    if (op == Op::kRead) rep.data.resize(41);
    const Bytes m = encode_reply(3, cred_, key_, op, rep);
    auto accepts = [&](ByteSpan b) {
      auto pr = parse_reply(b);
      return pr && verify_reply(*pr, key_, cred_) && decode_results(op, pr->results).has_value();
    };
    ASSERT_TRUE(accepts(m));
    for (std::size_t bit = 0; bit < m.size() * 8; ++bit) {
      Bytes f = m;
      f[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      ASSERT_FALSE(accepts(f)) << op_name(op) << " bit " << bit;
    }
    for (std::size_t n = 0; n < m.size(); ++n) {
      EXPECT_FALSE(accepts(ByteSpan(m).first(n))) << op_name(op) << " prefix " << n;
    }
  }
}

TEST_F(Codec, TruncatedUnauthenticatedMessagesFail) {
  const Bytes null_call = encode_null_call(1);
  for (std::size_t n = 0; n < null_call.size(); ++n) {
    auto c = parse_call(ByteSpan(null_call).first(n));
    EXPECT_FALSE(c) << n;
  }
  const Bytes cap = encode_unauthenticated_reply(2, Op::kIdentify, make_reply(Op::kIdentify));
  for (std::size_t n = 0; n < cap.size(); ++n) {
    auto pr = parse_reply(ByteSpan(cap).first(n));
    EXPECT_FALSE(pr && decode_results(Op::kIdentify, pr->results)) << n;
  }
}

// Random garbage and random mutations of valid messages: nothing crashes, nothing forged
// verifies. Seeded and printed for reproduction.
TEST_F(Codec, RandomMutationsAreRejected) {
  const std::uint64_t seed = 0x1b5a11;
  std::printf("seed %llx\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  const auto calls = authenticated_calls(cred_, key_);
  for (int i = 0; i < 3000; ++i) {
    Bytes m = calls[rng.below(calls.size())];
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng.below(m.size());
      switch (rng.below(3)) {
        case 0: m[at] = static_cast<std::uint8_t>(rng.next()); break;
        case 1: m.resize(at); break;
        default:
          m.insert(m.begin() + static_cast<std::ptrdiff_t>(at),
                   static_cast<std::uint8_t>(rng.next()));
      }
      if (m.empty()) break;
    }
    if (std::find(calls.begin(), calls.end(), m) != calls.end()) continue;
    EXPECT_FALSE(server_accepts(m, key_)) << "iteration " << i;
    for (Op op : kAllOps) (void)decode_results(op, m);
    (void)parse_reply(m);
  }
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds: valid messages of every kind. Written to $IPSAN_WRITE_FUZZ_SEEDS (if set) as
// fuzz/corpus/rpc/ seed files; always checks that each one parses.

TEST_F(Codec, FuzzSeedsAreValidMessages) {
  std::vector<std::pair<std::string, Bytes>> seeds;
  Request small_write = make_request(Op::kWrite);
  small_write.data.resize(13);
  seeds.emplace_back("call_read", encode_call(1, cred_, key_, make_request(Op::kRead)));
  seeds.emplace_back("call_write", encode_call(2, cred_, key_, small_write));
  seeds.emplace_back("call_null", encode_null_call(3));
  seeds.emplace_back("call_logout", encode_logout_call(4, cred_, key_));
  LoginBeginArgs lb{"client-a", {}};
  lb.client_nonce.fill(0x11);
  seeds.emplace_back("call_login_begin", encode_login_begin_call(5, lb));
  LoginFinishArgs lf{"client-a", lb.client_nonce, {}, {}};
  lf.server_nonce.fill(0x22);
  seeds.emplace_back("call_login_finish", encode_login_finish_call(6, lf));
  Reply rd;
  rd.data = Bytes(9, 0xee);
  seeds.emplace_back("reply_read", encode_reply(1, cred_, key_, Op::kRead, rd));
  seeds.emplace_back("reply_identify",
                     encode_reply(7, cred_, key_, Op::kIdentify, make_reply(Op::kIdentify)));
  seeds.emplace_back("reply_capacity",
                     encode_unauthenticated_reply(8, Op::kCapacity, make_reply(Op::kCapacity)));
  LoginFinishRes fr;
  fr.session_id = 77;
  fr.slot_count = 16;
  fr.max_request_bytes = 1 << 20;
  seeds.emplace_back("reply_login_finish", encode_login_finish_reply(6, fr));
  seeds.emplace_back("reply_reject_auth",
                     encode_reject(9, {RejectKind::kAuthError, 0, AuthStat::kRejectedCred}));
  const char* dir = std::getenv("IPSAN_WRITE_FUZZ_SEEDS");
  for (const auto& [name, bytes] : seeds) {
    const bool is_call = name.rfind("call_", 0) == 0;
    EXPECT_EQ(parse_call(bytes).has_value(), is_call) << name;
    EXPECT_EQ(parse_reply(bytes).has_value(), !is_call) << name;
    if (dir != nullptr) {
      std::ofstream(std::string(dir) + "/" + name, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
    }
  }
}

// Totals over transports: counters add up; gauges follow the newest transport (add_counters) or
// keep the largest (add_concurrent, a server's connections).
TEST(TransportStats, CountersAddGaugesFollowOrKeepLargest) {
  TransportStats a;
  a.retransmissions = 3;
  a.packets_lost = 2;
  a.pto_fired = 1;
  a.srtt_us = 500;
  a.cwnd_bytes = 9000;
  TransportStats b;
  b.retransmissions = 4;
  b.packets_lost = 5;
  b.random_loss_events = 7;
  b.dropped_bad_crc = 1;
  b.srtt_us = 100;
  b.cwnd_bytes = 3000;
  TransportStats t = a;
  add_counters(t, b);
  EXPECT_EQ(t.retransmissions, 7u);
  EXPECT_EQ(t.packets_lost, 7u);
  EXPECT_EQ(t.pto_fired, 1u);
  EXPECT_EQ(t.random_loss_events, 7u);
  EXPECT_EQ(t.dropped_bad_crc, 1u);
  EXPECT_EQ(t.srtt_us, 100);
  EXPECT_EQ(t.cwnd_bytes, 3000u);
  TransportStats c = a;
  add_concurrent(c, b);
  EXPECT_EQ(c.packets_lost, 7u);
  EXPECT_EQ(c.srtt_us, 500);
  EXPECT_EQ(c.cwnd_bytes, 9000u);
}

}  // namespace
}  // namespace ipsan::proto
