// Disks the storage manager allocates on this server (docs/MANAGER.md "Allocation"): one sparse
// image file per disk, exported to "grant:CLIENT" only (a key-ring client cannot reach it; a grant
// session reaches exactly its granted device). Both operations are idempotent, so the manager can
// repeat them after a crash or a lost answer:
//   managed-create {name, size, device_id, client, dir}: done already -> ok; device id used by
//     another disk -> error; otherwise back end + export in one layout commit (persisted first).
//   managed-delete {name, device_id, dir}: unexports and forgets the back end if present, then
//     removes the image file; absent -> ok.
#include <filesystem>

#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"
#include "ipsan/server/admin.h"
#include "ipsan/virt/layout_edit.h"

namespace ipsan::server {

using json = nlohmann::json;

bool is_managed_op(const std::string& op) {
  return op == "managed-create" || op == "managed-delete";
}

namespace {
bool safe_disk_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}
}  // namespace

json LayoutManager::handle_managed(const json& req, StorageServer& server) {
  auto error = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  const std::string op = req.value("op", "");
  const std::string name = req.value("name", "");
  if (!safe_disk_name(name)) return error("managed disk name must be 1-64 of [A-Za-z0-9_-]");
  const std::string backend = "m-" + name;
  if (!req.contains("device_id") || !req["device_id"].is_number_unsigned() ||
      req["device_id"].get<std::uint64_t>() > 0xFFFFFFFFull)
    return error("device_id must be an integer from 0 to 4294967295");
  const auto device_id = static_cast<std::uint32_t>(req["device_id"].get<std::uint64_t>());
  const std::filesystem::path dir = req.value("dir", "");
  if (dir.empty()) return error("this server has no --managed-dir");
  const std::filesystem::path image = dir / (name + ".img");
  virt::LayoutDesc next = layout_.desc;
  auto exp = std::find_if(next.exports.begin(), next.exports.end(),
                          [&](const virt::ExportDesc& e) { return e.device_id == device_id; });
  auto be = std::find_if(next.backends.begin(), next.backends.end(),
                         [&](const virt::BackendDesc& b) { return b.name == backend; });
  if (op == "managed-create") {
    const std::string client = req.value("client", "");
    if (client.empty()) return error("managed-create needs a client");
    if (!req.contains("size") || !req["size"].is_number_unsigned() || req["size"] == 0)
      return error("size must be a positive number of bytes");
    const std::uint64_t size = req["size"].get<std::uint64_t>();
    if (exp != next.exports.end()) {
      if (exp->disk == backend) return json{{"ok", true}, {"already", true}};
      return error("device id " + std::to_string(device_id) + " is already exported ('" +
                   exp->disk + "')");
    }
    virt::GeometryMap geo = layout_.backend_geometry();
    Result<virt::LayoutDesc, Error> r = next;
    if (be == next.backends.end()) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      const std::string spec = "file:" + image.string() + ",size=" + std::to_string(size);
      auto opened = backends::open_backend(spec);  // creates the sparse image (0600)
      if (!opened) return error("cannot create " + image.string() + ": " + opened.error().message);
      geo[backend] = (*opened)->geometry();
      opened->reset();
      r = virt::add_backend(next, virt::BackendDesc{backend, spec}, geo);
      if (!r) return error(r.error().message);
    }
    virt::ExportDesc e;
    e.device_id = device_id;
    e.disk = backend;
    e.clients = {"grant:" + client};
    r = virt::add_export(*r, e, geo);
    if (!r) return error(r.error().message);
    if (auto c = commit(std::move(*r), server, &geo); !c) {
      if (be == next.backends.end()) {
        std::error_code ec;
        std::filesystem::remove(image, ec);  // nothing refers to it
      }
      return error(c.error().message);
    }
    IPSAN_LOG(LogLevel::kInfo, "admin", "manager created disk '", name, "' (", size,
              " bytes) as device ", device_id, " for '", client, "'");
    return json{{"ok", true}};
  }
  if (op == "managed-delete") {
    if (exp != next.exports.end()) {
      if (exp->disk != backend)
        return error("device id " + std::to_string(device_id) + " is not managed disk '" + name +
                     "'");
      next.exports.erase(exp);
    }
    be = std::find_if(next.backends.begin(), next.backends.end(),
                      [&](const virt::BackendDesc& b) { return b.name == backend; });
    if (be != next.backends.end()) next.backends.erase(be);
    if (!(next == layout_.desc)) {
      if (auto c = commit(std::move(next), server); !c) return error(c.error().message);
    }
    std::error_code ec;
    std::filesystem::remove(image, ec);
    IPSAN_LOG(LogLevel::kInfo, "admin", "manager deleted disk '", name, "' (device ", device_id,
              ")");
    return json{{"ok", true}};
  }
  return error("unknown managed op '" + op + "'");
}

}  // namespace ipsan::server
