// Replay of imported iSCSI commands with masked comparison (ipsan/replay/iscsi_replay.h).
#include "ipsan/replay/iscsi_replay.h"

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "ipsan/base/log.h"
#include "ipsan/client/scsi/sense.h"

namespace ipsan::replay::iscsi {
namespace {

namespace scsi = client::scsi;

// Commands ipsan does not implement by design: skipped with this reason, not compared.
const char* not_implemented(const Bytes& cdb) {
  if (cdb.empty()) return nullptr;
  switch (cdb[0]) {
    case 0x5E:
    case 0x5F: return "persistent reservations (not implemented by ipsan)";
    default: return nullptr;
  }
}

bool masked(const MaskList& m, std::size_t i) {
  for (const auto& [b, e] : m) {
    if (i >= b && i < e) return true;
  }
  return false;
}

std::string describe(const ImportedCommand& c) {
  std::string s = "lun " + std::to_string(c.lun) + " cdb=" + to_hex(c.cdb);
  return s;
}

std::string sense_text(ByteSpan sense) {
  auto s = scsi::decode_sense(sense);
  if (!s) return "none";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%x/%02x/%02x", s->key, s->asc, s->ascq);
  return buf;
}

}  // namespace

std::string compare_answer(const ImportedCommand& captured, const scsi::ScsiResult& now,
                           bool exact) {
  if (captured.status != now.status) {
    return str_cat("status: target ", scsi::status_name(captured.status), " (sense ",
                   sense_text(captured.sense), "), ipsan ", scsi::status_name(now.status),
                   " (sense ", sense_text(now.sense), ")");
  }
  if (captured.status == scsi::kStatusCheckCondition) {
    auto a = scsi::decode_sense(captured.sense);
    auto b = scsi::decode_sense(now.sense);
    if (!a || !b || a->key != b->key || a->asc != b->asc || a->ascq != b->ascq) {
      return str_cat("sense: target ", sense_text(captured.sense), ", ipsan ",
                     sense_text(now.sense));
    }
  }
  const std::int64_t resid = now.overflow ? -static_cast<std::int64_t>(now.residual)
                                          : static_cast<std::int64_t>(now.residual);
  const auto m = exact ? MaskList{} : intended_difference_masks(captured.cdb);
  // A masked page may differ in length too (serial numbers, designator lists).
  const bool length_masked = !m.empty() && m.back().second == SIZE_MAX;
  if (captured.read && captured.status == scsi::kStatusGood && !length_masked) {
    if (captured.resid != resid) {
      return str_cat("residual: target ", captured.resid, ", ipsan ", resid);
    }
    if (captured.data_in.size() != now.data_in.size()) {
      return str_cat("data-in length: target ", captured.data_in.size(), ", ipsan ",
                     now.data_in.size());
    }
  }
  if (captured.read && captured.status == scsi::kStatusGood) {
    // List every differing byte range (at most 8) so one run shows the whole difference.
    const std::size_t n = std::min(captured.data_in.size(), now.data_in.size());
    std::string ranges;
    std::size_t count = 0;
    for (std::size_t i = 0; i < n && count < 8;) {
      if (captured.data_in[i] == now.data_in[i] || masked(m, i)) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < n && captured.data_in[j] != now.data_in[j] && !masked(m, j) && j - i < 16) ++j;
      ranges += str_cat(ranges.empty() ? "" : "; ", "bytes ", i, "..", j - 1, " target ",
                        to_hex(ByteSpan(captured.data_in).subspan(i, j - i)), " ipsan ",
                        to_hex(ByteSpan(now.data_in).subspan(i, j - i)));
      ++count;
      i = j;
    }
    if (!ranges.empty()) return "data-in differs: " + ranges;
  }
  return "";
}

IscsiReplayReport replay_iscsi(const IscsiCapture& capture, scsi::Bus& bus,
                               const IscsiReplayOptions& options) {
  IscsiReplayReport report;
  report.skip_reasons.merge(capture.skipped);
  std::set<std::string> connections;
  for (const ImportedCommand& c : capture.commands) {
    // A new iSCSI login is a new I_T nexus: the target reports POWER ON/RESET (29h) again.
    if (c.skip.empty() && connections.insert(c.connection).second) bus.reset_all();
    IscsiLineResult line;
    line.order = c.order;
    line.what = describe(c);
    auto skip = [&](const std::string& why) {
      line.outcome = IscsiLineResult::Outcome::kSkipped;
      line.detail = why;
      ++report.skipped;
      report.skip_reasons.add(why);
      report.lines.push_back(line);
    };
    if (!c.skip.empty()) {
      skip(c.skip);
      continue;
    }
    if (c.cdb.empty()) {
      skip("empty CDB");
      continue;
    }
    if (c.cdb[0] != 0xA0 && bus.find(0, c.lun) == nullptr) {  // REPORT LUNS works on any LUN
      skip("unmapped LUN");
      continue;
    }
    if (const char* why = not_implemented(c.cdb); why != nullptr && !options.exact) {
      skip(why);
      continue;
    }
    if (c.cdb[0] == 0xA0 && !options.exact) {
      skip("REPORT LUNS (the LUN inventory is the mapping's, not the target's)");
      continue;
    }
    scsi::ScsiCommand sc;
    sc.cdb = c.cdb;
    sc.data_out = c.data_out;
    if (c.read) sc.data_in_length = c.edtl;
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<scsi::ScsiResult> r;
    };
    auto st = std::make_shared<State>();
    bus.execute(0, c.lun, sc, [st](scsi::ScsiResult r) {
      std::lock_guard<std::mutex> lock(st->mu);
      st->r = std::move(r);
      st->cv.notify_all();
    });
    std::optional<scsi::ScsiResult> now;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait_for(lock, std::chrono::milliseconds(options.timeout_ms),
                      [&] { return st->r.has_value(); });
      now = st->r;
    }
    if (!now) {
      line.outcome = IscsiLineResult::Outcome::kError;
      line.detail = "no completion within " + std::to_string(options.timeout_ms) + " ms";
      ++report.errors;
    } else if (std::string d = compare_answer(c, *now, options.exact); !d.empty()) {
      line.outcome = IscsiLineResult::Outcome::kMismatch;
      line.detail = std::move(d);
      ++report.mismatched;
    } else {
      ++report.matched;
    }
    report.lines.push_back(std::move(line));
  }
  return report;
}

void print_iscsi_report(std::ostream& os, const IscsiReplayReport& report, bool verbose) {
  for (const IscsiLineResult& l : report.lines) {
    using O = IscsiLineResult::Outcome;
    if (!verbose && (l.outcome == O::kMatch || l.outcome == O::kSkipped)) continue;
    const char* what = l.outcome == O::kMatch      ? "match"
                       : l.outcome == O::kMismatch ? "MISMATCH"
                       : l.outcome == O::kError    ? "ERROR"
                                                   : "skipped";
    os << "command " << l.order << " " << l.what << ": " << what;
    if (!l.detail.empty()) os << ": " << l.detail;
    os << "\n";
  }
  os << "replay: " << report.matched << " matched, " << report.mismatched << " mismatched, "
     << report.errors << " errors, " << report.skipped << " skipped";
  if (!report.skip_reasons.reasons.empty()) os << " (" << report.skip_reasons.to_string() << ")";
  os << "\n";
}

}  // namespace ipsan::replay::iscsi
