// StorageServer dispatch, unit-tested through the in-memory transport (ipsan/proto/mem_transport.h)
// with a virtual clock: admission (login, MAC, unknown and expired sessions), status ops that never
// touch the device, the READ re-execute branch (one MAC'd reply per (slot, seq), re-executed at
// most once, byte-identical), exactly-once writes, SLOT_FENCE, END_SESSION, LOGOUT, session expiry
// and reaping driven by the clock, capacity changes, refusals and device errors. Every call is
// delivered by hand and the back end is a counting/fault wrapper, so the order of events is exact.
#include <gtest/gtest.h>

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>

#include "ipsan/backends/fault.h"
#include "ipsan/backends/ram.h"
#include "ipsan/base/clock.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/mem_transport.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/server/server.h"

namespace ipsan::server {
namespace {

using backends::FaultInjectingBackend;
using backends::OpKind;
using proto::Op;
using namespace std::chrono_literals;

constexpr proto::PeerId kPeer = 1;

struct Session {
  std::uint64_t id = 0;
  Key256 key{};
  Errc status = Errc::kInternal;  // of LOGIN_FINISH (or LOGIN_BEGIN when that failed)
};

// The one reply to expect; `macd` tells whether it carried a valid MAC for (slot, seq).
struct Answer {
  bool macd = false;
  bool denied = false;
  Errc status = Errc::kInternal;
  proto::Reply reply;
  Bytes raw;
};

class Dispatch : public ::testing::Test {
 protected:
  void SetUp() override {
    crypto_init();
    parse_key("dispatch-test", key_);
    start(ServerOptions{});
    s1_ = login();
    ASSERT_EQ(s1_.status, Errc::kOk);
    ASSERT_NE(s1_.id, 0u);
  }

  // A new server (replacing any), exporting `disk_` as device 0 unless `exports` are given.
  void start(ServerOptions o, std::optional<std::vector<Export>> exports = std::nullopt) {
    o.clock = [this] { return clock_.now(); };
    KeyRing keys;
    (void)keys.add("alice", key_);
    (void)keys.add("bob", bob_key_);
    ram_ = *backends::RamBackend::create(1 << 20);
    disk_ = std::make_shared<FaultInjectingBackend>(ram_);
    server_.reset();
    server_ = std::make_unique<StorageServer>(io_, o, std::move(keys),
                                              exports ? std::move(*exports) : exports_of(disk_));
    auto t = std::make_unique<proto::MemServerTransport>();
    t_ = t.get();
    server_->attach(std::move(t));
  }
  void TearDown() override {
    disk_->set_hold(false);
    disk_->release_all();
    run();
  }
  static std::vector<Export> exports_of(backends::BackendPtr b) {
    std::vector<Export> e(1);
    e[0].device_id = 0;
    e[0].name = "disk0";
    e[0].backend = std::move(b);
    return e;
  }
  void run() {
    io_.restart();
    while (io_.poll() != 0) {
    }
  }
  // Delivers one message and runs the server until it is idle; returns the replies it sent.
  std::vector<Bytes> deliver(const Bytes& msg) {
    t_->receive(kPeer, msg);
    run();
    return replies();
  }
  std::vector<Bytes> replies() {
    std::vector<Bytes> out;
    for (auto& s : t_->take_sent()) {
      EXPECT_EQ(s.peer, kPeer);
      out.push_back(std::move(s.message));
    }
    return out;
  }
  Session login(const std::string& name = "alice", std::optional<Key256> key = std::nullopt,
                std::uint32_t security = 1, Duration delay = {}) {
    const Key256 k = key.value_or(name == "bob" ? bob_key_ : key_);
    proto::LoginBeginArgs b;
    b.client_name = name;
    b.transport_security = security;
    random_bytes(b.client_nonce);
    auto r1 = deliver(proto::encode_login_begin_call(xid_++, b));
    if (r1.size() != 1) return {};
    auto p1 = proto::parse_reply(ByteSpan(r1[0]));
    auto begin = proto::decode_login_begin_res(p1->results);
    if (!begin || begin->status != Errc::kOk)
      return Session{0, {}, begin ? begin->status : Errc::kBadMessage};
    clock_.advance(delay);
    proto::LoginFinishArgs f;
    f.client_name = name;
    f.client_nonce = b.client_nonce;
    f.server_nonce = begin->server_nonce;
    f.transport_security = security;
    f.proof = proto::login_client_proof(k, name, f.client_nonce, f.server_nonce);
    last_finish_ = proto::encode_login_finish_call(xid_++, f);
    auto r2 = deliver(last_finish_);
    if (r2.size() != 1) return {};
    auto p2 = proto::parse_reply(ByteSpan(r2[0]));
    auto fin = proto::decode_login_finish_res(p2->results);
    if (!fin) return Session{0, {}, Errc::kBadMessage};
    if (fin->status != Errc::kOk) return Session{0, {}, fin->status};
    return Session{
        fin->session_id,
        proto::derive_session_key(k, name, f.client_nonce, f.server_nonce, fin->session_id),
        Errc::kOk};
  }
  Bytes call(const Session& s, std::uint32_t slot, std::uint64_t seq, Op op, std::uint64_t lba = 0,
             std::uint32_t blocks = 0, std::uint8_t fill = 0, std::uint32_t device = 0,
             std::uint32_t flags = 0) {
    proto::Request r;
    r.op = op;
    r.device_id = device;
    r.lba = lba;
    r.blocks = blocks;
    r.flags = flags;
    if (op == Op::kWrite) r.data.assign(blocks * 512u, fill);
    return proto::encode_call(xid_++, proto::SlotCred{s.id, slot, seq}, s.key, r);
  }
  Answer answer(const std::vector<Bytes>& replies, const Session& s, std::uint32_t slot,
                std::uint64_t seq, Op op) {
    Answer a;
    EXPECT_EQ(replies.size(), 1u);
    if (replies.size() != 1) return a;
    a.raw = replies[0];
    auto p = proto::parse_reply(ByteSpan(a.raw));
    EXPECT_TRUE(p.has_value());
    if (!p) return a;
    if (p->reply_stat == proto::ReplyStat::kDenied) {
      a.denied = true;
      a.status = p->to_errc();
      return a;
    }
    a.macd = p->verf_flavor == proto::kAuthIpsan &&
             proto::verify_reply(*p, s.key, proto::SlotCred{s.id, slot, seq});
    if (!p->success()) {
      a.status = p->to_errc();
      return a;
    }
    auto d = proto::decode_results(op, p->results);
    if (d) {
      a.status = d->status;
      a.reply = std::move(*d);
    }
    return a;
  }
  // Calls and expects exactly one reply.
  Answer ask(const Session& s, std::uint32_t slot, std::uint64_t seq, Op op, std::uint64_t lba = 0,
             std::uint32_t blocks = 0, std::uint8_t fill = 0, std::uint32_t device = 0) {
    return answer(deliver(call(s, slot, seq, op, lba, blocks, fill, device)), s, slot, seq, op);
  }
  Bytes read_back(std::uint64_t lba, std::uint32_t blocks) {
    Bytes out(blocks * 512u);
    Errc got = Errc::kInternal;
    ram_->read(lba, out, [&](Errc e) { got = e; });
    EXPECT_EQ(got, Errc::kOk);
    return out;
  }

