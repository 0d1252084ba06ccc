// server_test.cc: nbd::Server over loopback TCP against a MemoryTarget, driven by a small raw
// client (so malformed input can be sent): handshake, every command, errors, bad clients.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "ipsan/client/memory_target.h"
#include "ipsan/nbd/server.h"

namespace ipsan::nbd {
namespace {

class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { ::close(fd_); }
  bool ok() const { return ok_; }
  bool send(const Bytes& b) { return ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == ssize_t(b.size()); }
  bool recv(std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      ssize_t r = ::recv(fd_, p, n, 0);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  }
  Bytes recv(std::size_t n) {
    Bytes b(n);
    if (!recv(b.data(), n)) b.clear();
    return b;
  }
  bool closed() {
    std::uint8_t x;
    return ::recv(fd_, &x, 1, 0) == 0;
  }
  // Option and its replies up to (and including) a final ACK or error.
  std::uint32_t option(std::uint32_t opt, const Bytes& data) {
    Bytes h(16);
    store_be64(h.data(), kOptMagic);
    store_be32(h.data() + 8, opt);
    store_be32(h.data() + 12, static_cast<std::uint32_t>(data.size()));
    h.insert(h.end(), data.begin(), data.end());
    if (!send(h)) return 0;
    for (;;) {
      Bytes r = recv(20);
      if (r.empty()) return 0;
      const std::uint32_t type = load_be32(r.data() + 12);
      Bytes body = recv(load_be32(r.data() + 16));
      if (type == kRepInfo && load_be16(body.data()) == kInfoExport) {
        size_ = load_be64(body.data() + 2);
        flags_ = load_be16(body.data() + 10);
      }
      if (type == kRepAck || (type & 0x80000000u)) return type;
    }
  }
  bool greet() {
    Bytes g = recv(kGreetingSize);
    if (g.size() != kGreetingSize || load_be64(g.data()) != kNbdMagic) return false;
    Bytes f(4);
    store_be32(f.data(), kClientFixedNewstyle | kClientNoZeroes);
    return send(f);
  }
  bool go(const std::string& name, bool structured) {
    if (!greet()) return false;
    if (structured && option(kOptStructuredReply, {}) != kRepAck) return false;
    return option(kOptGo, encode_info_request({name, {kInfoBlockSize}})) == kRepAck;
  }
  // Simple reply: error value (or ~0 on a closed connection); data filled for reads.
  std::uint32_t cmd(std::uint16_t type, std::uint64_t off, std::uint32_t len, std::uint16_t flags = 0,
                    const Bytes& payload = {}, Bytes* data = nullptr) {
    Bytes b = encode_request(Request{flags, type, ++cookie_, off, len});
    b.insert(b.end(), payload.begin(), payload.end());
    if (!send(b)) return ~0u;
    Bytes r = recv(16);
    if (r.empty() || load_be32(r.data()) != kSimpleReplyMagic || load_be64(r.data() + 8) != cookie_)
      return ~0u;
    const std::uint32_t err = load_be32(r.data() + 4);
    if (err == 0 && type == kCmdRead) {
      Bytes d = recv(len);
      if (data) *data = std::move(d);
    }
    return err;
  }
  std::uint64_t size_ = 0;
  std::uint16_t flags_ = 0;

