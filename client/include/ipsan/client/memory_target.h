// ipsan/client/memory_target.h: a GenericTarget backed by memory, for tests, traces and fuzzing.
//
// Honours the generic Op semantics (proto/generic.h): READY/CAPACITY/IDENTIFY answered from the
// device description, READ/WRITE with range checks and max_transfer_blocks (kTooLarge beyond it,
// so front ends must split), FLUSH, TRIM (zeroes; kNotSupported without kCapTrim), WRITE_ZEROES,
// read-only devices (kWriteProtected). Storage is sparse (only written blocks use memory), so
// devices of 2^40 blocks are fine. Failure injection: per op / device / LBA range, once or N times
// or forever; resize() changes the capacity and makes the next device op fail once with
// kCapacityChanged, as a server would.
//
// Threading: all methods are thread-safe. Completions run inline inside execute() unless
// set_deferred(true): then they are queued until run_pending() (to test asynchronous completion
// deterministically).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"
#include "ipsan/client/generic_target.h"

namespace ipsan::client {

class MemoryTarget : public GenericTarget {
 public:
  struct Fault {
    std::optional<proto::Op> op;             // any op when empty
    std::optional<std::uint32_t> device_id;  // any device when empty
    std::uint64_t lba = 0;                   // requests overlapping [lba, lba+blocks) fail
    std::uint64_t blocks = ~std::uint64_t{0};
    Errc error = Errc::kIoError;
    int count = 1;  // times to fire; < 0 forever
  };

  MemoryTarget() = default;

  // Adds (or replaces) a device. identity.block_size must be a power of two >= 512.
  void add_device(std::uint32_t device_id, proto::Identity identity);
  // Convenience: a writable device with FUA, FLUSH, TRIM, WRITE_ZEROES capabilities.
  static proto::Identity default_identity(std::uint64_t block_count, std::uint32_t block_size = 512,
                                          std::uint32_t max_transfer_blocks = 128);

  void execute(proto::Request request, std::function<void(proto::Reply)> done) override;

  void inject(const Fault& fault);
  void clear_faults();
  // New capacity; the next READ/WRITE/FLUSH/TRIM/WRITE_ZEROES/READY fails once with
  // kCapacityChanged.
  void resize(std::uint32_t device_id, std::uint64_t block_count);

  void set_deferred(bool deferred);
  // Runs queued completions (also those queued meanwhile); returns how many ran.
  std::size_t run_pending();

  // Every request seen, in order (WRITE data included unless set_log_data(false)).
  std::vector<proto::Request> log() const;
  void clear_log();
  void set_log_data(bool keep);

  // Direct access for checks: reads blocks without going through execute().
  Bytes peek(std::uint32_t device_id, std::uint64_t lba, std::uint32_t blocks) const;

 private:
  struct Device {
    proto::Identity identity;
    std::map<std::uint64_t, Bytes> blocks;  // absent = zeroes
    bool capacity_changed = false;
  };
  proto::Reply handle(const proto::Request& request);
  void erase_range(Device& d, std::uint64_t lba, std::uint64_t blocks);

  mutable std::mutex mu_;
  std::map<std::uint32_t, Device> devices_;
  std::vector<Fault> faults_;
  bool deferred_ = false;
  std::deque<std::function<void()>> pending_;
  std::vector<proto::Request> log_;
  bool log_data_ = true;
};

}  // namespace ipsan::client
