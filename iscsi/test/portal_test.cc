// Portal tests: a raw iSCSI initiator (blocking socket with a receive timeout, on the test thread)
// against a Portal on its own io thread over a Bus of MemoryTarget LUNs. Covers login with
// digests, SCSI reads and writes (immediate data, R2T), reservations across sessions, and hostile
// input (unknown opcodes, oversized segments, PDUs before login, CmdSN outside the window).
#include "ipsan/iscsi/portal.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <optional>
#include <thread>

#include "ipsan/client/memory_target.h"

namespace ipsan::iscsi {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr const char* kTarget = "iqn.2026-11.org.ipsan:test";

class PortalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_.add_device(0, client::MemoryTarget::default_identity(2048, 512, 64));
    bus_.add_server("m", target_);
    ASSERT_TRUE(bus_.map({0, 0, "m", 0}));
    ASSERT_EQ(bus_.attach_all_and_wait(), Errc::kOk);
    PortalOptions o;
    o.port = 0;
    portal_ = std::make_unique<Portal>(io_, bus_, std::vector<PortalTarget>{{kTarget, 0}}, o);
    ASSERT_TRUE(portal_->start());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
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

  client::MemoryTarget target_;
  client::scsi::Bus bus_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::unique_ptr<Portal> portal_;
  std::thread thread_;
};

