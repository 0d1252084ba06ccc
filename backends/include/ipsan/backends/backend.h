// ipsan/backends/backend.h: the one storage seam. Everything that stores blocks is a Backend:
// ram, file/block device, SG_IO SCSI, ATA pass-through, and (in server/) the virtualization layer
// and storage services, which are Backends that wrap Backends so they stack (nbdkit filters).
//
// Operations are asynchronous. Threading rules:
//  - Any method may be called from any thread; implementations are thread-safe.
//  - The completion runs exactly once, either inline (before the call returns) or on a back-end
//    worker thread. Callers must handle both and must not hold locks the completion needs.
//  - Buffers passed to read/write must stay valid until the completion runs.
//  - Ranges are in blocks of geometry().block_size; a range past the end completes with
//    Errc::kLbaOutOfRange without touching data.
// Backends know nothing of the network.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ipsan/base/errc.h"

namespace ipsan::backends {

struct Geometry {
  std::uint32_t block_size = 512;
  std::uint64_t block_count = 0;
  std::uint64_t size_bytes() const { return std::uint64_t{block_size} * block_count; }
};

struct Capabilities {
  bool read_only = false;
  bool fua = true;            // honours per-write FUA natively (else emulated with flush)
  bool flush = true;          // has a volatile cache that flush() empties
  bool trim = false;
  bool write_zeroes = true;
  bool rotational = false;
  std::uint32_t max_transfer_blocks = 0;  // 0: no limit of its own
};

using Completion = std::function<void(Errc)>;

// The five operations, for logs, traces and test doubles.
enum class OpKind { kRead, kWrite, kFlush, kTrim, kWriteZeroes };
// "read", "write", "flush", "trim", "write-zeroes".
std::string_view to_string(OpKind op) noexcept;

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Geometry geometry() const = 0;
  virtual Capabilities capabilities() const = 0;
  // One line for logs and `ipsan probe`, e.g. "ram:64MiB/512" or "file:/tmp/x.img".
  virtual std::string describe() const = 0;

  // out.size() must be a multiple of the block size.
  virtual void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) = 0;
  // fua: the data is durable when `done` reports kOk.
  virtual void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua, Completion done) = 0;
  // Every write completed before flush() was called is durable when `done` reports kOk.
  virtual void flush(Completion done) = 0;
  virtual void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) = 0;
  virtual void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim, Completion done) = 0;

  // Atomic writes (SCSI WRITE ATOMIC): the largest write, in blocks, that write_atomic() applies
  // all or nothing with respect to concurrent reads and writes of this back end (0: none;
  // UINT32_MAX: any size). Not in Capabilities on purpose: a wrapper back end that does not
  // override both methods reports none, so it never claims an atomicity it does not provide.
  virtual std::uint32_t atomic_write_max_blocks() const { return 0; }
  // Like write(), applied all or nothing: a concurrent read sees all old or all new data, and no
  // concurrent write interleaves with it. What survives a crash is per back end (docs/PROTOCOL.md).
  virtual void write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                            Completion done) {
    (void)lba;
    (void)in;
    (void)fua;
    done(Errc::kNotSupported);
  }
};

using BackendPtr = std::shared_ptr<Backend>;

// Range check shared by implementations: kOk, kLbaOutOfRange or kInvalidArgument.
inline Errc check_range(const Geometry& g, std::uint64_t lba, std::uint64_t blocks) {
  if (blocks > g.block_count || lba > g.block_count - blocks) return Errc::kLbaOutOfRange;
  return Errc::kOk;
}

}  // namespace ipsan::backends
