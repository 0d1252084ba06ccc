// The remote back end with two real servers on 127.0.0.1: server B exports device 0 of server A
// (ipsan://), a client writes and reads through B, A is stopped (clean I/O errors through B)
// and restarted on the same ports (B's back end logs in again by itself and works).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>

#include "ipsan/backends/file.h"
#include "ipsan/backends/ram.h"
#include "ipsan/backends/spec.h"
#include "ipsan/client/runtime.h"
#include "ipsan/remote/remote_backend.h"
#include "ipsan/testing/server_thread.h"

namespace ipsan::remote {
namespace {

using namespace std::chrono_literals;
using proto::TransportKind;

Key256 key_of(std::uint8_t seed) {
  Key256 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(seed + i);
  return k;
}

std::string hex(const Key256& k) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (auto b : k) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

// Blocking helpers over a Backend.
Errc wait(const std::function<void(backends::Completion)>& f) {
  std::promise<Errc> p;
  auto fut = p.get_future();
  f([&p](Errc e) { p.set_value(e); });
  return fut.get();
}

class RemoteBackendTest : public ::testing::TestWithParam<TransportKind> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ipsan_remote_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    std::filesystem::create_directories(dir_);
    key_file_ = (dir_ / "b.key").string();
    std::ofstream(key_file_) << hex(key_of(50)) << "\n";
    ::chmod(key_file_.c_str(), 0600);
    start_a(0, 0);
    ASSERT_EQ(a_->error(), "");
    a_udp_ = a_->udp_port();
    a_tcp_ = a_->tcp_port();
    register_remote_backend();
  }
  void TearDown() override {
    b_.reset();
    a_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Server A: device 0 is a 4 MiB image file (it survives a restart), device 1 a read-only RAM
  // disk; client "b" (server B's remote back end) and "alice" may log in.
  void start_a(std::uint16_t udp, std::uint16_t tcp) {
    testing::ServerThreadOptions so;
    so.clients = {{"b", key_of(50)}, {"alice", key_of(10)}};
    so.udp_bind.port(udp);
    so.tcp_bind.port(tcp);
    const std::string image = (dir_ / "a.img").string();
    a_ = std::make_unique<testing::ServerThread>(so, [image](std::vector<server::Export>& ex) {
      auto f = backends::open_backend("file:" + image + ",size=4M");
      if (!f) return f.error().message;
      ex.push_back(server::Export{0, "disk0", *f, false, {}});
      auto r = backends::RamBackend::create(1 << 20, backends::RamOptions{});
      if (!r) return r.error().message;
      ex.push_back(server::Export{1, "ro", *r, true, {}});
      return std::string();
    });
  }

  std::string spec(std::uint32_t device) const {
    const auto kind = GetParam();
    const std::uint16_t port = kind == TransportKind::kUdp ? a_udp_ : a_tcp_;
    return "ipsan://127.0.0.1:" + std::to_string(port) + "/" + std::to_string(device) +
           "?client=b&key-file=" + key_file_ + "&transport=" +
           (kind == TransportKind::kUdp ? "udp" : "tcp") +
           "&timeout=1s&fence-timeout=1s&connect-timeout=5s";
  }

  // Server B: device 0 is A's device 0 through the remote back end; client "alice".
  void start_b() {
    testing::ServerThreadOptions so;
    so.clients = {{"alice", key_of(10)}};
    const std::string s = spec(0);
    b_ = std::make_unique<testing::ServerThread>(so, [s](std::vector<server::Export>& ex) {
      auto r = backends::open_backend(s);
      if (!r) return r.error().message;
      ex.push_back(server::Export{0, "remote0", *r, false, {}});
      return std::string();
    });
  }

  std::unique_ptr<client::Runtime> connect(std::uint16_t port) {
    client::RuntimeOptions o;
    o.transport.kind = TransportKind::kUdp;
    o.transport.port = port;
    o.client.client_name = "alice";
    o.client.key = key_of(10);
    o.client.request_timeout = 20s;
    auto rt = client::Runtime::start(o);
    EXPECT_TRUE(rt) << rt.error().message;
    return rt ? std::move(*rt) : nullptr;
  }

  static proto::Reply write(client::Runtime& rt, std::uint64_t lba, const Bytes& data) {
    proto::Request w;
    w.op = proto::Op::kWrite;
    w.lba = lba;
    w.blocks = static_cast<std::uint32_t>(data.size() / 512);
    w.data = data;
    return rt.call(std::move(w));
  }
  static proto::Reply read(client::Runtime& rt, std::uint64_t lba, std::uint32_t blocks) {
    proto::Request r;
    r.op = proto::Op::kRead;
    r.lba = lba;
    r.blocks = blocks;
    return rt.call(std::move(r));
  }

  std::filesystem::path dir_;
  std::string key_file_;
  std::unique_ptr<testing::ServerThread> a_, b_;
  std::uint16_t a_udp_ = 0, a_tcp_ = 0;
};

Bytes pattern(std::size_t n, std::uint32_t seed) {
  std::mt19937 g(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(g());
  return b;
}

TEST_P(RemoteBackendTest, GeometryCapabilitiesAndSplitIo) {
  auto b = backends::open_backend(spec(0));
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*b)->geometry().block_size, 512u);
  EXPECT_EQ((*b)->geometry().block_count, (4u << 20) / 512);
  EXPECT_FALSE((*b)->capabilities().read_only);
  EXPECT_NE((*b)->describe().find("ipsan://127.0.0.1:"), std::string::npos);
  // 3 MiB in one call: larger than the remote's largest transfer, split here.
  const Bytes data = pattern(3 << 20, 7);
  EXPECT_EQ(wait([&](auto done) { (*b)->write(100, data, false, done); }), Errc::kOk);
  Bytes back(data.size());
  EXPECT_EQ(wait([&](auto done) { (*b)->read(100, back, done); }), Errc::kOk);
  EXPECT_EQ(back, data);
  EXPECT_EQ(wait([&](auto done) { (*b)->flush(done); }), Errc::kOk);
  EXPECT_EQ(wait([&](auto done) { (*b)->write_zeroes(100, 8, false, done); }), Errc::kOk);
  Bytes z(8 * 512, 0xFF);
  EXPECT_EQ(wait([&](auto done) { (*b)->read(100, z, done); }), Errc::kOk);
  EXPECT_EQ(z, Bytes(8 * 512, 0));
  // Past the end: refused here, nothing sent.
  Bytes one(512);
  EXPECT_EQ(wait([&](auto done) { (*b)->read((4u << 20) / 512, one, done); }),
            Errc::kLbaOutOfRange);
  // A read-only remote device is read only here too, and a write says so.
  auto ro = backends::open_backend(spec(1));
  ASSERT_TRUE(ro) << ro.error().message;
  EXPECT_TRUE((*ro)->capabilities().read_only);
  EXPECT_EQ(wait([&](auto done) { (*ro)->write(0, one, false, done); }), Errc::kWriteProtected);
  // An unknown device is an error at open.
  auto none = backends::open_backend(spec(9));
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("unknown-device"), std::string::npos)
      << none.error().message;
}