  boost::asio::io_context io_;
  VirtualClock clock_;
  Key256 key_{};
  Key256 bob_key_ = [] {
    Key256 k{};
    parse_key("bobs-dispatch-key", k);
    return k;
  }();
  backends::BackendPtr ram_;
  std::shared_ptr<FaultInjectingBackend> disk_;
  std::unique_ptr<StorageServer> server_;
  proto::MemServerTransport* t_ = nullptr;
  Session s1_;
  Bytes last_finish_;
  std::uint32_t xid_ = 1;
};

// ---- admission ----------------------------------------------------------------------------------

TEST_F(Dispatch, LoginBindsTheSessionKeyToTheConnection) {
  auto b = t_->binding(kPeer);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->key, s1_.key);
  EXPECT_EQ(b->protection, 1u);
  auto lookup = t_->lookup_session(s1_.id);  // a reconnecting client's HELLO finds it
  ASSERT_TRUE(lookup.has_value());
  EXPECT_EQ(lookup->key, s1_.key);
  EXPECT_FALSE(t_->lookup_session(s1_.id + 1).has_value());
  EXPECT_EQ(server_->stats().logins, 1u);
  EXPECT_EQ(server_->stats().sessions, 1u);
}

TEST_F(Dispatch, UnknownClientAndWrongKeyFailLoginAlike) {
  Key256 wrong{};
  parse_key("not-the-key", wrong);
  EXPECT_EQ(login("mallory", key_).status, Errc::kAuthFailed);
  EXPECT_EQ(login("alice", wrong).status, Errc::kAuthFailed);
  EXPECT_EQ(server_->stats().auth_failures, 2u);
  EXPECT_EQ(server_->stats().sessions, 1u);
}

TEST_F(Dispatch, ReplayedLoginFinishOpensNoSecondSession) {
  auto r = deliver(last_finish_);
  ASSERT_EQ(r.size(), 1u);
  auto p = proto::parse_reply(ByteSpan(r[0]));
  auto fin = proto::decode_login_finish_res(p->results);
  ASSERT_TRUE(fin.has_value());
  EXPECT_EQ(fin->status, Errc::kAuthFailed);
  EXPECT_EQ(server_->stats().sessions, 1u);
}

TEST_F(Dispatch, LoginNonceOlderThanTheLoginTimeoutIsRefused) {
  EXPECT_EQ(login("alice", std::nullopt, 1, 29s).status, Errc::kOk);
  EXPECT_EQ(login("alice", std::nullopt, 1, 32s).status, Errc::kAuthFailed);  // 30 s limit
}

TEST_F(Dispatch, WeakerTransportSecurityIsRefusedAtLoginBegin) {
  ServerOptions o;
  o.transport_security = 2;
  start(o);
  EXPECT_EQ(login("alice", std::nullopt, 1).status, Errc::kNotSupported);
  Session s = login("alice", std::nullopt, 2);
  EXPECT_EQ(s.status, Errc::kOk);
  EXPECT_EQ(t_->binding(kPeer)->protection, 2u);
}

TEST_F(Dispatch, BadMacIsDeniedAndNothingReachesTheDevice) {
  Bytes w = call(s1_, 0, 1, Op::kWrite, 0, 1, 0x42);
  w.back() ^= 1;  // one bit of the data: the MAC no longer matches
  auto a = answer(deliver(w), s1_, 0, 1, Op::kWrite);
  EXPECT_TRUE(a.denied);
  EXPECT_EQ(a.status, Errc::kAuthFailed);
  EXPECT_EQ(disk_->total_ops(), 0u);
  EXPECT_EQ(server_->stats().auth_failures, 1u);
  // The slot was not consumed: the genuine call still runs as seq 1.
  EXPECT_EQ(ask(s1_, 0, 1, Op::kWrite, 0, 1, 0x42).status, Errc::kOk);
  EXPECT_EQ(disk_->count(OpKind::kWrite), 1u);
}

TEST_F(Dispatch, UnknownSessionIsDeniedAsStale) {
  Session ghost = s1_;
  ghost.id ^= 0x5555;
  auto a = ask(ghost, 0, 1, Op::kRead, 0, 1);
  EXPECT_TRUE(a.denied);
  EXPECT_EQ(a.status, Errc::kStaleSession);
  EXPECT_EQ(disk_->total_ops(), 0u);
}

TEST_F(Dispatch, AnotherSessionsKeyDoesNotPass) {
  Session bob = login("bob");
  ASSERT_EQ(bob.status, Errc::kOk);
  Session forged{s1_.id, bob.key, Errc::kOk};  // bob's key, alice's session id
  auto a = ask(forged, 0, 1, Op::kWrite, 0, 1, 0x99);
  EXPECT_TRUE(a.denied);
  EXPECT_EQ(a.status, Errc::kAuthFailed);
  EXPECT_EQ(disk_->count(OpKind::kWrite), 0u);
}

TEST_F(Dispatch, NullCallIsAnsweredWithoutASession) {
  auto r = deliver(proto::encode_null_call(xid_++));
  ASSERT_EQ(r.size(), 1u);
  auto p = proto::parse_reply(ByteSpan(r[0]));
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->success());
  EXPECT_EQ(disk_->total_ops(), 0u);
}

