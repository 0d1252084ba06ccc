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

void decode_ata_descriptor(const std::uint8_t* d, SenseInfo& s) {
  // SAT-5 ATA Status Return descriptor: 09h, additional length 0Ch, then
  // [2] EXTEND(bit0) [3] ERROR [4] COUNT 15:8 [5] COUNT 7:0 [6] LBA 31:24 [7] LBA 7:0
  // [8] LBA 39:32 [9] LBA 15:8 [10] LBA 47:40 [11] LBA 23:16 [12] DEVICE [13] STATUS.
  s.has_ata = true;
  s.ata.extend = (d[2] & 0x01) != 0;
  s.ata.error = d[3];
  s.ata.count = static_cast<std::uint16_t>((d[4] << 8) | d[5]);
  s.ata.lba = std::uint64_t{d[7]} | (std::uint64_t{d[9]} << 8) | (std::uint64_t{d[11]} << 16) |
              (std::uint64_t{d[6]} << 24) | (std::uint64_t{d[8]} << 32) |
              (std::uint64_t{d[10]} << 40);
  s.ata.device = d[12];
  s.ata.status = d[13];
}

void decode_descriptors(ByteSpan sense, SenseInfo& s) {
  // Byte 7 is the additional sense length; descriptors start at byte 8.
  std::size_t end = 8 + std::size_t{sense[7]};
  if (end > sense.size()) end = sense.size();
  std::size_t pos = 8;
  while (pos + 2 <= end) {
    const std::uint8_t type = sense[pos];
    const std::size_t len = 2 + std::size_t{sense[pos + 1]};
    if (pos + len > end) break;  // truncated descriptor: ignore it and the rest
    const std::uint8_t* d = sense.data() + pos;
    if (type == 0x00 && len >= 12) {  // information descriptor
      s.info_valid = (d[2] & 0x80) != 0;
      s.information = load_be64(d + 4);
    } else if (type == 0x09 && len >= 14) {
      decode_ata_descriptor(d, s);
    }
    pos += len;
  }
}

}  // namespace

SenseInfo decode_sense(ByteSpan sense) noexcept {
  SenseInfo s;
  if (sense.empty()) return s;
  s.response_code = sense[0] & 0x7f;
  switch (s.response_code) {
    case 0x70:
    case 0x71: {
      if (sense.size() < 3) return s;
      s.valid = true;
      s.deferred = s.response_code == 0x71;
      s.key = sense[2] & 0x0f;
      if (sense.size() >= 7) {
        s.info_valid = (sense[0] & 0x80) != 0;
        s.information = load_be32(sense.data() + 3);
      }
      // ASC/ASCQ exist only if the additional length (byte 7) covers them.
      const std::size_t avail = sense.size() >= 8 ? 8 + std::size_t{sense[7]} : 0;
      if (sense.size() >= 14 && avail >= 14) {
        s.asc = sense[12];
        s.ascq = sense[13];
      }
      if (s.asc == 0x00 && s.ascq == 0x1D && sense.size() >= 12) {
        // SAT fixed format: INFORMATION = ERROR, STATUS, DEVICE, COUNT 7:0; COMMAND-SPECIFIC
        // INFORMATION = [8] EXTEND|flags, [9] LBA 7:0, [10] LBA 15:8, [11] LBA 23:16.
        s.info_valid = false;
        s.has_ata = true;
        s.ata.error = sense[3];
        s.ata.status = sense[4];
        s.ata.device = sense[5];
        s.ata.count = sense[6];
        s.ata.extend = (sense[8] & 0x80) != 0;
        s.ata.lba = std::uint64_t{sense[9]} | (std::uint64_t{sense[10]} << 8) |
                    (std::uint64_t{sense[11]} << 16);
      }
      return s;
    }
    case 0x72:
    case 0x73: {
      if (sense.size() < 2) return s;
      s.valid = true;
      s.descriptor = true;
      s.deferred = s.response_code == 0x73;
      s.key = sense[1] & 0x0f;
      if (sense.size() >= 4) {
        s.asc = sense[2];
        s.ascq = sense[3];
      }
      if (sense.size() >= 8) decode_descriptors(sense, s);
      return s;
    }
    default: return s;
  }
}

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
  if (!s.valid) return {Errc::kIoError, false};
  switch (static_cast<SenseKey>(s.key)) {
    case SenseKey::kNoSense:
    case SenseKey::kRecoveredError:
    case SenseKey::kCompleted:
      // Recovered or informational (e.g. SAT's "ATA pass-through information available").
      if (s.has_ata) return classify_ata(s.ata);
      return {Errc::kOk, false};
    case SenseKey::kNotReady:
      // 04h/01h "becoming ready" and 04h/07h "operation in progress" pass with time.
      if (s.asc == 0x04 && (s.ascq == 0x01 || s.ascq == 0x07)) return {Errc::kNotReady, true};
      return {Errc::kNotReady, false};
    case SenseKey::kMediumError:
    case SenseKey::kBlankCheck: return {Errc::kMediumError, false};
    case SenseKey::kHardwareError: return {Errc::kIoError, false};
    case SenseKey::kIllegalRequest:
      if (s.asc == 0x21 && s.ascq == 0x00) return {Errc::kLbaOutOfRange, false};
      if (s.asc == 0x20 && s.ascq == 0x00) return {Errc::kNotSupported, false};  // bad opcode
      if (s.asc == 0x25) return {Errc::kUnknownDevice, false};  // LUN not supported
      if (s.asc == 0x27) return {Errc::kWriteProtected, false};
      return {Errc::kInvalidArgument, false};  // 24h CDB field, 26h parameter list, ...
    case SenseKey::kUnitAttention:
      // Reported once per event (reset, capacity change, mode change); the command was not
      // executed, so re-issuing it is correct. The caller bounds the retries.
      if (s.asc == 0x2A && s.ascq == 0x09) return {Errc::kCapacityChanged, true};
      return {Errc::kNotReady, true};
    case SenseKey::kDataProtect:
      if (s.asc == 0x27 && s.ascq == 0x07) return {Errc::kNoSpace, false};  // thin pool full
      return {Errc::kWriteProtected, false};
    case SenseKey::kAbortedCommand:
      if (s.has_ata && (s.ata.status & 0x01)) {
        // SAT reports a failed ATA command as ABORTED COMMAND + the ATA registers.
        const Verdict v = classify_ata(s.ata);
        if (v.errc != Errc::kOk) return v;
      }
      return {Errc::kIoError, true};
    case SenseKey::kVolumeOverflow: return {Errc::kNoSpace, false};
    case SenseKey::kMiscompare: return {Errc::kMiscompare, false};
    case SenseKey::kVendorSpecific:
    case SenseKey::kCopyAborted: return {Errc::kIoError, false};
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
