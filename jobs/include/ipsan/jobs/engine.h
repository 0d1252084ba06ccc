// ipsan/jobs/engine.h: the server's job engine. Long storage operations (mirror resync and verify,
// replication cycles, later backups) run as jobs: a Job does its work in bounded steps; the engine
// runs each job on a thread of its own, limits its rate (bytes per second, token bucket), counts
// progress and rate, lets an operator cancel it, and keeps every job's state in a JSON file
// (written atomically) so that a job running when the server stopped (or was killed) resumes
// from its last checkpoint after a restart. docs/MIRROR.md describes the jobs built on it.
//
// Threading: thread-safe. Factories and Job::step run on the job's thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"

namespace ipsan::jobs {

enum class JobState { kRunning, kDone, kFailed, kCancelled };
std::string_view to_string(JobState s) noexcept;

struct StepResult {
  std::uint64_t bytes = 0;        // bytes moved by this step (rate limit, progress)
  std::uint64_t total_bytes = 0;  // current estimate of the job's total
  bool finished = false;
};

class Job {
 public:
  virtual ~Job() = default;
  // One bounded unit of work (a few MiB at most, so that cancel and the rate limit bite).
  virtual Result<StepResult, Error> step() = 0;
  // Persisted after steps; handed back to the factory when the job resumes after a restart.
  virtual nlohmann::json checkpoint() const { return nlohmann::json::object(); }
  // Shown in the job's status (e.g. a verify report); persisted.
  virtual nlohmann::json result() const { return nlohmann::json::object(); }
};

// Builds a job from its parameters and last checkpoint ({} for a new job).
using Factory = std::function<Result<std::unique_ptr<Job>, Error>(
    const std::string& target, const nlohmann::json& params, const nlohmann::json& checkpoint)>;

struct JobInfo {
  std::uint64_t id = 0;
  std::string kind;
  std::string target;
  JobState state = JobState::kRunning;
  nlohmann::json params = nlohmann::json::object();
  nlohmann::json checkpoint = nlohmann::json::object();
  nlohmann::json result = nlohmann::json::object();
  std::uint64_t done_bytes = 0;
  std::uint64_t total_bytes = 0;
  double rate_bytes_per_s = 0;     // over the last few seconds
  std::uint64_t limit_bytes_per_s = 0;  // 0: unlimited
  std::string error;
  std::int64_t created = 0, finished = 0;  // unix seconds
  std::uint32_t resumed = 0;  // times resumed after a restart
};
nlohmann::json to_json(const JobInfo& j);

class JobEngine {
 public:
  // `state_file` empty: nothing persisted (tests).
  explicit JobEngine(std::filesystem::path state_file = {});
  // Stops every job thread; running jobs stay "running" in the state file and resume next time.
  ~JobEngine();
  JobEngine(const JobEngine&) = delete;
  JobEngine& operator=(const JobEngine&) = delete;

  void register_kind(std::string kind, Factory factory);
  // Reads the state file (a missing file is an empty engine). Call once, before resume_all.
  Result<void, Error> load();
  // Restarts the jobs that were running; returns how many started (failures are recorded).
  std::size_t resume_all();

  // Starts a job; refused when a job of the same kind and target is running.
  Result<std::uint64_t, Error> start(const std::string& kind, const std::string& target,
                                     nlohmann::json params, std::uint64_t limit_bytes_per_s = 0);
  Result<void, Error> cancel(std::uint64_t id);
  Result<void, Error> set_limit(std::uint64_t id, std::uint64_t limit_bytes_per_s);
  std::vector<JobInfo> list() const;
  std::optional<JobInfo> get(std::uint64_t id) const;
  // The running job of `kind` on `target`, if any.
  std::optional<std::uint64_t> running(const std::string& kind, const std::string& target) const;
  // Waits until the job is no longer running (true) or `timeout` passed (false).
  bool wait(std::uint64_t id, Duration timeout) const;

 private:
  struct Entry;
  void run(std::shared_ptr<Entry> e, std::unique_ptr<Job> job);
  void save_locked();  // mu_ held
  std::shared_ptr<Entry> launch_locked(std::shared_ptr<Entry> e);

  std::filesystem::path path_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, Factory> factories_;
  std::map<std::uint64_t, std::shared_ptr<Entry>> jobs_;
  std::uint64_t next_id_ = 1;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ipsan::jobs