TEST_F(Dispatch, GarbageIsDroppedAndBadSlotOrSeqNeverExecutes) {
  EXPECT_TRUE(deliver(Bytes{1, 2, 3}).empty());
  EXPECT_EQ(server_->stats().dropped, 1u);
  auto bad = ask(s1_, 64, 1, Op::kWrite, 0, 1, 1);  // 64 slots: 0..63
  EXPECT_FALSE(bad.macd);
  EXPECT_EQ(bad.status, Errc::kInvalidArgument);
  auto skip = ask(s1_, 0, 2, Op::kWrite, 0, 1, 1);  // seq 2 before seq 1
  EXPECT_FALSE(skip.macd);
  EXPECT_EQ(skip.status, Errc::kSeqMisordered);
  EXPECT_EQ(disk_->total_ops(), 0u);
  EXPECT_EQ(server_->stats().misordered, 1u);
}

// ---- session expiry and reaping (virtual clock) -------------------------------------------------

TEST_F(Dispatch, ExpiredSessionIsRefusedAtAdmissionBeforeTheReaperRuns) {
  clock_.advance(10min - 1s);
  EXPECT_EQ(ask(s1_, 0, 1, Op::kReady).status, Errc::kOk);  // activity: idle time starts again
  clock_.advance(10min);
  EXPECT_EQ(ask(s1_, 0, 2, Op::kReady).status, Errc::kOk);  // exactly the timeout: still alive
  clock_.advance(10min + 1ns);
  auto a = ask(s1_, 0, 3, Op::kReady);
  EXPECT_TRUE(a.denied);
  EXPECT_EQ(a.status, Errc::kStaleSession);
  EXPECT_EQ(server_->stats().sessions, 0u);
  EXPECT_FALSE(t_->lookup_session(s1_.id).has_value());
}

TEST_F(Dispatch, ReaperDropsIdleSessionsAsOfTheInjectedClock) {
  Session s2 = login();
  ASSERT_EQ(s2.status, Errc::kOk);
  clock_.advance(6min);
  EXPECT_EQ(ask(s2, 0, 1, Op::kReady).status, Errc::kOk);
  server_->reap();
  EXPECT_EQ(server_->stats().sessions, 2u);
  clock_.advance(5min);  // s1 idle 11 min, s2 5 min
  server_->reap();
  ASSERT_EQ(server_->stats().sessions, 1u);
  EXPECT_EQ(server_->sessions()[0].id, s2.id);
  clock_.advance(6min);
  server_->reap();
  EXPECT_EQ(server_->stats().sessions, 0u);
}

