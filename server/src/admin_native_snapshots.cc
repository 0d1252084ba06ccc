// Snapshot requests on back ends that keep snapshots themselves (backends::NativeSnapshots: Ceph
// RBD), behind the same admin ops and `ipsan disk snapshot` commands as thin pools (admin_thin.cc,
// docs/SNAPSHOTS.md, docs/CEPH.md):
//   snapshot-create {disk, name}  disk: a [backend.X] with native snapshots. Takes the snapshot
//                                 and adds [backend.NAME] = the read-only snapshot to the layout
//                                 (persisted), so it can be exported like any device.
//   snapshot-list {disk}          the store's snapshots of that back end.
//   snapshot-delete {name}        a snapshot added by snapshot-create: removed from the layout
//                                 (refused while exported or used), then from the store.
//   diff {from, to}               from: such a snapshot (or a raw snapshot name of `to`); to: the
//                                 back end itself ("now"). Changed ranges from the store.
// The calls block the admin (io) thread while the store answers (milliseconds on a healthy
// cluster); data requests already in flight are not affected.
#include <algorithm>

#include "ipsan/backends/native_snapshots.h"
#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"
#include "ipsan/server/admin.h"

namespace ipsan::server {

using nlohmann::json;

namespace {

std::string jstring(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::optional<json> LayoutManager::handle_native_snapshots(const json& req, StorageServer& server) {
  auto error = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  const std::string op = jstring(req, "op");
  const auto& descs = layout_.desc.backends;
  auto desc_of = [&](const std::string& name) -> const virt::BackendDesc* {
    auto it = std::find_if(descs.begin(), descs.end(),
                           [&](const virt::BackendDesc& b) { return b.name == name; });
    return it == descs.end() ? nullptr : &*it;
  };
  auto native_of = [&](const std::string& name) -> backends::NativeSnapshots* {
    if (desc_of(name) == nullptr) return nullptr;
    auto it = layout_.backends.find(name);
    if (it == layout_.backends.end()) return nullptr;
    return dynamic_cast<backends::NativeSnapshots*>(it->second.get());
  };
  // The back end whose snapshot `name` is (a [backend.NAME] added by snapshot-create).
  auto origin_of = [&](const std::string& name) -> const virt::BackendDesc* {
    const virt::BackendDesc* self = desc_of(name);
    if (self == nullptr) return nullptr;
    for (const auto& b : descs) {
      if (b.name == name) continue;
      auto* n = native_of(b.name);
      if (n != nullptr && n->snapshot_spec(b.spec, name) == self->spec) return &b;
    }
    return nullptr;
  };
  auto exported = [&](const std::string& name) {
    return std::any_of(layout_.exports.begin(), layout_.exports.end(),
                       [&](const virt::Export& e) { return e.name == name; });
  };
  auto used = [&](const std::string& name) {
    for (const auto& d : layout_.desc.disks) {
      if (std::find(d.members.begin(), d.members.end(), name) != d.members.end()) return true;
      for (const auto& e : d.extents)
        if (e.device == name) return true;
    }
    return std::any_of(layout_.desc.splits.begin(), layout_.desc.splits.end(),
                       [&](const virt::SplitDesc& s) { return s.device == name; });
  };
  auto blocks_of = [&](const std::string& name) -> std::uint64_t {
    auto it = layout_.backends.find(name);
    return it == layout_.backends.end() ? 0 : it->second->geometry().block_count;
  };

  if (op == "snapshot-create") {
    const std::string disk = jstring(req, "disk"), name = jstring(req, "name");
    auto* n = native_of(disk);
    if (n == nullptr) return std::nullopt;
    if (name.empty()) return error("snapshot-create needs \"disk\" and \"name\"");
    if (layout_.device(name)) return error("'" + name + "' is already a device of the layout");
    auto next = layout_.desc;
    const std::string spec = n->snapshot_spec(desc_of(disk)->spec, name);
    next.backends.push_back({name, spec});
    if (auto c = n->snapshot_create(name); !c) return error(c.error().message);
    // Open it once here: commit() validates the next layout against the geometry of every back
    // end, the new one included.
    auto opened = backends::open_backend(spec);
    if (!opened) {
      (void)n->snapshot_remove(name);  // do not leave a snapshot the layout does not know
      return error(opened.error().message);
    }
    layout_.backends[name] = std::move(*opened);
    if (auto r = commit(std::move(next), server); !r) {
      layout_.backends.erase(name);
      (void)n->snapshot_remove(name);
      return error(r.error().message);
    }
    IPSAN_LOG(LogLevel::kInfo, "admin", "native snapshot ", disk, " -> ", name);
    return json{{"ok", true},
                {"applied", op},
                {"volume",
                 {{"name", name},
                  {"kind", "snapshot"},
                  {"origin", disk},
                  {"blocks", blocks_of(name)},
                  {"pool", "(native)"}}}};
  }
  if (op == "snapshot-list") {
    const std::string disk = jstring(req, "disk");
    auto* n = native_of(disk);
    if (n == nullptr) return std::nullopt;
    auto list = n->snapshots();
    if (!list) return error(list.error().message);
    const std::uint64_t bs = layout_.backends[disk]->geometry().block_size;
    json vols = json::array();
    vols.push_back({{"name", disk},
                    {"kind", "disk"},
                    {"origin", ""},
                    {"blocks", blocks_of(disk)},
                    {"pool", "(native)"}});
    for (const auto& s : *list) {
      vols.push_back({{"name", s.name},
                      {"kind", "snapshot"},
                      {"origin", disk},
                      {"blocks", s.size_bytes / bs},
                      {"pool", "(native)"},
                      {"device", layout_.device(s.name) ? s.name : ""}});
    }
    return json{{"ok", true}, {"volumes", vols}};
  }
  if (op == "snapshot-delete") {
    const std::string name = jstring(req, "name");
    const virt::BackendDesc* origin = origin_of(name);
    if (origin == nullptr) return std::nullopt;
    const std::string origin_name = origin->name;
    if (exported(name)) return error("'" + name + "' is exported; unexport it first");
    if (used(name)) return error("'" + name + "' is used by a disk or split of the layout");
    auto next = layout_.desc;
    next.backends.erase(std::remove_if(next.backends.begin(), next.backends.end(),
                                       [&](const virt::BackendDesc& b) { return b.name == name; }),
                        next.backends.end());
    if (auto r = commit(std::move(next), server); !r) return error(r.error().message);
    auto* n = native_of(origin_name);
    if (n == nullptr) return error("'" + origin_name + "' vanished from the layout");
    if (auto r = n->snapshot_remove(name); !r) return error(r.error().message);
    IPSAN_LOG(LogLevel::kInfo, "admin", "deleted native snapshot ", name, " of ", origin_name);
    return json{{"ok", true}, {"applied", op}};
  }
  if (op == "diff") {
    const std::string from = jstring(req, "from"), to = jstring(req, "to");
    auto* n = native_of(to);
    if (n == nullptr) return std::nullopt;
    const virt::BackendDesc* origin = origin_of(from);
    if (origin != nullptr && origin->name != to) {
      return error("'" + from + "' is a snapshot of '" + origin->name + "', not of '" + to + "'");
    }
    auto d = n->diff(from);
    if (!d) return error(d.error().message);
    const std::uint64_t bs = layout_.backends[to]->geometry().block_size;
    json ex = json::array();
    std::uint64_t blocks = 0;
    for (const auto& e : *d) {
      const std::uint64_t lba = e.offset / bs;
      const std::uint64_t n_blocks = (e.offset + e.length + bs - 1) / bs - lba;
      ex.push_back(json::array({lba, n_blocks}));
      blocks += n_blocks;
    }
    return json{{"ok", true}, {"extents", ex}, {"changed_blocks", blocks}, {"block_size", bs}};
  }
  return std::nullopt;
}

}  // namespace ipsan::server
