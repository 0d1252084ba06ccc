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

// Mirror requests: prints each mirror, its legs and its recent jobs.
void print_job(const json& j) {
  const double p = j.value("progress", 0.0) * 100.0;
  std::printf("job %-4llu %-14s %-16s %-9s %5.1f%%  %llu of %llu bytes  %.1f MB/s%s%s\n",
              static_cast<unsigned long long>(j.value("id", 0ull)), j.value("kind", "").c_str(),
              j.value("target", "").c_str(), j.value("state", "").c_str(), p,
              static_cast<unsigned long long>(j.value("done_bytes", 0ull)),
              static_cast<unsigned long long>(j.value("total_bytes", 0ull)),
              j.value("rate_bytes_per_s", 0.0) / 1e6,
              j.value("error", "").empty() ? "" : "  error: ", j.value("error", "").c_str());
  const json& r = j.value("result", json::object());
  if (r.contains("mismatched_regions"))
    std::printf("    verify: %llu regions checked, %llu differ, %llu repaired\n",
                static_cast<unsigned long long>(r.value("regions_checked", 0ull)),
                static_cast<unsigned long long>(r.value("mismatched_regions", 0ull)),
                static_cast<unsigned long long>(r.value("repaired_regions", 0ull)));
  if (r.contains("regions_copied"))
    std::printf("    resync: %llu regions copied, %llu stale\n",
                static_cast<unsigned long long>(r.value("regions_copied", 0ull)),
                static_cast<unsigned long long>(r.value("stale_regions", 0ull)));
}

void run_mirror(const std::string& socket, const json& req) {
  auto r = admin_call(socket, req);
  if (!r) die(r.error().message);
  if (!r->value("ok", false)) die(r->value("error", std::string("request refused")));
  if (r->contains("applied")) std::printf("applied: %s\n", (*r)["applied"].get<std::string>().c_str());
  json mirrors = r->value("mirrors", json::array());
  if (r->contains("mirror")) mirrors.push_back((*r)["mirror"]);
  for (const auto& m : mirrors) {
    std::printf("mirror %-16s %llu blocks x %u  region %llu bytes  %s  stale regions %llu\n",
                m.value("name", "").c_str(), static_cast<unsigned long long>(m.value("blocks", 0ull)),
                m.value("block_size", 0u), static_cast<unsigned long long>(m.value("region_bytes", 0ull)),
                m.value("degraded", false) ? "DEGRADED" : "healthy",
                static_cast<unsigned long long>(m.value("stale_regions", 0ull)));
    for (const auto& l : m.value("legs", json::array()))
      std::printf("  leg %-16s %-8s stale %llu bytes  errors %llu  %s\n", l.value("name", "").c_str(),
                  l.value("state", "").c_str(), static_cast<unsigned long long>(l.value("stale_bytes", 0ull)),
                  static_cast<unsigned long long>(l.value("errors", 0ull)), l.value("backend", "").c_str());
    const json st = m.value("stats", json::object());
    std::printf("  reads %llu writes %llu bitmap_writes %llu resync %llu regions (%llu bytes) verify %llu regions, %llu differ\n",
                static_cast<unsigned long long>(st.value("reads", 0ull)),
                static_cast<unsigned long long>(st.value("writes", 0ull)),
                static_cast<unsigned long long>(st.value("bitmap_writes", 0ull)),
                static_cast<unsigned long long>(st.value("resync_regions", 0ull)),
                static_cast<unsigned long long>(st.value("resync_bytes", 0ull)),
                static_cast<unsigned long long>(st.value("verify_regions", 0ull)),
                static_cast<unsigned long long>(st.value("verify_mismatches", 0ull)));
    for (const auto& j : m.value("jobs", json::array())) {
      std::printf("  ");
      print_job(j);
    }
  }
  if (r->contains("job")) print_job((*r)["job"]);
}

