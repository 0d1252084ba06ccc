// ipsan/server/replicate.h: asynchronous, incremental, crash-consistent replication of a thin
// disk to a target device (any open_backend spec: a file, a block device, or a device on another
// ipsan server once the remote back end exists). Format and guarantees: docs/MIRROR.md.
//
// A cycle is a job of the job engine ("replicate", target = the disk): (1) take a snapshot of the
// disk (the cycle's point in time), (2) copy to the target only the extents that differ between
// the previous cycle's snapshot and this one (ThinPool::diff, from the maps: no data is compared),
// or the whole disk the first time, (3) flush the target, (4) record the new point and delete the
// previous snapshot. The in-progress cycle (its snapshot, extent list and cursor) is persisted
// after every step, so a cycle cut by a link failure or a server restart resumes where it
// stopped. Between cycles the target equals the last recorded point byte for byte; lag (RPO) is
// the age of that point. Cycles run on demand (replicate-run) and every `interval` seconds.
//
// Threading: thread-safe; jobs run on the engine's threads, handle() on the admin thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "ipsan/jobs/engine.h"
#include "ipsan/virt/layout.h"
#include "ipsan/virt/thin.h"

namespace ipsan::server {

class ReplicationManager : public std::enable_shared_from_this<ReplicationManager> {
 public:
  // `state_file` empty: nothing persisted (tests).
  explicit ReplicationManager(std::filesystem::path state_file, std::filesystem::path base_dir);
  Result<void, Error> load();
  // Registers the "replicate" job kind.
  void register_kind(jobs::JobEngine& engine);
  // The layout's pools and back-end specs (refreshed after every layout change).
  void set_layout(const virt::Layout& layout);
  // Starts the cycles that are due (scheduled replications).
  void tick(jobs::JobEngine& engine);
  // replicate-set | replicate-run | replicate-status | replicate-remove.
  nlohmann::json handle(const nlohmann::json& request, jobs::JobEngine& engine);

  struct Relation;  // one replicated disk (persisted)
  struct Cycle;     // the cycle in progress (persisted)

  // Job side (used by the job).
  Result<std::shared_ptr<virt::ThinPool>, Error> pool_of(const std::string& disk) const;
  Result<void, Error> begin_cycle(const std::string& disk);
  std::mutex& mu() { return mu_; }
  std::map<std::string, Relation, std::less<>>& relations() { return rel_; }
  void save_locked();

 private:
  std::filesystem::path path_;
  std::filesystem::path base_dir_;
  mutable std::mutex mu_;
  std::map<std::string, Relation, std::less<>> rel_;
  std::map<std::string, std::shared_ptr<virt::ThinPool>, std::less<>> pools_;
  std::vector<std::string> layout_specs_;  // resolved specs of the layout's back ends
};

struct ReplicationManager::Cycle {
  std::string snapshot;  // this cycle's point in time
  std::string base;      // the previous point ("" for a full copy)
  std::vector<virt::ThinExtent> extents;
  std::uint64_t index = 0;   // extent being copied
  std::uint64_t offset = 0;  // blocks done in it
  std::uint64_t bytes = 0;   // copied so far
  std::int64_t started = 0;  // unix seconds
  std::int64_t point = 0;    // unix seconds of the snapshot
};

struct ReplicationManager::Relation {
  std::string disk;
  std::string target;          // open_backend spec
  std::uint64_t interval_s = 0;  // 0: on demand only
  std::uint64_t limit = 0;       // bytes per second, 0: unlimited
  std::uint64_t seq = 0;         // snapshots taken
  std::string last_snapshot;     // the point the target holds ("" before the first cycle)
  std::int64_t last_point = 0;   // unix seconds of that point
  std::uint64_t last_bytes = 0;  // bytes copied by the last complete cycle
  double last_seconds = 0;       // its duration
  std::uint64_t cycles = 0;
  bool in_cycle = false;
  Cycle cycle;
};

}  // namespace ipsan::server