class Initiator {
 public:
  explicit Initiator(std::uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    timeval tv{5, 0};  // a missing answer fails the test instead of hanging it
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void send(const Pdu& p) { asio::write(socket_, asio::buffer(encode_pdu(p, digests_))); }
  void send_raw(const Bytes& b) { asio::write(socket_, asio::buffer(b)); }

  // The next PDU, or nullopt on close / timeout.
  std::optional<Pdu> recv() {
    std::array<std::uint8_t, kBhsSize> bhs{};
    boost::system::error_code ec;
    asio::read(socket_, asio::buffer(bhs), ec);
    if (ec) return std::nullopt;
    auto ext = pdu_extent(bhs.data(), digests_, 1 << 24);
    if (!ext) return std::nullopt;
    Bytes rest(ext->rest);
    asio::read(socket_, asio::buffer(rest), ec);
    if (ec) return std::nullopt;
    Pdu p;
    if (!parse_pdu(bhs.data(), rest, digests_, 1 << 24, p)) return std::nullopt;
    return p;
  }

  bool login(std::uint8_t isid, bool digests = false, const TextPairs& extra = {}) {
    Pdu p;
    p.set_opcode(Opcode::kLoginRequest, true);
    p.bhs[1] = 0x80 | (1 << 2) | 3;  // T, CSG operational, NSG full feature
    p.bhs[8] = 0x80;
    p.bhs[13] = isid;
    p.set_u32(24, cmdsn_);
    TextPairs keys = {{"InitiatorName", "iqn.test:i" + std::to_string(isid)},
                      {"TargetName", kTarget},
                      {"SessionType", "Normal"},
                      {"HeaderDigest", digests ? "CRC32C" : "None"},
                      {"DataDigest", digests ? "CRC32C" : "None"}};
    keys.insert(keys.end(), extra.begin(), extra.end());
    p.data = encode_text(keys);
    send(p);
    auto r = recv();
    if (!r || r->opcode() != Opcode::kLoginResponse || r->bhs[36] != 0) return false;
    digests_ = {digests, digests};
    stat_sn_ = r->u32(24) + 1;
    return true;
  }

  Pdu command(const Bytes& cdb, std::uint32_t edtl, bool read, bool write, Bytes imm = {}) {
    Pdu p;
    p.set_opcode(Opcode::kScsiCommand);
    p.bhs[1] = static_cast<std::uint8_t>(0x80 | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 1);
    p.set_u32(16, ++itt_);
    p.set_u32(20, edtl);
    p.set_u32(24, cmdsn_++);
    p.set_u32(28, stat_sn_);
    std::copy(cdb.begin(), cdb.end(), p.bhs.begin() + 32);
    p.data = std::move(imm);
    return p;
  }

  // Runs a command; collects Data-In and returns (status, data).
  std::pair<int, Bytes> run(const Bytes& cdb, std::uint32_t edtl, bool read, bool write,
                            const Bytes& out = {}) {
    send(command(cdb, edtl, read, write));
    Bytes in;
    for (;;) {
      auto r = recv();
      if (!r) return {-1, in};
      if (r->opcode() == Opcode::kR2t) {
        const std::uint32_t off = r->u32(40), len = r->u32(44);
        Pdu d;
        d.set_opcode(Opcode::kDataOut);
        d.bhs[1] = 0x80;
        d.set_u32(16, r->itt());
        d.set_u32(20, r->u32(20));
        d.set_u32(40, off);
        d.data.assign(out.begin() + off, out.begin() + off + len);
        send(d);
      } else if (r->opcode() == Opcode::kDataIn) {
        in.insert(in.end(), r->data.begin(), r->data.end());
        if (r->flags() & 0x01) {
          stat_sn_ = r->u32(24) + 1;
          return {r->bhs[3], in};
        }
      } else if (r->opcode() == Opcode::kScsiResponse) {
        stat_sn_ = r->u32(24) + 1;
        return {r->bhs[3], in};
      } else {
        return {-2, in};
      }
    }
  }

  void logout() {
    Pdu p;
    p.set_opcode(Opcode::kLogoutRequest, true);
    p.bhs[1] = 0x80;
    p.set_u32(16, ++itt_);
    p.set_u32(24, cmdsn_);
    send(p);
  }

  std::uint32_t cmdsn_ = 1;
  std::uint32_t stat_sn_ = 0;
  std::uint32_t itt_ = 0;
  DigestConfig digests_;
  asio::io_context io_;
  tcp::socket socket_;
};

Bytes cdb10(std::uint8_t op, std::uint32_t lba, std::uint16_t blocks) {
  Bytes c(10, 0);
  c[0] = op;
  store_be32(&c[2], lba);
  store_be16(&c[7], blocks);
  return c;
}

TEST_F(PortalTest, LoginWithDigestsThenInquiryAndReadCapacity) {
  Initiator i(portal_->port());
  ASSERT_TRUE(i.login(1, true));
  auto inq = i.run({0x12, 0, 0, 0, 96, 0}, 96, true, false);
  EXPECT_EQ(inq.first, 0);
  ASSERT_EQ(inq.second.size(), 96u);
  EXPECT_EQ(inq.second[0], 0x00);  // direct access block device
  // A new I_T nexus starts without unit attentions (the power-on one belongs to the LU's attach).
  auto cap = i.run(cdb10(0x25, 0, 0), 8, true, false);
  EXPECT_EQ(cap.first, 0);
  EXPECT_EQ(load_be32(cap.second.data()), 2047u);
}

TEST_F(PortalTest, WritesThroughR2TAndReadsBack) {
  Initiator i(portal_->port());
  ASSERT_TRUE(i.login(1, false, {{"ImmediateData", "No"}, {"InitialR2T", "Yes"},
                                 {"MaxRecvDataSegmentLength", "1024"}}));
  i.run({0, 0, 0, 0, 0, 0}, 0, false, false);  // unit attention
  Bytes data(64 * 512);
  for (std::size_t k = 0; k < data.size(); ++k) data[k] = static_cast<std::uint8_t>(k * 13);
  EXPECT_EQ(i.run(cdb10(0x2A, 10, 64), 64 * 512, false, true, data).first, 0);
  auto back = i.run(cdb10(0x28, 10, 64), 64 * 512, true, false);
  EXPECT_EQ(back.first, 0);
  EXPECT_EQ(back.second, data);
}

TEST_F(PortalTest, BadDataSnEndsTheTaskWithOneResponseAndNoReject) {
  // libiscsi's iSCSIDataSnInvalid: a Data-Out with a wrong DataSN ends the task with a SCSI
  // Response (CHECK CONDITION) and nothing else, whatever the timing: a Reject as well would name
  // a task the initiator then considers ended, and the response after it an unknown one.
  Initiator i(portal_->port());
  ASSERT_TRUE(i.login(1, false, {{"ImmediateData", "No"}, {"InitialR2T", "Yes"},
                                 {"MaxRecvDataSegmentLength", "512"}}));
  i.run({0, 0, 0, 0, 0, 0}, 0, false, false);  // unit attention
  for (std::uint32_t bad_sn : {1u, 27u, 0xFFFFFFFFu}) {
    i.send(i.command(cdb10(0x2A, 100, 2), 1024, false, true));
    auto r2t = i.recv();
    ASSERT_TRUE(r2t);
    ASSERT_EQ(r2t->opcode(), Opcode::kR2t);
    for (std::uint32_t k = 0; k < 2; ++k) {  // the second Data-Out is for an ended task: dropped
      Pdu d;
      d.set_opcode(Opcode::kDataOut);
      d.bhs[1] = k == 1 ? 0x80 : 0x00;
      d.set_u32(16, r2t->itt());
      d.set_u32(20, r2t->u32(20));
      d.set_u32(36, k == 0 ? bad_sn : 0);
      d.set_u32(40, k * 512);
      d.data.assign(512, 0xA6);
      i.send(d);
    }
    auto resp = i.recv();
    ASSERT_TRUE(resp);
    ASSERT_EQ(resp->opcode(), Opcode::kScsiResponse) << "DataSN " << bad_sn;
    EXPECT_EQ(resp->itt(), r2t->itt());
    EXPECT_EQ(resp->bhs[3], 0x02);  // CHECK CONDITION
    i.stat_sn_ = resp->u32(24) + 1;
    // The next PDU is the answer to the next command: no Reject, no response for the dropped data.
    EXPECT_EQ(i.run({0, 0, 0, 0, 0, 0}, 0, false, false).first, 0);
  }
  // Nothing was written, and the connection still works.
  auto back = i.run(cdb10(0x28, 100, 2), 1024, true, false);
  EXPECT_EQ(back.first, 0);
  EXPECT_EQ(back.second, Bytes(1024, 0));
}

TEST_F(PortalTest, ReservationsHoldAcrossSessionsAndEndWithTheNexus) {
  Initiator a(portal_->port()), b(portal_->port());
  ASSERT_TRUE(a.login(1));
  ASSERT_TRUE(b.login(2));
  a.run({0, 0, 0, 0, 0, 0}, 0, false, false);
  b.run({0, 0, 0, 0, 0, 0}, 0, false, false);
  EXPECT_EQ(a.run({0x16, 0, 0, 0, 0, 0}, 0, false, false).first, 0);  // RESERVE(6)
  EXPECT_EQ(b.run({0, 0, 0, 0, 0, 0}, 0, false, false).first, 0x18);  // RESERVATION CONFLICT
  EXPECT_EQ(a.run({0, 0, 0, 0, 0, 0}, 0, false, false).first, 0);
  a.logout();
  auto resp = a.recv();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->opcode(), Opcode::kLogoutResponse);
  EXPECT_FALSE(a.recv());  // closed
  EXPECT_EQ(b.run({0, 0, 0, 0, 0, 0}, 0, false, false).first, 0);
}

