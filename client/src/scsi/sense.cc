#include "ipsan/client/scsi/sense.h"

#include <algorithm>

namespace ipsan::client::scsi {
namespace {

Sense illegal_with_pointer(std::uint8_t asc, bool cdb, std::uint16_t byte, int bit) {
  Sense s = make_sense(kIllegalRequest, asc, 0);
  std::array<std::uint8_t, 3> sks{};
  sks[0] = 0x80 | (cdb ? 0x40 : 0x00);
  if (bit >= 0 && bit <= 7) sks[0] |= static_cast<std::uint8_t>(0x08 | bit);
  sks[1] = static_cast<std::uint8_t>(byte >> 8);
  sks[2] = static_cast<std::uint8_t>(byte);
  s.sks = sks;
  return s;
}

}  // namespace

Sense invalid_field_in_cdb(std::uint16_t byte, int bit) {
  return illegal_with_pointer(0x24, true, byte, bit);
}

Sense invalid_field_in_parameter_list(std::uint16_t byte, int bit) {
  return illegal_with_pointer(0x26, false, byte, bit);
}

Bytes encode_sense(const Sense& sense, bool descriptor_format) {
  if (!descriptor_format) {
    Bytes b(18, 0);
    b[0] = 0x70;
    if (sense.information && *sense.information <= 0xFFFFFFFFu) {
      b[0] |= 0x80;
      store_be32(&b[3], static_cast<std::uint32_t>(*sense.information));
    }
    b[2] = sense.key & 0x0F;
    b[7] = 10;
    b[12] = sense.asc;
    b[13] = sense.ascq;
    if (sense.sks) {
      b[15] = (*sense.sks)[0] | 0x80;
      b[16] = (*sense.sks)[1];
      b[17] = (*sense.sks)[2];
    }
    return b;
  }
  Bytes b(8, 0);
  b[0] = 0x72;
  b[1] = sense.key & 0x0F;
  b[2] = sense.asc;
  b[3] = sense.ascq;
  if (sense.information) {
    std::uint8_t d[12] = {0x00, 0x0A, 0x80, 0};
    store_be64(&d[4], *sense.information);
    b.insert(b.end(), d, d + 12);
  }
  if (sense.sks) {
    std::uint8_t d[8] = {0x02,
                         0x06,
                         0,
                         0,
                         static_cast<std::uint8_t>((*sense.sks)[0] | 0x80),
                         (*sense.sks)[1],
                         (*sense.sks)[2],
                         0};
    b.insert(b.end(), d, d + 8);
  }
  b[7] = static_cast<std::uint8_t>(b.size() - 8);
  return b;
}

std::optional<Sense> decode_sense(ByteSpan b) {
  if (b.empty()) return std::nullopt;
  const std::uint8_t code = b[0] & 0x7F;
  Sense s;
  if (code == 0x70 || code == 0x71) {
    if (b.size() < 14) return std::nullopt;
    s.key = b[2] & 0x0F;
    s.asc = b[12];
    s.ascq = b[13];
    if (b[0] & 0x80) s.information = load_be32(&b[3]);
    if (b.size() >= 18 && (b[15] & 0x80)) s.sks = std::array<std::uint8_t, 3>{b[15], b[16], b[17]};
    return s;
  }
  if (code == 0x72 || code == 0x73) {
    if (b.size() < 8) return std::nullopt;
    s.key = b[1] & 0x0F;
    s.asc = b[2];
    s.ascq = b[3];
    std::size_t end = std::min<std::size_t>(b.size(), 8u + b[7]);
    std::size_t i = 8;
    while (i + 2 <= end) {
      const std::uint8_t type = b[i];
      const std::size_t len = b[i + 1];
      if (i + 2 + len > end) break;
      if (type == 0x00 && len >= 0x0A && (b[i + 2] & 0x80)) s.information = load_be64(&b[i + 4]);
      if (type == 0x02 && len >= 0x06 && (b[i + 4] & 0x80))
        s.sks = std::array<std::uint8_t, 3>{b[i + 4], b[i + 5], b[i + 6]};
      i += 2 + len;
    }
    return s;
  }
  return std::nullopt;
}

ErrcMapping map_errc(Errc e, Direction direction) {
  auto check = [](std::uint8_t key, std::uint8_t asc, std::uint8_t ascq) {
    return ErrcMapping{kStatusCheckCondition, make_sense(key, asc, ascq)};
  };
  switch (e) {
    case Errc::kOk: return ErrcMapping{};
    case Errc::kAuthFailed: return check(kDataProtect, 0x20, 0x02);
    case Errc::kStaleSession: return check(kAbortedCommand, 0x08, 0x00);
    case Errc::kUnknownDevice: return check(kIllegalRequest, 0x25, 0x00);
    case Errc::kLbaOutOfRange: return check(kIllegalRequest, 0x21, 0x00);
    case Errc::kInvalidArgument: return check(kIllegalRequest, 0x24, 0x00);
    case Errc::kTooLarge: return check(kIllegalRequest, 0x24, 0x00);
    case Errc::kIoError: return check(kHardwareError, 0x44, 0x00);
    case Errc::kMediumError:
      return direction == Direction::kWrite ? check(kMediumError, 0x0C, 0x00)
                                            : check(kMediumError, 0x11, 0x00);
    case Errc::kWriteProtected: return check(kDataProtect, 0x27, 0x00);
    case Errc::kNotSupported: return check(kIllegalRequest, 0x20, 0x00);
    case Errc::kNoSpace: return check(kDataProtect, 0x27, 0x07);
    case Errc::kNotReady: return check(kNotReady, 0x04, 0x00);
    case Errc::kBusy: return ErrcMapping{kStatusBusy, Sense{}};
    case Errc::kSeqMisordered: return check(kAbortedCommand, 0x08, 0x00);
    case Errc::kBadMessage: return check(kAbortedCommand, 0x4B, 0x00);
    case Errc::kMiscompare: return check(kMiscompare, 0x1D, 0x00);
    case Errc::kTimeout: return check(kAbortedCommand, 0x08, 0x01);
    case Errc::kConnectionLost: return check(kAbortedCommand, 0x08, 0x00);
    case Errc::kShutdown: return check(kNotReady, 0x04, 0x00);
    case Errc::kCapacityChanged: return check(kUnitAttention, 0x2A, 0x09);
    case Errc::kInternal: return check(kHardwareError, 0x44, 0x00);
  }
  return check(kHardwareError, 0x44, 0x00);  // a value outside the enum
}

const char* sense_key_name(std::uint8_t key) {
  static const char* const kNames[16] = {
      "NO SENSE",       "RECOVERED ERROR", "NOT READY",      "MEDIUM ERROR",
      "HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
      "BLANK CHECK",    "VENDOR SPECIFIC", "COPY ABORTED",   "ABORTED COMMAND",
      "RESERVED (0Ch)", "VOLUME OVERFLOW", "MISCOMPARE",     "COMPLETED"};
  return kNames[key & 0x0F];
}

const char* status_name(std::uint8_t status) {
  switch (status) {
    case kStatusGood: return "GOOD";
    case kStatusCheckCondition: return "CHECK CONDITION";
    case kStatusConditionMet: return "CONDITION MET";
    case kStatusBusy: return "BUSY";
    case kStatusReservationConflict: return "RESERVATION CONFLICT";
    case kStatusTaskSetFull: return "TASK SET FULL";
    case kStatusAcaActive: return "ACA ACTIVE";
    case kStatusTaskAborted: return "TASK ABORTED";
  }
  return "UNKNOWN STATUS";
}

}  // namespace ipsan::client::scsi
