// JobEngine: progress, rate limit, cancel, failure, persistence and resume from a checkpoint.
#include "ipsan/jobs/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>

#include "temp_dir.h"

namespace ipsan::jobs {
namespace {

using nlohmann::json;

// Counts to `total` in steps of `chunk` bytes; its checkpoint is where it is.
class CountJob : public Job {
 public:
  CountJob(std::uint64_t total, std::uint64_t chunk, std::uint64_t at, std::atomic<int>* gate)
      : total_(total), chunk_(chunk), at_(at), gate_(gate) {}
  Result<StepResult, Error> step() override {
    if (gate_) {
      while (gate_->load() == 0) std::this_thread::yield();
      if (gate_->load() < 0) return fail("told to fail");
    }
    const std::uint64_t n = std::min(chunk_, total_ - at_);
    at_ += n;
    return StepResult{n, total_, at_ >= total_};
  }
  json checkpoint() const override { return json{{"at", at_}}; }
  json result() const override { return json{{"at", at_}}; }

 private:
  std::uint64_t total_, chunk_, at_;
  std::atomic<int>* gate_;
};

void register_count(JobEngine& e, std::atomic<int>* gate, std::vector<json>* seen = nullptr) {
  e.register_kind("count", [gate, seen](const std::string&, const json& p, const json& cp)
                               -> Result<std::unique_ptr<Job>, Error> {
    if (seen) seen->push_back(cp);
    if (!p.contains("total")) return fail("no total");
    return std::unique_ptr<Job>(new CountJob(p["total"].get<std::uint64_t>(),
                                             p.value("chunk", std::uint64_t{4096}),
                                             cp.value("at", std::uint64_t{0}), gate));
  });
}

TEST(JobEngine, RunsToCompletionWithProgress) {
  JobEngine e;
  register_count(e, nullptr);
  auto id = e.start("count", "x", json{{"total", 1 << 20}});
  ASSERT_TRUE(id) << id.error().message;
  ASSERT_TRUE(e.wait(*id, std::chrono::seconds(20)));
  auto j = e.get(*id);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->state, JobState::kDone);
  EXPECT_EQ(j->done_bytes, 1u << 20);
  EXPECT_EQ(to_json(*j)["progress"].get<double>(), 1.0);
  EXPECT_FALSE(e.start("nope", "x", json::object()));
  EXPECT_FALSE(e.start("count", "x", json::object()));  // the factory refuses
}

TEST(JobEngine, RateLimitIsHonoured) {
  JobEngine e;
  register_count(e, nullptr);
  const auto t0 = steady_now();
  // 256 KiB at 1 MiB/s: at least ~0.25 s (a lower bound only; a loaded machine is slower).
  auto id = e.start("count", "x", json{{"total", 256 * 1024}, {"chunk", 16 * 1024}}, 1 << 20);
  ASSERT_TRUE(id);
  ASSERT_TRUE(e.wait(*id, std::chrono::seconds(20)));
  EXPECT_GE(steady_now() - t0, std::chrono::milliseconds(200));
  EXPECT_EQ(e.get(*id)->state, JobState::kDone);
}

TEST(JobEngine, CancelAndFailAndOneJobPerTarget) {
  std::atomic<int> gate{0};
  JobEngine e;
  register_count(e, &gate);
  auto id = e.start("count", "x", json{{"total", 1 << 30}}, 1024);
  ASSERT_TRUE(id);
  auto dup = e.start("count", "x", json{{"total", 1}});
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("already running"), std::string::npos);
  EXPECT_EQ(e.running("count", "x"), *id);
  gate = 1;
  ASSERT_TRUE(e.cancel(*id));
  ASSERT_TRUE(e.wait(*id, std::chrono::seconds(20)));
  EXPECT_EQ(e.get(*id)->state, JobState::kCancelled);
  EXPECT_FALSE(e.cancel(*id));
  EXPECT_FALSE(e.cancel(999));
  gate = -1;
  auto id2 = e.start("count", "y", json{{"total", 100}});
  ASSERT_TRUE(id2);
  ASSERT_TRUE(e.wait(*id2, std::chrono::seconds(20)));
  EXPECT_EQ(e.get(*id2)->state, JobState::kFailed);
  EXPECT_EQ(e.get(*id2)->error, "told to fail");
}

TEST(JobEngine, RunningJobResumesFromItsCheckpointAfterRestart) {
  backends::testing::TempDir dir;
  const auto state = dir / "jobs.json";
  std::uint64_t id = 0;
  {
    std::atomic<int> gate{1};
    JobEngine e(state);
    register_count(e, &gate);
    // Slow (rate limited) so that it is still running when the engine stops.
    auto r = e.start("count", "x", json{{"total", 1 << 20}, {"chunk", 64 * 1024}}, 256 * 1024);
    ASSERT_TRUE(r);
    id = *r;
    while (e.get(id)->done_bytes < 128 * 1024) std::this_thread::yield();
    // Wait (bounded) until the state file holds a checkpoint past the start: progress is
    // persisted at least every second.
    const auto deadline = steady_now() + std::chrono::seconds(20);
    for (;;) {
      ASSERT_LT(steady_now(), deadline) << "no checkpoint persisted";
      std::ifstream in(state);
      json j = json::parse(in, nullptr, false);
      if (!j.is_discarded() && j.contains("jobs") && !j["jobs"].empty() &&
          j["jobs"][0]["checkpoint"].value("at", std::uint64_t{0}) > 0)
        break;
      std::this_thread::yield();
    }
  }  // "restart"
  std::vector<json> seen;
  JobEngine e(state);
  register_count(e, nullptr, &seen);
  ASSERT_TRUE(e.load());
  auto j = e.get(id);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->state, JobState::kRunning);
  const std::uint64_t at = j->checkpoint.value("at", std::uint64_t{0});
  EXPECT_GT(at, 0u);
  EXPECT_EQ(e.resume_all(), 1u);
  ASSERT_TRUE(e.wait(id, std::chrono::seconds(30)));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].value("at", std::uint64_t{0}), at);  // resumed, not restarted
  EXPECT_EQ(e.get(id)->state, JobState::kDone);
  EXPECT_EQ(e.get(id)->resumed, 1u);
  EXPECT_EQ(e.get(id)->result.value("at", std::uint64_t{0}), 1u << 20);
  // A new job gets a new id.
  auto r2 = e.start("count", "x", json{{"total", 1}});
  ASSERT_TRUE(r2);
  EXPECT_GT(*r2, id);
}

TEST(JobEngine, CorruptStateFileIsAClearError) {
  backends::testing::TempDir dir;
  { std::ofstream(dir / "jobs.json") << "{not json"; }
  JobEngine e(dir / "jobs.json");
  auto r = e.load();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a job state file"), std::string::npos);
}

}  // namespace
}  // namespace ipsan::jobs
