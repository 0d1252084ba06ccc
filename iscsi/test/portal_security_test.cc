// The portal's perimeter over real sockets: CHAP logins (right and wrong secret), the initiator
// allow-list, the connection cap (idle unauthenticated sockets are evicted, logged-in sessions
// are not, extra connections get "out of resources"), the login timeout and the idle timeout.
// Bounded waits only: every read has a 5 s receive timeout.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <optional>
#include <thread>

#include "ipsan/base/crypto.h"
#include "ipsan/client/memory_target.h"
#include "ipsan/iscsi/portal.h"

namespace ipsan::iscsi {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr const char* kTarget = "iqn.2026-11.org.ipsan:sec";

class Sec : public ::testing::Test {
 protected:
  void start(PortalOptions o, std::vector<std::string> allowed = {}) {
    target_.add_device(0, client::MemoryTarget::default_identity(2048, 512, 64));
    bus_.add_server("m", target_);
    ASSERT_TRUE(bus_.map({0, 0, "m", 0}));
    ASSERT_EQ(bus_.attach_all_and_wait(), Errc::kOk);
    o.port = 0;
    PortalTarget t{kTarget, 0};
    t.allowed_initiators = std::move(allowed);
    portal_ = std::make_unique<Portal>(io_, bus_, std::vector<PortalTarget>{t}, o);
    ASSERT_TRUE(portal_->start());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (!portal_) return;
    std::promise<void> stopped;
    asio::post(io_, [&] {
      portal_->stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  PortalStats stats() {
    std::promise<PortalStats> s;
    asio::post(io_, [&] { s.set_value(portal_->stats()); });
    return s.get_future().get();
  }

  client::MemoryTarget target_;
  client::scsi::Bus bus_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::unique_ptr<Portal> portal_;
  std::thread thread_;
};

struct Conn {
  explicit Conn(std::uint16_t port) : socket(io) {
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    timeval tv{5, 0};
    setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void send(const Pdu& p) { asio::write(socket, asio::buffer(encode_pdu(p, {}))); }
  std::optional<Pdu> recv() {
    std::array<std::uint8_t, kBhsSize> bhs{};
    boost::system::error_code ec;
    asio::read(socket, asio::buffer(bhs), ec);
    if (ec) return std::nullopt;
    auto ext = pdu_extent(bhs.data(), {}, 1 << 24);
    if (!ext) return std::nullopt;
    Bytes rest(ext->rest);
    asio::read(socket, asio::buffer(rest), ec);
    if (ec) return std::nullopt;
    Pdu p;
    if (!parse_pdu(bhs.data(), rest, {}, 1 << 24, p)) return std::nullopt;
    return p;
  }
  // One login request; the response.
  std::optional<Pdu> login_pdu(std::uint8_t csg, std::uint8_t nsg, bool transit, const TextPairs& keys) {
    Pdu p;
    p.set_opcode(Opcode::kLoginRequest, true);
    p.bhs[1] = static_cast<std::uint8_t>((transit ? 0x80 : 0) | (csg << 2) | (transit ? nsg : 0));
    p.bhs[8] = 0x80;
    p.bhs[13] = 1;
    p.set_u32(24, 1);
    p.data = encode_text(keys);
    send(p);
    return recv();
  }
  static std::uint16_t status(const std::optional<Pdu>& r) {
    if (!r) return 0xFFFF;
    return static_cast<std::uint16_t>((r->bhs[36] << 8) | r->bhs[37]);
  }
  static std::string key(const Pdu& r, const std::string& k) {
    auto pairs = parse_text(r.data);
    if (pairs) {
      for (const auto& [a, b] : *pairs) {
        if (a == k) return b;
      }
    }
    return {};
  }
  // Plain login to full feature (no CHAP); the status.
  std::uint16_t plain(const std::string& initiator) {
    return status(login_pdu(1, 3, true,
                            {{"InitiatorName", initiator}, {"TargetName", kTarget},
                             {"SessionType", "Normal"}}));
  }
  // CHAP login with `secret` and algorithm list `alg`; the final status.
  std::uint16_t chap(const std::string& initiator, const std::string& name, const std::string& secret,
                     const std::string& alg = "5") {
    auto r1 = login_pdu(0, 1, false,
                        {{"InitiatorName", initiator}, {"TargetName", kTarget},
                         {"SessionType", "Normal"}, {"AuthMethod", "CHAP"}});
    if (status(r1) != 0) return status(r1);
    auto r2 = login_pdu(0, 1, false, {{"CHAP_A", alg}});
    if (status(r2) != 0) return status(r2);
    const auto a = static_cast<ChapAlgorithm>(std::stoi(key(*r2, "CHAP_A")));
    const auto id = static_cast<std::uint8_t>(std::stoi(key(*r2, "CHAP_I")));
    auto c = decode_chap_binary(key(*r2, "CHAP_C"));
    if (!c) return 0xFFFE;
    auto r3 = login_pdu(0, 3, true,
                        {{"CHAP_N", name}, {"CHAP_R", "0x" + to_hex(chap_response(a, id, secret, *c))}});
    if (status(r3) != 0) return status(r3);
    if (!r3 || !(r3->bhs[1] & 0x80)) return 0xFFFD;  // no transit
    if ((r3->bhs[1] & 3) == 3) return 0;
    // Operational stage, then full feature.
    return status(login_pdu(1, 3, true, {{"HeaderDigest", "None"}}));
  }
  bool closed_by_peer() {
    std::uint8_t b;
    boost::system::error_code ec;
    asio::read(socket, asio::buffer(&b, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  asio::io_context io;
  tcp::socket socket;
};

TEST_F(Sec, ChapRightAndWrongSecretOthersUnaffected) {
  PortalOptions o;
  o.security.chap_initiators["alice"] = "alice-secret-123";
  start(o);
  Conn good(portal_->port());
  EXPECT_EQ(good.chap("iqn.a", "alice", "alice-secret-123", "7,5"), 0);  // SHA-256 chosen
  Conn md5(portal_->port());
  EXPECT_EQ(md5.chap("iqn.b", "alice", "alice-secret-123", "5"), 0);
  Conn wrong(portal_->port());
  EXPECT_EQ(wrong.chap("iqn.c", "alice", "alice-secret-124"), kLoginAuthFailure);
  EXPECT_TRUE(wrong.closed_by_peer());
  Conn none(portal_->port());  // no authentication at all (a made-up initiator name)
  EXPECT_EQ(none.plain("iqn.made-up"), kLoginAuthFailure);
  EXPECT_TRUE(none.closed_by_peer());
  // The authenticated sessions still answer.
  Pdu nop;
  nop.set_opcode(Opcode::kNopOut, true);
  nop.bhs[1] = 0x80;
  nop.set_u32(16, 5);
  nop.set_u32(20, kReservedTag);
  good.send(nop);
  auto r = good.recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->opcode(), Opcode::kNopIn);
  EXPECT_EQ(stats().auth_failures, 2u);
}

TEST_F(Sec, InitiatorNotOnTheListIsRefusedAndHidden) {
  start(PortalOptions{}, {"iqn.allowed"});
  Conn bad(portal_->port());
  EXPECT_EQ(bad.plain("iqn.made-up"), kLoginAuthorizationFailure);
  Conn good(portal_->port());
  EXPECT_EQ(good.plain("iqn.allowed"), 0);
  // Discovery: SendTargets lists only targets the initiator may log in to.
  for (const auto& [who, listed] : {std::pair{"iqn.made-up", false}, std::pair{"iqn.allowed", true}}) {
    Conn d(portal_->port());
    ASSERT_EQ(Conn::status(d.login_pdu(1, 3, true, {{"InitiatorName", who}, {"SessionType", "Discovery"}})), 0);
    Pdu t;
    t.set_opcode(Opcode::kTextRequest, true);
    t.bhs[1] = 0x80;
    t.set_u32(16, 9);
    t.set_u32(20, kReservedTag);
    t.data = encode_text({{"SendTargets", "All"}});
    d.send(t);
    auto r = d.recv();
    ASSERT_TRUE(r);
    EXPECT_EQ(Conn::key(*r, "TargetName") == kTarget, listed) << who;
  }
}

TEST_F(Sec, IdleConnectionsBeyondTheCapCannotLockInitiatorsOut) {
  PortalOptions o;
  o.max_connections = 4;
  o.login_timeout = 60s;  // eviction, not the timeout, makes room here
  start(o);
  Conn s1(portal_->port());
  ASSERT_EQ(s1.plain("iqn.s1"), 0);
  std::vector<std::unique_ptr<Conn>> idle;
  for (int i = 0; i < 12; ++i) idle.push_back(std::make_unique<Conn>(portal_->port()));
  // A new initiator still logs in (the oldest idle socket made room) ...
  Conn s2(portal_->port());
  EXPECT_EQ(s2.plain("iqn.s2"), 0);
  // ... and so does one more, while the logged-in sessions stay.
  Conn s3(portal_->port());
  EXPECT_EQ(s3.plain("iqn.s3"), 0);
  Conn s4(portal_->port());
  EXPECT_EQ(s4.plain("iqn.s4"), 0);
  EXPECT_GE(stats().evicted, 1u);
  // Now every place is a logged-in session: a fifth is told "out of resources".
  Conn s5(portal_->port());
  EXPECT_EQ(s5.plain("iqn.s5"), kLoginOutOfResources);
  // The evicted idle sockets were closed by the portal.
  std::size_t closed = 0;
  for (auto& c : idle) closed += c->closed_by_peer() ? 1 : 0;
  EXPECT_EQ(closed, idle.size());
  Pdu nop;
  nop.set_opcode(Opcode::kNopOut, true);
  nop.bhs[1] = 0x80;
  nop.set_u32(16, 5);
  nop.set_u32(20, kReservedTag);
  s1.send(nop);
  auto r = s1.recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->opcode(), Opcode::kNopIn);
}

TEST_F(Sec, LoginTimeoutAndIdleTimeout) {
  PortalOptions o;
  o.login_timeout = 300ms;
  o.idle_timeout = 300ms;
  start(o);
  Conn silent(portal_->port());  // never logs in
  EXPECT_TRUE(silent.closed_by_peer());
  Conn answers(portal_->port());
  ASSERT_EQ(answers.plain("iqn.live"), 0);
  Conn mute(portal_->port());
  ASSERT_EQ(mute.plain("iqn.mute"), 0);
  // The live session answers two pings and stays; the mute one is pinged, then closed.
  for (int i = 0; i < 2; ++i) {
    auto ping = answers.recv();
    ASSERT_TRUE(ping);
    ASSERT_EQ(ping->opcode(), Opcode::kNopIn);
    EXPECT_NE(ping->u32(20), kReservedTag);
    Pdu reply;
    reply.set_opcode(Opcode::kNopOut, true);
    reply.bhs[1] = 0x80;
    reply.set_u32(16, kReservedTag);
    reply.set_u32(20, ping->u32(20));
    answers.send(reply);
  }
  auto ping = mute.recv();
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->opcode(), Opcode::kNopIn);
  EXPECT_TRUE(mute.closed_by_peer());
  Pdu nop;
  nop.set_opcode(Opcode::kNopOut, true);
  nop.bhs[1] = 0x80;
  nop.set_u32(16, 6);
  nop.set_u32(20, kReservedTag);
  answers.send(nop);
  for (int i = 0; i < 3; ++i) {  // skip pings that crossed our NOP-Out
    auto r = answers.recv();
    ASSERT_TRUE(r);
    if (r->itt() == 6) break;
  }
  EXPECT_GE(stats().timeouts, 2u);
}

}  // namespace
}  // namespace ipsan::iscsi