 private:
  int fd_ = -1;
  bool ok_ = false;
  std::uint64_t cookie_ = 0;
};

struct Fixture : ::testing::Test {
  void SetUp() override {
    target.add_device(0, client::MemoryTarget::default_identity(2048, 512, 16));
    auto ro = client::MemoryTarget::default_identity(64, 4096, 8);
    ro.capabilities &= ~proto::kCapWriteZeroes;
    target.add_device(7, ro);
    std::vector<ExportConfig> ex(2);
    ex[0].name = "rw";
    ex[0].device_id = 0;
    ex[0].identity = client::MemoryTarget::default_identity(2048, 512, 16);
    ex[1].name = "ro";
    ex[1].device_id = 7;
    ex[1].identity = ro;
    ex[1].read_only = true;
    ServerOptions o;
    o.tcp_port = 0;
    o.max_request_bytes = 1 << 16;
    o.handshake_timeout_ms = 5000;
    server = std::make_unique<Server>(target, ex, o);
    auto r = server->start();
    ASSERT_TRUE(r) << r.error().message;
  }
  void TearDown() override { server->stop(); }
  client::MemoryTarget target;
  std::unique_ptr<Server> server;
};

TEST_F(Fixture, ReadWriteSplitAndErrors) {
  RawClient c(server->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.go("rw", false));
  EXPECT_EQ(c.size_, 2048u * 512);
  EXPECT_TRUE(c.flags_ & kTxCanMultiConn);
  Bytes data(40960);  // 80 blocks: 5 pieces of 16
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 1);
  EXPECT_EQ(c.cmd(kCmdWrite, 4096, 40960, kCmdFlagFua, data), 0u);
  Bytes back;
  EXPECT_EQ(c.cmd(kCmdRead, 4096, 40960, 0, {}, &back), 0u);
  EXPECT_EQ(back, data);
  EXPECT_EQ(c.cmd(kCmdRead, 4096 + 3, 1000, 0, {}, &back), 0u);  // unaligned read
  EXPECT_EQ(Bytes(data.begin() + 3, data.begin() + 1003), back);
  EXPECT_EQ(c.cmd(kCmdFlush, 0, 0), 0u);
  EXPECT_EQ(c.cmd(kCmdWriteZeroes, 4096, 512, kCmdFlagNoHole | kCmdFlagFastZero), 0u);
  EXPECT_EQ(c.cmd(kCmdRead, 4096, 512, 0, {}, &back), 0u);
  EXPECT_EQ(back, Bytes(512, 0));
  EXPECT_EQ(c.cmd(kCmdTrim, 8192, 4096), 0u);
  EXPECT_EQ(c.cmd(kCmdCache, 0, 65536), 0u);
  EXPECT_EQ(c.cmd(kCmdRead, 2048u * 512, 512), kEINVAL);
  EXPECT_EQ(c.cmd(kCmdWrite, 2048u * 512, 512, 0, Bytes(512)), kENOSPC);
  EXPECT_EQ(c.cmd(kCmdRead, 0, (1 << 16) + 512), kEOVERFLOW);
  EXPECT_EQ(c.cmd(kCmdWrite, 0, (1 << 16) + 512, 0, Bytes((1 << 16) + 512)), kEOVERFLOW);
  EXPECT_EQ(c.cmd(kCmdBlockStatus, 0, 512), kEINVAL);  // no meta context negotiated
  EXPECT_EQ(c.cmd(kCmdWrite, 0, 512, 0, Bytes(512, 9)), 0u);  // still in sync after the errors
  target.inject({proto::Op::kRead, 0u, 0, 1, Errc::kMediumError, 1});
  EXPECT_EQ(c.cmd(kCmdRead, 0, 512), kEIO);
  EXPECT_EQ(c.cmd(kCmdRead, 0, 512, 0, {}, &back), 0u);
  EXPECT_EQ(back, Bytes(512, 9));
}

TEST_F(Fixture, ReadOnlyExportAndSlowZero) {
  RawClient c(server->port());
  ASSERT_TRUE(c.go("ro", false));
  EXPECT_TRUE(c.flags_ & kTxReadOnly);
  EXPECT_EQ(c.cmd(kCmdWrite, 0, 4096, 0, Bytes(4096)), kEPERM);
  EXPECT_EQ(c.cmd(kCmdRead, 0, 4096), 0u);
}

TEST_F(Fixture, FastZeroFailsWhenZeroingIsNotNative) {
  // A writable export whose device has no WRITE_ZEROES: zeroing would be a WRITE of zeroes.
  client::MemoryTarget t;
  auto id = client::MemoryTarget::default_identity(64, 512, 8);
  id.capabilities &= ~proto::kCapWriteZeroes;
  t.add_device(1, id);
  std::vector<ExportConfig> ex(1);
  ex[0].name = "z";
  ex[0].device_id = 1;
  ex[0].identity = id;
  ServerOptions o;
  o.tcp_port = 0;
  Server s(t, ex, o);
  ASSERT_TRUE(s.start());
  RawClient c(s.port());
  ASSERT_TRUE(c.go("z", false));
  EXPECT_EQ(c.cmd(kCmdWrite, 0, 4096, 0, Bytes(4096, 5)), 0u);
  EXPECT_EQ(c.cmd(kCmdWriteZeroes, 0, 4096, kCmdFlagFastZero), kENOTSUP);
  EXPECT_EQ(c.cmd(kCmdWriteZeroes, 0, 4096, kCmdFlagFua), 0u);
  Bytes back;
  EXPECT_EQ(c.cmd(kCmdRead, 0, 4096, 0, {}, &back), 0u);
  EXPECT_EQ(back, Bytes(4096, 0));
  s.stop();
}

