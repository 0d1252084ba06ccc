// Synchronous helpers for back-end tests: wait (bounded) for one completion.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "ipsan/backends/backend.h"

namespace ipsan::backends::testing {

class Waiter {
 public:
  Completion cb() {
    auto p = promise_;
    return [p](Errc e) { p->set_value(e); };
  }
  // kTimeout if the completion does not run within 10 s (a bug, never a normal outcome).
  Errc wait() {
    auto f = promise_->get_future();
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return Errc::kTimeout;
    return f.get();
  }

 private:
  std::shared_ptr<std::promise<Errc>> promise_ = std::make_shared<std::promise<Errc>>();
};

inline Errc read_sync(Backend& b, std::uint64_t lba, std::span<std::uint8_t> out) {
  Waiter w;
  b.read(lba, out, w.cb());
  return w.wait();
}
inline Errc write_sync(Backend& b, std::uint64_t lba, std::span<const std::uint8_t> in,
                       bool fua = false) {
  Waiter w;
  b.write(lba, in, fua, w.cb());
  return w.wait();
}
inline Errc flush_sync(Backend& b) {
  Waiter w;
  b.flush(w.cb());
  return w.wait();
}
inline Errc trim_sync(Backend& b, std::uint64_t lba, std::uint64_t blocks) {
  Waiter w;
  b.trim(lba, blocks, w.cb());
  return w.wait();
}
inline Errc zeroes_sync(Backend& b, std::uint64_t lba, std::uint64_t blocks, bool may_trim) {
  Waiter w;
  b.write_zeroes(lba, blocks, may_trim, w.cb());
  return w.wait();
}

inline Errc atomic_write_sync(Backend& b, std::uint64_t lba, std::span<const std::uint8_t> in,
                              bool fua = false) {
  Waiter w;
  b.write_atomic(lba, in, fua, w.cb());
  return w.wait();
}

// Atomic writes against concurrent reads: one thread writes [lba, lba+blocks) with write_atomic()
// `writes` times, each time filled with one byte value (1, 2, 3, ...); `readers` threads read the
// range meanwhile. A read must see one value throughout (all old or all new). Returns the number
// of torn reads (0 expected) and counts the reads done.
inline int torn_reads_under_atomic_writes(Backend& b, std::uint64_t lba, std::uint64_t blocks,
                                          int writes, int readers, int* reads_done) {
  const std::size_t bytes = static_cast<std::size_t>(blocks * b.geometry().block_size);
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::atomic<int> reads{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&] {
      std::vector<std::uint8_t> buf(bytes);
      while (!stop.load()) {
        if (read_sync(b, lba, buf) != Errc::kOk) {
          ++torn;
          return;
        }
        ++reads;
        if (std::any_of(buf.begin(), buf.end(), [&](std::uint8_t x) { return x != buf[0]; })) {
          ++torn;
        }
      }
    });
  }
  std::vector<std::uint8_t> data(bytes);
  for (int i = 0; i < writes; ++i) {
    std::fill(data.begin(), data.end(), static_cast<std::uint8_t>(1 + i % 250));
    if (atomic_write_sync(b, lba, data) != Errc::kOk) ++torn;
  }
  stop = true;
  for (auto& t : threads) t.join();
  if (reads_done != nullptr) *reads_done = reads.load();
  return torn.load();
}

}  // namespace ipsan::backends::testing