TEST_F(Dispatch, ReaperKeepsASessionWithARequestOnTheDevice) {
  disk_->set_hold(true);
  EXPECT_TRUE(deliver(call(s1_, 0, 1, Op::kWrite, 0, 1, 0x10)).empty());  // held on the device
  clock_.advance(1h);
  server_->reap();
  EXPECT_EQ(server_->stats().sessions, 1u);  // busy: never dropped under a running write
  disk_->release_all();
  run();
  auto done = answer(replies(), s1_, 0, 1, Op::kWrite);
  EXPECT_TRUE(done.macd);
  EXPECT_EQ(done.status, Errc::kOk);
  clock_.advance(10min + 1s);
  server_->reap();
  EXPECT_EQ(server_->stats().sessions, 0u);
}

TEST_F(Dispatch, UsedLoginNoncesAreForgottenAfterTheirLifetime) {
  // Many logins leave their nonces remembered (replay protection); the reaper forgets them once
  // they are too old to be accepted anyway, so the table stays bounded.
  ServerOptions o;
  o.max_pending_logins = 2;
  start(o);
  EXPECT_EQ(login().status, Errc::kOk);
  EXPECT_EQ(login().status, Errc::kOk);
  EXPECT_EQ(login().status, Errc::kBusy);  // table full, nothing old enough to forget
  clock_.advance(33s);
  EXPECT_EQ(login().status, Errc::kOk);  // the two old nonces reaped on demand
}

// ---- status ops ---------------------------------------------------------------------------------

TEST_F(Dispatch, StatusOpsNeverTouchTheDevice) {
  auto ready = ask(s1_, 0, 1, Op::kReady);
  EXPECT_TRUE(ready.macd);
  EXPECT_EQ(ready.status, Errc::kOk);
  auto id = ask(s1_, 0, 2, Op::kIdentify);
  EXPECT_EQ(id.status, Errc::kOk);
  EXPECT_EQ(id.reply.identity.block_count, 2048u);
  EXPECT_EQ(id.reply.identity.block_size, 512u);
  EXPECT_EQ(id.reply.identity.vendor, "IPSAN");
  auto cap = ask(s1_, 0, 3, Op::kCapacity);
  EXPECT_EQ(cap.reply.capacity.block_count, 2048u);
  disk_->fail_nth(1, Errc::kIoError);  // the next device command would fail: none is issued
  EXPECT_EQ(ask(s1_, 1, 1, Op::kReady).status, Errc::kOk);
  EXPECT_EQ(disk_->total_ops(), 0u);
  EXPECT_EQ(server_->stats().device_errors, 0u);
}

TEST_F(Dispatch, HiddenAndMissingExportsLookTheSame) {
  auto e = exports_of(disk_);
  e[0].allowed_clients = {"bob"};
  server_->update_exports(e);
  auto hidden = ask(s1_, 0, 1, Op::kIdentify);
  EXPECT_TRUE(hidden.macd);
  EXPECT_EQ(hidden.status, Errc::kUnknownDevice);
  auto missing = ask(s1_, 0, 2, Op::kIdentify, 0, 0, 0, 7);
  EXPECT_EQ(missing.status, Errc::kUnknownDevice);
  Session bob = login("bob");
  EXPECT_EQ(ask(bob, 0, 1, Op::kIdentify).status, Errc::kOk);
  EXPECT_EQ(disk_->total_ops(), 0u);
}

TEST_F(Dispatch, CapacityChangeIsAnnouncedOncePerSessionAndDevice) {
  Session s2 = login();
  auto grown = *backends::RamBackend::create(2 << 20);
  server_->update_exports(exports_of(grown));
  // IDENTIFY carries the new size: it consumes the notice without an error.
  auto id = ask(s1_, 0, 1, Op::kIdentify);
  EXPECT_EQ(id.status, Errc::kOk);
  EXPECT_EQ(id.reply.identity.block_count, 4096u);
  EXPECT_EQ(ask(s1_, 0, 2, Op::kReady).status, Errc::kOk);
  // Another session gets its own notice, once, on its next data request.
  auto r = ask(s2, 0, 1, Op::kRead, 0, 1);
  EXPECT_TRUE(r.macd);
  EXPECT_EQ(r.status, Errc::kCapacityChanged);
  EXPECT_EQ(ask(s2, 0, 2, Op::kRead, 4000, 1).status, Errc::kOk);  // beyond the old end
  // Same size again: no notice.
  server_->update_exports(exports_of(*backends::RamBackend::create(2 << 20)));
  EXPECT_EQ(ask(s2, 0, 3, Op::kReady).status, Errc::kOk);
}

TEST_F(Dispatch, SameNameKeepsItsIdentityAcrossAnUpdate) {
  auto before = ask(s1_, 0, 1, Op::kIdentify).reply.identity;
  server_->update_exports(exports_of(*backends::RamBackend::create(1 << 20)));
  auto after = ask(s1_, 0, 2, Op::kIdentify).reply.identity;
  EXPECT_EQ(before.uuid, after.uuid);
  EXPECT_EQ(before.serial, after.serial);
}

// ---- writes: exactly once -----------------------------------------------------------------------

