// ipsan/scsi/sense.h: THE SCSI sense module (library ipsan_scsi, base only), below both the back
// ends (SG_IO / ATA pass-through: decoding what real devices return) and the client's SCSI front
// end (encoding what ipsan's logical units report): SAM-5 status codes, SPC sense keys, the named
// ASC/ASCQ catalog, sense data encoding (fixed 70h / descriptor 72h) and decoding (70h-73h,
// including SAT's ATA Status Return), and field-pointer helpers.
//
// Every sense ipsan builds names its ASC/ASCQ from the catalog (make_sense(kIllegalRequest,
// asc::kInvalidFieldInCdb)); literal codes appear only here, next to their SPC names. Decoders
// treat sense bytes as hostile: every length is checked, nothing is read past the span, garbage
// decodes to `valid == false`, never to a crash.
//
// Pure functions and value types; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "ipsan/base/bytes.h"

namespace ipsan::scsi {

// SAM-5 status codes.
inline constexpr std::uint8_t kStatusGood = 0x00;
inline constexpr std::uint8_t kStatusCheckCondition = 0x02;
inline constexpr std::uint8_t kStatusConditionMet = 0x04;
inline constexpr std::uint8_t kStatusBusy = 0x08;
inline constexpr std::uint8_t kStatusReservationConflict = 0x18;
inline constexpr std::uint8_t kStatusTaskSetFull = 0x28;
inline constexpr std::uint8_t kStatusAcaActive = 0x30;
inline constexpr std::uint8_t kStatusTaskAborted = 0x40;

// Sense keys (SPC-5 table 51).
inline constexpr std::uint8_t kNoSense = 0x0;
inline constexpr std::uint8_t kRecoveredError = 0x1;
inline constexpr std::uint8_t kNotReady = 0x2;
inline constexpr std::uint8_t kMediumError = 0x3;
inline constexpr std::uint8_t kHardwareError = 0x4;
inline constexpr std::uint8_t kIllegalRequest = 0x5;
inline constexpr std::uint8_t kUnitAttention = 0x6;
inline constexpr std::uint8_t kDataProtect = 0x7;
inline constexpr std::uint8_t kBlankCheck = 0x8;
inline constexpr std::uint8_t kVendorSpecific = 0x9;
inline constexpr std::uint8_t kCopyAborted = 0xA;
inline constexpr std::uint8_t kAbortedCommand = 0xB;
inline constexpr std::uint8_t kVolumeOverflow = 0xD;
inline constexpr std::uint8_t kMiscompare = 0xE;
inline constexpr std::uint8_t kCompleted = 0xF;

// An additional sense code and qualifier.
struct Asc {
  std::uint8_t asc = 0;
  std::uint8_t ascq = 0;
  constexpr bool operator==(const Asc&) const = default;
};

// THE ASC/ASCQ catalog (SPC-5 table 53): every code ipsan reports or reacts to, with its name.
// X(identifier, ASC, ASCQ, SPC name)
#define IPSAN_SCSI_ASC_CATALOG(X)                                                              \
  X(kNoAdditionalSense, 0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION")                         \
  X(kOperationInProgress, 0x00, 0x16, "OPERATION IN PROGRESS")                                 \
  X(kAtaPassThroughInformationAvailable, 0x00, 0x1D, "ATA PASS THROUGH INFORMATION AVAILABLE") \
  X(kNotReadyCauseNotReportable, 0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE")   \
  X(kNotReadyBecomingReady, 0x04, 0x01, "LOGICAL UNIT IS IN PROCESS OF BECOMING READY")        \
  X(kNotReadyInitializingCommandRequired, 0x04, 0x02,                                          \
    "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED")                                   \
  X(kNotReadyOperationInProgress, 0x04, 0x07, "LOGICAL UNIT NOT READY, OPERATION IN PROGRESS") \
  X(kNotReadySanitizeInProgress, 0x04, 0x1B, "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS")   \
  X(kCommunicationFailure, 0x08, 0x00, "LOGICAL UNIT COMMUNICATION FAILURE")                   \
  X(kCommunicationTimeout, 0x08, 0x01, "LOGICAL UNIT COMMUNICATION TIME-OUT")                  \
  X(kUnreachableCopyTarget, 0x08, 0x04, "UNREACHABLE COPY TARGET")                             \
  X(kWriteError, 0x0C, 0x00, "WRITE ERROR")                                                    \
  X(kCopyTargetDeviceNotReachable, 0x0D, 0x02, "COPY TARGET DEVICE NOT REACHABLE")             \
  X(kInvalidFieldInCommandInformationUnit, 0x0E, 0x03,                                         \
    "INVALID FIELD IN COMMAND INFORMATION UNIT")                                               \
  X(kUnrecoveredReadError, 0x11, 0x00, "UNRECOVERED READ ERROR")                               \
  X(kParameterListLengthError, 0x1A, 0x00, "PARAMETER LIST LENGTH ERROR")                      \
  X(kMiscompareDuringVerify, 0x1D, 0x00, "MISCOMPARE DURING VERIFY OPERATION")                 \
  X(kInvalidCommandOperationCode, 0x20, 0x00, "INVALID COMMAND OPERATION CODE")                \
  X(kAccessDeniedNoAccessRights, 0x20, 0x02, "ACCESS DENIED - NO ACCESS RIGHTS")               \
  X(kLbaOutOfRange, 0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE")                          \
  X(kInvalidFieldInCdb, 0x24, 0x00, "INVALID FIELD IN CDB")                                    \
  X(kLogicalUnitNotSupported, 0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED")                        \
  X(kInvalidFieldInParameterList, 0x26, 0x00, "INVALID FIELD IN PARAMETER LIST")               \
  X(kInvalidReleaseOfPersistentReservation, 0x26, 0x04,                                        \
    "INVALID RELEASE OF PERSISTENT RESERVATION")                                               \
  X(kTooManyTargetDescriptors, 0x26, 0x06, "TOO MANY TARGET DESCRIPTORS")                      \
  X(kUnsupportedTargetDescriptorType, 0x26, 0x07, "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE")   \
  X(kTooManySegmentDescriptors, 0x26, 0x08, "TOO MANY SEGMENT DESCRIPTORS")                    \
  X(kUnsupportedSegmentDescriptorType, 0x26, 0x09, "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE") \
  X(kWriteProtected, 0x27, 0x00, "WRITE PROTECTED")                                            \
  X(kSoftwareWriteProtected, 0x27, 0x02, "LOGICAL UNIT SOFTWARE WRITE PROTECTED")              \
  X(kSpaceAllocationFailedWriteProtect, 0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT")   \
  X(kPowerOnResetOccurred, 0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED")        \
  X(kItNexusLossOccurred, 0x29, 0x07, "I_T NEXUS LOSS OCCURRED")                               \
  X(kReservationsPreempted, 0x2A, 0x03, "RESERVATIONS PREEMPTED")                              \
  X(kReservationsReleased, 0x2A, 0x04, "RESERVATIONS RELEASED")                                \
  X(kRegistrationsPreempted, 0x2A, 0x05, "REGISTRATIONS PREEMPTED")                            \
  X(kCapacityDataHasChanged, 0x2A, 0x09, "CAPACITY DATA HAS CHANGED")                          \
  X(kSanitizeCommandFailed, 0x31, 0x03, "SANITIZE COMMAND FAILED")                             \
  X(kMediumNotPresent, 0x3A, 0x00, "MEDIUM NOT PRESENT")                                       \
  X(kInternalTargetFailure, 0x44, 0x00, "INTERNAL TARGET FAILURE")                             \
  X(kDataPhaseError, 0x4B, 0x00, "DATA PHASE ERROR")                                           \
  X(kMediumRemovalPrevented, 0x53, 0x02, "MEDIUM REMOVAL PREVENTED")

namespace asc {
#define IPSAN_SCSI_ASC_CONSTANT(name, a, q, text) inline constexpr Asc name{a, q};
IPSAN_SCSI_ASC_CATALOG(IPSAN_SCSI_ASC_CONSTANT)
#undef IPSAN_SCSI_ASC_CONSTANT
}  // namespace asc

// The catalog's name of a code; nullptr when it is not in the catalog.
const char* asc_name(Asc code);

// Sense content independent of its encoding.
struct Sense {
  std::uint8_t key = kNoSense;
  std::uint8_t asc = 0;
  std::uint8_t ascq = 0;
  std::optional<std::uint64_t> information;        // VALID bit / information descriptor
  std::optional<std::array<std::uint8_t, 3>> sks;  // sense-key specific bytes, SKSV set

