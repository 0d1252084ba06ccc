#include "disk_cli.h"

#include <cstdint>
#include <cstdio>
#include <memory>

#include "ipsan/server/admin.h"

namespace ipsan::server {
namespace {

using nlohmann::json;

[[noreturn]] void die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "ipsan disk: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

// "DEVICE:START:SIZE" or "DEVICE:SIZE" (start 0); sizes like 20G, or 2048s for blocks.
json parse_extent(const std::string& text) {
  auto a = text.find(':');
  if (a == std::string::npos || a == 0) die("extent must be DEVICE:START:SIZE or DEVICE:SIZE, got '" + text + "'");
  auto b = text.find(':', a + 1);
  json e{{"device", text.substr(0, a)}};
  if (b == std::string::npos) {
    e["start"] = "0";
    e["size"] = text.substr(a + 1);
  } else {
    e["start"] = text.substr(a + 1, b - a - 1);
    e["size"] = text.substr(b + 1);
  }
  return e;
}

void print_pools(const json& r);

void run(const std::string& socket, const json& req) {
  if (socket.empty()) die("--admin-socket is required");
  auto r = admin_call(socket, req);
  if (!r) die(r.error().message);
  if (!r->value("ok", false)) die(r->value("error", std::string("request refused")));
  if (r->contains("applied")) std::printf("applied: %s\n", (*r)["applied"].get<std::string>().c_str());
  for (const auto& d : r->value("disks", json::array()))
    std::printf("disk %-16s %12llu blocks x %u  requests=%llu backend_commands=%llu split=%llu failed=%llu\n",
                d.value("name", "").c_str(), static_cast<unsigned long long>(d.value("blocks", 0ull)),
                d.value("block_size", 0u), static_cast<unsigned long long>(d.value("requests", 0ull)),
                static_cast<unsigned long long>(d.value("backend_commands", 0ull)),
                static_cast<unsigned long long>(d.value("split_requests", 0ull)),
                static_cast<unsigned long long>(d.value("failed_requests", 0ull)));
  for (const auto& e : r->value("exports", json::array()))
    std::printf("export %-4u %-16s %12llu blocks x %u%s\n", e.value("device_id", 0u),
                e.value("disk", "").c_str(), static_cast<unsigned long long>(e.value("blocks", 0ull)),
                e.value("block_size", 0u), e.value("read_only", false) ? " read-only" : "");
  print_pools(*r);
}

void print_pools(const json& r) {
  for (const auto& p : r.value("pools", json::array())) {
    if (p.contains("total_bytes"))
      std::printf("pool %-16s used %llu of %llu bytes (free %llu), chunk %llu, %llu volumes, metadata %llu of %llu bytes\n",
                  p.value("name", "").c_str(), static_cast<unsigned long long>(p.value("used_bytes", 0ull)),
                  static_cast<unsigned long long>(p.value("total_bytes", 0ull)),
                  static_cast<unsigned long long>(p.value("free_bytes", 0ull)),
                  static_cast<unsigned long long>(p.value("chunk_bytes", 0ull)),
                  static_cast<unsigned long long>(p.value("volumes", 0ull)),
                  static_cast<unsigned long long>(p.value("metadata_used", 0ull)),
                  static_cast<unsigned long long>(p.value("metadata_bytes", 0ull)));
    else
      std::printf("pool %-16s %s: %s\n", p.value("pool", "").c_str(), p.value("ok", false) ? "ok" : "BAD",
                  p.value("message", "").c_str());
  }
}

// Thin pool requests: prints volumes, extents or check results.
void run_thin(const std::string& socket, const json& req) {
  if (socket.empty()) die("--admin-socket is required");
  auto r = admin_call(socket, req);
  if (!r) die(r.error().message);
  if (req.value("op", "") == "check") print_pools(*r);
  if (!r->value("ok", false)) die(r->value("error", std::string("request refused")));
  if (r->contains("applied")) std::printf("applied: %s\n", (*r)["applied"].get<std::string>().c_str());
  auto vol = [](const json& v) {
    std::printf("%-9s %-20s origin %-16s %12llu blocks  mapped %llu bytes, exclusive %llu bytes  pool %s\n",
                v.value("kind", "").c_str(), v.value("name", "").c_str(),
                v.value("origin", "").empty() ? "-" : v.value("origin", "").c_str(),
                static_cast<unsigned long long>(v.value("blocks", 0ull)),
                static_cast<unsigned long long>(v.value("mapped_bytes", 0ull)),
                static_cast<unsigned long long>(v.value("exclusive_bytes", 0ull)), v.value("pool", "").c_str());
  };
  if (r->contains("volume")) vol((*r)["volume"]);
  for (const auto& v : r->value("volumes", json::array())) vol(v);
  if (req.value("op", "") == "snapshot-list") print_pools(*r);
  if (r->contains("extents")) {
    for (const auto& e : (*r)["extents"])
      std::printf("changed lba %llu blocks %llu\n", static_cast<unsigned long long>(e[0].get<std::uint64_t>()),
                  static_cast<unsigned long long>(e[1].get<std::uint64_t>()));
    std::printf("%llu blocks of %u bytes changed in %zu extents\n",
                static_cast<unsigned long long>(r->value("changed_blocks", 0ull)), r->value("block_size", 0u),
                (*r)["extents"].size());
  }
}

}  // namespace

void add_disk_cli(CLI::App& app) {
  auto* cmd = app.add_subcommand("disk", "Online layout changes on a running server (see docs/CONFIG.md)");
  cmd->require_subcommand(1);
  auto sock = std::make_shared<std::string>();
  cmd->add_option("-a,--admin-socket", *sock, "The server's --admin-socket")->required();

  cmd->add_subcommand("show", "List virtual disks and exports with their sizes")->callback([sock] {
    run(*sock, json{{"op", "show"}});
  });

  struct Create {
    std::string name, type = "extents", chunk;
    std::vector<std::string> extents, members;
    std::int64_t export_id = -1;
    bool read_only = false;
  };
  auto c = std::make_shared<Create>();
  auto* cr = cmd->add_subcommand("create", "Create a virtual disk (and optionally export it)");
  cr->add_option("--name", c->name, "Name of the new disk")->required();
  cr->add_option("--type", c->type, "extents, concat or stripe")
      ->check(CLI::IsMember({"extents", "concat", "stripe"}))
      ->capture_default_str();
  cr->add_option("--extent", c->extents, "DEVICE:START:SIZE (extents disks; repeatable, in order)");
  cr->add_option("--member", c->members, "Member device (concat/stripe; repeatable, in order)");
  cr->add_option("--chunk", c->chunk, "Stripe chunk size, e.g. 64K");
  cr->add_option("--export", c->export_id, "Also export it under this device id")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{0xFFFFFFFF}));
  cr->add_flag("--read-only", c->read_only, "Export read-only");
  cr->callback([sock, c] {
    json disk{{"name", c->name}, {"type", c->type}};
    if (!c->chunk.empty()) disk["chunk"] = c->chunk;
    disk["members"] = c->members;
    json ex = json::array();
    for (const auto& e : c->extents) ex.push_back(parse_extent(e));
    disk["extents"] = ex;
    run(*sock, json{{"op", "create"}, {"disk", disk}});
    if (c->export_id >= 0)
      run(*sock, json{{"op", "export"}, {"device_id", c->export_id}, {"disk", c->name},
                      {"read_only", c->read_only}});
  });

  auto g = std::make_shared<std::pair<std::string, std::string>>();
  auto* gr = cmd->add_subcommand("grow", "Grow an extents disk by appending an extent; clients see the new capacity");
  gr->add_option("--name", g->first, "Disk to grow")->required();
  gr->add_option("--extent", g->second, "DEVICE:START:SIZE to append")->required();
  gr->callback([sock, g] { run(*sock, json{{"op", "grow"}, {"disk", g->first}, {"extent", parse_extent(g->second)}}); });

  auto rm = std::make_shared<std::string>();
  auto* rmc = cmd->add_subcommand("remove", "Remove a virtual disk that is not exported or used");
  rmc->add_option("--name", *rm, "Disk to remove")->required();
  rmc->callback([sock, rm] { run(*sock, json{{"op", "remove"}, {"disk", *rm}}); });

  auto ex = std::make_shared<Create>();
  auto* exc = cmd->add_subcommand("export", "Export a disk under a device id");
  exc->add_option("--name", ex->name, "Disk (or back end) to export")->required();
  exc->add_option("--device-id", ex->export_id, "Device id (0..4294967295)")
      ->required()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{0xFFFFFFFF}));
  exc->add_flag("--read-only", ex->read_only, "Read-only export");
  exc->callback([sock, ex] {
    run(*sock, json{{"op", "export"}, {"device_id", ex->export_id}, {"disk", ex->name}, {"read_only", ex->read_only}});
  });

  auto un = std::make_shared<std::int64_t>(-1);
  auto* unc = cmd->add_subcommand("unexport", "Stop exporting a device id");
  unc->add_option("--device-id", *un, "Device id (0..4294967295)")
      ->required()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{0xFFFFFFFF}));
  unc->callback([sock, un] { run(*sock, json{{"op", "unexport"}, {"device_id", *un}}); });

  // Thin pools (docs/SNAPSHOTS.md).
  struct Snap {
    std::string disk, name, snapshot, clone, from, to;
  };
  auto sn = std::make_shared<Snap>();
  auto* snc = cmd->add_subcommand("snapshot", "Snapshots and clones of thin disks (docs/SNAPSHOTS.md)");
  snc->require_subcommand(1);
  auto* sc = snc->add_subcommand("create", "Take a point-in-time, read-only snapshot of a thin disk or clone");
  sc->add_option("--disk", sn->disk, "Thin disk (or clone) to snapshot")->required();
  sc->add_option("--name", sn->name, "Name of the new snapshot (a device of the layout)")->required();
  sc->callback([sock, sn] { run_thin(*sock, json{{"op", "snapshot-create"}, {"disk", sn->disk}, {"name", sn->name}}); });
  auto* sl = snc->add_subcommand("list", "List the volumes of the thin pools (of one disk with --disk)");
  sl->add_option("--disk", sn->disk, "Only this volume and those derived from it");
  sl->callback([sock, sn] {
    json req{{"op", "snapshot-list"}};
    if (!sn->disk.empty()) req["disk"] = sn->disk;
    run_thin(*sock, req);
  });
  auto* sd = snc->add_subcommand("delete", "Delete a snapshot or clone (any order; clones do not depend on their snapshot)");
  sd->add_option("--name", sn->name, "Snapshot or clone to delete")->required();
  sd->callback([sock, sn] { run_thin(*sock, json{{"op", "snapshot-delete"}, {"name", sn->name}}); });
  auto* sr = snc->add_subcommand("rollback", "Make a thin disk what a snapshot holds (the disk must not be exported)");
  sr->add_option("--disk", sn->disk, "Thin disk or clone to roll back")->required();
  sr->add_option("--snapshot", sn->snapshot, "Snapshot to roll back to")->required();
  sr->callback([sock, sn] {
    run_thin(*sock, json{{"op", "snapshot-rollback"}, {"disk", sn->disk}, {"snapshot", sn->snapshot}});
  });
  auto* scl = snc->add_subcommand("clone", "Create a writable clone of a snapshot");
  scl->add_option("--snapshot", sn->snapshot, "Snapshot to clone")->required();
  scl->add_option("--name", sn->clone, "Name of the clone (a device of the layout)")->required();
  scl->callback([sock, sn] {
    run_thin(*sock, json{{"op", "snapshot-clone"}, {"snapshot", sn->snapshot}, {"name", sn->clone}});
  });
  auto* df = cmd->add_subcommand("diff", "Extents that differ between two volumes of a thin pool (from the map; no data read)");
  df->add_option("--from", sn->from, "Older snapshot")->required();
  df->add_option("--to", sn->to, "Newer snapshot, or the disk itself for \"now\"")->required();
  df->callback([sock, sn] { run_thin(*sock, json{{"op", "diff"}, {"from", sn->from}, {"to", sn->to}}); });
  cmd->add_subcommand("check", "Verify the block map of every thin pool (reference counts, free list)")
      ->callback([sock] { run_thin(*sock, json{{"op", "check"}}); });
}

}  // namespace ipsan::server
