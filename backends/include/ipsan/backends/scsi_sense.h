// ipsan/backends/scsi_sense.h: a pure decoder of SCSI sense data (SPC-5 fixed 70h/71h and
// descriptor 72h/73h formats, including SAT's ATA Status Return descriptor 09h and the fixed-format
// ATA pass-through form, ASC/ASCQ 00h/1Dh) and the table that turns a SCSI command outcome
// (status, transport status, sense) into an ipsan Errc plus a "retry" hint.
//
// Sense buffers come from devices and are treated as hostile: every length is checked, nothing is
// read past the given span, and garbage decodes to `valid == false`, never to a crash.
// Free functions only; no state; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"

namespace ipsan::backends::scsi {

// SPC sense keys.
enum class SenseKey : std::uint8_t {
  kNoSense = 0x0,
  kRecoveredError = 0x1,
  kNotReady = 0x2,
  kMediumError = 0x3,
  kHardwareError = 0x4,
  kIllegalRequest = 0x5,
  kUnitAttention = 0x6,
  kDataProtect = 0x7,
  kBlankCheck = 0x8,
  kVendorSpecific = 0x9,
  kCopyAborted = 0xA,
  kAbortedCommand = 0xB,
  kVolumeOverflow = 0xD,
  kMiscompare = 0xE,
  kCompleted = 0xF,
};

// SAM status codes ipsan looks at.
inline constexpr std::uint8_t kStatusGood = 0x00;
inline constexpr std::uint8_t kStatusCheckCondition = 0x02;
inline constexpr std::uint8_t kStatusConditionMet = 0x04;
inline constexpr std::uint8_t kStatusBusy = 0x08;
inline constexpr std::uint8_t kStatusReservationConflict = 0x18;
inline constexpr std::uint8_t kStatusTaskSetFull = 0x28;
inline constexpr std::uint8_t kStatusTaskAborted = 0x40;

// The ATA registers SAT returns after an ATA PASS-THROUGH command (descriptor 09h, or the fixed
// format with ASC/ASCQ 00h/1Dh, where only the low 24 LBA bits and low count byte are available).
struct AtaStatusReturn {
  bool extend = false;
  std::uint8_t error = 0;
  std::uint8_t status = 0;
  std::uint8_t device = 0;
  std::uint16_t count = 0;
  std::uint64_t lba = 0;  // 48 bits
};

struct SenseInfo {
  bool valid = false;       // a recognised response code with at least the sense key
  bool descriptor = false;  // descriptor format (72h/73h)
  bool deferred = false;    // 71h/73h: error of an earlier command
  std::uint8_t response_code = 0;
  std::uint8_t key = 0;  // SenseKey value
  std::uint8_t asc = 0;
  std::uint8_t ascq = 0;
  bool info_valid = false;  // the INFORMATION field is set (e.g. the failing LBA)
  std::uint64_t information = 0;
  bool has_ata = false;  // ata holds SAT's ATA status return
  AtaStatusReturn ata;
};

// Decodes `sense` (the bytes the transport actually wrote). Never reads past the span.
SenseInfo decode_sense(ByteSpan sense) noexcept;

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
