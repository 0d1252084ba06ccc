// ipsan/ha/ledger.h: the chaos workload's record of every write, and the check after the run.
//
// Every write has a unique id (1, 2, ...) and covers one 4 KiB block with a pattern that names
// the seed, the block and the id (the rest is a PRNG fill of (seed, block, id)), so the content of
// a block says exactly which write put it there. The workload never has two writes to one block
// in flight at once, so per block the writes are ordered. After the run each block must hold:
//   - the last ACKNOWLEDGED write to it, or a later write whose fate is unknown (it failed or
//     timed out: it may or may not have been applied); zeros only if no write was acknowledged.
// Anything else is a violation: an older write's content means an acknowledged write was lost
// or an older write was applied again after a newer one (both break exactly-once), a pattern that
// does not verify means a torn or corrupted block.
//
// Threading: none; one owner.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "ipsan/base/bytes.h"

namespace ipsan::ha {

inline constexpr std::uint32_t kBlockSize = 4096;

class WriteLedger {
 public:
  explicit WriteLedger(std::uint64_t seed) : seed_(seed) {}

  // The 4 KiB content of write `id` to `block`.
  Bytes pattern(std::uint64_t block, std::uint64_t id) const;

  // A new write to `block` (returns its id); the block must not be busy.
  std::uint64_t issue(std::uint64_t block);
  bool busy(std::uint64_t block) const;
  void acknowledged(std::uint64_t block, std::uint64_t id);
  // Failed, timed out, refused: the write may or may not have been applied.
  void unknown(std::uint64_t block, std::uint64_t id);

  struct Verdict {
    std::uint64_t blocks_checked = 0;
    std::uint64_t acknowledged = 0;     // writes acknowledged during the run
    std::uint64_t unknown = 0;          // writes with an unknown fate
    std::uint64_t unknown_landed = 0;   // blocks holding a write of unknown fate (allowed)
    std::uint64_t lost = 0;             // blocks missing their last acknowledged write
    std::uint64_t corrupt = 0;          // blocks whose content is no write of ours
    std::vector<std::string> problems;  // the first few, for a person
    bool ok() const { return lost == 0 && corrupt == 0; }
  };
  // The blocks written at least once, in ascending order (what check() must be given).
  std::vector<std::uint64_t> written_blocks() const;
  // Checks one block's content after the run; accumulates into `v`.
  void check(std::uint64_t block, ByteSpan content, Verdict& v) const;
  // Totals (acknowledged / unknown) into `v`; call once.
  void totals(Verdict& v) const;

 private:
  struct BlockState {
    std::uint64_t last_acked = 0;            // 0 = none
    std::vector<std::uint64_t> after_acked;  // ids issued after last_acked with unknown fate
    std::uint64_t in_flight = 0;             // 0 = none
  };
  std::uint64_t seed_;
  std::uint64_t next_id_ = 1;
  std::uint64_t acked_ = 0;
  std::uint64_t unknown_ = 0;
  std::unordered_map<std::uint64_t, BlockState> blocks_;
};

}  // namespace ipsan::ha
