// The job engine; see engine.h.
#include "ipsan/jobs/engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include "ipsan/base/log.h"

namespace ipsan::jobs {

using nlohmann::json;

namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

JobState state_from(const std::string& s) {
  if (s == "done") return JobState::kDone;
  if (s == "failed") return JobState::kFailed;
  if (s == "cancelled") return JobState::kCancelled;
  return JobState::kRunning;
}

// Durable replacement: temporary file, fsync, rename, fsync of the directory.
bool write_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return false;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return false;
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace

std::string_view to_string(JobState s) noexcept {
  switch (s) {
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "?";
}

json to_json(const JobInfo& j) {
  return json{{"id", j.id},
              {"kind", j.kind},
              {"target", j.target},
              {"state", std::string(to_string(j.state))},
              {"params", j.params},
              {"checkpoint", j.checkpoint},
              {"result", j.result},
              {"done_bytes", j.done_bytes},
              {"total_bytes", j.total_bytes},
              {"progress", j.total_bytes ? static_cast<double>(j.done_bytes) /
                                               static_cast<double>(j.total_bytes)
                                         : (j.state == JobState::kDone ? 1.0 : 0.0)},
              {"rate_bytes_per_s", j.rate_bytes_per_s},
              {"limit_bytes_per_s", j.limit_bytes_per_s},
              {"error", j.error},
              {"created", j.created},
              {"finished", j.finished},
              {"resumed", j.resumed}};
}

struct JobEngine::Entry {
  JobInfo info;
  bool cancel = false;
};

JobEngine::JobEngine(std::filesystem::path state_file) : path_(std::move(state_file)) {}

JobEngine::~JobEngine() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void JobEngine::register_kind(std::string kind, Factory factory) {
  std::lock_guard lk(mu_);
  factories_[std::move(kind)] = std::move(factory);
}

Result<void, Error> JobEngine::load() {
  if (path_.empty()) return {};
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return {};
  std::ifstream in(path_, std::ios::binary);
  if (!in) return fail(path_.string() + ": cannot read");
  std::ostringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
    std::lock_guard lk(mu_);
    next_id_ = j.at("next_id").get<std::uint64_t>();
    for (const auto& x : j.at("jobs")) {
      auto e = std::make_shared<Entry>();
      JobInfo& i = e->info;
      i.id = x.at("id").get<std::uint64_t>();
      i.kind = x.at("kind").get<std::string>();
      i.target = x.at("target").get<std::string>();
      i.state = state_from(x.at("state").get<std::string>());
      i.params = x.value("params", json::object());
      i.checkpoint = x.value("checkpoint", json::object());
      i.result = x.value("result", json::object());
      i.done_bytes = x.value("done_bytes", std::uint64_t{0});
      i.total_bytes = x.value("total_bytes", std::uint64_t{0});
      i.limit_bytes_per_s = x.value("limit_bytes_per_s", std::uint64_t{0});
      i.error = x.value("error", std::string());
      i.created = x.value("created", std::int64_t{0});
      i.finished = x.value("finished", std::int64_t{0});
      i.resumed = x.value("resumed", std::uint32_t{0});
      if (i.id >= next_id_) next_id_ = i.id + 1;
      jobs_[i.id] = e;
    }
  } catch (const std::exception& ex) {
    return fail(path_.string() + ": not a job state file: " + ex.what());
  }
  return {};
}

void JobEngine::save_locked() {
  if (path_.empty()) return;
  json jobs = json::array();
  // Every running job and the last 100 finished ones.
  std::size_t finished = 0;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    const JobInfo& i = it->second->info;
    if (i.state != JobState::kRunning && ++finished > 100) continue;
    json x = to_json(i);
    x.erase("rate_bytes_per_s");
    x.erase("progress");
    jobs.insert(jobs.begin(), std::move(x));
  }
  const json j{{"next_id", next_id_}, {"jobs", jobs}};
  if (!write_atomically(path_, j.dump(1) + "\n"))
    IPSAN_LOG(LogLevel::kError, "jobs", "cannot write ", path_.string(), ": ", std::strerror(errno));
}

std::size_t JobEngine::resume_all() {
  std::vector<std::shared_ptr<Entry>> todo;
  {
    std::lock_guard lk(mu_);
    for (auto& [id, e] : jobs_)
      if (e->info.state == JobState::kRunning) todo.push_back(e);
  }
  std::size_t started = 0;
  for (auto& e : todo) {
    Factory f;
    {
      std::lock_guard lk(mu_);
      auto it = factories_.find(e->info.kind);
      if (it != factories_.end()) f = it->second;
    }
    Result<std::unique_ptr<Job>, Error> job =
        f ? f(e->info.target, e->info.params, e->info.checkpoint)
          : Result<std::unique_ptr<Job>, Error>(fail("unknown job kind '" + e->info.kind + "'"));
    std::lock_guard lk(mu_);
    ++e->info.resumed;
    if (!job) {
      e->info.state = JobState::kFailed;
      e->info.error = "cannot resume: " + job.error().message;
      e->info.finished = unix_now();
      save_locked();
      continue;
    }
    IPSAN_LOG(LogLevel::kInfo, "jobs", "resuming job ", e->info.id, " (", e->info.kind, " ",
              e->info.target, ")");
    save_locked();
    threads_.emplace_back([this, e, j = std::move(*job)]() mutable { run(e, std::move(j)); });
    ++started;
  }
  return started;
}

