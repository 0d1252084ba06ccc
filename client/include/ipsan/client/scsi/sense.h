// ipsan/client/scsi/sense.h: THE table that maps data-path errors (Errc) to SCSI status and
// sense, over the shared SCSI sense module (ipsan/scsi/sense.h: status codes, sense keys, the
// ASC/ASCQ catalog, encoding and decoding).
//
// Pure functions and value types; thread-safe.
//
// Errc -> SCSI (sense key, catalog entry); read (R) and write (W) direction where they differ:
//   kOk               GOOD
//   kAuthFailed       DATA PROTECT     kAccessDeniedNoAccessRights       20h/02h
//   kStaleSession     ABORTED COMMAND  kCommunicationFailure             08h/00h (retryable)
//   kUnknownDevice    ILLEGAL REQUEST  kLogicalUnitNotSupported          25h/00h
//   kLbaOutOfRange    ILLEGAL REQUEST  kLbaOutOfRange                    21h/00h
//   kInvalidArgument  ILLEGAL REQUEST  kInvalidFieldInCdb                24h/00h (no field pointer)
//   kTooLarge         ILLEGAL REQUEST  kInvalidFieldInCdb                24h/00h (no field pointer)
//   kIoError          HARDWARE ERROR   kInternalTargetFailure            44h/00h
//   kMediumError      MEDIUM ERROR     R: kUnrecoveredReadError 11h/00h, W: kWriteError 0Ch/00h
//   kWriteProtected   DATA PROTECT     kWriteProtected                   27h/00h
//   kNotSupported     ILLEGAL REQUEST  kInvalidCommandOperationCode      20h/00h
//   kNoSpace          DATA PROTECT     kSpaceAllocationFailedWriteProtect 27h/07h (SBC-3 4.7.3.7)
//   kNotReady         NOT READY        kNotReadyCauseNotReportable       04h/00h
//   kBusy             status BUSY (08h), no sense: the initiator retries
//   kSeqMisordered    ABORTED COMMAND  kCommunicationFailure             08h/00h (retryable)
//   kBadMessage       ABORTED COMMAND  kDataPhaseError                   4Bh/00h (corrupted in
//   transit) kMiscompare       MISCOMPARE       kMiscompareDuringVerify           1Dh/00h kTimeout
//   ABORTED COMMAND  kCommunicationTimeout             08h/01h (retryable) kConnectionLost ABORTED
//   COMMAND  kCommunicationFailure             08h/00h (retryable) kShutdown         NOT READY
//   kNotReadyCauseNotReportable       04h/00h kCapacityChanged  UNIT ATTENTION
//   kCapacityDataHasChanged           2Ah/09h kInternal         HARDWARE ERROR
//   kInternalTargetFailure            44h/00h
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
#include "ipsan/scsi/sense.h"

namespace ipsan::client::scsi {

// Status codes, sense keys, the ASC/ASCQ catalog (asc::k...), the Sense value and its encoding
// are the shared SCSI sense module's (ipsan/scsi/sense.h); these names keep the front end's
// spelling.
using ::ipsan::scsi::Asc;
using ::ipsan::scsi::decode_sense;
using ::ipsan::scsi::encode_sense;
using ::ipsan::scsi::invalid_field_in_cdb;
using ::ipsan::scsi::invalid_field_in_parameter_list;
using ::ipsan::scsi::kAbortedCommand;
using ::ipsan::scsi::kCopyAborted;
using ::ipsan::scsi::kDataProtect;
using ::ipsan::scsi::kHardwareError;
using ::ipsan::scsi::kIllegalRequest;
using ::ipsan::scsi::kMediumError;
using ::ipsan::scsi::kMiscompare;
using ::ipsan::scsi::kNoSense;
using ::ipsan::scsi::kNotReady;
using ::ipsan::scsi::kRecoveredError;
using ::ipsan::scsi::kStatusAcaActive;
using ::ipsan::scsi::kStatusBusy;
using ::ipsan::scsi::kStatusCheckCondition;
using ::ipsan::scsi::kStatusConditionMet;
using ::ipsan::scsi::kStatusGood;
using ::ipsan::scsi::kStatusReservationConflict;
using ::ipsan::scsi::kStatusTaskAborted;
using ::ipsan::scsi::kStatusTaskSetFull;
using ::ipsan::scsi::kUnitAttention;
using ::ipsan::scsi::make_sense;
using ::ipsan::scsi::Sense;
using ::ipsan::scsi::sense_key_name;
using ::ipsan::scsi::status_name;
namespace asc = ::ipsan::scsi::asc;

enum class Direction { kNone, kRead, kWrite };

// The outcome of an Errc: a status and, for CHECK CONDITION, the sense.
struct ErrcMapping {
  std::uint8_t status = kStatusGood;
  Sense sense;
};
// THE Errc -> SCSI table (see the header comment).
ErrcMapping map_errc(Errc e, Direction direction);

}  // namespace ipsan::client::scsi
