// StorageServer::execute through an in-memory transport: the re-execute branch (a READ whose data
// reply is not cached), one MAC'd reply per (slot, seq), SLOT_FENCE and END_SESSION. Every call is
// delivered by hand, so the order of events is exact.
#include <gtest/gtest.h>

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>

#include "ipsan/backends/ram.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/server/server.h"

namespace ipsan::server {
namespace {

using proto::Op;

class MemTransport final : public proto::ServerTransport {
 public:
  Errc send(proto::PeerId, Bytes message) override {
    replies.push_back(std::move(message));
    return Errc::kOk;
  }
  void close_peer(proto::PeerId) override {}
  void close() override {}
  std::uint16_t local_port() const override { return 0; }
  proto::TransportStats stats() const override { return {}; }
  std::string peer_name(proto::PeerId) const override { return "mem"; }
  std::vector<Bytes> replies;
};

struct Session {
  std::uint64_t id = 0;
  Key256 key{};
};

class Dispatch : public ::testing::Test {
 protected:
  void SetUp() override {
    crypto_init();
    parse_key("dispatch-test", key_);
    KeyRing keys;
    (void)keys.add("alice", key_);
    disk_ = *backends::RamBackend::create(1 << 20);
    server_ = std::make_unique<StorageServer>(io_, ServerOptions{}, std::move(keys), exports(disk_));
    auto t = std::make_unique<MemTransport>();
    t_ = t.get();
    server_->attach(std::move(t));
    s1_ = login();
    ASSERT_NE(s1_.id, 0u);
  }
  static std::vector<Export> exports(backends::BackendPtr b) {
    std::vector<Export> e(1);
    e[0].device_id = 0;
    e[0].name = "disk0";
    e[0].backend = std::move(b);
    return e;
  }
  // Delivers one message and runs the server until it is idle; returns the replies it sent.
  std::vector<Bytes> deliver(const Bytes& msg) {
    t_->replies.clear();
    t_->on_message(1, msg);
    io_.restart();
    while (io_.poll() != 0) {
    }
    return std::move(t_->replies);
  }
  Session login() {
    proto::LoginBeginArgs b;
    b.client_name = "alice";
    random_bytes(b.client_nonce);
    auto r1 = deliver(proto::encode_login_begin_call(xid_++, b));
    if (r1.size() != 1) return {};
    auto p1 = proto::parse_reply(ByteSpan(r1[0]));
    auto begin = proto::decode_login_begin_res(p1->results);
    proto::LoginFinishArgs f;
    f.client_name = "alice";
    f.client_nonce = b.client_nonce;
    f.server_nonce = begin->server_nonce;
    f.proof = proto::login_client_proof(key_, "alice", f.client_nonce, f.server_nonce);
    auto r2 = deliver(proto::encode_login_finish_call(xid_++, f));
    if (r2.size() != 1) return {};
    auto p2 = proto::parse_reply(ByteSpan(r2[0]));
    auto fin = proto::decode_login_finish_res(p2->results);
    if (!fin || fin->status != Errc::kOk) return {};
    return Session{fin->session_id, proto::derive_session_key(key_, "alice", f.client_nonce,
                                                              f.server_nonce, fin->session_id)};
  }
  Bytes call(const Session& s, std::uint32_t slot, std::uint64_t seq, Op op, std::uint64_t lba,
             std::uint32_t blocks, std::uint8_t fill = 0) {
    proto::Request r;
    r.op = op;
    r.lba = lba;
    r.blocks = blocks;
    if (op == Op::kWrite) r.data.assign(blocks * 512u, fill);
    return proto::encode_call(xid_++, proto::SlotCred{s.id, slot, seq}, s.key, r);
  }
  // The one reply to expect; `macd` tells whether it carried a valid MAC for (slot, seq).
  struct Answer {
    bool macd = false;
    bool denied = false;
    Errc status = Errc::kInternal;
    Bytes raw;
  };
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
    auto d = proto::decode_results(op, p->results);
    if (d) a.status = d->status;
    return a;
  }

