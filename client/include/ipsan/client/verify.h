// ipsan/client/verify.h: write a seeded pattern over a range, read it back and check every byte
// (ipsan client verify, the demo, and the integration tests share this).
//
// Blocks carry base/pattern.h content for (seed, lba, generation), so a later reader (even another
// process) can check them without a copy. I/O is kept `queue_depth` requests deep.
// Threading: call and complete on the target's thread (SanClient: its io_context thread).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ipsan/base/clock.h"
#include "ipsan/client/generic_target.h"

namespace ipsan::client {

struct VerifyOptions {
  std::uint32_t device_id = 0;
  std::uint32_t block_size = 512;
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;         // range length
  std::uint32_t io_blocks = 256;    // blocks per request
  std::uint32_t queue_depth = 8;
  std::uint64_t seed = 1;
  std::uint64_t generation = 0;
  bool write = true;   // write phase (then FLUSH)
  bool read = true;    // read-and-check phase
  bool fua = false;
  // Called on the target's thread after every completed request: the phase (true: writing), the
  // bytes done in it and its total (the progress line of `ipsan client verify --progress`).
  std::function<void(bool writing, std::uint64_t done, std::uint64_t total)> on_progress;
};

struct VerifyResult {
  Errc status = Errc::kOk;  // first request error, if any
  std::string error;        // human-readable detail for status
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_read = 0;
  Duration write_time{};
  Duration read_time{};
  std::uint64_t bad_blocks = 0;
  std::uint64_t first_bad_lba = 0;
  bool ok() const { return status == Errc::kOk && bad_blocks == 0; }
  std::string summary() const;  // "write 256 MiB in 0.41 s (624 MiB/s); read ...; 0 bad blocks"
};

void run_verify(GenericTarget& target, const VerifyOptions& options,
                std::function<void(VerifyResult)> done);

}  // namespace ipsan::client
