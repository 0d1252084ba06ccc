// ipsan/backends/file.h: a Backend on a regular file (sparse image) or a block device.
//
// I/O runs with pread/pwrite on a small pool of worker threads owned by the backend, so the
// caller's event loop never blocks; completions run on a worker thread. FUA uses pwritev2 with
// RWF_DSYNC (falling back to fdatasync after the write); flush is fdatasync; trim punches holes
// (BLKDISCARD on block devices); write_zeroes uses fallocate ZERO_RANGE (BLKZEROOUT on block
// devices) or writes zeroes. Optional O_DIRECT through aligned bounce buffers.
//
// Threading: all methods are thread-safe. The destructor stops accepting work, lets the workers
// finish every queued operation (all completions run) and joins them. Dropping the last reference
// from inside a completion is allowed: that worker is detached and finishes the queue itself.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"

namespace ipsan::backends {

struct FileOptions {
  std::uint32_t block_size = 512;  // 512 or 4096
  // Regular files: create a sparse file of this size if missing; grow a smaller existing file
  // (sparse) to it; an existing larger file is an error (nothing is ever truncated).
  // 0: the file must exist and its size (a multiple of block_size) is used.
  // Block devices: 0 or exactly the device size.
  std::uint64_t size_bytes = 0;
  bool read_only = false;
  bool direct = false;   // O_DIRECT with aligned bounce buffers
  unsigned threads = 4;  // worker threads, 1..64
};

namespace detail {
struct FileState;
}

class FileBackend final : public Backend {
 public:
  static Result<std::shared_ptr<FileBackend>, Error> open(const std::filesystem::path& path,
                                                          const FileOptions& options = {});
  ~FileBackend() override;
  FileBackend(const FileBackend&) = delete;
  FileBackend& operator=(const FileBackend&) = delete;

  Geometry geometry() const override;
  Capabilities capabilities() const override;
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override;
  void flush(Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    Completion done) override;
  // Atomic writes of any size. Against concurrent I/O through this back end: every operation
  // holds a shared lock on the device while it runs, an atomic write an exclusive one. Across a
  // crash: only when the kernel and file system offer RWF_ATOMIC for the write (O_DIRECT, a
  // power-of-two length within statx's atomic write unit, naturally aligned;
  // atomic_write_unit_bytes()) is it all or nothing after a power loss too; otherwise it is one
  // pwrite, which a power loss (or a kill during it) can leave torn, as a plain WRITE.
  std::uint32_t atomic_write_max_blocks() const override { return ~std::uint32_t{0}; }
  void write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                    Completion done) override;
  // The RWF_ATOMIC unit the kernel reports for this file (statx STATX_WRITE_ATOMIC), in bytes;
  // {0, 0} if none (or not opened O_DIRECT).
  std::pair<std::uint32_t, std::uint32_t> atomic_write_unit_bytes() const;

  bool is_block_device() const;

  explicit FileBackend(std::shared_ptr<detail::FileState> state);  // use open()

 private:
  std::shared_ptr<detail::FileState> st_;
  std::vector<std::thread> workers_;
};

// Maps an errno value from a failed I/O call to the data-path error.
Errc errc_from_errno(int err) noexcept;

}  // namespace ipsan::backends