TEST_P(RemoteBackendTest, ServerReexportsAnotherServersDiskAcrossItsRestart) {
  start_b();
  ASSERT_EQ(b_->error(), "");
  auto via_b = connect(b_->udp_port());
  ASSERT_TRUE(via_b);
  // Written through B, read back through B and straight from A.
  const Bytes data = pattern(64 * 1024, 11);
  ASSERT_EQ(write(*via_b, 8, data).status, Errc::kOk);
  auto r = read(*via_b, 8, 128);
  ASSERT_EQ(r.status, Errc::kOk);
  EXPECT_EQ(r.data, data);
  {
    auto direct = connect(a_udp_);
    ASSERT_TRUE(direct);
    auto d = read(*direct, 8, 128);
    ASSERT_EQ(d.status, Errc::kOk);
    EXPECT_EQ(d.data, data);
  }

  // A goes away: through B, a clean I/O error once the remote back end's deadline passed
  // (timeout 1s + fence-timeout 1s + 1s), well before the client's own 20 s.
  a_->shutdown();
  const auto t0 = std::chrono::steady_clock::now();
  const auto failed = write(*via_b, 8, pattern(4096, 12));
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(failed.status, Errc::kIoError);
  EXPECT_LT(took, 15s);
  EXPECT_EQ(read(*via_b, 8, 8).status, Errc::kIoError);

  // A comes back on the same ports, with the same image: B's back end reconnects and logs in
  // again by itself. The failed write may or may not have reached A; the data written before it
  // outside its range is intact.
  start_a(a_udp_, a_tcp_);
  ASSERT_EQ(a_->error(), "");
  Errc status = Errc::kIoError;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  const Bytes again = pattern(4096, 13);
  while (status != Errc::kOk && std::chrono::steady_clock::now() < deadline) {
    status = write(*via_b, 8, again).status;  // each try is bounded by the 3 s deadline
  }
  ASSERT_EQ(status, Errc::kOk);
  auto after = read(*via_b, 8, 128);
  ASSERT_EQ(after.status, Errc::kOk);
  EXPECT_TRUE(std::equal(again.begin(), again.end(), after.data.begin()));
  EXPECT_TRUE(std::equal(data.begin() + 4096, data.end(), after.data.begin() + 4096));
}

INSTANTIATE_TEST_SUITE_P(Transports, RemoteBackendTest,
                         ::testing::Values(TransportKind::kUdp, TransportKind::kTcp),
                         [](const auto& p) {
                           return p.param == TransportKind::kUdp ? "udp" : "tcp";
                         });

}  // namespace
}  // namespace ipsan::remote