void add_mirror_cli(CLI::App& disk, std::shared_ptr<std::string> sock) {
  struct M {
    std::string mirror, leg, spec, old_leg, limit;
    bool repair = false;
  };
  auto m = std::make_shared<M>();
  auto* mc = disk.add_subcommand("mirror", "Synchronous mirrors: status, legs, resync, verify (docs/MIRROR.md)");
  mc->require_subcommand(1);
  auto* st = mc->add_subcommand("status", "Legs, sync state, stale regions, resync/verify progress and rate");
  st->add_option("--mirror", m->mirror, "Only this mirror");
  st->callback([sock, m] {
    json req{{"op", "mirror-status"}};
    if (!m->mirror.empty()) req["mirror"] = m->mirror;
    run_mirror(*sock, req);
  });
  auto limit = [m](json req) {
    if (!m->limit.empty()) req["limit"] = m->limit;
    return req;
  };
  auto* add = mc->add_subcommand("add", "Add a leg online (full sync as a job)");
  add->add_option("--mirror", m->mirror, "Mirror")->required();
  add->add_option("--leg", m->leg, "Device name of the new leg (an unused back end or pool volume, or a new name with --spec)")->required();
  add->add_option("--spec", m->spec, "Open a new back end for the leg (e.g. file:legs/c.img,size=1G)");
  add->add_option("--limit", m->limit, "Resync rate limit, bytes per second (e.g. 100M)");
  add->callback([sock, m, limit] {
    json req{{"op", "mirror-add-leg"}, {"mirror", m->mirror}, {"leg", m->leg}};
    if (!m->spec.empty()) req["spec"] = m->spec;
    run_mirror(*sock, limit(req));
  });
  auto* rm = mc->add_subcommand("remove", "Remove a leg online (never the last in-sync one)");
  rm->add_option("--mirror", m->mirror, "Mirror")->required();
  rm->add_option("--leg", m->leg, "Leg to remove")->required();
  rm->callback([sock, m] { run_mirror(*sock, json{{"op", "mirror-remove-leg"}, {"mirror", m->mirror}, {"leg", m->leg}}); });
  auto* rp = mc->add_subcommand("replace", "Replace a leg: add the new one (full sync), remove the old one");
  rp->add_option("--mirror", m->mirror, "Mirror")->required();
  rp->add_option("--old", m->old_leg, "Leg to replace")->required();
  rp->add_option("--new", m->leg, "New leg (device name, or a new name with --spec)")->required();
  rp->add_option("--spec", m->spec, "Open a new back end for the new leg");
  rp->add_option("--limit", m->limit, "Resync rate limit, bytes per second");
  rp->callback([sock, m, limit] {
    json req{{"op", "mirror-replace-leg"}, {"mirror", m->mirror}, {"old", m->old_leg}, {"new", m->leg}};
    if (!m->spec.empty()) req["spec"] = m->spec;
    run_mirror(*sock, limit(req));
  });
  auto* off = mc->add_subcommand("offline", "Take a leg out (as if it failed); `resync` brings it back");
  off->add_option("--mirror", m->mirror, "Mirror")->required();
  off->add_option("--leg", m->leg, "Leg")->required();
  off->callback([sock, m] { run_mirror(*sock, json{{"op", "mirror-offline"}, {"mirror", m->mirror}, {"leg", m->leg}}); });
  auto* rs = mc->add_subcommand("resync", "Re-attach failed legs and copy the stale regions (a job)");
  rs->add_option("--mirror", m->mirror, "Mirror")->required();
  rs->add_option("--limit", m->limit, "Rate limit, bytes per second");
  rs->callback([sock, m, limit] { run_mirror(*sock, limit(json{{"op", "mirror-resync"}, {"mirror", m->mirror}})); });
  auto* vf = mc->add_subcommand("verify", "Compare the legs region by region (a job); --repair rewrites differences from the first in-sync leg");
  vf->add_option("--mirror", m->mirror, "Mirror")->required();
  vf->add_flag("--repair", m->repair, "Repair differences");
  vf->add_option("--limit", m->limit, "Rate limit, bytes per second");
  vf->callback([sock, m, limit] {
    run_mirror(*sock, limit(json{{"op", "mirror-verify"}, {"mirror", m->mirror}, {"repair", m->repair}}));
  });
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
  add_mirror_cli(*cmd, sock);
}

}  // namespace ipsan::server
