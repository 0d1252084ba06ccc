// ipsan/virt/mirror.h: a synchronous mirror (RAID 1) of N legs, any Backends, with a persistent
// write-intent bitmap (md raid1 / DRBD style). Format and argument: docs/MIRROR.md.
//
// Writes (and trims, write-zeroes) go to every leg that is not failed and are acknowledged when
// they are done on every such leg; the write succeeds if at least one in-sync leg took it. A leg
// whose write fails is taken out (failed, persisted before the write is acknowledged), and the
// disk stays online, degraded. Reads go to the in-sync legs, round robin; a failed read is retried
// on another in-sync leg.
//
// The bitmap (on its own small back end) has one bit per region (default 1 MiB) per leg. Before a
// write is issued, the bits of its regions are set for every leg and written durably (group
// commit: one bitmap write covers every request waiting for it); they are cleared lazily by
// checkpoint(), after a flush of the legs, once a region has been idle for a whole period, for
// the legs that took the writes. A leg that is failed or still syncing keeps
// its bits ("stale" regions). So after a crash every region where legs may differ has its bit set
// somewhere: open() takes the first in-sync leg as the truth and resynchronises the others there.
// Resynchronisation (resync_step) copies only stale regions, one region at a time, while I/O
// continues (writes to the region being copied wait for it; the others go on). A new leg is stale
// everywhere (full initial sync). verify_step compares legs region by region and optionally repairs
// them from the first in-sync leg.
//
// Threading: thread-safe. Data-path completions run on the legs' threads (or inline);
// resync_step, verify_step, add/remove and open block the calling thread (call them from a job
// thread or the admin thread, never from a leg's completion).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"
#include "ipsan/virt/virtual_disk.h"

namespace ipsan::virt {

struct MirrorOptions {
  std::uint64_t region_bytes = 1024 * 1024;  // bitmap granularity; multiple of the block size
  std::uint64_t blocks = 0;                  // mirror size; 0: the first leg's size
};

enum class LegState : std::uint8_t { kInSync = 1, kSyncing = 2, kFailed = 3 };
std::string_view to_string(LegState s) noexcept;

struct LegStatus {
  std::string name;
  std::string describe;
  LegState state = LegState::kInSync;
  std::uint64_t stale_regions = 0;  // regions to copy to this leg
  std::uint64_t errors = 0;         // I/O errors seen on this leg
};

struct MirrorStats {
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;  // writes, trims and write-zeroes
  std::uint64_t read_retries = 0;
  std::uint64_t bitmap_writes = 0;         // bitmap page writes (set and clear)
  std::uint64_t resync_regions = 0;        // regions copied by resync_step
  std::uint64_t resync_bytes = 0;          // bytes written to legs by resync_step
  std::uint64_t verify_regions = 0;        // regions compared by verify_step
  std::uint64_t verify_mismatches = 0;     // regions found different
  std::uint64_t verify_repairs = 0;        // regions rewritten by verify_step
};

struct MirrorStatus {
  std::string name;
  std::uint32_t block_size = 0;
  std::uint64_t blocks = 0;
  std::uint64_t region_bytes = 0;
  std::uint64_t regions = 0;
  bool degraded = false;            // a leg is failed or syncing
  std::uint64_t stale_regions = 0;  // regions stale on some leg that is not failed
  std::vector<LegStatus> legs;
  MirrorStats stats;
};

struct VerifyReport {
  std::uint64_t regions_checked = 0;
  std::uint64_t mismatched_regions = 0;
  std::uint64_t repaired_regions = 0;
  std::vector<std::uint64_t> mismatches;  // first 64 mismatching region indexes
};

class MirrorDisk final : public backends::Backend,
                         public std::enable_shared_from_this<MirrorDisk> {
 public:
  static constexpr std::uint32_t kMaxLegs = 8;
  static constexpr std::uint64_t kPageBytes = 4096;

  // Opens (or, when `bitmap` is blank, formats) the mirror. Legs are matched with the bitmap's
  // legs by name: a leg the bitmap does not know is new and gets a full sync; a leg the bitmap
  // knows but `legs` does not name is dropped. Errors: fewer than 1 or more than kMaxLegs legs, a
  // leg smaller than the mirror or with another block size, a bitmap device too small (the message
  // says how large it must be), a bitmap written for another size or region, no in-sync leg.
  static Result<std::shared_ptr<MirrorDisk>, Error> open(std::string name, std::vector<Member> legs,
                                                         backends::BackendPtr bitmap,
                                                         const MirrorOptions& options = {});
  // Bytes a bitmap device needs for a mirror of `blocks` blocks of `block_size`.
  static std::uint64_t bitmap_bytes_needed(std::uint64_t blocks, std::uint32_t block_size,
                                           std::uint64_t region_bytes);

  backends::Geometry geometry() const override { return geometry_; }
  backends::Capabilities capabilities() const override;
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, backends::Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             backends::Completion done) override;
  void flush(backends::Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, backends::Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    backends::Completion done) override;