Result<std::uint64_t, Error> JobEngine::start(const std::string& kind, const std::string& target,
                                              json params, std::uint64_t limit) {
  Factory f;
  {
    std::lock_guard lk(mu_);
    auto it = factories_.find(kind);
    if (it == factories_.end()) return fail("unknown job kind '" + kind + "'");
    f = it->second;
    for (const auto& [id, e] : jobs_)
      if (e->info.state == JobState::kRunning && e->info.kind == kind && e->info.target == target)
        return fail(Errc::kBusy, kind + " of '" + target + "' is already running (job " +
                                     std::to_string(id) + ")");
  }
  auto job = f(target, params, json::object());
  if (!job) return make_unexpected(job.error());
  std::lock_guard lk(mu_);
  if (stopping_) return fail(Errc::kShutdown, "shutting down");
  for (const auto& [id, e] : jobs_)
    if (e->info.state == JobState::kRunning && e->info.kind == kind && e->info.target == target)
      return fail(Errc::kBusy, kind + " of '" + target + "' is already running (job " +
                                   std::to_string(id) + ")");
  auto e = std::make_shared<Entry>();
  e->info.id = next_id_++;
  e->info.kind = kind;
  e->info.target = target;
  e->info.params = std::move(params);
  e->info.limit_bytes_per_s = limit;
  e->info.created = unix_now();
  jobs_[e->info.id] = e;
  save_locked();
  IPSAN_LOG(LogLevel::kInfo, "jobs", "job ", e->info.id, " started: ", kind, " ", target);
  threads_.emplace_back([this, e, j = std::move(*job)]() mutable { run(e, std::move(j)); });
  return e->info.id;
}

void JobEngine::run(std::shared_ptr<Entry> e, std::unique_ptr<Job> job) {
  std::deque<std::pair<TimePoint, std::uint64_t>> window;
  TimePoint next_ok = steady_now();
  TimePoint last_save = next_ok;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;  // stays "running" on disk: resumed after the restart
      if (e->cancel) {
        e->info.state = JobState::kCancelled;
        e->info.finished = unix_now();
        e->info.rate_bytes_per_s = 0;
        save_locked();
        cv_.notify_all();
        IPSAN_LOG(LogLevel::kInfo, "jobs", "job ", e->info.id, " cancelled");
        return;
      }
    }
    const TimePoint t_step = steady_now();
    auto r = job->step();
    std::unique_lock lk(mu_);
    const TimePoint now = steady_now();
    e->info.checkpoint = job->checkpoint();
    e->info.result = job->result();
    if (!r) {
      e->info.state = JobState::kFailed;
      e->info.error = r.error().message;
      e->info.finished = unix_now();
      e->info.rate_bytes_per_s = 0;
      save_locked();
      cv_.notify_all();
      IPSAN_LOG(LogLevel::kWarn, "jobs", "job ", e->info.id, " failed: ", r.error().message);
      return;
    }
    e->info.done_bytes += r->bytes;
    e->info.total_bytes = std::max(r->total_bytes, e->info.done_bytes);
    window.emplace_back(now, e->info.done_bytes);
    while (window.size() > 2 && now - window.front().first > std::chrono::seconds(3))
      window.pop_front();
    const double secs = std::chrono::duration<double>(now - window.front().first).count();
    if (secs > 0)
      e->info.rate_bytes_per_s = static_cast<double>(e->info.done_bytes - window.front().second) / secs;
    if (r->finished) {
      e->info.state = JobState::kDone;
      e->info.finished = unix_now();
      e->info.total_bytes = e->info.done_bytes;
      save_locked();
      cv_.notify_all();
      IPSAN_LOG(LogLevel::kInfo, "jobs", "job ", e->info.id, " done: ", e->info.done_bytes,
                " bytes");
      return;
    }
    if (now - last_save > std::chrono::seconds(1)) {
      save_locked();
      last_save = now;
    }
    // Token bucket: this step's bytes may not leave before bytes / limit seconds.
    if (const std::uint64_t limit = e->info.limit_bytes_per_s; limit && r->bytes) {
      next_ok = std::max(next_ok, t_step) +
                std::chrono::duration_cast<Duration>(std::chrono::duration<double>(
                    static_cast<double>(r->bytes) / static_cast<double>(limit)));
      cv_.wait_until(lk, next_ok, [&] { return stopping_ || e->cancel; });
    }
  }
}

Result<void, Error> JobEngine::cancel(std::uint64_t id) {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return fail("no job " + std::to_string(id));
  if (it->second->info.state != JobState::kRunning)
    return fail("job " + std::to_string(id) + " is " +
                std::string(to_string(it->second->info.state)));
  it->second->cancel = true;
  cv_.notify_all();
  return {};
}

Result<void, Error> JobEngine::set_limit(std::uint64_t id, std::uint64_t limit) {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return fail("no job " + std::to_string(id));
  it->second->info.limit_bytes_per_s = limit;
  save_locked();
  cv_.notify_all();
  return {};
}

std::vector<JobInfo> JobEngine::list() const {
  std::lock_guard lk(mu_);
  std::vector<JobInfo> out;
  for (const auto& [id, e] : jobs_) out.push_back(e->info);
  return out;
}

std::optional<JobInfo> JobEngine::get(std::uint64_t id) const {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second->info;
}

std::optional<std::uint64_t> JobEngine::running(const std::string& kind,
                                                const std::string& target) const {
  std::lock_guard lk(mu_);
  for (const auto& [id, e] : jobs_)
    if (e->info.state == JobState::kRunning && e->info.kind == kind && e->info.target == target)
      return id;
  return std::nullopt;
}

bool JobEngine::wait(std::uint64_t id, Duration timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] {
    auto it = jobs_.find(id);
    return it == jobs_.end() || it->second->info.state != JobState::kRunning;
  });
}

}  // namespace ipsan::jobs
