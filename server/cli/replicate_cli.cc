#include "replicate_cli.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "ipsan/server/admin.h"

namespace ipsan::server {
namespace {

using nlohmann::json;

[[noreturn]] void die(const char* who, const std::string& msg) {
  std::fprintf(stderr, "ipsan %s: %s\n", who, msg.c_str());
  throw CLI::RuntimeError(1);
}

json call(const char* who, const std::string& socket, const json& req) {
  auto r = admin_call(socket, req);
  if (!r) die(who, r.error().message);
  if (!r->value("ok", false)) die(who, r->value("error", std::string("request refused")));
  return *r;
}

void print_job(const json& j) {
  std::printf("job %-4llu %-14s %-16s %-9s %5.1f%%  %llu of %llu bytes  %.1f MB/s  limit %llu B/s%s%s\n",
              static_cast<unsigned long long>(j.value("id", 0ull)), j.value("kind", "").c_str(),
              j.value("target", "").c_str(), j.value("state", "").c_str(),
              j.value("progress", 0.0) * 100.0,
              static_cast<unsigned long long>(j.value("done_bytes", 0ull)),
              static_cast<unsigned long long>(j.value("total_bytes", 0ull)),
              j.value("rate_bytes_per_s", 0.0) / 1e6,
              static_cast<unsigned long long>(j.value("limit_bytes_per_s", 0ull)),
              j.value("error", "").empty() ? "" : "  error: ", j.value("error", "").c_str());
}

void print_replication(const json& r) {
  std::printf("replica %-16s -> %s  interval %llus  cycles %llu  point %s",
              r.value("disk", "").c_str(), r.value("target", "").c_str(),
              static_cast<unsigned long long>(r.value("interval_s", 0ull)),
              static_cast<unsigned long long>(r.value("cycles", 0ull)),
              r.value("last_point", "").empty() ? "-" : r.value("last_point", "").c_str());
  if (r.contains("lag_s") && !r["lag_s"].is_null())
    std::printf("  lag %llds", static_cast<long long>(r["lag_s"].get<std::int64_t>()));
  std::printf("  last cycle %llu bytes in %.2fs (%.1f MB/s)\n",
              static_cast<unsigned long long>(r.value("last_cycle_bytes", 0ull)),
              r.value("last_cycle_seconds", 0.0), r.value("last_cycle_bytes_per_s", 0.0) / 1e6);
  if (r.contains("cycle")) {
    const json& c = r["cycle"];
    std::printf("  cycle in progress: %s %s %.1f%% (%llu of %llu blocks)\n",
                c.value("snapshot", "").c_str(), c.value("incremental", false) ? "incremental" : "full",
                c.value("progress", 0.0) * 100.0,
                static_cast<unsigned long long>(c.value("done_blocks", 0ull)),
                static_cast<unsigned long long>(c.value("total_blocks", 0ull)));
  }
  if (r.contains("job")) {
    std::printf("  ");
    print_job(r["job"]);
  }
}

}  // namespace

void add_replicate_cli(CLI::App& app) {
  auto* cmd = app.add_subcommand("replicate", "Incremental replication of a thin disk to a target device (docs/MIRROR.md)");
  cmd->require_subcommand(1);
  struct R {
    std::string socket, disk, target, interval, limit;
    bool wait = false;
  };
  auto r = std::make_shared<R>();
  cmd->add_option("-a,--admin-socket", r->socket, "The server's --admin-socket")->required();
  auto* set = cmd->add_subcommand("set", "Replicate --disk to --target (a back-end spec); optional schedule and rate limit");
  set->add_option("--disk", r->disk, "Thin disk (or clone) to replicate")->required();
  set->add_option("--target", r->target, "Target device: a back-end spec (file:PATH, a block device, ...)")->required();
  set->add_option("--interval", r->interval, "Run a cycle every INTERVAL (e.g. 5m, 30s); default: on demand only");
  set->add_option("--limit", r->limit, "Bandwidth limit, bytes per second (e.g. 50M)");
  set->callback([r] {
    json req{{"op", "replicate-set"}, {"disk", r->disk}, {"target", r->target}};
    if (!r->interval.empty()) req["interval"] = r->interval;
    if (!r->limit.empty()) req["limit"] = r->limit;
    auto out = call("replicate", r->socket, req);
    print_replication(out["replication"]);
  });
  auto* run = cmd->add_subcommand("run", "Run one cycle now (resumes an interrupted one); --wait until it ends");
  run->add_option("--disk", r->disk, "Replicated disk")->required();
  run->add_flag("--wait", r->wait, "Wait for the cycle to end and print the result");
  run->callback([r] {
    auto out = call("replicate", r->socket, json{{"op", "replicate-run"}, {"disk", r->disk}});
    print_job(out["job"]);
    if (!r->wait) return;
    const auto id = out["job"].value("id", 0ull);
    for (;;) {
      auto l = call("replicate", r->socket, json{{"op", "job-list"}});
      for (const auto& j : l["jobs"]) {
        if (j.value("id", 0ull) != id || j.value("state", "") == "running") continue;
        print_job(j);
        if (j.value("state", "") != "done") throw CLI::RuntimeError(1);
        auto st = call("replicate", r->socket, json{{"op", "replicate-status"}, {"disk", r->disk}});
        for (const auto& x : st["replications"]) print_replication(x);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polling a remote state
    }
  });
  auto* st = cmd->add_subcommand("status", "Replications: target, last point, lag (RPO), throughput, cycle in progress");
  st->add_option("--disk", r->disk, "Only this disk");
  st->callback([r] {
    json req{{"op", "replicate-status"}};
    if (!r->disk.empty()) req["disk"] = r->disk;
    auto out = call("replicate", r->socket, req);
    for (const auto& x : out["replications"]) print_replication(x);
  });
  auto* rm = cmd->add_subcommand("remove", "Stop replicating a disk (deletes its replication snapshots)");
  rm->add_option("--disk", r->disk, "Replicated disk")->required();
  rm->callback([r] {
    call("replicate", r->socket, json{{"op", "replicate-remove"}, {"disk", r->disk}});
    std::printf("applied: replicate-remove\n");
  });
}

void add_job_cli(CLI::App& app) {
  auto* cmd = app.add_subcommand("job", "The server's jobs: resync, verify, replication cycles (docs/MIRROR.md)");
  cmd->require_subcommand(1);
  struct J {
    std::string socket, limit;
    std::uint64_t id = 0;
  };
  auto j = std::make_shared<J>();
  cmd->add_option("-a,--admin-socket", j->socket, "The server's --admin-socket")->required();
  cmd->add_subcommand("list", "Running and recent jobs with progress and rate")->callback([j] {
    auto out = call("job", j->socket, json{{"op", "job-list"}});
    for (const auto& x : out["jobs"]) print_job(x);
  });
  auto* cancel = cmd->add_subcommand("cancel", "Cancel a running job");
  cancel->add_option("--id", j->id, "Job id")->required();
  cancel->callback([j] { print_job(call("job", j->socket, json{{"op", "job-cancel"}, {"id", j->id}})["job"]); });
  auto* limit = cmd->add_subcommand("limit", "Change a job's rate limit (bytes per second; 0: none)");
  limit->add_option("--id", j->id, "Job id")->required();
  limit->add_option("--limit", j->limit, "Bytes per second, e.g. 20M")->required();
  limit->callback([j] {
    print_job(call("job", j->socket, json{{"op", "job-limit"}, {"id", j->id}, {"limit", j->limit}})["job"]);
  });
}

}  // namespace ipsan::server