TEST_F(Dispatch, RetransmittedWriteIsAnsweredFromTheCacheNotAppliedTwice) {
  const Bytes w = call(s1_, 0, 1, Op::kWrite, 10, 2, 0x21);
  auto first = answer(deliver(w), s1_, 0, 1, Op::kWrite);
  ASSERT_EQ(first.status, Errc::kOk);
  ASSERT_TRUE(first.macd);
  for (int i = 0; i < 3; ++i) {
    auto again = answer(deliver(w), s1_, 0, 1, Op::kWrite);
    EXPECT_EQ(again.raw, first.raw);  // the cached reply, byte for byte
  }
  EXPECT_EQ(disk_->count(OpKind::kWrite), 1u);
  EXPECT_EQ(server_->stats().replayed, 3u);
  EXPECT_EQ(server_->stats().bytes_written, 1024u);
}

TEST_F(Dispatch, DelayedCopyOfAnOldWriteNeverOverwritesNewerData) {
  const Bytes old = call(s1_, 0, 1, Op::kWrite, 5, 1, 0xAA);
  ASSERT_EQ(answer(deliver(old), s1_, 0, 1, Op::kWrite).status, Errc::kOk);
  ASSERT_EQ(ask(s1_, 0, 2, Op::kWrite, 5, 1, 0xBB).status, Errc::kOk);
  auto late = answer(deliver(old), s1_, 0, 1, Op::kWrite);
  EXPECT_FALSE(late.macd);
  EXPECT_EQ(late.status, Errc::kSeqMisordered);
  EXPECT_EQ(read_back(5, 1), Bytes(512, 0xBB));
  EXPECT_EQ(disk_->count(OpKind::kWrite), 2u);
}

TEST_F(Dispatch, CopiesOfARunningWriteGetOneReplyWhenItCompletes) {
  disk_->set_hold(true);
  const Bytes w = call(s1_, 3, 1, Op::kWrite, 0, 1, 0x31);
  EXPECT_TRUE(deliver(w).empty());
  EXPECT_TRUE(deliver(w).empty());  // in progress: no reply, no second write
  EXPECT_EQ(disk_->held(), 1u);
  disk_->release_all();
  run();
  auto a = answer(replies(), s1_, 3, 1, Op::kWrite);
  EXPECT_TRUE(a.macd);
  EXPECT_EQ(a.status, Errc::kOk);
  EXPECT_EQ(disk_->count(OpKind::kWrite), 1u);
}

TEST_F(Dispatch, RefusalsNeverReachTheDevice) {
  EXPECT_EQ(ask(s1_, 0, 1, Op::kWrite, 2047, 2, 1).status, Errc::kLbaOutOfRange);
  EXPECT_EQ(ask(s1_, 0, 2, Op::kRead, 2048, 1).status, Errc::kLbaOutOfRange);
  EXPECT_EQ(ask(s1_, 0, 3, Op::kTrim, 0, 4096).status, Errc::kLbaOutOfRange);
  auto e = exports_of(disk_);
  e[0].read_only = true;
  server_->update_exports(e);
  EXPECT_EQ(ask(s1_, 0, 4, Op::kWrite, 0, 1, 1).status, Errc::kWriteProtected);
  EXPECT_EQ(ask(s1_, 0, 5, Op::kWriteZeroes, 0, 1).status, Errc::kWriteProtected);
  EXPECT_EQ(ask(s1_, 0, 6, Op::kRead, 0, 1).status, Errc::kOk);
  EXPECT_EQ(disk_->count(OpKind::kWrite), 0u);
  EXPECT_EQ(disk_->count(OpKind::kTrim), 0u);
  EXPECT_EQ(disk_->count(OpKind::kWriteZeroes), 0u);
}

TEST_F(Dispatch, OverTheMaximumTransferIsTooLarge) {
  ServerOptions o;
  o.max_io_bytes = 4096;
  start(o);
  Session s = login();
  EXPECT_EQ(ask(s, 0, 1, Op::kRead, 0, 9).status, Errc::kTooLarge);
  EXPECT_EQ(ask(s, 0, 2, Op::kRead, 0, 8).status, Errc::kOk);
  EXPECT_EQ(disk_->count(OpKind::kRead), 1u);
}

TEST_F(Dispatch, DeviceErrorsAreReportedMacdAndCounted) {
  disk_->fail_nth(1, Errc::kIoError, OpKind::kWrite);
  auto a = ask(s1_, 0, 1, Op::kWrite, 0, 1, 0x55);
  EXPECT_TRUE(a.macd);
  EXPECT_EQ(a.status, Errc::kIoError);
  EXPECT_EQ(server_->stats().device_errors, 1u);
  EXPECT_EQ(server_->stats().bytes_written, 0u);
  // Flush, trim, write-zeroes reach the device and succeed.
  EXPECT_EQ(ask(s1_, 0, 2, Op::kFlush).status, Errc::kOk);
  EXPECT_EQ(ask(s1_, 0, 3, Op::kTrim, 0, 8).status, Errc::kOk);
  EXPECT_EQ(ask(s1_, 0, 4, Op::kWriteZeroes, 0, 8).status, Errc::kOk);
  EXPECT_EQ(disk_->count(OpKind::kFlush), 1u);
  EXPECT_EQ(disk_->count(OpKind::kTrim), 1u);
  EXPECT_EQ(disk_->count(OpKind::kWriteZeroes), 1u);
}

