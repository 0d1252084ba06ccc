// ipsan/replay/iscsi.h: real iSCSI traffic (RFC 7143) from a capture -> SCSI commands with the
// target's answers, ready to be replayed through ipsan's client driver or written as a trace.
//
// Per TCP connection (options.port, or any connection that begins with an iSCSI login), both byte
// streams are reassembled (tcp_stream.h) and cut into PDUs: 48-byte BHS, AHS (TotalAHSLength
// words), header digest, data segment padded to 4 bytes, data digest. Digests are used when the
// connection's login (whose PDUs never carry digests) negotiated HeaderDigest/DataDigest=CRC32C:
// the target's final Login Response decides. PDUs may straddle TCP segments and several may share
// one; the stream is parsed as a whole. Commands are tracked by Initiator Task Tag: SCSI Command
// (CDB, extended CDB AHS, EDTL, immediate data), Data-Out (by buffer offset), R2T (ignored),
// Data-In (with optional status), SCSI Response (status, residuals, sense data).
//
// Everything here is untrusted: a PDU that does not parse (or fails its header digest) ends that
// stream (its later commands are skipped), one that fails its data digest is dropped (the target
// dropped it too), a connection whose login was not captured is skipped, commands without a
// response are skipped; each with a counted reason, never a crash.
//
// Threading: pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"
#include "ipsan/client/trace/trace.h"
#include "ipsan/iscsi/wire/pdu.h"
#include "ipsan/replay/capture.h"

namespace ipsan::replay::iscsi {

inline constexpr std::uint16_t kDefaultPort = 3260;
inline constexpr std::uint32_t kMaxCommandBytes = 64u << 20;  // larger EDTLs are not imported

// The PDU framing, digests, opcodes, text keys and LUN field are the portal's own codec
// (ipsan/iscsi/wire/pdu.h), one implementation for both directions of the project.
namespace wire = ::ipsan::iscsi;

// One SCSI command as the capture shows it.
struct ImportedCommand {
  std::size_t order = 0;  // position in the capture (by command time)
  std::chrono::nanoseconds time{};
  std::string connection;  // "initiator -> target"
  std::uint32_t itt = 0;
  std::uint32_t lun = 0;
  Bytes cdb;
  std::uint32_t edtl = 0;
  bool read = false;   // R bit
  bool write = false;  // W bit
  Bytes data_out;
  Bytes data_in;
  std::uint8_t status = 0;
  Bytes sense;
  std::int64_t resid = 0;  // > 0 underflow, < 0 overflow (iSCSI U/O bits)
  std::string skip;        // non-empty: not usable (why)
};

struct IscsiCapture {
  std::vector<ImportedCommand> commands;
  std::size_t connections = 0;
  std::size_t pdus = 0;
  SkipCounts skipped;  // PDUs, streams and connections that could not be used
};

struct ImportOptions {
  // 0: every TCP connection that begins with an iSCSI login (any port).
  std::uint16_t port = 0;
};

IscsiCapture import_iscsi(const CaptureFile& capture, const ImportOptions& options);
// The same for one connection's two byte streams (tests, fuzzing).
IscsiCapture import_iscsi_streams(ByteSpan initiator, ByteSpan target);

// Byte ranges [begin, end) of a command's data-in in which two correct targets legitimately
// differ (docs/CAPTURE.md "Intended differences"); an end of SIZE_MAX also covers the length
// (and the residual). Empty for commands without such fields.
using MaskList = std::vector<std::pair<std::size_t, std::size_t>>;
MaskList intended_difference_masks(const Bytes& cdb);

// The trace line for an imported command: cdb, data-out as hex, and the target's answer (status,
// sense, residual, data-in length and data). With `exact` false, data-in with intended
// differences is checked only up to the first of them (a prefix), and the captured bytes go
// into the line's comment.
client::trace::Command to_trace_command(const ImportedCommand& c, bool exact);
client::trace::Trace to_trace(const IscsiCapture& capture, const std::string& name, bool exact);

}  // namespace ipsan::replay::iscsi
