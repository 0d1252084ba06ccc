// conformance/rudp/workload.h: the seeded storage workload of the reliable-udp conformance suite,
// the model of what every block must hold, and an asynchronous runner that drives it through any
// GenericTarget (a SanClient) and checks every read against the model.
//
// The workload (kind, LBA, length, generation, FUA of every op, and their order) is a pure
// function of WorkloadOptions (above all the seed): make_workload() draws everything from one
// ipsan::Rng and digest() fingerprints the list so a log line proves two runs issued the same ops.
// Write data is base/pattern.h content for (seed, lba, generation); the generation of a write is
// its op index + 1, so every write carries distinct bytes and a block read back tells which write
// it came from (a stale generation = a lost write or an old write applied again; a bad header =
// corruption or a misplaced block).
//
// Ordering rule that keeps the model exact under any timing: ops are issued strictly in list
// order, up to queue_depth at once, and an op that overlaps an in-flight op (when either of them
// writes) waits until that op completes. So every read has exactly one correct answer and the
// final content is a function of the seed alone, however the network reorders completions.
//
// Threading: Runner and verify_all run on the target's thread (the SanClient's io_context); the
// rest are pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/errc.h"
#include "ipsan/client/generic_target.h"

namespace ipsan::conformance {

struct WorkloadOptions {
  std::uint64_t seed = 1;
  std::uint32_t block_size = 512;
  std::uint64_t device_blocks = 8192;      // 4 MiB of 512-byte blocks
  std::uint64_t write_bytes = 8ull << 20;  // the workload ends once this much is written
  std::uint32_t read_percent = 25;         // of ops
  std::uint32_t flush_percent = 3;         // of ops
  std::uint32_t fua_percent = 5;           // of writes
  std::uint32_t overwrite_percent = 40;    // writes aimed at a recently written range
  std::uint32_t max_io_blocks = 2048;      // 1 MiB with 512-byte blocks
  std::uint32_t min_io_blocks = 1;         // READ/WRITE length drawn in [min, max]
};

enum class OpKind : std::uint8_t { kWrite, kRead, kFlush };

struct WorkOp {
  OpKind kind = OpKind::kWrite;
  std::uint64_t lba = 0;
  std::uint32_t blocks = 0;
  std::uint64_t generation = 0;  // writes: op index + 1
  bool fua = false;
};

std::vector<WorkOp> make_workload(const WorkloadOptions& options);
// FNV-1a over every field of every op.
std::uint64_t digest(const std::vector<WorkOp>& ops);
// "ops=1234 writes=... reads=... flushes=... written=8.0MiB digest=0x..."; the first `show` ops
// follow one per line ("  #0 write lba=17 blocks=8 gen=1").
std::string describe(const std::vector<WorkOp>& ops, std::uint32_t block_size, std::size_t show);

// Expected content of each block: the generation of the last acknowledged write (0 = never
// written: zeroes). A write that failed with an unknown fate (timeout) leaves the block
// "uncertain": any of the listed generations is acceptable until the next acknowledged write.
class Model {
 public:
  Model(std::uint64_t seed, std::uint32_t block_size, std::uint64_t blocks);
  void acknowledged(const WorkOp& w);
  void unknown_fate(const WorkOp& w);
  std::uint64_t generation(std::uint64_t lba) const { return gen_[lba]; }
  // Empty when `block` is an acceptable content of `lba`, else a diagnosis such as
  // "lba 17: holds generation 3 of lba 17, expected generation 9 (stale: lost or replayed write)".
  std::string check(std::uint64_t lba, ByteSpan block) const;
  std::uint64_t blocks() const { return gen_.size(); }
  std::uint64_t seed() const { return seed_; }
  std::uint32_t block_size() const { return block_size_; }

 private:
  bool matches(std::uint64_t lba, std::uint64_t gen, ByteSpan block) const;
  std::uint64_t seed_;
  std::uint32_t block_size_;
  std::vector<std::uint64_t> gen_;
  std::map<std::uint64_t, std::vector<std::uint64_t>> uncertain_;  // lba -> other candidates
};

// Builds the WRITE request of a write op (pattern data).
Bytes pattern_data(const WorkOp& w, std::uint64_t seed, std::uint32_t block_size);

struct RunOptions {
  std::uint32_t device_id = 0;
  std::uint32_t queue_depth = 16;
  // Timeouts are expected (partition longer than the request timeout): a timed-out write makes
  // its blocks uncertain instead of failing the run.
  bool allow_timeouts = false;
  // Called when a write is acknowledged, before the model is updated: `previous` is the
  // generation the op's first block held until now (0 if none). The conformance test injects a
  // late duplicate of that older write here.
  std::function<void(const WorkOp& op, std::uint64_t previous)> on_write_acked;
};

struct RunReport {
  std::size_t ops_done = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t failures_total = 0;
  std::vector<std::string> failures;  // the first few, with details
  Duration elapsed{};
  std::vector<Duration> latencies;  // per op, issue to completion
  void fail(std::string what);
  bool ok() const { return failures_total == 0; }
};

// Runs `ops` against `target`; `done` is called once with the report.
class Runner : public std::enable_shared_from_this<Runner> {
 public:
  static std::shared_ptr<Runner> start(client::GenericTarget& target, std::vector<WorkOp> ops,
                                       Model& model, RunOptions options,
                                       std::function<void(RunReport)> done);

  std::size_t issued() const { return next_; }
  std::size_t in_flight() const { return active_.size(); }

  Runner(client::GenericTarget& target, std::vector<WorkOp> ops, Model& model, RunOptions options,
         std::function<void(RunReport)> done);  // use start()

 private:
  void pump();
  bool conflicts(const WorkOp& op) const;
  void issue(std::size_t index);
  void completed(std::size_t index, TimePoint issued, proto::Reply reply);

  client::GenericTarget& target_;
  std::vector<WorkOp> ops_;
  Model& model_;
  RunOptions opt_;
  std::function<void(RunReport)> done_;
  std::map<std::size_t, WorkOp> active_;
  std::size_t next_ = 0;
  std::size_t completed_ = 0;
  TimePoint start_{};
  RunReport report_;
  bool finished_ = false;
};

// Reads the whole device (io_blocks per request, queue_depth deep) and checks every block against
// the model; failures go into the report.
void verify_all(client::GenericTarget& target, const Model& model, std::uint32_t device_id,
                std::uint32_t io_blocks, std::uint32_t queue_depth,
                std::function<void(RunReport)> done);

}  // namespace ipsan::conformance
