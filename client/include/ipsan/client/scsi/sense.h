// ipsan/client/scsi/sense.h: SCSI status codes, sense data (SPC-4 4.5) and THE table that maps
// data-path errors (Errc) to SCSI status and sense.
//
// Pure functions and value types; thread-safe.
//
// Errc -> SCSI table (sense key / ASC / ASCQ), read (R) and write (W) direction where they differ:
//   kOk              GOOD
//   kAuthFailed      DATA PROTECT      20h/02h ACCESS DENIED - NO ACCESS RIGHTS
//   kStaleSession    ABORTED COMMAND   08h/00h LOGICAL UNIT COMMUNICATION FAILURE (retryable)
//   kUnknownDevice   ILLEGAL REQUEST   25h/00h LOGICAL UNIT NOT SUPPORTED
//   kLbaOutOfRange   ILLEGAL REQUEST   21h/00h LOGICAL BLOCK ADDRESS OUT OF RANGE
//   kInvalidArgument ILLEGAL REQUEST   24h/00h INVALID FIELD IN CDB (no field pointer)
//   kTooLarge        ILLEGAL REQUEST   24h/00h INVALID FIELD IN CDB (no field pointer)
//   kIoError         HARDWARE ERROR    44h/00h INTERNAL TARGET FAILURE
//   kMediumError     MEDIUM ERROR      R: 11h/00h UNRECOVERED READ ERROR, W: 0Ch/00h WRITE ERROR
//   kWriteProtected  DATA PROTECT      27h/00h WRITE PROTECTED
//   kNotSupported    ILLEGAL REQUEST   20h/00h INVALID COMMAND OPERATION CODE
//   kNoSpace         DATA PROTECT      27h/07h SPACE ALLOCATION FAILED WRITE PROTECT
//   (SBC-3 4.7.3.7) kNotReady        NOT READY         04h/00h LOGICAL UNIT NOT READY, CAUSE NOT
//   REPORTABLE kBusy            status BUSY (08h), no sense: the initiator retries kSeqMisordered
//   ABORTED COMMAND   08h/00h LOGICAL UNIT COMMUNICATION FAILURE (retryable) kBadMessage ABORTED
//   COMMAND   4Bh/00h DATA PHASE ERROR (message corrupted in transit) kMiscompare      MISCOMPARE
//   1Dh/00h MISCOMPARE DURING VERIFY OPERATION kTimeout         ABORTED COMMAND   08h/01h LOGICAL
//   UNIT COMMUNICATION TIME-OUT (retryable) kConnectionLost  ABORTED COMMAND   08h/00h LOGICAL UNIT
//   COMMUNICATION FAILURE (retryable) kShutdown        NOT READY         04h/00h LOGICAL UNIT NOT
//   READY, CAUSE NOT REPORTABLE kCapacityChanged UNIT ATTENTION    2Ah/09h CAPACITY DATA HAS
//   CHANGED kInternal        HARDWARE ERROR    44h/00h INTERNAL TARGET FAILURE
// Why ABORTED COMMAND for transport trouble: Linux and most initiators retry ABORTED COMMAND,
// which is right for a lost connection that the SAN/IP driver is re-establishing; NOT READY 04h/00h
// is not retried by Linux and is kept for states that need an operator.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"

namespace ipsan::client::scsi {

// SAM-5 status codes.
inline constexpr std::uint8_t kStatusGood = 0x00;
inline constexpr std::uint8_t kStatusCheckCondition = 0x02;
inline constexpr std::uint8_t kStatusConditionMet = 0x04;
inline constexpr std::uint8_t kStatusBusy = 0x08;
inline constexpr std::uint8_t kStatusReservationConflict = 0x18;
inline constexpr std::uint8_t kStatusTaskSetFull = 0x28;
inline constexpr std::uint8_t kStatusAcaActive = 0x30;
inline constexpr std::uint8_t kStatusTaskAborted = 0x40;

// Sense keys (SPC-4 table 27).
inline constexpr std::uint8_t kNoSense = 0x0;
inline constexpr std::uint8_t kRecoveredError = 0x1;
inline constexpr std::uint8_t kNotReady = 0x2;
inline constexpr std::uint8_t kMediumError = 0x3;
inline constexpr std::uint8_t kHardwareError = 0x4;
inline constexpr std::uint8_t kIllegalRequest = 0x5;
inline constexpr std::uint8_t kUnitAttention = 0x6;
inline constexpr std::uint8_t kDataProtect = 0x7;
inline constexpr std::uint8_t kCopyAborted = 0xA;
inline constexpr std::uint8_t kAbortedCommand = 0xB;
inline constexpr std::uint8_t kMiscompare = 0xE;

// Sense content independent of its encoding.
struct Sense {
  std::uint8_t key = kNoSense;
  std::uint8_t asc = 0;
  std::uint8_t ascq = 0;
  std::optional<std::uint64_t> information;        // VALID bit / information descriptor
  std::optional<std::array<std::uint8_t, 3>> sks;  // sense-key specific bytes, SKSV set

  bool operator==(const Sense&) const = default;
};

// ILLEGAL REQUEST / INVALID FIELD IN CDB with a field pointer to `byte` (and `bit` if >= 0).
Sense invalid_field_in_cdb(std::uint16_t byte, int bit = -1);
// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST, field pointer into the data-out buffer.
Sense invalid_field_in_parameter_list(std::uint16_t byte, int bit = -1);
inline Sense make_sense(std::uint8_t key, std::uint8_t asc, std::uint8_t ascq) {
  return Sense{key, asc, ascq, std::nullopt, std::nullopt};
}

// Encodes fixed format (70h, 18 bytes) or descriptor format (72h: information descriptor 00h,
// sense-key specific descriptor 02h).
Bytes encode_sense(const Sense& sense, bool descriptor_format);
// Decodes either format; nullopt when too short or of an unknown response code.
std::optional<Sense> decode_sense(ByteSpan bytes);

enum class Direction { kNone, kRead, kWrite };

// The outcome of an Errc: a status and, for CHECK CONDITION, the sense.
struct ErrcMapping {
  std::uint8_t status = kStatusGood;
  Sense sense;
};
// THE Errc -> SCSI table (see the header comment).
ErrcMapping map_errc(Errc e, Direction direction);

// "ILLEGAL REQUEST", ...; and "GOOD", "CHECK CONDITION", ... for statuses.
const char* sense_key_name(std::uint8_t key);
const char* status_name(std::uint8_t status);

}  // namespace ipsan::client::scsi