TEST_F(Dispatch, AtomicWriteWithoutTheCapabilityIsRefusedNotPlainWritten) {
  // The fault wrapper offers no atomic write, so kFlagAtomic must not fall back to a plain one.
  auto a = answer(deliver(call(s1_, 0, 1, Op::kWrite, 0, 1, 0x66, 0, proto::kFlagAtomic)), s1_, 0,
                  1, Op::kWrite);
  EXPECT_EQ(a.status, Errc::kNotSupported);
  EXPECT_EQ(disk_->count(OpKind::kWrite), 0u);
}

TEST_F(Dispatch, IoObserverMeasuresLatencyOnTheInjectedClock) {
  std::vector<IoEvent> events;
  server_->set_io_observer([&](const IoEvent& e) { events.push_back(e); });
  disk_->set_hold(true);
  EXPECT_TRUE(deliver(call(s1_, 0, 1, Op::kWrite, 0, 2, 0x12)).empty());
  clock_.advance(7ms);
  disk_->release_all();
  run();
  EXPECT_EQ(answer(replies(), s1_, 0, 1, Op::kWrite).status, Errc::kOk);
  EXPECT_EQ(ask(s1_, 0, 2, Op::kRead, 4096, 1).status, Errc::kLbaOutOfRange);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].op, Op::kWrite);
  EXPECT_EQ(events[0].bytes, 1024u);
  EXPECT_EQ(events[0].latency, Duration(7ms));
  EXPECT_EQ(events[1].status, Errc::kLbaOutOfRange);
  EXPECT_EQ(events[1].latency, Duration(0));
}

TEST_F(Dispatch, StopWaitsForTheDeviceThenFlushes) {
  disk_->set_hold(true);
  EXPECT_TRUE(deliver(call(s1_, 0, 1, Op::kWrite, 0, 1, 0x44)).empty());
  bool stopped = false;
  server_->stop([&] { stopped = true; });
  run();
  EXPECT_FALSE(stopped);                                           // a write is still on the device
  EXPECT_TRUE(deliver(call(s1_, 1, 1, Op::kRead, 0, 1)).empty());  // nothing new is admitted
  disk_->release_all();
  run();
  disk_->release_all();  // the flush
  run();
  EXPECT_TRUE(stopped);
  EXPECT_EQ(disk_->count(OpKind::kFlush), 1u);
  EXPECT_EQ(read_back(0, 1), Bytes(512, 0x44));
  EXPECT_TRUE(t_->closed());
}

// ---- READ: one MAC'd reply per (slot, seq), re-executed at most once ----------------------------

TEST_F(Dispatch, RetransmittedReadIsReexecutedOnceWithTheSameReply) {
  ASSERT_EQ(ask(s1_, 0, 1, Op::kWrite, 0, 8, 0x11).status, Errc::kOk);
  const Bytes read = call(s1_, 1, 1, Op::kRead, 0, 8);
  auto first = answer(deliver(read), s1_, 1, 1, Op::kRead);
  ASSERT_TRUE(first.macd);
  ASSERT_EQ(first.status, Errc::kOk);
  EXPECT_EQ(first.reply.data, Bytes(8 * 512, 0x11));
  auto st = server_->stats();
  auto again = answer(deliver(read), s1_, 1, 1, Op::kRead);  // the reply was lost: re-executed
  EXPECT_EQ(again.raw, first.raw);                           // byte-identical, same MAC
  EXPECT_EQ(server_->stats().executed, st.executed + 1);
  for (int i = 0; i < 10; ++i) {  // replayed copies: no more reads
    auto more = answer(deliver(read), s1_, 1, 1, Op::kRead);
    EXPECT_FALSE(more.macd);
    EXPECT_EQ(more.status, Errc::kBusy);
  }
  EXPECT_EQ(server_->stats().executed, st.executed + 1);
  EXPECT_EQ(server_->stats().reexecute_refused, 10u);
  EXPECT_EQ(server_->stats().bytes_read, st.bytes_read + 8 * 512);
  EXPECT_EQ(disk_->count(OpKind::kRead), 2u);
}

TEST_F(Dispatch, ChangedDataGivesUnauthenticatedBusyNotASecondMacdReply) {
  const Bytes read = call(s1_, 1, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 1, 1, Op::kRead).macd);
  ASSERT_EQ(ask(s1_, 0, 1, Op::kWrite, 0, 1, 0x77).status, Errc::kOk);
  auto again = answer(deliver(read), s1_, 1, 1, Op::kRead);
  EXPECT_FALSE(again.macd);
  EXPECT_EQ(again.status, Errc::kBusy);
  // The client re-reads on its next seq and gets the new data, MAC'd.
  auto next = ask(s1_, 1, 2, Op::kRead, 0, 1);
  EXPECT_TRUE(next.macd);
  EXPECT_EQ(next.reply.data, Bytes(512, 0x77));
}

