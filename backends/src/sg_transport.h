// sg_transport.h (private): the SG_IO file descriptor and worker pool shared by SgBackend and
// AtaBackend. execute() blocks and is thread-safe (the sg driver accepts concurrent SG_IO on one
// descriptor); post() queues work for a worker thread. The destructor joins the workers, or
// detaches the calling worker if the last reference to the backend was dropped on it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/backends/scsi_sense.h"
#include "ipsan/base/result.h"

namespace ipsan::backends {

class WorkerPool {
 public:
  explicit WorkerPool(unsigned threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  void post(std::function<void()> task);

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stop = false;
  };
  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
};

enum class SgDirection { kNone, kIn, kOut };

struct SgOutcome {
  scsi::Verdict verdict;
  scsi::SenseInfo sense;
  std::uint8_t status = 0;
  int resid = 0;
  int os_error = 0;
};

class SgTransport {
 public:
  // Opens and checks the node answers SG_IO (SG_GET_VERSION_NUM); read_only opens O_RDONLY.
  static Result<std::unique_ptr<SgTransport>, Error> open(const std::string& path, bool read_only,
                                                          unsigned workers);
  ~SgTransport();

  SgOutcome execute(std::span<const std::uint8_t> cdb, SgDirection dir, std::uint8_t* data,
                    std::size_t len, unsigned timeout_s) const;
  void post(std::function<void()> task) { pool_->post(std::move(task)); }
  // The driver's per-command byte limit (BLKSECTGET on sg returns bytes); 0 if unknown.
  std::uint64_t driver_max_bytes() const { return driver_max_bytes_; }
  int fd() const { return fd_; }

 private:
  SgTransport(int fd, unsigned workers);
  int fd_;
  std::uint64_t driver_max_bytes_ = 0;
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace ipsan::backends
