// SimDisk: an in-memory disk with a volatile write cache for crash tests (like LevelDB's
// FaultInjectionTestEnv). Writes go to the cache; FLUSH moves the cache to the durable image; a
// FUA write is durable at once. After `arm(n)` the n-th operation and every later one fail with
// kIoError and change nothing (the machine died). crash() keeps a random subset of the cached
// blocks (block-level tearing and reordering) and revives the disk for a restart.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "ipsan/backends/backend.h"

namespace ipsan::virt::testing {

class SimDisk final : public backends::Backend {
 public:
  SimDisk(std::uint64_t blocks, std::uint32_t bs)
      : bs_(bs), blocks_(blocks), durable_(blocks * bs) {}

  backends::Geometry geometry() const override { return {bs_, blocks_}; }
  backends::Capabilities capabilities() const override { return {}; }
  std::string describe() const override { return "sim"; }

  void read(std::uint64_t lba, std::span<std::uint8_t> out, backends::Completion done) override {
    std::unique_lock lk(mu_);
    if (!admit()) return lk.unlock(), done(Errc::kIoError);
    const std::uint64_t n = out.size() / bs_;
    if (auto e = backends::check_range(geometry(), lba, n); e != Errc::kOk)
      return lk.unlock(), done(e);
    for (std::uint64_t i = 0; i < n; ++i) {
      auto it = cache_.find(lba + i);
      const std::uint8_t* src = it != cache_.end() ? it->second.data() : &durable_[(lba + i) * bs_];
      std::memcpy(out.data() + i * bs_, src, bs_);
    }
    lk.unlock();
    done(Errc::kOk);
  }
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             backends::Completion done) override {
    std::unique_lock lk(mu_);
    if (!admit()) return lk.unlock(), done(Errc::kIoError);
    const std::uint64_t n = in.size() / bs_;
    if (auto e = backends::check_range(geometry(), lba, n); e != Errc::kOk)
      return lk.unlock(), done(e);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint8_t* src = in.data() + i * bs_;
      if (fua) {
        std::memcpy(&durable_[(lba + i) * bs_], src, bs_);
        cache_.erase(lba + i);
      } else {
        cache_[lba + i].assign(src, src + bs_);
      }
    }
    ++writes_;
    lk.unlock();
    done(Errc::kOk);
  }
  void flush(backends::Completion done) override {
    std::unique_lock lk(mu_);
    if (!admit()) return lk.unlock(), done(Errc::kIoError);
    for (auto& [b, d] : cache_) std::memcpy(&durable_[b * bs_], d.data(), bs_);
    cache_.clear();
    ++flushes_;
    lk.unlock();
    done(Errc::kOk);
  }
  void trim(std::uint64_t, std::uint64_t, backends::Completion done) override {
    done(Errc::kNotSupported);
  }
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool,
                    backends::Completion done) override {
    std::vector<std::uint8_t> z(blocks * bs_, 0);
    write(lba, z, false, std::move(done));
  }

  // The `n`-th operation from now (1-based) and all later ones fail.
  void arm(std::uint64_t n) {
    std::lock_guard lk(mu_);
    countdown_ = n;
  }
  bool dead() const {
    std::lock_guard lk(mu_);
    return dead_;
  }
  // Power loss: each cached block survives with probability 1/2; the disk works again.
  void crash(std::mt19937_64& rng) {
    std::lock_guard lk(mu_);
    for (auto& [b, d] : cache_) {
      if (rng() & 1) std::memcpy(&durable_[b * bs_], d.data(), bs_);
    }
    cache_.clear();
    dead_ = false;
    countdown_ = 0;
  }
  std::uint64_t writes() const {
    std::lock_guard lk(mu_);
    return writes_;
  }
  std::uint64_t flushes() const {
    std::lock_guard lk(mu_);
    return flushes_;
  }
  // Direct access to the durable image (corruption tests).
  std::vector<std::uint8_t>& image() { return durable_; }

 private:
  bool admit() {
    if (dead_) return false;
    if (countdown_ && --countdown_ == 0) {
      dead_ = true;
      return false;
    }
    return true;
  }
  mutable std::mutex mu_;
  std::uint32_t bs_;
  std::uint64_t blocks_;
  std::vector<std::uint8_t> durable_;
  std::map<std::uint64_t, std::vector<std::uint8_t>> cache_;
  std::uint64_t countdown_ = 0;
  bool dead_ = false;
  std::uint64_t writes_ = 0, flushes_ = 0;
};

}  // namespace ipsan::virt::testing