  // ---- management (blocking) ----
  MirrorStatus status() const;
  std::vector<std::string> leg_names() const;
  // Adds a leg (stale everywhere: a full sync by resync_step).
  Result<void, Error> add_leg(Member leg);
  // Removes a leg; the last in-sync leg cannot be removed.
  Result<void, Error> remove_leg(std::string_view name);
  // Takes a leg out as if it had failed (maintenance, tests). It stays out until
  // reattach_failed(true) (or a restart of the server).
  Result<void, Error> offline_leg(std::string_view name);
  // Failed legs that answer a read of their first block again become syncing (their stale regions
  // are copied by resync_step); legs taken out by offline_leg only when `include_offline`.
  // Returns how many came back.
  std::uint64_t reattach_failed(bool include_offline = false);
  // Copies up to `max_regions` stale regions to the legs that need them. Returns how many regions
  // were copied (0: nothing left to copy, and every syncing leg is now in sync), or an error when
  // no in-sync leg is left or reading it fails.
  Result<std::uint64_t, Error> resync_step(std::uint64_t max_regions);
  // Compares regions [*cursor, *cursor + max_regions) of every in-sync leg (and every syncing leg
  // where it is not stale) with the first in-sync leg; repairs differences when `repair`.
  // Advances *cursor; returns false when the end was reached.
  Result<bool, Error> verify_step(std::uint64_t* cursor, std::uint64_t max_regions, bool repair,
                                  VerifyReport& report);
  // Flushes the legs and clears the bits of regions idle since the previous checkpoint (so two
  // checkpoints with no write between clear every bit of an in-sync mirror), writes the bitmap.
  // The server's monitor calls it every 2 s while a mirror is written (md's bitmap daemon).
  Errc checkpoint();

  const std::string& name() const { return name_; }
  std::uint64_t regions() const { return regions_; }
  std::uint64_t region_blocks() const { return region_blocks_; }

  MirrorDisk();  // use open()
  ~MirrorDisk() override;
  struct Req;

 private:
  struct Leg {
    bool present = false;
    std::string name;
    backends::BackendPtr backend;
    LegState state = LegState::kInSync;
    std::uint64_t gen = 0;                // changes when the slot is reused
    std::vector<std::uint64_t> bits;      // in memory (what should be on disk)
    std::vector<std::uint64_t> disk_bits; // what the last completed bitmap write holds
    std::vector<std::uint64_t> stale;     // regions that differ from the truth
    std::uint64_t stale_count = 0;
    std::uint64_t errors = 0;
    bool held = false;  // taken out by offline_leg
  };  // work to run after the lock is released

  // Bit helpers (mu_ held).
  static bool test(const std::vector<std::uint64_t>& v, std::uint64_t r) {
    return (v[r / 64] >> (r % 64)) & 1u;
  }
  void set_bit(std::uint32_t leg, std::uint64_t r);
  void clear_bit(std::uint32_t leg, std::uint64_t r);
  void set_stale(std::uint32_t leg, std::uint64_t r);
  void clear_stale(std::uint32_t leg, std::uint64_t r);

  void submit(std::shared_ptr<Req> req);
  // Sets the intent bits of `req`; true if they are on disk and no region is being resynced.
  bool prepare(Req& req);
  // Starts what can start (mu_ held); fills `starts` and may start a bitmap commit.
  void pump(std::vector<std::shared_ptr<Req>>& starts, bool& commit);
  void start(std::shared_ptr<Req> req);          // issues to legs (mu_ not held)
  void leg_done(const std::shared_ptr<Req>& req, std::uint32_t leg, Errc e);
  void finish(const std::shared_ptr<Req>& req);  // all legs answered
  void read_from(std::shared_ptr<Req> req);
  void commit_bitmap();  // issues the dirty pages (mu_ not held)
  void flush_impl(backends::Completion done, bool clear);
  void run(std::vector<std::shared_ptr<Req>>& starts, bool commit);
  Errc write_header_sync();
  Errc write_all_pages_sync(std::uint32_t leg);
  int first_in_sync() const;
  std::uint64_t page_offset(std::uint32_t leg, std::uint64_t page) const;
  void mark_dirty(std::uint32_t leg, std::uint64_t r);
  Result<void, Error> load(std::vector<Member> legs);

  std::string name_;
  backends::Geometry geometry_;
  backends::BackendPtr bitmap_;
  std::uint64_t region_bytes_ = 0;
  std::uint64_t region_blocks_ = 0;
  std::uint64_t regions_ = 0;
  std::uint64_t words_ = 0;      // 64-bit words per leg bitmap
  std::uint64_t area_bytes_ = 0; // bitmap area per leg on the device

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Leg legs_[kMaxLegs];
  std::uint64_t header_seq_ = 0;
  std::vector<std::uint32_t> inflight_;  // per region
  std::vector<std::uint32_t> epoch_;     // per region, bumped by each write
  std::vector<std::uint64_t> touched_;   // regions written since the last checkpoint
  std::vector<bool> touched_flag_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> aging_;  // touched before the last checkpoint
  std::uint64_t exclusive_ = UINT64_MAX; // region being resynced or verified
  std::deque<std::shared_ptr<Req>> waiting_;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> dirty_pages_;  // (leg, page)
  std::vector<std::vector<bool>> dirty_flag_;                        // per leg, per page
  bool commit_inflight_ = false;
  std::uint32_t rr_ = 0;        // read round robin
  std::uint64_t resync_cursor_ = 0;
  MirrorStats stats_;
  std::mutex header_mu_;        // serialises header writes
};

}  // namespace ipsan::virt
