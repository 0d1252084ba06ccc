// ipsan/virt/thin.h: a thin, copy-on-write pool of virtual disks, snapshots and clones on any
// Backend (dm-thin style). Format and crash-consistency argument: docs/SNAPSHOTS.md.
//
// The pool device holds two superblock slots, two checkpoint areas, a metadata log and the data
// chunks (default 64 KiB). Every volume (thin disk, read-only snapshot, writable clone) maps its
// virtual chunks through a two-level table: a vector of shared 4 KiB leaves of 512 entries. A
// snapshot or clone copies the top level only and shares the leaves (O(size / 32 MiB) pointer
// copies, no data); a write to a shared leaf copies that leaf, a write to a shared chunk copies the
// chunk (COW). Chunk reference counts count the leaves that map a chunk, so they are derived from
// the maps and rebuilt on open: a chunk can never leak or be owned twice.
//
// Durability: data is written first; the map changes are logged in memory and committed by FLUSH,
// a FUA write or any admin operation (create, snapshot, clone, rollback, delete), which (1) flush
// the device, (2) append a checksummed, sequence-numbered log entry, (3) flush again. A full log is
// folded into a checkpoint written to the inactive area, followed by a superblock flip. A chunk
// freed or unshared since the last commit is never reused or overwritten in place before the next
// commit, so the committed map always points at intact data.
//
// Threading: thread-safe. One mutex serialises metadata and data I/O (the inner device is waited
// on synchronously while it is held); volume I/O therefore runs one request at a time per pool.
// Completions run inline, before the call returns, without the mutex held.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"

namespace ipsan::virt {

struct ThinFormatOptions {
  std::uint64_t chunk_bytes = 64 * 1024;  // power of two, >= 4096, multiple of the block size
  std::uint64_t metadata_bytes = 0;       // 0: automatic (1/64 of the device, at least 1 MiB)
};

enum class ThinKind : std::uint8_t { kDisk = 1, kSnapshot = 2, kClone = 3 };
std::string_view to_string(ThinKind k) noexcept;

struct ThinVolumeInfo {
  std::string name;
  std::uint32_t id = 0;
  ThinKind kind = ThinKind::kDisk;
  std::string origin;        // snapshot: the disk it was taken of; clone: its snapshot
  std::uint64_t blocks = 0;  // virtual size in blocks
  std::uint64_t mapped_chunks = 0;
  std::uint64_t exclusive_chunks = 0;  // chunks only this volume maps (freed by deleting it)
  std::uint64_t created_seq = 0;       // metadata sequence at creation (orders snapshots)
};

struct ThinUsage {
  std::uint32_t block_size = 0;
  std::uint64_t chunk_bytes = 0;
  std::uint64_t total_chunks = 0;
  std::uint64_t used_chunks = 0;     // referenced by some map
  std::uint64_t free_chunks = 0;     // includes chunks freed since the last commit
  std::uint64_t metadata_bytes = 0;  // one checkpoint area
  std::uint64_t metadata_used = 0;   // size of the current state as a checkpoint
  std::uint64_t log_bytes = 0;
  std::uint64_t log_used = 0;
  std::uint64_t commits = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t cow_copies = 0;  // chunk copies made for copy-on-write
};

// A changed range, in blocks of the volumes.
struct ThinExtent {
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
  friend bool operator==(const ThinExtent&, const ThinExtent&) = default;
};

class ThinPool : public std::enable_shared_from_this<ThinPool> {
 public:
  static constexpr std::uint32_t kLeafEntries = 512;

  // Writes a new, empty pool on `device` (destroys what the metadata area held).
  static Result<std::shared_ptr<ThinPool>, Error> format(backends::BackendPtr device,
                                                         const ThinFormatOptions& options = {});
  // Opens an existing pool: newest valid superblock, its checkpoint, then the log replayed.
  static Result<std::shared_ptr<ThinPool>, Error> open(backends::BackendPtr device);
  // True if the first 8 KiB of `device` are all zero (never formatted) or hold a pool superblock.
  static Result<bool, Error> is_blank(backends::BackendPtr device);

  // Admin operations; each is committed (durable) when it returns. Names: 1-64 of A-Za-z0-9_-
  // (layout device names)
  Result<void, Error> create_disk(std::string_view name, std::uint64_t size_bytes);
  // Point-in-time, read-only snapshot of a disk or clone (a barrier: every write acknowledged
  // before is in it, none issued after).
  Result<void, Error> snapshot(std::string_view volume, std::string_view snapshot_name);
  // A writable clone of a snapshot.
  Result<void, Error> clone(std::string_view snapshot_name, std::string_view clone_name);
  // The disk (or clone) becomes what the snapshot holds; writes since are discarded.
  Result<void, Error> rollback(std::string_view volume, std::string_view snapshot_name);
  // Deletes any volume in any order (clones do not depend on their snapshot); space is reclaimed.
  Result<void, Error> remove(std::string_view name);

  std::vector<ThinVolumeInfo> list() const;
  Result<ThinVolumeInfo, Error> info(std::string_view name) const;
  ThinUsage usage() const;
  // Extents that differ between two volumes of the same lineage, from the maps only (chunk
  // granularity; no data is read). The range covers the larger of the two sizes.
  Result<std::vector<ThinExtent>, Error> diff(std::string_view from, std::string_view to) const;
  // Verifies the in-memory map: reference counts recomputed from the maps, free list, bounds.
  Result<void, Error> check() const;

  // A Backend for a volume (snapshots are read-only). The Backend keeps the pool alive; it fails
  // with kUnknownDevice once the volume is deleted.
  Result<backends::BackendPtr, Error> volume(std::string_view name);

  // Commits the map changes (what FLUSH does). kNoSpace if the metadata area is full.
  Errc commit();

  const backends::BackendPtr& device() const { return dev_; }
  std::string describe() const;

  // ---- internal (used by the volume Backend) ----
  struct Leaf;
  struct Volume;
  Errc vol_read(std::uint32_t id, std::uint64_t lba, std::span<std::uint8_t> out);
  Errc vol_write(std::uint32_t id, std::uint64_t lba, std::span<const std::uint8_t> in, bool fua);
  Errc vol_discard(std::uint32_t id, std::uint64_t lba, std::uint64_t blocks, bool zero);
  Errc vol_flush(std::uint32_t id);
  bool vol_info(std::uint32_t id, backends::Geometry& g, bool& read_only) const;

  ThinPool();
  ~ThinPool();

 private:
  struct State;
  Result<void, Error> load();
  Result<void, Error> admin_commit();
  Errc commit_locked();
  Errc checkpoint_locked();
  std::unique_ptr<State> s_;
  backends::BackendPtr dev_;
  mutable std::mutex mu_;
};

// Opens the pool on `device` and checks it; the message summarises what was verified.
Result<std::string, Error> check_thin_pool(backends::BackendPtr device);

}  // namespace ipsan::virt
