// ipsan/client/trace/trace.h: SCSI/ATA command traces, format "ipsan-trace v1" (docs/TRACES.md):
// the data model, the parser and the writer.
//
// A trace is a text file: first line `# ipsan-trace v1`, then one command per line:
//   scsi lun=0:1 cdb=2a00000000100000 0800 out=pattern:seed=7 status=good
//   scsi lun=1 cdb=28000000001000000100 status=check sense=5/21/00
//   ata lun=0 cmd=c8 count=1 lba=0x10 in=crc32c:1a2b3c4d
//   fault lun=0 op=read lba=100 errc=medium-error
// Parsing treats the text as hostile: every problem is an Error naming file:line and the cause.
//
// Threading: plain values and pure functions; thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"

namespace ipsan::client::trace {

inline constexpr std::string_view kTraceHeader = "# ipsan-trace v1";

// A seeded pattern (ipsan/base/pattern.h) over whole blocks. lba/blocks default to the command's
// own range (READ/WRITE/VERIFY/... CDBs, ATA read/write taskfiles).
struct PatternSpec {
  std::uint64_t seed = 0;
  std::optional<std::uint64_t> lba;
  std::optional<std::uint64_t> blocks;
  std::uint64_t generation = 0;
};

// Data-out: one part, or several joined with '+' (e.g. COMPARE AND WRITE's verify + write data).
struct DataOut {
  enum class Kind { kNone, kHex, kZeros, kPattern };
  Kind kind = Kind::kNone;
  Bytes hex;
  std::uint64_t zeros = 0;  // byte count; 0 = the command's own length
  PatternSpec pattern;
  std::vector<DataOut> more;  // the parts after the first
};

struct DataInCheck {
  enum class Kind { kAny, kHex, kPrefix, kCrc32c, kZeros, kPattern };
  Kind kind = Kind::kAny;
  Bytes hex;  // kHex: all bytes; kPrefix: the first bytes
  std::uint32_t crc = 0;
  PatternSpec pattern;
};

struct Expect {
  // SCSI: status code; ATA: status register.
  std::optional<std::uint8_t> status;
  // SCSI sense key/ASC/ASCQ; optional information field and sense-key specific bytes.
  std::optional<std::array<std::uint8_t, 3>> sense;
  std::optional<std::uint64_t> info;
  std::optional<std::array<std::uint8_t, 3>> sks;
  std::optional<std::int64_t> resid;  // > 0 underflow, < 0 overflow
  // ATA error register and output count register.
  std::optional<std::uint8_t> error;
  std::optional<std::uint16_t> count_out;
  std::optional<std::uint64_t> len;  // data-in length
  DataInCheck data;
};

struct Command {
  enum class Kind { kScsi, kAta, kFault };
  Kind kind = Kind::kScsi;
  int line = 0;
  std::uint32_t target = 0;
  std::uint32_t lun = 0;
  // scsi
  Bytes cdb;
  std::optional<std::uint32_t> edtl;  // expected data-in transfer length (default: automatic)
  // ata
  std::uint8_t ata_command = 0;
  std::uint16_t features = 0;
  std::uint16_t count = 0;
  std::uint64_t lba = 0;
  std::uint8_t device = 0x40;
  // both
  DataOut out;
  Expect expect;
  // fault: the raw key=value pairs for the runner's fault hook
  std::map<std::string, std::string> fault;
  std::string comment;  // trailing "# ..." text, kept by record mode
};

struct Trace {
  std::string name;  // file name, for messages
  std::vector<Command> commands;
};

// Parses `text` (the whole file); `name` is used in error messages ("name:line: ...").
Result<Trace, Error> parse_trace(std::string_view text, const std::string& name);
// Reads and parses a file.
Result<Trace, Error> load_trace(const std::string& path);
// Writes a trace in the v1 format (parse_trace(format_trace(t)) == t, comments aside).
std::string format_trace(const Trace& trace);
std::string format_command(const Command& command);

// Expected CDB length for an opcode by its group code (SPC-4 4.2.5.1); 0 = variable/vendor.
std::size_t cdb_length_for_opcode(std::uint8_t opcode);

// Name <-> value helpers shared with the runner.
std::optional<std::uint8_t> parse_scsi_status(std::string_view text);
std::string scsi_status_token(std::uint8_t status);

}  // namespace ipsan::client::trace
