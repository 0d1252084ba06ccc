// Sense decoding and the sense -> Errc table.
#include "ipsan/backends/scsi_sense.h"

#include <scsi/sg_lib.h>

#include <cstdio>

namespace ipsan::backends::scsi {
namespace {

// Linux SCSI midlayer host_status (DID_*) and driver_status (DRIVER_*) values.
constexpr std::uint16_t kDidOk = 0x00;
constexpr std::uint16_t kDidNoConnect = 0x01;
constexpr std::uint16_t kDidBusBusy = 0x02;
constexpr std::uint16_t kDidTimeOut = 0x03;
constexpr std::uint16_t kDidBadTarget = 0x04;
constexpr std::uint16_t kDidAbort = 0x05;
constexpr std::uint16_t kDidReset = 0x08;
constexpr std::uint16_t kDidSoftError = 0x0b;
constexpr std::uint16_t kDidImmRetry = 0x0c;
constexpr std::uint16_t kDidRequeue = 0x0d;
constexpr std::uint16_t kDidTransportDisrupted = 0x0e;
constexpr std::uint16_t kDidMediumError = 0x13;
constexpr std::uint16_t kDriverTimeout = 0x06;
constexpr std::uint16_t kDriverSense = 0x08;

}  // namespace

std::string describe_sense(const SenseInfo& s) {
  if (!s.valid) return "no valid sense data";
  char key[64];
  char asc[128];
  sg_get_sense_key_str(s.key, sizeof key, key);
  sg_get_asc_ascq_str(s.asc, s.ascq, sizeof asc, asc);
  char tail[160];
  std::snprintf(tail, sizeof tail, " (%02Xh/%02Xh)", s.asc, s.ascq);
  std::string out = std::string(key) + ": " + asc + tail;
  if (s.deferred) out += " [deferred]";
  if (s.info_valid) {
    char info[48];
    std::snprintf(info, sizeof info, " info=0x%llx",
                  static_cast<unsigned long long>(s.information));
    out += info;
  }
  if (s.has_ata) {
    char ata[64];
    std::snprintf(ata, sizeof ata, " ata status=0x%02x error=0x%02x", s.ata.status, s.ata.error);
    out += ata;
  }
  return out;
}

Verdict classify_ata(const AtaStatusReturn& a) noexcept {
  constexpr std::uint8_t kErr = 0x01, kDf = 0x20, kBsy = 0x80;
  constexpr std::uint8_t kAbrt = 0x04, kIdnf = 0x10, kUnc = 0x40, kIcrc = 0x80;
  if (a.status & kBsy) return {Errc::kIoError, true};
  if (a.status & kDf) return {Errc::kIoError, false};
  if (!(a.status & kErr)) return {Errc::kOk, false};
  if (a.error & kIcrc) return {Errc::kIoError, true};  // interface CRC: transfer damaged, retry
  if (a.error & kUnc) return {Errc::kMediumError, false};
  if (a.error & kIdnf) return {Errc::kLbaOutOfRange, false};  // address not found
  if (a.error & kAbrt) return {Errc::kIoError, false};  // aborted: unsupported or bad arguments
  return {Errc::kIoError, false};
}

Verdict classify_sense(const SenseInfo& s) noexcept {
  namespace sk = ::ipsan::scsi;  // sense keys
  if (!s.valid) return {Errc::kIoError, false};
  switch (s.key) {
    case sk::kNoSense:
    case sk::kRecoveredError:
    case sk::kCompleted:
      // Recovered or informational (e.g. SAT's "ATA pass-through information available").
      if (s.has_ata) return classify_ata(s.ata);
      return {Errc::kOk, false};
    case sk::kNotReady:
      // 04h/01h "becoming ready" and 04h/07h "operation in progress" pass with time.
      if (s.code() == asc::kNotReadyBecomingReady ||
          s.code() == asc::kNotReadyOperationInProgress) {
        return {Errc::kNotReady, true};
      }
      return {Errc::kNotReady, false};
    case sk::kMediumError:
    case sk::kBlankCheck: return {Errc::kMediumError, false};
    case sk::kHardwareError: return {Errc::kIoError, false};
    case sk::kIllegalRequest:
      if (s.code() == asc::kLbaOutOfRange) return {Errc::kLbaOutOfRange, false};
      if (s.code() == asc::kInvalidCommandOperationCode) return {Errc::kNotSupported, false};
      if (s.asc == asc::kLogicalUnitNotSupported.asc)
        return {Errc::kUnknownDevice, false};                                        // 25h/xx
      if (s.asc == asc::kWriteProtected.asc) return {Errc::kWriteProtected, false};  // 27h/xx
      return {Errc::kInvalidArgument, false};  // 24h CDB field, 26h parameter list, ...
    case sk::kUnitAttention:
      // Reported once per event (reset, capacity change, mode change); the command was not
      // executed, so re-issuing it is correct. The caller bounds the retries.
      if (s.code() == asc::kCapacityDataHasChanged) return {Errc::kCapacityChanged, true};
      return {Errc::kNotReady, true};
    case sk::kDataProtect:
      if (s.code() == asc::kSpaceAllocationFailedWriteProtect) {
        return {Errc::kNoSpace, false};  // thin pool full
      }
      return {Errc::kWriteProtected, false};
    case sk::kAbortedCommand:
      if (s.has_ata && (s.ata.status & 0x01)) {
        // SAT reports a failed ATA command as ABORTED COMMAND + the ATA registers.
        const Verdict v = classify_ata(s.ata);
        if (v.errc != Errc::kOk) return v;
      }
      return {Errc::kIoError, true};
    case sk::kVolumeOverflow: return {Errc::kNoSpace, false};
    case sk::kMiscompare: return {Errc::kMiscompare, false};
    case sk::kVendorSpecific:
    case sk::kCopyAborted: return {Errc::kIoError, false};
  }
  return {Errc::kIoError, false};
}

Verdict classify_outcome(const RawOutcome& r, SenseInfo* decoded) noexcept {
  if (decoded) *decoded = SenseInfo{};
  if (r.os_error != 0) return {Errc::kIoError, false};
  switch (r.host_status) {
    case kDidOk: break;
    case kDidBusBusy:
    case kDidAbort:
    case kDidReset:
    case kDidSoftError:
    case kDidImmRetry:
    case kDidRequeue:
    case kDidTransportDisrupted: return {Errc::kIoError, true};
    case kDidTimeOut: return {Errc::kTimeout, false};
    case kDidNoConnect:
    case kDidBadTarget: return {Errc::kNotReady, false};
    case kDidMediumError: return {Errc::kMediumError, false};
    default: return {Errc::kIoError, false};
  }
  if ((r.driver_status & 0x0f) == kDriverTimeout) return {Errc::kTimeout, false};
  const bool has_sense = !r.sense.empty() && ((r.driver_status & 0x0f) == kDriverSense ||
                                              r.status == kStatusCheckCondition);
  switch (r.status) {
    case kStatusGood:
    case kStatusConditionMet: {
      // ATA PASS-THROUGH with CK_COND may still return sense with GOOD status on some HBAs.
      if (has_sense) {
        const SenseInfo s = decode_sense(r.sense);
        if (decoded) *decoded = s;
        if (s.valid) return classify_sense(s);
      }
      return {Errc::kOk, false};
    }
    case kStatusCheckCondition: {
      const SenseInfo s = decode_sense(r.sense);
      if (decoded) *decoded = s;
      return classify_sense(s);
    }
    case kStatusBusy:
    case kStatusTaskSetFull: return {Errc::kBusy, true};
    case kStatusTaskAborted: return {Errc::kIoError, true};
    case kStatusReservationConflict: return {Errc::kWriteProtected, false};
    default: return {Errc::kIoError, false};
  }
}

}  // namespace ipsan::backends::scsi
