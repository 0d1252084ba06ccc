// ipsan/backends/fault.h: FaultInjectingBackend, a test wrapper around any Backend.
//
// It counts and logs every operation, fails chosen operations with a chosen Errc (the Nth
// operation, or any operation touching an LBA range) without passing them to the inner backend,
// and can hold completions until the test releases them (to test out-of-order completion).
//
// Threading: thread-safe. Completions run on the thread where the inner backend completes, or on
// the thread calling release()/release_all() for held ones, or inline for injected failures
// (unless held). No lock is held while a completion runs. The wrapper must outlive the operations
// in flight through it (tests own it with a shared_ptr and release held completions first).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ipsan/backends/backend.h"

namespace ipsan::backends {

class FaultInjectingBackend final : public Backend {
 public:
  struct OpRecord {
    OpKind op;
    std::uint64_t lba = 0;
    std::uint64_t blocks = 0;
    bool fua = false;
    Errc injected = Errc::kOk;  // kOk: passed to the inner backend
  };

  explicit FaultInjectingBackend(BackendPtr inner, std::string name = "fault");

  Geometry geometry() const override { return inner_->geometry(); }
  Capabilities capabilities() const override { return inner_->capabilities(); }
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override;
  void flush(Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    Completion done) override;

  // The nth matching operation from now (1-based; of kind `op`, or of any kind) fails once.
  void fail_nth(std::uint64_t n, Errc error, std::optional<OpKind> op = std::nullopt);
  // Every operation (of kind `op`, or any data op) overlapping [lba, lba + blocks) fails.
  // Flush has no range and is never matched by a range rule.
  void fail_range(std::uint64_t lba, std::uint64_t blocks, Errc error,
                  std::optional<OpKind> op = std::nullopt);
  void clear_faults();

  // While holding, completions (real or injected) are queued instead of run.
  void set_hold(bool hold);
  std::size_t held() const;
  // Runs the held completion at `index` (0 = oldest); false if there is none.
  bool release(std::size_t index = 0);
  void release_all();

  std::uint64_t count(OpKind op) const;
  std::uint64_t total_ops() const;
  std::vector<OpRecord> log() const;
  void clear_log();

  const BackendPtr& inner() const { return inner_; }

 private:
  struct Rule {
    std::optional<OpKind> op;
    std::uint64_t remaining = 0;  // nth rule: matching ops still to skip + 1; 0 for range rules
    bool range = false;
    std::uint64_t lba = 0;
    std::uint64_t blocks = 0;
    Errc error = Errc::kIoError;
  };
  struct Held {
    Completion done;
    Errc result;
  };

  // Records the op and returns the injected error (kOk: pass through).
  Errc admit(OpKind op, std::uint64_t lba, std::uint64_t blocks, bool fua);
  // Either runs `done(e)` or queues it when holding.
  void finish(Completion done, Errc e);
  Completion wrap(Completion done);

  BackendPtr inner_;
  std::string name_;
  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  std::vector<OpRecord> log_;
  std::uint64_t counts_[5] = {};
  bool hold_ = false;
  std::deque<Held> held_;
};

}  // namespace ipsan::backends