TEST_F(Fixture, StructuredReadAndBlockStatus) {
  RawClient c(server->port());
  ASSERT_TRUE(c.greet());
  ASSERT_EQ(c.option(kOptStructuredReply, {}), kRepAck);
  ASSERT_EQ(c.option(kOptSetMetaContext, encode_meta_context_request({"rw", {"base:allocation"}})),
            kRepAck);
  ASSERT_EQ(c.option(kOptGo, encode_info_request({"rw", {}})), kRepAck);
  ASSERT_TRUE(c.send(encode_request(Request{0, kCmdRead, 5, 512, 1024})));
  Bytes h = c.recv(kChunkHeaderSize);
  ASSERT_FALSE(h.empty());
  EXPECT_EQ(load_be32(h.data()), kStructuredReplyMagic);
  EXPECT_EQ(load_be16(h.data() + 4), kReplyFlagDone);
  EXPECT_EQ(load_be16(h.data() + 6), kReplyTypeOffsetData);
  EXPECT_EQ(load_be32(h.data() + 16), 8u + 1024);
  Bytes body = c.recv(8 + 1024);
  EXPECT_EQ(load_be64(body.data()), 512u);
  ASSERT_TRUE(c.send(encode_request(Request{kCmdFlagReqOne, kCmdBlockStatus, 6, 0, 1 << 20})));
  h = c.recv(kChunkHeaderSize);
  EXPECT_EQ(load_be16(h.data() + 6), kReplyTypeBlockStatus);
  body = c.recv(load_be32(h.data() + 16));
  ASSERT_EQ(body.size(), 12u);
  EXPECT_EQ(load_be32(body.data()), kBaseAllocationId);
  EXPECT_EQ(load_be32(body.data() + 4), 1u << 20);
  EXPECT_EQ(load_be32(body.data() + 8), 0u);  // allocated: the server cannot tell holes
  // A structured error chunk for a read beyond the end.
  ASSERT_TRUE(c.send(encode_request(Request{0, kCmdRead, 7, 2048u * 512, 512})));
  h = c.recv(kChunkHeaderSize);
  EXPECT_EQ(load_be16(h.data() + 6), kReplyTypeError);
  body = c.recv(load_be32(h.data() + 16));
  EXPECT_EQ(load_be32(body.data()), kEINVAL);
}

TEST_F(Fixture, BadClientsDoNotDisturbOthers) {
  RawClient good(server->port());
  ASSERT_TRUE(good.go("rw", false));
  {
    RawClient garbage(server->port());
    ASSERT_TRUE(garbage.greet());
    garbage.send(Bytes(64, 0xAB));  // no IHAVEOPT magic
    EXPECT_TRUE(garbage.closed());
  }
  {
    RawClient unknown(server->port());
    ASSERT_TRUE(unknown.greet());
    EXPECT_EQ(unknown.option(kOptGo, encode_info_request({"nope", {}})), kRepErrUnknown);
    EXPECT_EQ(unknown.option(kOptAbort, {}), kRepAck);
  }
  {
    RawClient huge(server->port());
    ASSERT_TRUE(huge.greet());
    Bytes h(16);
    store_be64(h.data(), kOptMagic);
    store_be32(h.data() + 8, kOptGo);
    store_be32(h.data() + 12, 0xFFFFFFF0u);
    huge.send(h);
    EXPECT_TRUE(huge.closed());
  }
  {
    RawClient midway(server->port());
    ASSERT_TRUE(midway.go("rw", false));
    Bytes b = encode_request(Request{0, kCmdWrite, 1, 0, 4096});
    b.resize(b.size() + 100);  // then hang up in the middle of the payload
    midway.send(b);
  }
  {
    RawClient badmagic(server->port());
    ASSERT_TRUE(badmagic.go("rw", false));
    badmagic.send(Bytes(28, 0x55));
    EXPECT_TRUE(badmagic.closed());
  }
  EXPECT_EQ(good.cmd(kCmdWrite, 0, 512, 0, Bytes(512, 3)), 0u);
  Bytes back;
  EXPECT_EQ(good.cmd(kCmdRead, 0, 512, 0, {}, &back), 0u);
  EXPECT_EQ(back, Bytes(512, 3));
  EXPECT_GE(server->stats().handshake_failures, 2u);
  EXPECT_GE(server->stats().protocol_errors, 1u);
}

TEST(NbdServer, ShutdownAnswersEshutdownThenCloses) {
  client::MemoryTarget t;
  auto id = client::MemoryTarget::default_identity(64, 512, 8);
  t.add_device(0, id);
  std::vector<ExportConfig> ex(1);
  ex[0].name = "d";
  ex[0].identity = id;
  ServerOptions o;
  o.tcp_port = 0;
  o.shutdown_grace_ms = 20000;  // ends early: the client disconnects on ESHUTDOWN
  Server s(t, ex, o);
  ASSERT_TRUE(s.start());
  RawClient c(s.port());
  ASSERT_TRUE(c.go("d", false));
  ASSERT_EQ(c.cmd(kCmdRead, 0, 512), 0u);
  std::thread stopper([&] { s.stop(); });
  std::uint32_t err = 0;
  for (int i = 0; i < 100000 && err == 0; ++i) err = c.cmd(kCmdRead, 0, 512);
  EXPECT_EQ(err, kESHUTDOWN);
  c.send(encode_request(Request{0, kCmdDisc, 0, 0, 0}));
  EXPECT_TRUE(c.closed());
  stopper.join();
  RawClient late(s.port());
  EXPECT_FALSE(late.ok());
}

}  // namespace
}  // namespace ipsan::nbd
