// ipsan/backends/ram.h: an in-memory Backend (ramdisk).
//
// Memory is allocated lazily in 1 MiB chunks on first write, so a 64 GiB sparse ramdisk costs
// nothing until written; reads of never-written blocks return zeroes; trim and write_zeroes free
// whole chunks and zero partial ones. Every operation completes inline, before the call returns.
//
// Threading: all methods are thread-safe. Chunks are guarded by striped locks (chunk index modulo
// a fixed stripe count), so requests to different chunks run in parallel. A request spanning
// several chunks is not atomic as a whole (neither is a disk's).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"

namespace ipsan::backends {

struct RamOptions {
  std::uint32_t block_size = 512;  // 512 or 4096
  bool read_only = false;
};

class RamBackend final : public Backend {
 public:
  static constexpr std::uint64_t kChunkBytes = std::uint64_t{1} << 20;

  // size_bytes must be a non-zero multiple of the block size.
  static Result<std::shared_ptr<RamBackend>, Error> create(std::uint64_t size_bytes,
                                                           const RamOptions& options = {});

  Geometry geometry() const override { return geometry_; }
  Capabilities capabilities() const override;
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override;
  void flush(Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override;
  // Any size: an atomic write excludes every operation that spans more than one chunk (they take
  // a shared lock) and writes each chunk under its stripe lock after allocating all of them, so a
  // read sees all old or all new data and an allocation failure changes nothing. (RAM: nothing
  // survives a crash anyway.)
  std::uint32_t atomic_write_max_blocks() const override { return ~std::uint32_t{0}; }
  void write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                    Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    Completion done) override;

  // Bytes of chunk memory currently allocated (for tests and `ipsan probe`).
  std::uint64_t allocated_bytes() const { return allocated_chunks_.load() * kChunkBytes; }

  RamBackend(Geometry geometry, const RamOptions& options);  // use create()

 private:
  static constexpr std::size_t kStripes = 64;
  using Chunk = std::unique_ptr<std::uint8_t[]>;
  struct Stripe {
    std::mutex mu;
    std::unordered_map<std::uint64_t, Chunk> chunks;
  };

  // Zeroes [byte_offset, byte_offset + bytes), freeing chunks it covers entirely.
  void zero_range(std::uint64_t byte_offset, std::uint64_t bytes);
  // Copies `in` to byte offset `off` chunk by chunk; allocate_only: only allocates the chunks.
  Errc store(std::uint64_t off, std::span<const std::uint8_t> in, bool allocate_only);
  static bool spans_chunks(std::uint64_t off, std::uint64_t bytes) {
    return bytes != 0 && off / kChunkBytes != (off + bytes - 1) / kChunkBytes;
  }
  // Shared by operations spanning several chunks, exclusive for write_atomic().
  mutable std::shared_mutex atomic_mu_;

  const Geometry geometry_;
  const RamOptions options_;
  std::array<Stripe, kStripes> stripes_;
  std::atomic<std::uint64_t> allocated_chunks_{0};
};

}  // namespace ipsan::backends
