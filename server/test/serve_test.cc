// server::serve(): listeners (one port number for UDP and TCP when it can), the port file, the
// admin socket (stats; online changes only with a layout), the HTTP metrics endpoint, the capture
// file, and clear errors for what cannot be bound. Loopback only, port 0, a temp directory.
#include "ipsan/server/serve.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>  // before Asio

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "ipsan/backends/ram.h"
#include "ipsan/proto/codec.h"
#include "ipsan/proto/rpc.h"
#include "ipsan/server/admin.h"

#include "test_dir.h"

namespace ipsan::server {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;

struct Dir : testing::TestDir {
  Dir() : TestDir("serve-test") {}
};

KeyRing keys() {
  KeyRing k;
  Key256 key{};
  parse_key("serve-test-key", key);
  (void)k.add("alice", key);
  return k;
}

std::vector<Export> ram_export() {
  std::vector<Export> e(1);
  e[0].name = "disk0";
  e[0].backend = *backends::RamBackend::create(1 << 20);
  return e;
}

// Runs `io` on a thread of its own while the test thread plays the client; stop() stops the
// server through RunningServer::stop and joins.
class Running {
 public:
  Running(asio::io_context& io, std::unique_ptr<RunningServer> rs)
      : io_(io), rs_(std::move(rs)), work_(asio::make_work_guard(io)) {
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Running() { stop(); }
  RunningServer& operator*() { return *rs_; }
  RunningServer* operator->() { return rs_.get(); }
  void stop() {
    if (!thread_.joinable()) return;
    std::promise<void> stopped;
    asio::post(io_, [&] { rs_->stop([&] { stopped.set_value(); }); });
    EXPECT_EQ(stopped.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
    asio::post(io_, [&] { rs_.reset(); });
    work_.reset();
    thread_.join();
  }

 private:
  asio::io_context& io_;
  std::unique_ptr<RunningServer> rs_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

std::string http_get(std::uint16_t port, const std::string& path) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  asio::write(s, asio::buffer(req));
  std::string out;
  boost::system::error_code ec;
  asio::read(s, asio::dynamic_buffer(out), ec);  // until the server closes
  return out;
}

TEST(Serve, UdpAndTcpShareOnePortNumberWhenTheyCan) {
  asio::io_context io;
  auto rs = serve(io, ServeOptions{}, keys(), ram_export());
  ASSERT_TRUE(rs) << rs.error().message;
  EXPECT_NE((*rs)->udp_port(), 0);
  EXPECT_EQ((*rs)->tcp_port(), (*rs)->udp_port());
  EXPECT_EQ((*rs)->server().transport_count(), 2u);
  EXPECT_EQ((*rs)->registry(), nullptr);  // no live metrics unless asked
  EXPECT_EQ((*rs)->port_line(), "udp=" + std::to_string((*rs)->udp_port()) +
                                    " tcp=" + std::to_string((*rs)->tcp_port()));
}

TEST(Serve, OneTransportOnly) {
  asio::io_context io;
  ServeOptions o;
  o.udp = false;
  auto rs = serve(io, o, keys(), ram_export());
  ASSERT_TRUE(rs) << rs.error().message;
  EXPECT_EQ((*rs)->udp_port(), 0);
  EXPECT_NE((*rs)->tcp_port(), 0);
  EXPECT_EQ((*rs)->server().transport_count(), 1u);
  o.udp = true;
  o.tcp = false;
  auto u = serve(io, o, keys(), ram_export());
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_NE((*u)->udp_port(), 0);
  EXPECT_EQ((*u)->tcp_port(), 0);
  o.udp = false;
  auto none = serve(io, o, keys(), ram_export());
  ASSERT_FALSE(none);
}

TEST(Serve, PortsInUseAndBadExportsAreClearErrors) {
  asio::io_context io;
  asio::ip::udp::socket taken_udp(io,
                                  asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ServeOptions o;
  o.udp_port = taken_udp.local_endpoint().port();
  auto rs = serve(io, o, keys(), ram_export());
  ASSERT_FALSE(rs);
  EXPECT_NE(rs.error().message.find("cannot listen on udp 127.0.0.1:"), std::string::npos)
      << rs.error().message;
  asio::ip::tcp::acceptor taken_tcp(
      io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ServeOptions t;
  t.udp = false;
  t.tcp_port = taken_tcp.local_endpoint().port();
  auto rt = serve(io, t, keys(), ram_export());
  ASSERT_FALSE(rt);
  EXPECT_NE(rt.error().message.find("cannot listen on tcp"), std::string::npos)
      << rt.error().message;
  auto twice = ram_export();
  twice.push_back(twice[0]);
  auto bad = serve(io, ServeOptions{}, keys(), std::move(twice));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("exported twice"), std::string::npos) << bad.error().message;
}

TEST(Serve, PortFileIsWrittenWhole) {
  Dir dir;
  asio::io_context io;
  auto rs = serve(io, ServeOptions{}, keys(), ram_export());
  ASSERT_TRUE(rs) << rs.error().message;
  ASSERT_TRUE((*rs)->write_port_file(dir.path / "ports"));
  std::ifstream f(dir.path / "ports");
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, (*rs)->port_line());
  EXPECT_FALSE(fs::exists(dir.path / "ports.tmp"));
  EXPECT_FALSE((*rs)->write_port_file(dir.path / "no-such-dir" / "ports"));
}

TEST(Serve, AdminSocketAnswersStatsAndRefusesChangesWithoutALayout) {
  Dir dir;
  asio::io_context io;
  ServeOptions o;
  o.admin_socket = dir.path / "admin.sock";
  auto rs = serve(io, o, keys(), ram_export());
  ASSERT_TRUE(rs) << rs.error().message;
  ASSERT_NE((*rs)->registry(), nullptr);  // the admin socket's `stats` reads it
  Running run(io, std::move(*rs));
  auto stats = admin_call(dir.path / "admin.sock", {{"op", "stats"}});
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_TRUE((*stats)["ok"].get<bool>()) << stats->dump();
  EXPECT_TRUE(stats->contains("metrics"));
  auto change = admin_call(dir.path / "admin.sock", {{"op", "show"}});
  ASSERT_TRUE(change) << change.error().message;
  EXPECT_FALSE((*change)["ok"].get<bool>());
  EXPECT_NE((*change)["error"].get<std::string>().find("--config"), std::string::npos);
  run.stop();
  EXPECT_FALSE(fs::exists(dir.path / "admin.sock"));  // removed when the server stops
}

TEST(Serve, AdminSocketWithALayoutAppliesChanges) {
  Dir dir;
  std::ofstream(dir.path / "layout.toml") << "[backend.a]\nspec = \"ram:8M\"\n"
                                             "[disk.d1]\ntype = \"extents\"\nextents = [{ device = "
                                             "\"a\", start = \"0\", size = \"2M\" }]\n"
                                             "[[export]]\ndevice_id = 3\ndisk = \"d1\"\n";
  auto layout = LayoutManager::load(dir.path / "layout.toml");
  ASSERT_TRUE(layout) << layout.error().message;
  asio::io_context io;
  ServeOptions o;
  o.admin_socket = dir.path / "admin.sock";
  o.layout = layout->get();
  auto rs = serve(io, o, keys(), (*layout)->exports());
  ASSERT_TRUE(rs) << rs.error().message;
  StorageServer* server = &(*rs)->server();
  Running run(io, std::move(*rs));
  auto unexport = admin_call(dir.path / "admin.sock", {{"op", "unexport"}, {"device_id", 3}});
  ASSERT_TRUE(unexport) << unexport.error().message;
  EXPECT_TRUE((*unexport)["ok"].get<bool>()) << unexport->dump();
  std::promise<std::size_t> n;
  asio::post(io, [&] { n.set_value(server->exports().size()); });
  EXPECT_EQ(n.get_future().get(), 0u);
}

TEST(Serve, MetricsAreScrapedOverHttp) {
  asio::io_context io;
  ServeOptions o;
  o.metrics = "127.0.0.1:0";
  auto rs = serve(io, o, keys(), ram_export());
  ASSERT_TRUE(rs) << rs.error().message;
  const std::uint16_t port = (*rs)->metrics_port();
  ASSERT_NE(port, 0);
  EXPECT_EQ((*rs)->metrics_host(), "127.0.0.1");
  EXPECT_NE((*rs)->port_line().find(" metrics=" + std::to_string(port)), std::string::npos);
  Running run(io, std::move(*rs));
  const std::string page = http_get(port, "/metrics");
  EXPECT_NE(page.find("200"), std::string::npos) << page.substr(0, 200);
  EXPECT_NE(page.find("ipsan_"), std::string::npos) << page.substr(0, 400);
}

TEST(Serve, BadMetricsAddressIsAnError) {
  asio::io_context io;
  ServeOptions o;
  o.metrics = "127.0.0.1:notaport";
  auto rs = serve(io, o, keys(), ram_export());
  ASSERT_FALSE(rs);
  EXPECT_NE(rs.error().message.find("--metrics"), std::string::npos);
}

TEST(Serve, CaptureRecordsTcpConnections) {
  Dir dir;
  const fs::path pcap = dir.path / "c.pcap";
  asio::io_context io;
  ServeOptions o;
  o.capture = pcap.string();
  auto rs = serve(io, o, keys(), ram_export());
  ASSERT_TRUE(rs) << rs.error().message;
  const std::uint16_t port = (*rs)->tcp_port();
  std::size_t rec_bytes = 0;
  {
    Running run(io, std::move(*rs));
    asio::io_context cio;
    asio::ip::tcp::socket s(cio);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    // A NULL call in one record; its reply proves the server accepted and recorded the
    // connection before it stops.
    const Bytes call = proto::encode_null_call(1);
    Bytes rec(4);
    store_be32(rec.data(), 0x80000000u | static_cast<std::uint32_t>(call.size()));
    rec.insert(rec.end(), call.begin(), call.end());
    asio::write(s, asio::buffer(rec));
    rec_bytes = rec.size();
    std::uint8_t mark[4];
    asio::read(s, asio::buffer(mark));
    Bytes reply(load_be32(mark) & 0x7fffffffu);
    asio::read(s, asio::buffer(reply));
    auto p = proto::parse_reply(ByteSpan(reply));
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->success());
    s.close();
    run.stop();  // closes the capture
  }
  ASSERT_TRUE(fs::exists(pcap));
  // The file header, the handshake, the call and the reply as segments.
  EXPECT_GT(fs::file_size(pcap), 24u + 5 * 40u + rec_bytes);
  ServeOptions bad;
  bad.capture = (dir.path / "no-such-dir" / "c.pcap").string();
  auto r = serve(io, bad, keys(), ram_export());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("--capture"), std::string::npos);
}

}  // namespace
}  // namespace ipsan::server
