// ipsan/backends/scsi_sense.h: the table that turns a SCSI command outcome of a real device
// (status, transport status, sense) into an ipsan Errc plus a "retry" hint, and sense text for
// logs. Decoding (SPC-5 fixed 70h/71h and descriptor 72h/73h formats, SAT's ATA Status Return) is
// the shared SCSI sense module's (ipsan/scsi/sense.h).
//
// Sense buffers come from devices and are treated as hostile: every length is checked, nothing is
// read past the given span, and garbage decodes to `valid == false`, never to a crash.
// Free functions only; no state; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"
#include "ipsan/scsi/sense.h"

namespace ipsan::backends::scsi {

// Status codes, sense keys, the ASC/ASCQ catalog and the decoder are the shared SCSI sense module
// (ipsan/scsi/sense.h); these names keep the back ends' spelling.
using ::ipsan::scsi::AtaStatusReturn;
using ::ipsan::scsi::kStatusBusy;
using ::ipsan::scsi::kStatusCheckCondition;
using ::ipsan::scsi::kStatusConditionMet;
using ::ipsan::scsi::kStatusGood;
using ::ipsan::scsi::kStatusReservationConflict;
using ::ipsan::scsi::kStatusTaskAborted;
using ::ipsan::scsi::kStatusTaskSetFull;
using ::ipsan::scsi::SenseInfo;
namespace asc = ::ipsan::scsi::asc;

// Decodes `sense` (the bytes the transport actually wrote). Never reads past the span.
inline SenseInfo decode_sense(ByteSpan sense) noexcept {
  return ::ipsan::scsi::decode_sense_info(sense);
}

// "MEDIUM ERROR: Unrecovered read error (11h/00h) info=0x1234" using libsgutils2's tables.
std::string describe_sense(const SenseInfo& s);

// What ipsan does with a finished SCSI command.
struct Verdict {
  Errc errc = Errc::kOk;
  bool retry = false;  // transient: the caller may re-issue the command (a bounded number of times)
};

// Sense key + ASC/ASCQ -> Errc (the one table; see the .cc for each row's reason).
Verdict classify_sense(const SenseInfo& s) noexcept;

// A whole outcome: SAM status, Linux host (transport) status, driver status, sense bytes.
// `os_error` is the errno of the SG_IO call itself (0 when the ioctl succeeded).
struct RawOutcome {
  int os_error = 0;
  std::uint8_t status = 0;
  std::uint16_t host_status = 0;
  std::uint16_t driver_status = 0;
  ByteSpan sense;
};
Verdict classify_outcome(const RawOutcome& r, SenseInfo* decoded = nullptr) noexcept;

// ATA status/error registers -> Errc (ERR/DF bits, then ICRC, UNC, IDNF, ABRT).
Verdict classify_ata(const AtaStatusReturn& a) noexcept;

}  // namespace ipsan::backends::scsi
