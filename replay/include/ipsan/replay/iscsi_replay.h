// ipsan/replay/iscsi_replay.h: replays imported iSCSI commands (iscsi.h) through ipsan's client
// driver (scsi::Bus) and compares every answer with what the captured target answered.
//
// Compared: status, sense key/ASC/ASCQ, residual, data-in length and bytes, except the fields in
// which two correct targets legitimately differ (docs/CAPTURE.md "Intended differences"), which
// the comparison masks unless `exact` is set:
//   INQUIRY standard data: vendor, product, revision (8..35), vendor-specific bytes (36..55) and
//     version descriptors (58..73);
//   INQUIRY VPD 80h (unit serial number): the serial number;
//   INQUIRY VPD 83h (device identification): the designators;
// Commands to LUNs without a mapping are skipped ("unmapped LUN"), as are commands the import
// marked unusable.
//
// Threading: blocks its calling thread (the Bus's completions may run anywhere else).
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "ipsan/client/scsi/bus.h"
#include "ipsan/replay/iscsi.h"

namespace ipsan::replay::iscsi {

struct IscsiReplayOptions {
  bool exact = false;      // compare every byte, no masks
  int timeout_ms = 30000;  // per command
};

struct IscsiLineResult {
  std::size_t order = 0;
  std::string what;  // "lun 1 INQUIRY cdb=12..."
  enum class Outcome { kMatch, kMismatch, kError, kSkipped } outcome = Outcome::kMatch;
  std::string detail;
};

struct IscsiReplayReport {
  std::size_t matched = 0;
  std::size_t mismatched = 0;
  std::size_t errors = 0;
  std::size_t skipped = 0;
  SkipCounts skip_reasons;
  std::vector<IscsiLineResult> lines;
  bool ok() const { return mismatched == 0 && errors == 0; }
};

// Compares ipsan's answer with the captured one; empty string = agreement.
std::string compare_answer(const ImportedCommand& captured, const client::scsi::ScsiResult& now,
                           bool exact);

IscsiReplayReport replay_iscsi(const IscsiCapture& capture, client::scsi::Bus& bus,
                               const IscsiReplayOptions& options);

void print_iscsi_report(std::ostream& os, const IscsiReplayReport& report, bool verbose);

}  // namespace ipsan::replay::iscsi
