// ipsan/ha/chaos.h: runs a fault schedule against real `ipsan server` processes.
//
// run_chaos() starts every party (`ipsan server`, UDP, one file back end in the run directory,
// a fresh client key), puts a netem UdpProxy in front of each party (link "client-NAME"; the
// harness owns the proxies, so a link fault is a change of the proxy's impairment at that
// moment), drives a seeded write workload through a SanClient over the link to the workload
// target, and applies the schedule's events at their times on the main thread, logging each with
// its time. At the end of the window every link is healed, stopped parties continued, dead ones
// started; the workload drains, every written block is read back and checked (ledger.h), and the
// parties are stopped. The same schedule and seed give the same event times, the same netem
// random streams and the same write sequence (process timing is the operating system's).
//
// Threading: run_chaos() blocks; it runs one io_context thread of its own.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/ha/ledger.h"
#include "ipsan/ha/schedule.h"

namespace ipsan::ha {

struct ChaosOptions {
  std::string ipsan_binary;  // the `ipsan` program for the parties; empty = this program
  std::string run_dir;       // empty = a new directory under $TMPDIR (removed unless keep_dir)
  bool keep_dir = false;
  std::uint64_t seed = 1;
};

struct ChaosReport {
  WriteLedger::Verdict verdict;
  std::uint64_t events = 0;  // schedule events applied
  std::uint64_t client_logins = 0;
  std::uint64_t client_redriven = 0;
  std::uint64_t client_resent = 0;
  Duration longest_pause{};  // longest gap between acknowledgements in the window
  // For each fault that ended inside the window (restart, start, cont, end of a partition, heal):
  // time from its end to the next acknowledged write.
  std::vector<Duration> recoveries;
  std::string run_dir;
};

// Errors are harness failures (a party did not start, the read-back failed): the run proved
// nothing. A completed run returns the report; report.verdict.ok() says whether it passed.
Result<ChaosReport, Error> run_chaos(const Schedule& schedule, const ChaosOptions& options,
                                     std::ostream& log);

}  // namespace ipsan::ha
