// The SG_IO worker pool: work runs off the caller's thread, and dropping the last reference to
// the pool from one of its own workers (a completion releasing its backend) neither deadlocks
// nor crashes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "sg_transport.h"

namespace ipsan::backends {
namespace {

TEST(SgWorkerPool, RunsTasksOnWorkerThreads) {
  WorkerPool pool(2);
  std::promise<std::thread::id> where;
  auto f = where.get_future();
  pool.post([&where] { where.set_value(std::this_thread::get_id()); });
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_NE(f.get(), std::this_thread::get_id());
}

TEST(SgWorkerPool, DrainsQueuedTasksBeforeDestruction) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1);
    for (int i = 0; i < 100; ++i) pool.post([&ran] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 100);
}

TEST(SgWorkerPool, LastReferenceDroppedOnAWorker) {
  struct Holder {
    std::shared_ptr<WorkerPool> pool;
    std::promise<void>* gone = nullptr;
    ~Holder() {
      pool.reset();  // destroys the pool on the worker thread running this task
      gone->set_value();
    }
  };
  std::promise<void> gone;
  auto f = gone.get_future();
  {
    auto pool = std::make_shared<WorkerPool>(2);
    WorkerPool* raw = pool.get();
    auto holder = std::make_shared<Holder>();
    holder->pool = std::move(pool);
    holder->gone = &gone;
    raw->post([h = std::move(holder)] {});
  }
  EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

TEST(SgTransport, OpenRejectsNonDevices) {
  auto t = SgTransport::open("/proc/self/status", false, 1);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("not an sg device"), std::string::npos);
}

}  // namespace
}  // namespace ipsan::backends
