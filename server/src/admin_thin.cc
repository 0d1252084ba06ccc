// Admin requests for thin pools (snapshots, clones, rollback, diff, check); see admin.h and
// docs/SNAPSHOTS.md. Snapshots live in the pool's own metadata (persisted there, not in the TOML);
// every pool volume is a device of the layout and can be exported like a back end.
#include <algorithm>

#include "ipsan/base/log.h"
#include "ipsan/server/admin.h"
#include "ipsan/virt/thin.h"

namespace ipsan::server {

using nlohmann::json;

namespace {

std::string jstr(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json volume_json(const virt::ThinVolumeInfo& v, const std::string& pool, std::uint64_t chunk) {
  return json{{"name", v.name},
              {"pool", pool},
              {"kind", std::string(virt::to_string(v.kind))},
              {"origin", v.origin},
              {"blocks", v.blocks},
              {"mapped_bytes", v.mapped_chunks * chunk},
              {"exclusive_bytes", v.exclusive_chunks * chunk},
              {"created_seq", v.created_seq}};
}

}  // namespace

json thin_pools_json(const virt::Layout& layout) {
  json pools = json::array();
  for (const auto& [name, p] : layout.pools) {
    const auto u = p->usage();
    pools.push_back({{"name", name},
                     {"chunk_bytes", u.chunk_bytes},
                     {"total_bytes", u.total_chunks * u.chunk_bytes},
                     {"used_bytes", u.used_chunks * u.chunk_bytes},
                     {"free_bytes", u.free_chunks * u.chunk_bytes},
                     {"metadata_bytes", u.metadata_bytes},
                     {"metadata_used", u.metadata_used},
                     {"volumes", p->list().size()},
                     {"commits", u.commits},
                     {"cow_copies", u.cow_copies}});
  }
  return pools;
}

bool is_thin_op(const std::string& op) {
  return op.rfind("snapshot-", 0) == 0 || op == "diff" || op == "check";
}

json LayoutManager::handle_thin(const json& req) {
  auto error = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  const std::string op = jstr(req, "op");
  // The pool holding volume `name`.
  auto pool_of = [&](const std::string& name,
                     std::string* pool_name) -> std::shared_ptr<virt::ThinPool> {
    for (const auto& [pn, p] : layout_.pools) {
      if (p->info(name)) {
        if (pool_name) *pool_name = pn;
        return p;
      }
    }
    return nullptr;
  };
  auto exported = [&](const std::string& name) {
    return std::any_of(layout_.exports.begin(), layout_.exports.end(),
                       [&](const virt::Export& e) { return e.name == name; });
  };
  auto used_by_layout = [&](const std::string& name) -> std::string {
    for (const auto& d : layout_.desc.disks) {
      if (std::find(d.members.begin(), d.members.end(), name) != d.members.end())
        return "disk '" + d.name + "'";
      for (const auto& e : d.extents)
        if (e.device == name) return "disk '" + d.name + "'";
    }
    for (const auto& s : layout_.desc.splits)
      if (s.device == name) return "a split";
    for (const auto& p : layout_.desc.pools)
      for (const auto& [dn, size] : p.disks)
        if (dn == name) return "the layout (pool '" + p.name + "' declares it)";
    return {};
  };
  auto add_device = [&](virt::ThinPool& p, const std::string& name) -> std::string {
    auto b = p.volume(name);
    if (!b) return b.error().message;
    layout_.backends[name] = *b;
    return {};
  };
  if (layout_.pools.empty())
    return error("no thin pool in this server's layout ([pool.NAME] in docs/CONFIG.md)");

  if (op == "snapshot-create" || op == "snapshot-clone") {
    const bool snap = op == "snapshot-create";
    const std::string src = jstr(req, snap ? "disk" : "snapshot");
    const std::string name = jstr(req, "name");
    if (src.empty() || name.empty())
      return error(op + " needs \"" + (snap ? "disk" : "snapshot") + "\" and \"name\"");
    auto p = pool_of(src, nullptr);
    if (!p) return error("no thin disk, clone or snapshot '" + src + "' in any pool");
    if (layout_.device(name)) return error("'" + name + "' is already a device of the layout");
    auto r = snap ? p->snapshot(src, name) : p->clone(src, name);
    if (!r) return error(r.error().message);
    if (auto e = add_device(*p, name); !e.empty()) return error(e);
    IPSAN_LOG(LogLevel::kInfo, "admin", op, " ", src, " -> ", name);
    auto info = p->info(name);
    return json{
        {"ok", true}, {"applied", op}, {"volume", volume_json(*info, "", p->usage().chunk_bytes)}};
  }
  if (op == "snapshot-list") {
    const std::string disk = jstr(req, "disk");
    json vols = json::array();
    bool found = disk.empty();
    for (const auto& [pn, p] : layout_.pools) {
      const auto chunk = p->usage().chunk_bytes;
      for (const auto& v : p->list()) {
        if (v.name == disk) found = true;
        if (!disk.empty() && v.origin != disk && v.name != disk) continue;
        vols.push_back(volume_json(v, pn, chunk));
      }
    }
    if (!found) return error("no thin volume '" + disk + "'");
    return json{{"ok", true}, {"volumes", vols}, {"pools", thin_pools_json(layout_)}};
  }
  if (op == "snapshot-delete") {
    const std::string name = jstr(req, "name");
    auto p = pool_of(name, nullptr);
    if (!p) return error("no thin volume '" + name + "'");
    if (exported(name)) return error("'" + name + "' is exported; unexport it first");
    if (auto u = used_by_layout(name); !u.empty()) return error("'" + name + "' is used by " + u);
    auto r = p->remove(name);
    if (!r) return error(r.error().message);
    layout_.backends.erase(name);
    IPSAN_LOG(LogLevel::kInfo, "admin", "deleted thin volume ", name);
    return json{{"ok", true}, {"applied", op}};
  }
  if (op == "snapshot-rollback") {
    const std::string disk = jstr(req, "disk"), snap = jstr(req, "snapshot");
    auto p = pool_of(disk, nullptr);
    if (!p) return error("no thin disk '" + disk + "'");
    if (exported(disk))
      return error("'" + disk + "' is exported; unexport it (stop its clients) before a rollback");
    auto r = p->rollback(disk, snap);
    if (!r) return error(r.error().message);
    IPSAN_LOG(LogLevel::kInfo, "admin", "rolled ", disk, " back to ", snap);
    return json{{"ok", true}, {"applied", op}};
  }
  if (op == "diff") {
    const std::string from = jstr(req, "from"), to = jstr(req, "to");
    auto p = pool_of(from, nullptr);
    if (!p) return error("no thin volume '" + from + "'");
    if (!p->info(to)) return error("no thin volume '" + to + "' in the pool of '" + from + "'");
    auto d = p->diff(from, to);
    if (!d) return error(d.error().message);
    json ex = json::array();
    std::uint64_t blocks = 0;
    for (const auto& e : *d) {
      ex.push_back(json::array({e.lba, e.blocks}));
      blocks += e.blocks;
    }
    return json{{"ok", true},
                {"extents", ex},
                {"changed_blocks", blocks},
                {"block_size", p->usage().block_size}};
  }
  if (op == "check") {
    json res = json::array();
    bool all = true;
    for (const auto& [pn, p] : layout_.pools) {
      auto c = p->check();
      all &= static_cast<bool>(c);
      res.push_back({{"pool", pn},
                     {"ok", static_cast<bool>(c)},
                     {"message", c ? std::string("map consistent: no leaked or doubly-owned chunk")
                                   : c.error().message}});
    }
    return json{{"ok", all}, {"pools", res}, {"error", all ? "" : "a pool map is inconsistent"}};
  }
  return error("unknown thin op '" + op + "'");
}

}  // namespace ipsan::server
