// THE Errc -> SCSI status and sense table (ipsan/client/scsi/sense.h).
#include "ipsan/client/scsi/sense.h"

namespace ipsan::client::scsi {

ErrcMapping map_errc(Errc e, Direction direction) {
  auto check = [](std::uint8_t key, Asc code) {
    return ErrcMapping{kStatusCheckCondition, make_sense(key, code)};
  };
  switch (e) {
    case Errc::kOk: return ErrcMapping{};
    case Errc::kAuthFailed: return check(kDataProtect, asc::kAccessDeniedNoAccessRights);
    case Errc::kStaleSession: return check(kAbortedCommand, asc::kCommunicationFailure);
    case Errc::kUnknownDevice: return check(kIllegalRequest, asc::kLogicalUnitNotSupported);
    case Errc::kLbaOutOfRange: return check(kIllegalRequest, asc::kLbaOutOfRange);
    case Errc::kInvalidArgument: return check(kIllegalRequest, asc::kInvalidFieldInCdb);
    case Errc::kTooLarge: return check(kIllegalRequest, asc::kInvalidFieldInCdb);
    case Errc::kIoError: return check(kHardwareError, asc::kInternalTargetFailure);
    case Errc::kMediumError:
      return direction == Direction::kWrite ? check(kMediumError, asc::kWriteError)
                                            : check(kMediumError, asc::kUnrecoveredReadError);
    case Errc::kWriteProtected: return check(kDataProtect, asc::kWriteProtected);
    case Errc::kNotSupported: return check(kIllegalRequest, asc::kInvalidCommandOperationCode);
    case Errc::kNoSpace: return check(kDataProtect, asc::kSpaceAllocationFailedWriteProtect);
    case Errc::kNotReady: return check(kNotReady, asc::kNotReadyCauseNotReportable);
    case Errc::kBusy: return ErrcMapping{kStatusBusy, Sense{}};
    case Errc::kSeqMisordered: return check(kAbortedCommand, asc::kCommunicationFailure);
    case Errc::kBadMessage: return check(kAbortedCommand, asc::kDataPhaseError);
    case Errc::kMiscompare: return check(kMiscompare, asc::kMiscompareDuringVerify);
    case Errc::kTimeout: return check(kAbortedCommand, asc::kCommunicationTimeout);
    case Errc::kConnectionLost: return check(kAbortedCommand, asc::kCommunicationFailure);
    case Errc::kShutdown: return check(kNotReady, asc::kNotReadyCauseNotReportable);
    case Errc::kCapacityChanged: return check(kUnitAttention, asc::kCapacityDataHasChanged);
    case Errc::kInternal: return check(kHardwareError, asc::kInternalTargetFailure);
  }
  return check(kHardwareError, asc::kInternalTargetFailure);  // a value outside the enum
}

}  // namespace ipsan::client::scsi