  Asc code() const { return Asc{asc, ascq}; }
  bool operator==(const Sense&) const = default;
};

// A sense key with a catalog entry: make_sense(kIllegalRequest, asc::kInvalidFieldInCdb).
constexpr Sense make_sense(std::uint8_t key, Asc code) {
  return Sense{key, code.asc, code.ascq, std::nullopt, std::nullopt};
}
// ILLEGAL REQUEST / INVALID FIELD IN CDB with a field pointer to `byte` (and `bit` if 0..7).
Sense invalid_field_in_cdb(std::uint16_t byte, int bit = -1);
// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST, field pointer into the data-out buffer.
Sense invalid_field_in_parameter_list(std::uint16_t byte, int bit = -1);

// Encodes fixed format (70h, 18 bytes) or descriptor format (72h: information descriptor 00h,
// sense-key specific descriptor 02h).
Bytes encode_sense(const Sense& sense, bool descriptor_format);

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

// Everything a sense buffer says.
struct SenseInfo {
  bool valid = false;       // a recognised response code with at least the sense key
  bool descriptor = false;  // descriptor format (72h/73h)
  bool deferred = false;    // 71h/73h: error of an earlier command
  bool has_asc = false;     // ASC/ASCQ were present (fixed: the additional length covers them)
  std::uint8_t response_code = 0;
  std::uint8_t key = 0;
  std::uint8_t asc = 0;
  std::uint8_t ascq = 0;
  bool info_valid = false;  // the INFORMATION field is set (e.g. the failing LBA)
  std::uint64_t information = 0;
  std::optional<std::array<std::uint8_t, 3>> sks;  // sense-key specific, SKSV set
  bool has_ata = false;                            // ata holds SAT's ATA status return
  AtaStatusReturn ata;

  Asc code() const { return Asc{asc, ascq}; }
};

// Decodes `sense` (the bytes the transport actually wrote). Never reads past the span.
SenseInfo decode_sense_info(ByteSpan sense) noexcept;
// The key, ASC/ASCQ, information and sense-key specific bytes; nullopt when the buffer holds no
// valid sense with an ASC/ASCQ.
std::optional<Sense> decode_sense(ByteSpan sense);

// "ILLEGAL REQUEST", ...; and "GOOD", "CHECK CONDITION", ... for statuses.
const char* sense_key_name(std::uint8_t key);
const char* status_name(std::uint8_t status);

}  // namespace ipsan::scsi
