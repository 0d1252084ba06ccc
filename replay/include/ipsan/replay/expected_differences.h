// ipsan/replay/expected_differences.h: the trace lines at which a real server differs from the
// in-memory reference the traces were written against, by design, each with its reason
// (`ipsan replay --expected-differences FILE`; conformance/traces/server.differences is the list
// for the server layout conformance/traces/server.toml builds).
//
// File format (text, untrusted): one entry per line, `TRACE:LINE REASON...`, where TRACE is the
// trace's file name (no directory) and LINE its line number; `#` starts a comment line; blank
// lines are ignored. A line listed twice is an error.
//
// Applied to a replay report: a MISMATCH at a listed line no longer fails the run and is reported
// as an expected difference with its reason; a listed line that MATCHED makes the list stale (an
// error: the difference is gone, remove the entry); entries of traces that were not replayed are
// ignored. Errors (timeouts, transport failures) are never excused by the list.
//
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/client/trace/runner.h"

namespace ipsan::replay {

struct ExpectedDifferences {
  std::string path;                                            // for messages
  std::map<std::pair<std::string, int>, std::string> reasons;  // (trace file name, line) -> why
};

Result<ExpectedDifferences, Error> parse_expected_differences(std::string_view text,
                                                              const std::string& path);
Result<ExpectedDifferences, Error> load_expected_differences(const std::string& path);

// One line of a reconciled report.
struct ReportLine {
  client::trace::LineResult result;
  std::string reason;  // set for expected differences
};

struct ReconciledReport {
  client::trace::ReplayReport report;  // mismatched no longer counts the expected differences
  std::size_t expected = 0;
  std::vector<ReportLine> lines;   // every line, in replay order
  std::vector<std::string> stale;  // "TRACE:LINE matched (listed as: REASON)"
  bool ok() const { return report.ok() && stale.empty(); }
};

// `replayed`: the trace names (paths) that ran; only their entries are checked for staleness.
ReconciledReport reconcile(client::trace::ReplayReport report, const ExpectedDifferences& expected,
                           const std::vector<std::string>& replayed);

// The file name of a trace path ("a/b/basics.trace" -> "basics.trace").
std::string trace_file_name(std::string_view path);

}  // namespace ipsan::replay
