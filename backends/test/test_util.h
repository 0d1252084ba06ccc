// Synchronous helpers for back-end tests: wait (bounded) for one completion.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <span>

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

}  // namespace ipsan::backends::testing
