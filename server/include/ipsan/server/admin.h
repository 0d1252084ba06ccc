// ipsan/server/admin.h: local administration of a running server, and online layout changes.
//
// AdminEndpoint: a Unix stream socket (mode 0600, so only the server's user can use it) taking one
// JSON request per line and answering one JSON line. LayoutManager owns the server's TOML layout
// (virt/): it applies online changes (create a virtual disk, grow one by appending an extent,
// remove an unused one, export/unexport) as pure edits of the layout description, refuses any
// change that would lose or move data, opens what is new, persists the file atomically and only
// then swaps the server's exports. Protocol and commands: docs/CONFIG.md ("Online changes").
// Threading: both live on the server's io_context thread.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"
#include "ipsan/jobs/engine.h"
#include "ipsan/metrics/registry.h"
#include "ipsan/server/server.h"
#include "ipsan/virt/layout.h"

namespace ipsan::server {

class AdminEndpoint {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
  // Binds (replacing a stale socket file); throws std::runtime_error with a clear message.
  AdminEndpoint(boost::asio::io_context& io, std::filesystem::path path, Handler handler);
  ~AdminEndpoint();
  AdminEndpoint(const AdminEndpoint&) = delete;
  AdminEndpoint& operator=(const AdminEndpoint&) = delete;

 private:
  void accept_more();
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path path_;
  Handler handler_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Sends one request to a server's admin socket and returns its answer (blocking, bounded).
Result<nlohmann::json, Error> admin_call(const std::filesystem::path& socket,
                                         const nlohmann::json& request,
                                         Duration timeout = std::chrono::seconds(30));

class LayoutManager {
 public:
  // Loads and opens the layout in `config` (nothing is served unless it all validates).
  static Result<std::unique_ptr<LayoutManager>, Error> load(const std::filesystem::path& config);

  std::vector<Export> exports() const;
  const virt::Layout& layout() const { return layout_; }
  // Traces every back-end command of every virtual disk, now and after online changes. Call
  // before serving (the hook runs on the thread issuing requests: the server's io thread).
  void set_trace(virt::TraceHook hook);
  // Executes one admin request against `server`; returns {"ok": true, ...} or
  // {"ok": false, "error": "..."}. Never throws.
  nlohmann::json handle(const nlohmann::json& request, StorageServer& server);
  jobs::JobEngine& jobs() { return *jobs_; }
  ~LayoutManager();

 private:
  LayoutManager() = default;
  // Mirrors and jobs (admin_mirror.cc): the job engine (state in CONFIG.jobs.json), its job kinds,
  // resumed jobs, and a monitor thread that re-attaches failed legs and starts resyncs.
  Result<void, Error> start_jobs();
  void stop_jobs();
  void watch_mirrors();
  nlohmann::json handle_mirror(const nlohmann::json& request, StorageServer& server);
  struct MirrorWatch;
  std::shared_ptr<MirrorWatch> watch_;
  std::shared_ptr<class ReplicationManager> repl_;
  std::unique_ptr<jobs::JobEngine> jobs_;
  // `geometry`: the back ends' geometries when `next` adds one (default: the current ones).
  Result<void, Error> commit(virt::LayoutDesc next, StorageServer& server,
                             const virt::GeometryMap* geometry = nullptr);
  nlohmann::json show() const;
  // Thin pool requests (admin_thin.cc): snapshot-create|list|delete|rollback|clone, diff, check.
  nlohmann::json handle_thin(const nlohmann::json& request);
  // The same snapshot requests on a back end with native snapshots (Ceph RBD;
  // admin_native_snapshots.cc); nullopt when the request does not name such a back end.
  std::optional<nlohmann::json> handle_native_snapshots(const nlohmann::json& request,
                                                        StorageServer& server);
  // Disks allocated by the storage manager (admin_managed.cc): managed-create, managed-delete.
  nlohmann::json handle_managed(const nlohmann::json& request, StorageServer& server);

  std::filesystem::path path_;
  virt::Layout layout_;
  virt::TraceHook trace_;
};

// Mirrors and jobs: is `op` one of handle_mirror's (mirror-*, job-*, replicate-*).
bool is_mirror_op(const std::string& op);

// Thin pools: is `op` one of handle_thin's, and the pools' usage for `show` (admin_thin.cc).
bool is_thin_op(const std::string& op);
bool is_managed_op(const std::string& op);
nlohmann::json thin_pools_json(const virt::Layout& layout);

// The "stats" request (`ipsan stats`): {"ok": true, "metrics": <the registry as JSON, the same
// numbers as the Prometheus endpoint>}. Call on the thread the registry's collectors need.
nlohmann::json stats_reply(const metrics::Registry& registry);

// Converts the virtualization layer's exports to the server's.
std::vector<Export> to_server_exports(const virt::Layout& layout);

}  // namespace ipsan::server
