// THE SCSI sense module: catalog, encoding, decoding (see ipsan/scsi/sense.h).
#include "ipsan/scsi/sense.h"

#include <algorithm>

namespace ipsan::scsi {
namespace {

struct CatalogEntry {
  Asc code;
  const char* name;
};

constexpr CatalogEntry kCatalog[] = {
#define IPSAN_SCSI_ASC_ENTRY(ident, a, q, text) {Asc{a, q}, text},
    IPSAN_SCSI_ASC_CATALOG(IPSAN_SCSI_ASC_ENTRY)
#undef IPSAN_SCSI_ASC_ENTRY
};

Sense illegal_with_pointer(Asc code, bool cdb, std::uint16_t byte, int bit) {
  Sense s = make_sense(kIllegalRequest, code);
  std::array<std::uint8_t, 3> sks{};
  sks[0] = 0x80 | (cdb ? 0x40 : 0x00);
  if (bit >= 0 && bit <= 7) sks[0] |= static_cast<std::uint8_t>(0x08 | bit);
  sks[1] = static_cast<std::uint8_t>(byte >> 8);
  sks[2] = static_cast<std::uint8_t>(byte);
  s.sks = sks;
  return s;
}

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
    } else if (type == 0x02 && len >= 8 && (d[4] & 0x80) != 0) {  // sense-key specific
      s.sks = std::array<std::uint8_t, 3>{d[4], d[5], d[6]};
    } else if (type == 0x09 && len >= 14) {
      decode_ata_descriptor(d, s);
    }
    pos += len;
  }
}

}  // namespace

const char* asc_name(Asc code) {
  for (const CatalogEntry& e : kCatalog) {
    if (e.code == code) return e.name;
  }
  return nullptr;
}

Sense invalid_field_in_cdb(std::uint16_t byte, int bit) {
  return illegal_with_pointer(asc::kInvalidFieldInCdb, true, byte, bit);
}

Sense invalid_field_in_parameter_list(std::uint16_t byte, int bit) {
  return illegal_with_pointer(asc::kInvalidFieldInParameterList, false, byte, bit);
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
    const std::uint8_t d[8] = {0x02,
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

SenseInfo decode_sense_info(ByteSpan sense) noexcept {
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
        s.has_asc = true;
        s.asc = sense[12];
        s.ascq = sense[13];
      }
      if (sense.size() >= 18 && avail >= 18 && (sense[15] & 0x80) != 0) {
        s.sks = std::array<std::uint8_t, 3>{sense[15], sense[16], sense[17]};
      }
      if (s.code() == asc::kAtaPassThroughInformationAvailable && s.has_asc) {
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
        s.has_asc = true;
        s.asc = sense[2];
        s.ascq = sense[3];
      }
      if (sense.size() >= 8) decode_descriptors(sense, s);
      return s;
    }
    default: return s;
  }
}

std::optional<Sense> decode_sense(ByteSpan bytes) {
  const SenseInfo i = decode_sense_info(bytes);
  if (!i.valid || !i.has_asc) return std::nullopt;
  Sense s;
  s.key = i.key;
  s.asc = i.asc;
  s.ascq = i.ascq;
  if (i.info_valid) s.information = i.information;
  s.sks = i.sks;
  return s;
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

}  // namespace ipsan::scsi
