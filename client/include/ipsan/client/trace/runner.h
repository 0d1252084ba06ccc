// ipsan/client/trace/runner.h: replays parsed traces against a scsi::Bus and compares every
// outcome with the trace's expectations; record mode returns the observed outcomes as new traces
// (same format). This is what `ipsan replay TRACE... [--record OUT]` calls.
//
// Usage:
//   scsi::Bus bus; bus.add_server("a", target); bus.map({0, 0, "a", 1});
//   bus.attach_all_and_wait();
//   ReplayReport report = run_traces(traces, bus, ReplayOptions{});
//   print_report(std::cout, report, /*verbose=*/false);
//   return report.ok() ? 0 : 1;
//
// Threading: run_traces() blocks the calling thread; commands run one at a time and their
// completions may arrive on any thread. Do not call it from the GenericTarget's completion thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/client/memory_target.h"
#include "ipsan/client/scsi/bus.h"
#include "ipsan/client/trace/trace.h"

namespace ipsan::client::trace {

struct ReplayOptions {
  // Logical unit reset (unit attention 29h/00h pending) before each trace, so every trace starts
  // the same way whatever ran before it.
  bool reset_between_traces = true;
  // Build ReplayReport::recorded.
  bool record = false;
  // Record mode: data-in up to this many bytes is written as hex, longer as crc32c.
  std::size_t max_inline_bytes = 64;
  // Per-command completion timeout.
  int timeout_ms = 30000;
  // Executes `fault` lines (e.g. MemoryTarget failure injection); without it they are skipped.
  std::function<Result<void, Error>(const Command&)> fault_hook;
};

enum class Outcome { kMatch, kMismatch, kError, kSkipped };
const char* outcome_name(Outcome o);

struct LineResult {
  std::string trace;
  int line = 0;
  Outcome outcome = Outcome::kMatch;
  std::string detail;  // mismatch: expected vs actual; error: what went wrong
};

struct ReplayReport {
  std::size_t matched = 0;
  std::size_t mismatched = 0;
  std::size_t errors = 0;
  std::size_t skipped = 0;
  std::vector<LineResult> lines;
  std::vector<Trace> recorded;  // record mode: one per input trace
  bool ok() const { return mismatched == 0 && errors == 0; }
};

ReplayReport run_traces(const std::vector<Trace>& traces, scsi::Bus& bus,
                        const ReplayOptions& options);

// A ReplayOptions::fault_hook for buses whose servers are MemoryTargets (`servers`: the names
// given to Bus::add_server). Fault lines (docs/TRACES.md):
//   fault lun=L errc=NAME [op=read|write|flush|trim|write-zeroes|ready|capacity|identify]
//         [lba=N] [blocks=N] [count=N|forever]     inject into the LUN's device (default count 1)
//   fault lun=L resize=BLOCKS                       change the capacity (next op: capacity-changed)
//   fault lun=L clear=all                           remove injected faults of that server
std::function<Result<void, Error>(const Command&)> memory_target_fault_hook(
    scsi::Bus& bus, std::map<std::string, MemoryTarget*> servers);

// One line per mismatch/error (all lines when verbose) and a summary line.
void print_report(std::ostream& os, const ReplayReport& report, bool verbose);

}  // namespace ipsan::client::trace