  boost::asio::io_context io_;
  Key256 key_{};
  backends::BackendPtr disk_;
  std::unique_ptr<StorageServer> server_;
  MemTransport* t_ = nullptr;
  Session s1_;
  std::uint32_t xid_ = 1;
};

TEST_F(Dispatch, RetransmittedReadIsReexecutedOnceWithTheSameReply) {
  ASSERT_EQ(answer(deliver(call(s1_, 0, 1, Op::kWrite, 0, 8, 0x11)), s1_, 0, 1, Op::kWrite).status,
            Errc::kOk);
  const Bytes read = call(s1_, 1, 1, Op::kRead, 0, 8);
  auto first = answer(deliver(read), s1_, 1, 1, Op::kRead);
  ASSERT_TRUE(first.macd);
  ASSERT_EQ(first.status, Errc::kOk);
  auto st = server_->stats();
  auto again = answer(deliver(read), s1_, 1, 1, Op::kRead);  // the reply was lost: re-executed
  EXPECT_EQ(again.raw, first.raw);                          // byte-identical, same MAC
  EXPECT_EQ(server_->stats().executed, st.executed + 1);
  for (int i = 0; i < 10; ++i) {  // replayed copies: no more reads
    auto more = answer(deliver(read), s1_, 1, 1, Op::kRead);
    EXPECT_FALSE(more.macd);
    EXPECT_EQ(more.status, Errc::kBusy);
  }
  EXPECT_EQ(server_->stats().executed, st.executed + 1);
  EXPECT_EQ(server_->stats().bytes_read, st.bytes_read + 8 * 512);
}

TEST_F(Dispatch, ChangedDataGivesUnauthenticatedBusyNotASecondMacdReply) {
  const Bytes read = call(s1_, 1, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 1, 1, Op::kRead).macd);
  ASSERT_EQ(answer(deliver(call(s1_, 0, 1, Op::kWrite, 0, 1, 0x77)), s1_, 0, 1, Op::kWrite).status,
            Errc::kOk);
  auto again = answer(deliver(read), s1_, 1, 1, Op::kRead);
  EXPECT_FALSE(again.macd);
  EXPECT_EQ(again.status, Errc::kBusy);
}

TEST_F(Dispatch, ReexecutionAfterDeviceRemovalSendsNoSecondMacdReply) {
  const Bytes read = call(s1_, 0, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 0, 1, Op::kRead).macd);
  server_->update_exports({});  // the admin unexports the device
  auto again = answer(deliver(read), s1_, 0, 1, Op::kRead);
  EXPECT_FALSE(again.macd) << "a second MAC'd reply for the same (slot, seq)";
  EXPECT_EQ(again.status, Errc::kBusy);
  // The news comes MAC'd on the next seq.
  auto next = answer(deliver(call(s1_, 0, 2, Op::kRead, 0, 1)), s1_, 0, 2, Op::kRead);
  EXPECT_TRUE(next.macd);
  EXPECT_EQ(next.status, Errc::kUnknownDevice);
}

TEST_F(Dispatch, ReexecutionAfterResizeKeepsTheCapacityNoticeForTheNextSeq) {
  const Bytes read = call(s1_, 0, 1, Op::kRead, 0, 1);
  ASSERT_TRUE(answer(deliver(read), s1_, 0, 1, Op::kRead).macd);
  server_->update_exports(exports(*backends::RamBackend::create(2 << 20)));  // grown
  auto again = answer(deliver(read), s1_, 0, 1, Op::kRead);
  EXPECT_FALSE(again.macd);
  EXPECT_EQ(again.status, Errc::kBusy);
  auto next = answer(deliver(call(s1_, 0, 2, Op::kRead, 0, 1)), s1_, 0, 2, Op::kRead);
  EXPECT_TRUE(next.macd);
  EXPECT_EQ(next.status, Errc::kCapacityChanged);
}

