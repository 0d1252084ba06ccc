// The front ends with completions on another thread (as SanClient delivers them), and several
// initiator threads at once.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "ipsan/client/memory_target.h"
#include "ipsan/client/scsi/bus.h"
#include "ipsan/client/trace/runner.h"
#include "lu_fixture.h"

namespace ipsan::client::scsi::testing {
namespace {

// Completes every request on its own worker thread.
class ThreadedTarget : public GenericTarget {
 public:
  explicit ThreadedTarget(GenericTarget& inner) : inner_(inner), worker_([this] { loop(); }) {}
  ~ThreadedTarget() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void execute(proto::Request request, std::function<void(proto::Reply)> done) override {
    inner_.execute(std::move(request), [this, done = std::move(done)](proto::Reply reply) mutable {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(
          [done = std::move(done), reply = std::move(reply)]() mutable { done(std::move(reply)); });
      cv_.notify_one();
    });
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto f = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      f();
      lock.lock();
    }
  }
  GenericTarget& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::thread worker_;
};

ScsiResult run_sync(LogicalUnit& lu, const std::string& cdb, Bytes out = {}) {
  auto p = std::make_shared<std::promise<ScsiResult>>();
  auto f = p->get_future();
  ScsiCommand c;
  c.cdb = hex(cdb);
  c.data_out = std::move(out);
  lu.execute(c, [p](ScsiResult r) { p->set_value(std::move(r)); });
  EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  return f.get();
}

TEST(ThreadedTest, ConcurrentInitiatorsWithCompletionsOnAnotherThread) {
  MemoryTarget mem;
  mem.add_device(1, MemoryTarget::default_identity(4096, 512, 8));
  ThreadedTarget target(mem);
  LogicalUnit lu(target, 1);
  std::promise<Errc> attached;
  lu.attach([&](Errc e) { attached.set_value(e); });
  ASSERT_EQ(attached.get_future().get(), Errc::kOk);
  ASSERT_EQ(run_sync(lu, "000000000000").status, kStatusCheckCondition);  // unit attention
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        const std::uint32_t lba = static_cast<std::uint32_t>(t * 1000 + i * 20);
        const Bytes data = filled(20 * 512, static_cast<std::uint8_t>(t * 50 + i));
        Bytes cdb(10, 0);
        cdb[0] = 0x2A;
        store_be32(&cdb[2], lba);
        store_be16(&cdb[7], 20);
        if (run_sync(lu, to_hex(cdb), data).status != kStatusGood) ++bad;
        cdb[0] = 0x28;
        auto r = run_sync(lu, to_hex(cdb));
        if (r.status != kStatusGood || r.data_in != data) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(ThreadedTest, TraceRunnerWaitsForCompletionsFromAnotherThread) {
  MemoryTarget mem;
  mem.add_device(1, MemoryTarget::default_identity(4096, 512, 8));
  ThreadedTarget target(mem);
  Bus bus;
  bus.add_server("t", target);
  ASSERT_TRUE(bus.map({0, 0, "t", 1}));
  ASSERT_EQ(bus.attach_all_and_wait(5000), Errc::kOk);
  auto t = trace::parse_trace(
      "# ipsan-trace v1\n"
      "scsi cdb=000000000000 sense=6/29/00\n"
      "scsi cdb=2a000000010000004000 out=pattern:seed=3\n"
      "scsi cdb=28000000010000004000 in=pattern:seed=3\n"
      "ata cmd=0x25 lba=256 count=64 in=pattern:seed=3\n",
      "threaded");
  ASSERT_TRUE(t) << t.error().message;
  auto report = trace::run_traces({*t}, bus, trace::ReplayOptions{});
  std::ostringstream os;
  trace::print_report(os, report, true);
  EXPECT_TRUE(report.ok()) << os.str();
  EXPECT_EQ(report.matched, 4u);
}

}  // namespace
}  // namespace ipsan::client::scsi::testing
