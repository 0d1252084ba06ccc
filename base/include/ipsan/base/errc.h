// ipsan/base/errc.h: the one error enumeration of the data path.
//
// Every layer (backends, protocol, server, client driver) reports failures with an Errc. The numeric
// values are part of the wire protocol (docs/PROTOCOL.md, proto/ipsan.x: enum ipsan_status) and must
// never be renumbered. Front ends map Errc to SCSI sense / ATA status through one table each.
#pragma once

#include <cstdint>
#include <string_view>

namespace ipsan {

enum class Errc : std::uint32_t {
  kOk = 0,
  kAuthFailed = 1,        // wrong key, bad MAC, or request before login
  kStaleSession = 2,      // session unknown to this server (e.g. it restarted): log in again
  kUnknownDevice = 3,     // device id not exported to this client
  kLbaOutOfRange = 4,     // request reaches past the end of the device
  kInvalidArgument = 5,   // a field is out of its allowed range
  kTooLarge = 6,          // request larger than the negotiated maximum
  kIoError = 7,           // back end failed (unspecified)
  kMediumError = 8,       // unrecovered read/write error on the medium
  kWriteProtected = 9,    // device or export is read-only
  kNotSupported = 10,     // operation not supported by this device
  kNoSpace = 11,          // back end out of space (thin/sparse provisioning)
  kNotReady = 12,         // device present but not ready
  kBusy = 13,             // server out of resources; retry later
  kSeqMisordered = 14,    // slot sequence is stale or ahead: request not executed
  kBadMessage = 15,       // malformed or truncated message (decode error)
  kMiscompare = 16,       // compare-and-write found different data
  kTimeout = 17,          // local: no answer within the configured time
  kConnectionLost = 18,   // local: transport closed or peer declared dead
  kShutdown = 19,         // local or remote: shutting down
  kCapacityChanged = 20,  // device capacity changed since the client last asked (unit attention)
  kInternal = 21,         // a bug: an invariant did not hold
};

inline constexpr std::uint32_t kErrcMax = 21;

// Stable lower-case name, e.g. "lba-out-of-range".
std::string_view to_string(Errc e) noexcept;

// Maps a wire value to Errc; unknown values become kBadMessage.
Errc errc_from_wire(std::uint32_t v) noexcept;

}  // namespace ipsan
