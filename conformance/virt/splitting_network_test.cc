// multi-command-splitting, over the network: the same splitting checks as splitting_test.cc, but
// each request travels from a real client over reliable UDP through a lossy netem link (profile
// lossy-1pct, both directions) to a real server exporting a TOML layout. For every request the
// server's back-end commands (trace hook) must be exactly the expected pieces, in order, at the
// right physical addresses, and the data must read back — from the client and from the back ends.
#include <gtest/gtest.h>

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <vector>

#include "ipsan/base/pattern.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/san_client.h"
#include "ipsan/netem/config.h"
#include "ipsan/netem/udp_proxy.h"
#include "ipsan/server/admin.h"
#include "ipsan/server/serve.h"
#include "ipsan/virt/layout.h"

namespace ipsan {
namespace {

namespace asio = boost::asio;
using proto::Op;

struct Piece {
  std::string backend;
  std::uint64_t lba, blocks;
  friend bool operator==(const Piece&, const Piece&) = default;
};

// Three 1 MiB (2048-block) back ends: `cat` = a|b|c end to end; `ext` = c[100..199] + a[1000..1999]
// + b[0..9] (logical block 0 at physical block 100 of c).
constexpr const char* kLayout = R"(
[backend.a]
spec = "ram:1M"
[backend.b]
spec = "ram:1M"
[backend.c]
spec = "ram:1M"
[backend.d]
spec = "ram:1M"
[backend.e]
spec = "ram:1M"
[backend.f]
spec = "ram:1M"
[disk.cat]
type = "concat"
members = ["a", "b", "c"]
[disk.ext]
type = "extents"
extents = [{ device = "d", start_lba = 100, blocks = 100 },
           { device = "e", start_lba = 1000, blocks = 1000 },
           { device = "f", blocks = 10 }]
[[export]]
device_id = 1
disk = "cat"
[[export]]
device_id = 2
disk = "ext"
)";

class SplittingOverNetwork : public ::testing::Test {
 protected:
  void SetUp() override {
    auto layout = virt::parse_layout(kLayout, std::filesystem::temp_directory_path());
    ASSERT_TRUE(layout) << layout.error().message;
    layout_ = std::move(*layout);
    layout_.set_trace([this](const virt::TraceEvent& t) {
      if (t.op == backends::OpKind::kRead || t.op == backends::OpKind::kWrite)
        trace_.push_back(Piece{std::string(t.backend), t.lba, t.blocks});
    });
    server::KeyRing keys;
    Key256 key;
    parse_key("splitting", key);
    ASSERT_TRUE(keys.add("tester", key));
    server::ServeOptions so;
    so.tcp = false;  // reliable UDP through the lossy proxy only
    auto running = server::serve(io_, std::move(so), std::move(keys),
                                 server::to_server_exports(layout_));
    ASSERT_TRUE(running) << running.error().message;
    server_ = std::move(*running);
    const std::uint16_t server_port = server_->udp_port();
    auto lo = asio::ip::make_address("127.0.0.1");

    const std::uint64_t seed = 0x5111700;
    std::printf("netem profile lossy-1pct, seed %llu\n", static_cast<unsigned long long>(seed));
    netem::UdpProxyOptions po;
    po.listen = asio::ip::udp::endpoint(lo, 0);
    po.forward = asio::ip::udp::endpoint(lo, server_port);
    auto profile = netem::profile_by_name("lossy-1pct");
    ASSERT_TRUE(profile) << profile.error().message;
    po.up = *profile;
    po.down = *profile;
    po.seed = seed;
    auto proxy = netem::UdpProxy::create(io_, po);
    ASSERT_TRUE(proxy) << proxy.error().message;
    proxy_ = std::move(*proxy);

    client::TransportOptions to;
    to.port = proxy_->local_endpoint().port();
    client::ClientOptions co;
    co.client_name = "tester";
    co.key = key;
    client_ = std::make_unique<client::SanClient>(io_, *client::make_transport_factory(io_, to), co);
  }
  void TearDown() override {
    if (client_) client_->close();
    io_.run_for(std::chrono::milliseconds(20));
  }

