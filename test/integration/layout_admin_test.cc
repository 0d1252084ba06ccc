// Online layout changes through the admin endpoint of a running server: grow a virtual disk while
// a client is logged in; the client gets one CAPACITY_CHANGED notice, then the new size, and data
// written before the change is still in place. Changes that would lose data are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ipsan/server/admin.h"
#include "ipsan/server/serve.h"
#include "test_server.h"

namespace ipsan::testing {
namespace {

using nlohmann::json;
using proto::Op;

TEST(LayoutAdmin, GrowIsSeenByClientsAndRefusalsKeepData) {
  auto dir = std::filesystem::temp_directory_path() /
             ("ipsan-admin-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "layout.toml");
    f << "[backend.a]\nspec = \"ram:8M\"\n[backend.b]\nspec = \"ram:8M\"\n"
         "[disk.d1]\ntype = \"extents\"\nextents = [{ device = \"a\", start = \"1M\", size = \"2M\" }]\n"
         "[[export]]\ndevice_id = 5\ndisk = \"d1\"\n";
  }
  auto mgr = server::LayoutManager::load(dir / "layout.toml");
  ASSERT_TRUE(mgr) << mgr.error().message;

  boost::asio::io_context io;
  server::KeyRing keys;
  ASSERT_TRUE(keys.add("alice", test_key()));
  auto sock = dir / "admin.sock";
  server::ServeOptions so;
  so.udp = false;
  so.admin_socket = sock;
  so.layout = mgr->get();
  auto running = server::serve(io, std::move(so), std::move(keys), (*mgr)->exports());
  ASSERT_TRUE(running) << running.error().message;
  const std::uint16_t port = (*running)->tcp_port();

  client::ClientOptions co;
  co.client_name = "alice";
  co.key = test_key();
  client::SanClient c(io, factory(io, proto::TransportKind::kTcp, port), co);
  auto call = [&](proto::Request req) {
    std::optional<proto::Reply> out;
    c.execute(std::move(req), [&](proto::Reply r) { out = std::move(r); });
    EXPECT_TRUE(run_until(io, [&] { return out.has_value(); }));
    return out.value_or(proto::Reply{Errc::kTimeout, {}, {}, {}});
  };
  // admin_call blocks, so run it on another thread while this one serves.
  auto admin_request = [&](json req) {
    std::optional<Result<json, Error>> r;
    std::thread th([&] { r = server::admin_call(sock, req); });
    run_until(io, [&] { return r.has_value(); });
    th.join();
    return *r;
  };

  proto::Request w;
  w.op = Op::kWrite;
  w.device_id = 5;
  w.lba = 4095;  // the last block of the 2 MiB disk
  w.blocks = 1;
  w.data.assign(512, 0x5A);
  ASSERT_EQ(call(w).status, Errc::kOk);
  proto::Request cap;
  cap.op = Op::kCapacity;
  cap.device_id = 5;
  EXPECT_EQ(call(cap).capacity.block_count, 4096u);

  auto g = admin_request(json{{"op", "grow"}, {"disk", "d1"},
                              {"extent", {{"device", "b"}, {"start", "0"}, {"size", "1M"}}}});
  ASSERT_TRUE(g);
  ASSERT_TRUE((*g)["ok"].get<bool>()) << g->dump();

  proto::Request r;
  r.op = Op::kRead;
  r.device_id = 5;
  r.lba = 4095;
  r.blocks = 1;
  EXPECT_EQ(call(r).status, Errc::kCapacityChanged);  // once: the unit attention
  auto back = call(r);
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, Bytes(512, 0x5A));
  EXPECT_EQ(call(cap).capacity.block_count, 6144u);
  r.lba = 6143;  // the new last block is usable
  EXPECT_EQ(call(r).status, Errc::kOk);

  // Refused: removing an exported disk, an overlapping new disk. Nothing changes.
  auto rm = admin_request(json{{"op", "remove"}, {"disk", "d1"}});
  ASSERT_TRUE(rm);
  EXPECT_FALSE((*rm)["ok"].get<bool>());
  auto ov = admin_request(json{{"op", "create"},
                               {"disk", {{"name", "d2"}, {"type", "extents"},
                                         {"extents", json::array({{{"device", "a"}, {"size", "4M"}}})}}}});
  ASSERT_TRUE(ov);
  EXPECT_FALSE((*ov)["ok"].get<bool>());
  EXPECT_EQ(call(cap).capacity.block_count, 6144u);
  // The change was persisted: a restarted server would load the grown layout.
  auto reloaded = server::LayoutManager::load(dir / "layout.toml");
  ASSERT_TRUE(reloaded) << reloaded.error().message;
  ASSERT_EQ((*reloaded)->exports().size(), 1u);
  EXPECT_EQ((*reloaded)->exports()[0].backend->geometry().block_count, 6144u);
  auto bad = admin_request(json{{"op", "no-such-op"}});
  ASSERT_TRUE(bad);
  EXPECT_FALSE((*bad)["ok"].get<bool>());
  c.close();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ipsan::testing
