// ipsan/bench/loadgen.h: the load generator behind `ipsan bench`, built on the client library.
//
// Opens `sessions` SanClient sessions (each its own transport connection and login) to one server
// and keeps `queue_depth` requests in flight on each, sequential or random, reads, writes or a mix,
// for a run time or a byte count. Every completed request's latency (issue to completion, as the
// caller of SanClient::execute sees it) goes into a log-linear histogram; client CPU comes from
// getrusage, server CPU from /proc/PID/stat when the server's pid is known.
//
// Threading: run_load() runs every session on one io_context on the calling thread and returns when
// the run is over; it must not be called on a thread that runs another io_context.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "ipsan/base/clock.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"
#include "ipsan/bench/histogram.h"
#include "ipsan/client/connect.h"

namespace ipsan::bench {

enum class Pattern { kRead, kWrite, kReadWrite, kRandRead, kRandWrite, kRandReadWrite };

// "read", "write", "rw", "randread", "randwrite", "randrw" (fio's names); false otherwise.
bool parse_pattern(std::string_view text, Pattern& out);
const char* pattern_name(Pattern p);
inline bool is_random(Pattern p) {
  return p == Pattern::kRandRead || p == Pattern::kRandWrite || p == Pattern::kRandReadWrite;
}

struct LoadOptions {
  client::TransportOptions transport;
  std::string client_name = "default";
  Key256 key{};
  std::uint32_t device_id = 0;

  Pattern pattern = Pattern::kRandRead;
  std::uint32_t read_percent = 70;   // rw / randrw only
  std::uint32_t block_bytes = 4096;  // per request; a multiple of the device block size
  std::uint32_t queue_depth = 1;     // per session
  std::uint32_t sessions = 1;
  Duration runtime = std::chrono::seconds(10);  // 0: until `bytes`
  std::uint64_t bytes = 0;                      // 0: until `runtime`; else stop after this many
  std::uint64_t offset_bytes = 0;               // region on the device
  std::uint64_t size_bytes = 0;                 // 0: to the end of the device
  std::uint64_t seed = 1;
  Duration request_timeout = std::chrono::seconds(30);
  Duration progress_interval{};   // > 0: call `progress` this often
  std::optional<int> server_pid;  // read its CPU time from /proc
};

struct LoadResult {
  std::uint64_t reads = 0, writes = 0, errors = 0;
  std::uint64_t bytes_read = 0, bytes_written = 0;
  std::uint64_t issued = 0;
  double seconds = 0;        // first issue to last completion
  double client_cpu_s = 0;   // user + system of the load generator's thread(s)
  double server_cpu_s = -1;  // user + system of --server-pid (or the embedded server); -1: n/a
  std::uint64_t retransmissions = 0;
  std::uint64_t resent = 0;
  std::uint32_t device_block_size = 0;
  std::uint64_t device_blocks = 0;
  std::string first_error;  // empty when errors == 0
  Histogram latency;        // nanoseconds, all completed requests
  Histogram read_latency;
  Histogram write_latency;

  std::uint64_t ops() const { return reads + writes; }
  double iops() const { return seconds > 0 ? static_cast<double>(ops()) / seconds : 0; }
  double mb_per_s() const {  // 10^6 bytes per second, as fio prints MB/s
    return seconds > 0 ? static_cast<double>(bytes_read + bytes_written) / seconds / 1e6 : 0;
  }
};

struct Progress {
  double seconds = 0;
  std::uint64_t ops = 0;
  std::uint64_t bytes = 0;
  double iops_now = 0;  // over the last interval
  double mb_per_s_now = 0;
};

// Runs the load. Errors before the run starts (cannot resolve, cannot log in, bad region) come
// back as Error; request failures during the run are counted in LoadResult::errors.
Result<LoadResult, Error> run_load(const LoadOptions& options,
                                   const std::function<void(const Progress&)>& progress = {});

// CPU seconds (user + system) of process `pid` from /proc/PID/stat; nullopt if unreadable.
std::optional<double> process_cpu_seconds(int pid);
// Parses the text of a /proc/PID/stat file (exposed for tests): utime + stime in clock ticks.
std::optional<std::uint64_t> parse_proc_stat_ticks(std::string_view stat);

}  // namespace ipsan::bench
