// Expected differences of a trace replay against a real server (expected_differences.h).
#include "ipsan/replay/expected_differences.h"

#include <cctype>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "ipsan/base/log.h"

namespace ipsan::replay {

std::string trace_file_name(std::string_view path) {
  const auto slash = path.find_last_of('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

Result<ExpectedDifferences, Error> parse_expected_differences(std::string_view text,
                                                              const std::string& path) {
  ExpectedDifferences out;
  out.path = path;
  int number = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) {
      line.remove_prefix(1);
    }
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) {
      line.remove_suffix(1);
    }
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](std::string_view why) {
      return fail(str_cat(path, ":", number, ": ", why, " (expected TRACE:LINE REASON)"));
    };
    const auto space = line.find_first_of(" \t");
    if (space == std::string_view::npos) return bad("no reason given");
    const std::string_view where = line.substr(0, space);
    std::string_view reason = line.substr(space + 1);
    while (!reason.empty() && std::isspace(static_cast<unsigned char>(reason.front()))) {
      reason.remove_prefix(1);
    }
    const auto colon = where.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return bad("no TRACE:LINE");
    const std::string_view trace = where.substr(0, colon);
    if (trace.find('/') != std::string_view::npos) return bad("TRACE is a file name, not a path");
    const std::string_view digits = where.substr(colon + 1);
    int trace_line = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), trace_line);
    if (ec != std::errc() || p != digits.data() + digits.size() || trace_line <= 0 ||
        digits.size() > 7) {
      return bad("LINE is not a line number");
    }
    if (!out.reasons.emplace(std::pair{std::string(trace), trace_line}, std::string(reason))
             .second) {
      return bad(str_cat(where, " listed twice"));
    }
  }
  return out;
}

Result<ExpectedDifferences, Error> load_expected_differences(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return fail(str_cat("cannot read ", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (ss.str().size() > (1u << 20)) return fail(str_cat(path, ": larger than 1 MiB"));
  return parse_expected_differences(ss.str(), path);
}

ReconciledReport reconcile(client::trace::ReplayReport report, const ExpectedDifferences& expected,
                           const std::vector<std::string>& replayed) {
  using client::trace::Outcome;
  ReconciledReport out;
  std::set<std::string> names;
  for (const auto& r : replayed) names.insert(trace_file_name(r));
  for (const auto& l : report.lines) {
    ReportLine rl{l, {}};
    auto it = expected.reasons.find({trace_file_name(l.trace), l.line});
    if (it != expected.reasons.end()) {
      if (l.outcome == Outcome::kMismatch) {
        rl.reason = it->second;
        --report.mismatched;
        ++out.expected;
      } else if (l.outcome == Outcome::kMatch) {
        out.stale.push_back(str_cat(it->first.first, ":", it->first.second,
                                    " matched (listed as: ", it->second, ")"));
      }
    }
    out.lines.push_back(std::move(rl));
  }
  // Listed lines that never ran (the trace changed under the list) are stale as well.
  std::set<std::pair<std::string, int>> ran;
  for (const auto& l : report.lines) ran.insert({trace_file_name(l.trace), l.line});
  for (const auto& [key, reason] : expected.reasons) {
    if (names.count(key.first) != 0 && ran.count(key) == 0) {
      out.stale.push_back(str_cat(key.first, ":", key.second, " is not a command line of ",
                                  key.first, " (listed as: ", reason, ")"));
    }
  }
  report.lines.clear();
  out.report = std::move(report);
  return out;
}

}  // namespace ipsan::replay