  proto::Reply call(proto::Request req) {
    std::optional<proto::Reply> out;
    client_->execute(std::move(req), [&](proto::Reply r) {
      out = std::move(r);
      io_.stop();
    });
    io_.restart();
    io_.run_for(std::chrono::seconds(30));
    io_.restart();
    return out.value_or(proto::Reply{Errc::kTimeout, {}, {}, {}});
  }

  // Writes a pattern over [lba, lba+blocks) of `device`, checks the pieces the server issued,
  // reads it back through the network and checks the pieces again.
  void check(std::uint32_t device, std::uint64_t lba, std::uint32_t blocks,
             const std::vector<Piece>& expect) {
    SCOPED_TRACE("device " + std::to_string(device) + " lba " + std::to_string(lba) + " blocks " +
                 std::to_string(blocks));
    proto::Request w;
    w.op = Op::kWrite;
    w.device_id = device;
    w.lba = lba;
    w.blocks = blocks;
    w.data.resize(std::size_t{blocks} * 512);
    fill_pattern_blocks(w.data, 512, 77, lba + device * 100000, 0);
    Bytes written = w.data;
    trace_.clear();
    ASSERT_EQ(call(std::move(w)).status, Errc::kOk);
    EXPECT_EQ(trace_, expect) << "write pieces";
    proto::Request r;
    r.op = Op::kRead;
    r.device_id = device;
    r.lba = lba;
    r.blocks = blocks;
    trace_.clear();
    auto back = call(r);
    ASSERT_EQ(back.status, Errc::kOk);
    EXPECT_EQ(back.data, written);
    // READs may be re-executed if a reply was lost; each execution issues the same pieces.
    ASSERT_FALSE(trace_.empty());
    ASSERT_EQ(trace_.size() % expect.size(), 0u);
    for (std::size_t i = 0; i < trace_.size(); ++i) EXPECT_EQ(trace_[i], expect[i % expect.size()]);
    // And the blocks are physically where the mapping says.
    std::size_t off = 0;
    for (const auto& p : expect) {
      Bytes phys(p.blocks * 512);
      std::optional<Errc> done;
      layout_.backends.at(p.backend)->read(p.lba, phys, [&](Errc e) { done = e; });
      ASSERT_EQ(done, Errc::kOk);
      EXPECT_TRUE(std::equal(phys.begin(), phys.end(), written.begin() + static_cast<std::ptrdiff_t>(off)))
          << "physical " << p.backend << "@" << p.lba;
      off += p.blocks * 512;
    }
  }

  asio::io_context io_;
  virt::Layout layout_;
  std::vector<Piece> trace_;
  std::unique_ptr<server::RunningServer> server_;
  std::unique_ptr<netem::UdpProxy> proxy_;
  std::unique_ptr<client::SanClient> client_;
};

TEST_F(SplittingOverNetwork, ConcatSpansOneTwoAndThreeExtents) {
  check(1, 0, 8, {{"a", 0, 8}});                                  // inside the first extent
  check(1, 2040, 16, {{"a", 2040, 8}, {"b", 0, 8}});              // across one boundary
  check(1, 2047, 2050, {{"a", 2047, 1}, {"b", 0, 2048}, {"c", 0, 1}});  // across two
  check(1, 6143, 1, {{"c", 2047, 1}});                            // the last block
  check(1, 2048, 2048, {{"b", 0, 2048}});                         // exactly one whole extent
  // The link really lost datagrams on the way (about 6 MiB crossed it).
  EXPECT_GT(proxy_->up_counters().dropped() + proxy_->down_counters().dropped(), 0u);
}

TEST_F(SplittingOverNetwork, ExtentListRemapsAndSplits) {
  check(2, 0, 1, {{"d", 100, 1}});                                // logical 0 at physical 100
  check(2, 90, 20, {{"d", 190, 10}, {"e", 1000, 10}});
  check(2, 50, 1060, {{"d", 150, 50}, {"e", 1000, 1000}, {"f", 0, 10}});
  check(2, 1109, 1, {{"f", 9, 1}});                               // the last block
  // Past the end: refused as a whole, nothing issued.
  proto::Request r;
  r.op = Op::kRead;
  r.device_id = 2;
  r.lba = 1105;
  r.blocks = 10;
  trace_.clear();
  EXPECT_EQ(call(r).status, Errc::kLbaOutOfRange);
  EXPECT_TRUE(trace_.empty());
}

}  // namespace
}  // namespace ipsan