TEST_F(Dispatch, ReexecutionThatFailsOnTheDeviceSendsNoSecondMacdReply) {
  const Bytes read = call(s1_, 2, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 2, 1, Op::kRead).macd);
  disk_->fail_nth(1, Errc::kIoError, OpKind::kRead);
  auto again = answer(deliver(read), s1_, 2, 1, Op::kRead);
  EXPECT_FALSE(again.macd);
  EXPECT_EQ(again.status, Errc::kBusy);
  EXPECT_EQ(answer(deliver(read), s1_, 2, 1, Op::kRead).status, Errc::kBusy);  // spent
  EXPECT_EQ(disk_->count(OpKind::kRead), 2u);
}

TEST_F(Dispatch, OnlyReadsAreReexecuted) {
  // A zero-block READ's reply is small, so it is cached: a copy is replayed, not re-executed.
  const Bytes empty = call(s1_, 0, 1, Op::kRead, 0, 0);
  auto first = answer(deliver(empty), s1_, 0, 1, Op::kRead);
  EXPECT_TRUE(first.macd);
  EXPECT_EQ(answer(deliver(empty), s1_, 0, 1, Op::kRead).raw, first.raw);
  EXPECT_EQ(disk_->count(OpKind::kRead), 0u);
}

TEST_F(Dispatch, ReexecutionAfterDeviceRemovalSendsNoSecondMacdReply) {
  const Bytes read = call(s1_, 0, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 0, 1, Op::kRead).macd);
  server_->update_exports({});  // the admin unexports the device
  auto again = answer(deliver(read), s1_, 0, 1, Op::kRead);
  EXPECT_FALSE(again.macd) << "a second MAC'd reply for the same (slot, seq)";
  EXPECT_EQ(again.status, Errc::kBusy);
  // The news comes MAC'd on the next seq.
  auto next = ask(s1_, 0, 2, Op::kRead, 0, 1);
  EXPECT_TRUE(next.macd);
  EXPECT_EQ(next.status, Errc::kUnknownDevice);
}

TEST_F(Dispatch, ReexecutionAfterResizeKeepsTheCapacityNoticeForTheNextSeq) {
  const Bytes read = call(s1_, 0, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 0, 1, Op::kRead).macd);
  server_->update_exports(exports_of(*backends::RamBackend::create(2 << 20)));  // grown
  auto again = answer(deliver(read), s1_, 0, 1, Op::kRead);
  EXPECT_FALSE(again.macd);
  EXPECT_EQ(again.status, Errc::kBusy);
  auto next = ask(s1_, 0, 2, Op::kRead, 0, 1);
  EXPECT_TRUE(next.macd);
  EXPECT_EQ(next.status, Errc::kCapacityChanged);
}

// ---- session ops --------------------------------------------------------------------------------

TEST_F(Dispatch, SlotFenceRefusesTheFencedWriteForever) {
  ASSERT_EQ(ask(s1_, 0, 1, Op::kWrite, 4, 1, 0xAA).status, Errc::kOk);
  const Bytes held = call(s1_, 0, 2, Op::kWrite, 4, 1, 0xBB);  // never arrives (held back)
  const Bytes fence = proto::encode_slot_fence_call(xid_++, proto::SlotCred{s1_.id, 0, 3}, s1_.key);
  auto f = answer(deliver(fence), s1_, 0, 3, Op::kSlotFence);
  EXPECT_TRUE(f.macd);
  EXPECT_EQ(f.status, Errc::kOk);
  EXPECT_EQ(answer(deliver(fence), s1_, 0, 3, Op::kSlotFence).raw, f.raw);  // cached
  ASSERT_EQ(ask(s1_, 1, 1, Op::kWrite, 4, 1, 0xCC).status, Errc::kOk);
  auto late = answer(deliver(held), s1_, 0, 2, Op::kWrite);
  EXPECT_FALSE(late.macd);
  EXPECT_EQ(late.status, Errc::kSeqMisordered);
  auto r = ask(s1_, 0, 4, Op::kRead, 4, 1);
  EXPECT_EQ(r.reply.data, Bytes(512, 0xCC));
  EXPECT_EQ(server_->stats().fences, 1u);
}

TEST_F(Dispatch, SlotFenceWaitsForARunningRequest) {
  disk_->set_hold(true);
  EXPECT_TRUE(deliver(call(s1_, 0, 1, Op::kWrite, 0, 1, 0x01)).empty());
  const Bytes fence = proto::encode_slot_fence_call(xid_++, proto::SlotCred{s1_.id, 0, 5}, s1_.key);
  EXPECT_TRUE(deliver(fence).empty());  // in progress: the client asks again
  disk_->release_all();
  run();
  EXPECT_EQ(answer(replies(), s1_, 0, 1, Op::kWrite).status, Errc::kOk);
  auto f = answer(deliver(fence), s1_, 0, 5, Op::kSlotFence);
  EXPECT_TRUE(f.macd);
  EXPECT_EQ(f.status, Errc::kOk);
}

