#include "ipsan/base/errc.h"

namespace ipsan {

std::string_view to_string(Errc e) noexcept {
  switch (e) {
    case Errc::kOk: return "ok";
    case Errc::kAuthFailed: return "auth-failed";
    case Errc::kStaleSession: return "stale-session";
    case Errc::kUnknownDevice: return "unknown-device";
    case Errc::kLbaOutOfRange: return "lba-out-of-range";
    case Errc::kInvalidArgument: return "invalid-argument";
    case Errc::kTooLarge: return "too-large";
    case Errc::kIoError: return "io-error";
    case Errc::kMediumError: return "medium-error";
    case Errc::kWriteProtected: return "write-protected";
    case Errc::kNotSupported: return "not-supported";
    case Errc::kNoSpace: return "no-space";
    case Errc::kNotReady: return "not-ready";
    case Errc::kBusy: return "busy";
    case Errc::kSeqMisordered: return "seq-misordered";
    case Errc::kBadMessage: return "bad-message";
    case Errc::kMiscompare: return "miscompare";
    case Errc::kTimeout: return "timeout";
    case Errc::kConnectionLost: return "connection-lost";
    case Errc::kShutdown: return "shutdown";
    case Errc::kCapacityChanged: return "capacity-changed";
    case Errc::kInternal: return "internal";
  }
  return "unknown";
}

Errc errc_from_wire(std::uint32_t v) noexcept {
  return v <= kErrcMax ? static_cast<Errc>(v) : Errc::kBadMessage;
}

}  // namespace ipsan