TEST_F(PortalTest, HostileInputIsRejectedOrResetAndOthersGoOn) {
  Initiator good(portal_->port());
  ASSERT_TRUE(good.login(9));
  {
    Initiator early(portal_->port());  // a SCSI command before login: reset
    early.send(early.command({0, 0, 0, 0, 0, 0}, 0, false, false));
    EXPECT_FALSE(early.recv());
  }
  {
    Initiator i(portal_->port());
    ASSERT_TRUE(i.login(3));
    Pdu odd;
    odd.set_opcode(static_cast<Opcode>(0x1C));  // no such initiator opcode
    i.send(odd);
    auto r = i.recv();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->opcode(), Opcode::kReject);
    EXPECT_EQ(r->bhs[2], static_cast<std::uint8_t>(RejectReason::kCommandNotSupported));
    // A command outside the CmdSN window is ignored: the NOP that follows is answered first.
    Pdu far = i.command({0, 0, 0, 0, 0, 0}, 0, false, false);
    far.set_u32(24, i.cmdsn_ + 1000);
    i.send(far);
    Pdu nop;
    nop.set_opcode(Opcode::kNopOut, true);
    nop.bhs[1] = 0x80;
    nop.set_u32(16, 77);
    nop.set_u32(20, kReservedTag);
    nop.set_u32(24, i.cmdsn_);
    nop.data = {1, 2, 3};
    i.send(nop);
    auto n = i.recv();
    ASSERT_TRUE(n);
    EXPECT_EQ(n->opcode(), Opcode::kNopIn);
    EXPECT_EQ(n->itt(), 77u);
    EXPECT_EQ(n->data, (Bytes{1, 2, 3}));
    // A data segment beyond MaxRecvDataSegmentLength: the connection is reset.
    Bytes huge = encode_pdu(i.command({0, 0, 0, 0, 0, 0}, 0, false, false), {});
    huge[5] = 0x10;  // 1 MiB announced
    i.send_raw(huge);
    EXPECT_FALSE(i.recv());
  }
  {
    Initiator bad(portal_->port());  // login abuse: unknown target
    Pdu p;
    p.set_opcode(Opcode::kLoginRequest, true);
    p.bhs[1] = 0x87;
    p.data = encode_text({{"InitiatorName", "x"}, {"TargetName", "iqn.nope"}});
    bad.send(p);
    auto r = bad.recv();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->bhs[36], 0x02);
    EXPECT_EQ(r->bhs[37], 0x03);
    EXPECT_FALSE(bad.recv());
  }
  good.run({0, 0, 0, 0, 0, 0}, 0, false, false);
  EXPECT_EQ(good.run({0, 0, 0, 0, 0, 0}, 0, false, false).first, 0);
  std::promise<PortalStats> stats;
  asio::post(io_, [&] { stats.set_value(portal_->stats()); });
  EXPECT_GE(stats.get_future().get().rejects, 1u);
}

}  // namespace
}  // namespace ipsan::iscsi