TEST_F(Dispatch, EndSessionFromANewSessionRefusesTheOldOnesCalls) {
  const Bytes held = call(s1_, 0, 1, Op::kWrite, 9, 1, 0xBB);
  Session s2 = login();
  ASSERT_NE(s2.id, 0u);
  const Bytes end =
      proto::encode_end_session_call(xid_++, proto::SlotCred{s2.id, 0, 1}, s2.key, s1_.id);
  auto e = answer(deliver(end), s2, 0, 1, Op::kEndSession);
  EXPECT_TRUE(e.macd);
  EXPECT_EQ(e.status, Errc::kOk);
  EXPECT_EQ(server_->stats().sessions_ended, 1u);
  auto late = answer(deliver(held), s1_, 0, 1, Op::kWrite);
  EXPECT_TRUE(late.denied);
  EXPECT_EQ(late.status, Errc::kStaleSession);
  EXPECT_EQ(server_->stats().bytes_written, 0u);
  // Ending an unknown session is OK too (a restarted server); ending yourself is refused.
  auto again = answer(
      deliver(proto::encode_end_session_call(xid_++, proto::SlotCred{s2.id, 0, 2}, s2.key, s1_.id)),
      s2, 0, 2, Op::kEndSession);
  EXPECT_EQ(again.status, Errc::kOk);
  auto self = answer(
      deliver(proto::encode_end_session_call(xid_++, proto::SlotCred{s2.id, 0, 3}, s2.key, s2.id)),
      s2, 0, 3, Op::kEndSession);
  EXPECT_EQ(self.status, Errc::kInvalidArgument);
}

TEST_F(Dispatch, EndSessionOfABusySessionAnswersBusyUntilItsCallsFinish) {
  disk_->set_hold(true);
  EXPECT_TRUE(deliver(call(s1_, 0, 1, Op::kWrite, 0, 1, 0x71)).empty());
  Session s2 = login();
  auto busy = answer(
      deliver(proto::encode_end_session_call(xid_++, proto::SlotCred{s2.id, 0, 1}, s2.key, s1_.id)),
      s2, 0, 1, Op::kEndSession);
  EXPECT_EQ(busy.status, Errc::kBusy);
  EXPECT_TRUE(ask(s1_, 1, 1, Op::kReady).denied);  // no new call of it is admitted
  disk_->release_all();
  run();
  (void)replies();  // the old write's reply
  auto gone = answer(
      deliver(proto::encode_end_session_call(xid_++, proto::SlotCred{s2.id, 0, 2}, s2.key, s1_.id)),
      s2, 0, 2, Op::kEndSession);
  EXPECT_EQ(gone.status, Errc::kOk);
  EXPECT_EQ(server_->stats().sessions_ended, 1u);
}

TEST_F(Dispatch, AnotherClientsSessionIsNotEnded) {
  Session bob = login("bob");
  auto e = answer(deliver(proto::encode_end_session_call(xid_++, proto::SlotCred{bob.id, 0, 1},
                                                         bob.key, s1_.id)),
                  bob, 0, 1, Op::kEndSession);
  EXPECT_EQ(e.status, Errc::kOk);  // "no session of yours with that id runs anything"
  EXPECT_EQ(server_->stats().sessions_ended, 0u);
  EXPECT_EQ(ask(s1_, 0, 1, Op::kReady).status, Errc::kOk);
}

TEST_F(Dispatch, LogoutEndsTheSession) {
  auto r =
      answer(deliver(proto::encode_logout_call(xid_++, proto::SlotCred{s1_.id, 0, 1}, s1_.key)),
             s1_, 0, 1, Op::kLogout);
  EXPECT_TRUE(r.macd);
  EXPECT_EQ(r.status, Errc::kOk);
  EXPECT_EQ(server_->stats().sessions, 0u);
  EXPECT_TRUE(ask(s1_, 0, 2, Op::kReady).denied);
}

TEST_F(Dispatch, OneClientCannotTakeEverySession) {
  ServerOptions o;
  o.max_sessions_per_client = 3;
  start(o);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(login().status, Errc::kOk) << i;
  EXPECT_EQ(login().status, Errc::kBusy);  // the fourth is refused
  EXPECT_EQ(server_->stats().logins_refused_per_client, 1u);
  EXPECT_EQ(login("bob").status, Errc::kOk);  // another client is not affected
  EXPECT_EQ(server_->stats().sessions, 4u);
  // Expired sessions are reaped on demand to make room.
  clock_.advance(11min);
  EXPECT_EQ(login().status, Errc::kOk);
}

// ---- a real client end --------------------------------------------------------------------------

TEST_F(Dispatch, ConnectedClientEndGetsItsRepliesThroughTheIoContext) {
  auto c = t_->connect(io_);
  std::vector<Bytes> got;
  c->on_message = [&](Bytes m) { got.push_back(std::move(m)); };
  ASSERT_EQ(c->send(call(s1_, 0, 1, Op::kReady)), Errc::kOk);
  run();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(answer(got, s1_, 0, 1, Op::kReady).macd);
  EXPECT_TRUE(t_->take_sent().empty());
  // The server bound the session to the connection the call came on.
  ASSERT_TRUE(t_->binding(c->peer()).has_value());
  EXPECT_EQ(t_->binding(c->peer())->key, s1_.key);
  ASSERT_EQ(server_->sessions().size(), 1u);
  EXPECT_EQ(server_->sessions()[0].peer, c->peer());
}

}  // namespace
}  // namespace ipsan::server
