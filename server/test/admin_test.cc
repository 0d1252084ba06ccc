// The admin socket: every number range-checked (device_id 2^32 once became device 0) and the
// socket path never deletes anything that is not a socket.
#include "ipsan/server/admin.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ipsan/server/server.h"

#include "test_dir.h"

namespace ipsan::server {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Dir : testing::TestDir {
  Dir() : TestDir("admin-test") {}
};

class Admin : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.path / "layout.toml")
        << "[backend.a]\nspec = \"ram:8M\"\n"
           "[disk.d1]\ntype = \"extents\"\nextents = [{ device = \"a\", start = \"0\", size = \"2M\" }]\n"
           "[disk.d2]\ntype = \"extents\"\nextents = [{ device = \"a\", start = \"2M\", size = \"2M\" }]\n"
           "[[export]]\ndevice_id = 0\ndisk = \"d1\"\n";
    auto m = LayoutManager::load(dir_.path / "layout.toml");
    ASSERT_TRUE(m) << m.error().message;
    mgr_ = std::move(*m);
    KeyRing keys;
    ASSERT_TRUE(keys.add("alice", Key256{}));
    srv_ = std::make_unique<StorageServer>(io_, ServerOptions{}, std::move(keys), mgr_->exports());
  }
  std::vector<std::uint64_t> export_ids() {
    std::vector<std::uint64_t> ids;
    const json shown = mgr_->handle(json::parse(R"({"op":"show"})"), *srv_);
    EXPECT_TRUE(shown.value("ok", false)) << shown.dump();
    for (const auto& e : shown["exports"]) ids.push_back(e["device_id"].get<std::uint64_t>());
    return ids;
  }
  json call(const std::string& text) { return mgr_->handle(json::parse(text), *srv_); }

  Dir dir_;
  boost::asio::io_context io_;
  std::unique_ptr<LayoutManager> mgr_;
  std::unique_ptr<StorageServer> srv_;
};

TEST_F(Admin, DeviceIdOutOfRangeIsRefusedNotTruncated) {
  for (const char* bad : {R"({"op":"unexport","device_id":4294967296})",
                          R"({"op":"unexport","device_id":18446744073709551615})",
                          R"({"op":"unexport","device_id":-1})",
                          R"({"op":"unexport","device_id":0.5})",
                          R"({"op":"unexport","device_id":"0"})",
                          R"({"op":"unexport","device_id":1e3})",
                          R"({"op":"unexport"})"}) {
    auto r = call(bad);
    EXPECT_FALSE(r["ok"].get<bool>()) << bad;
    EXPECT_NE(r["error"].get<std::string>().find("device_id"), std::string::npos) << r.dump();
  }
  // Device 0 is still exported: 2^32 did not alias it.
  EXPECT_EQ(export_ids(), std::vector<std::uint64_t>{0});
  auto ex = call(R"({"op":"export","device_id":4294967296,"disk":"d2"})");
  EXPECT_FALSE(ex["ok"].get<bool>());
  EXPECT_EQ(export_ids(), std::vector<std::uint64_t>{0});
  // The largest valid id works.
  auto top = call(R"({"op":"export","device_id":4294967295,"disk":"d2"})");
  ASSERT_TRUE(top["ok"].get<bool>()) << top.dump();
  EXPECT_EQ(export_ids(), (std::vector<std::uint64_t>{0, 4294967295ull}));
}

TEST_F(Admin, MistypedFieldsAreRefusedWithTheirName) {
  auto ro = call(R"({"op":"export","device_id":7,"disk":"d2","read_only":"yes"})");
  EXPECT_FALSE(ro["ok"].get<bool>());
  EXPECT_NE(ro["error"].get<std::string>().find("read_only"), std::string::npos) << ro.dump();
  auto cl = call(R"({"op":"export","device_id":7,"disk":"d2","clients":["alice",5]})");
  EXPECT_FALSE(cl["ok"].get<bool>());
  EXPECT_NE(cl["error"].get<std::string>().find("clients"), std::string::npos) << cl.dump();
  auto mem = call(R"({"op":"create","disk":{"name":"c","type":"concat","members":"d2"}})");
  EXPECT_FALSE(mem["ok"].get<bool>());
  auto dk = call(R"({"op":"create","disk":[1,2]})");
  EXPECT_FALSE(dk["ok"].get<bool>());
  auto neg = call(R"({"op":"grow","disk":"d1","extent":{"device":"a","start":-1,"size":"1M"}})");
  EXPECT_FALSE(neg["ok"].get<bool>());
  EXPECT_EQ(export_ids(), std::vector<std::uint64_t>{0});
}

TEST(AdminSocket, RegularFileAtThePathIsNotDeleted) {
  Dir dir;
  const auto file = dir.path / "important.img";
  std::ofstream(file) << "data that must survive";
  boost::asio::io_context io;
  AdminEndpoint::Handler h = [](const json&) { return json{{"ok", true}}; };
  try {
    AdminEndpoint e(io, file, h);
    FAIL() << "a regular file was taken as the admin socket";
  } catch (const std::runtime_error& err) {
    EXPECT_NE(std::string(err.what()).find("not a socket"), std::string::npos) << err.what();
  }
  ASSERT_TRUE(fs::exists(file));
  std::ifstream in(file);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "data that must survive");
  // A directory or a symlink to the file: refused too, nothing removed.
  EXPECT_THROW(AdminEndpoint(io, dir.path, h), std::runtime_error);
  fs::create_symlink(file, dir.path / "link");
  EXPECT_THROW(AdminEndpoint(io, dir.path / "link", h), std::runtime_error);
  EXPECT_TRUE(fs::exists(file));
  EXPECT_TRUE(fs::is_symlink(dir.path / "link"));
}

TEST(AdminSocket, StaleSocketIsReplacedLiveOneRefused) {
  Dir dir;
  const auto path = dir.path / "adm.sock";
  {  // a socket left by a dead server: bound, then closed without unlinking
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  ASSERT_TRUE(fs::is_socket(path));
  boost::asio::io_context io;
  AdminEndpoint::Handler h = [](const json&) { return json{{"ok", true}}; };
  {
    AdminEndpoint live(io, path, h);
    EXPECT_THROW(AdminEndpoint(io, path, h), std::runtime_error);  // in use
    EXPECT_TRUE(fs::is_socket(path));
  }
  EXPECT_FALSE(fs::exists(path));  // removed on shutdown: it was ours
}

}  // namespace
}  // namespace ipsan::server