TEST_F(Dispatch, SlotFenceRefusesTheFencedWriteForever) {
  ASSERT_EQ(answer(deliver(call(s1_, 0, 1, Op::kWrite, 4, 1, 0xAA)), s1_, 0, 1, Op::kWrite).status,
            Errc::kOk);
  const Bytes held = call(s1_, 0, 2, Op::kWrite, 4, 1, 0xBB);  // never arrives (held back)
  const Bytes fence = proto::encode_slot_fence_call(xid_++, proto::SlotCred{s1_.id, 0, 3}, s1_.key);
  auto f = answer(deliver(fence), s1_, 0, 3, Op::kSlotFence);
  EXPECT_TRUE(f.macd);
  EXPECT_EQ(f.status, Errc::kOk);
  EXPECT_EQ(answer(deliver(fence), s1_, 0, 3, Op::kSlotFence).raw, f.raw);  // cached
  ASSERT_EQ(answer(deliver(call(s1_, 1, 1, Op::kWrite, 4, 1, 0xCC)), s1_, 1, 1, Op::kWrite).status,
            Errc::kOk);
  auto late = answer(deliver(held), s1_, 0, 2, Op::kWrite);
  EXPECT_FALSE(late.macd);
  EXPECT_EQ(late.status, Errc::kSeqMisordered);
  auto r = deliver(call(s1_, 0, 4, Op::kRead, 4, 1));
  ASSERT_EQ(r.size(), 1u);
  auto p = proto::parse_reply(ByteSpan(r[0]));
  auto d = proto::decode_results(Op::kRead, p->results);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->data, Bytes(512, 0xCC));
}

TEST_F(Dispatch, EndSessionFromANewSessionRefusesTheOldOnesCalls) {
  const Bytes held = call(s1_, 0, 1, Op::kWrite, 9, 1, 0xBB);
  Session s2 = login();
  ASSERT_NE(s2.id, 0u);
  const Bytes end = proto::encode_end_session_call(xid_++, proto::SlotCred{s2.id, 0, 1}, s2.key,
                                                   s1_.id);
  auto e = answer(deliver(end), s2, 0, 1, Op::kEndSession);
  EXPECT_TRUE(e.macd);
  EXPECT_EQ(e.status, Errc::kOk);
  EXPECT_EQ(server_->stats().sessions_ended, 1u);
  auto late = answer(deliver(held), s1_, 0, 1, Op::kWrite);
  EXPECT_TRUE(late.denied);
  EXPECT_EQ(late.status, Errc::kStaleSession);
  EXPECT_EQ(server_->stats().bytes_written, 0u);
  // Ending an unknown session is OK too (a restarted server); ending yourself is refused.
  auto again = answer(deliver(proto::encode_end_session_call(
                          xid_++, proto::SlotCred{s2.id, 0, 2}, s2.key, s1_.id)),
                      s2, 0, 2, Op::kEndSession);
  EXPECT_EQ(again.status, Errc::kOk);
  auto self = answer(deliver(proto::encode_end_session_call(
                         xid_++, proto::SlotCred{s2.id, 0, 3}, s2.key, s2.id)),
                     s2, 0, 3, Op::kEndSession);
  EXPECT_EQ(self.status, Errc::kInvalidArgument);
}

TEST_F(Dispatch, OneClientCannotTakeEverySession) {
  // A server of its own with a per-client limit of 3.
  ServerOptions o;
  o.max_sessions_per_client = 3;
  KeyRing keys;
  (void)keys.add("alice", key_);
  server_ = std::make_unique<StorageServer>(io_, o, std::move(keys), exports(disk_));
  auto t = std::make_unique<MemTransport>();
  t_ = t.get();
  server_->attach(std::move(t));
  for (int i = 0; i < 3; ++i) EXPECT_NE(login().id, 0u) << i;
  EXPECT_EQ(login().id, 0u);  // the fourth is refused (BUSY)
  EXPECT_EQ(server_->stats().logins_refused_per_client, 1u);
  EXPECT_EQ(server_->stats().sessions, 3u);
}

}  // namespace
}  // namespace ipsan::server
