// libFuzzer target: requests to the admin socket (`ipsan disk`, docs/CONFIG.md): one JSON line
// through the parser and LayoutManager::handle against a small layout (two ram back ends, a
// disk, an export). Replies are JSON objects with "ok"; nothing crashes or asserts.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "ipsan/server/admin.h"
#include "ipsan/server/server.h"

namespace {

struct World {
  World() {
    dir = std::filesystem::temp_directory_path() / ("ipsan-admin-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    reset();
  }
  void reset() {
    std::ofstream(dir / "layout.toml")
        << "[backend.a]\nspec = \"ram:4M\"\n[backend.b]\nspec = \"ram:4M\"\n"
           "[disk.d1]\ntype = \"extents\"\nextents = [{ device = \"a\", start = \"0\", size = \"1M\" }]\n"
           "[[export]]\ndevice_id = 0\ndisk = \"d1\"\n";
    auto m = ipsan::server::LayoutManager::load(dir / "layout.toml");
    if (!m) std::abort();
    mgr = std::move(*m);
    ipsan::server::KeyRing keys;
    (void)keys.add("alice", ipsan::Key256{});
    srv = std::make_unique<ipsan::server::StorageServer>(io, ipsan::server::ServerOptions{},
                                                         std::move(keys), mgr->exports());
  }
  std::filesystem::path dir;
  boost::asio::io_context io;
  std::unique_ptr<ipsan::server::LayoutManager> mgr;
  std::unique_ptr<ipsan::server::StorageServer> srv;
  int runs = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (++w.runs % 256 == 0) w.reset();  // keep the layout small
  using nlohmann::json;
  json req = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded() || !req.is_object()) return 0;
  json reply = w.mgr->handle(req, *w.srv);
  if (!reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) std::abort();
  (void)reply.dump();
  return 0;
}
