// client/src/scsi/lu_internal.h (private): the per-command context and handler table of
// LogicalUnit. One Cmd lives (shared) until its completion has been called.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "ipsan/client/scsi/logical_unit.h"

namespace ipsan::client::scsi {

// LogicalUnit state copied under the mutex when a command starts.
struct Snapshot {
  bool attached = false;
  proto::Identity identity;
  std::uint64_t block_count = 0;
  std::uint32_t block_size = 512;
  ModeParameters mode;
  ModeParameters saved;
  ModeParameters defaults;
  bool stopped = false;
  bool prevent = false;         // some nexus prevents medium removal
  bool medium_present = true;
  LogicalUnitOptions options;
  bool sanitizing = false;
  bool sanitize_failed = false;
  std::uint16_t sanitize_progress = 0;
};

struct Cmd : std::enable_shared_from_this<Cmd> {
  Cmd(LogicalUnit& unit, const ScsiCommand& cmd, ScsiDone d)
      : lu(unit), command(cmd), data_out_size(cmd.data_out.size()), done(std::move(d)) {}
  LogicalUnit& lu;
  ScsiCommand command;
  const std::size_t data_out_size;  // as received (command.data_out may be moved out)
  ScsiDone done;
  Snapshot s;

  void good(Bytes data = {});
  // GOOD for a command that consumed `needed_bytes` of data-out (residual for any excess).
  void good_write(std::uint64_t needed_bytes);
  void check(const Sense& sense);
  // CHECK CONDITION for data-out shorter than `needed_bytes`.
  void short_data_out(std::uint64_t needed_bytes);
  // GOOD after writing only the whole blocks of a short data-out: overflow residual = the rest.
  void good_partial(std::uint64_t needed_bytes);
  void fail(Errc e, Direction direction);
};
using CmdPtr = std::shared_ptr<Cmd>;

struct OpInfoEntry {
  std::uint8_t opcode;
  std::uint16_t sa;
  bool has_sa;
  std::uint8_t cdb_length;
  std::array<std::uint8_t, 16> usage;  // CDB usage map (SPC-4 6.35.3)
  std::uint8_t flags;
  void (*handler)(CmdPtr);
  const char* name;
};

struct Rw;  // a decoded READ/WRITE-family CDB (logical_unit.cc)

// [lba, lba+blocks) is not inside the medium.
bool out_of_range(const Snapshot& s, std::uint64_t lba, std::uint64_t blocks);
// DATA PROTECT sense when the medium is read-only or software write protected.
std::optional<Sense> write_protect_sense(const Snapshot& s);
// Request flags of a WRITE: FUA when asked for or when the write cache is disabled.
std::uint32_t write_flags(const Snapshot& s, bool fua);

const std::vector<OpInfoEntry>& op_table();
const OpInfoEntry* find_op(std::uint8_t opcode, std::uint16_t sa);
bool opcode_has_service_actions(std::uint8_t opcode);
std::uint32_t max_compare_and_write_blocks(const Snapshot& s);
// MAXIMUM ATOMIC TRANSFER LENGTH (Block Limits VPD): 0 unless the server applies a WRITE with
// proto::kFlagAtomic all or nothing (kCapAtomicWrite); then what one request and one command carry.
std::uint32_t max_atomic_blocks(const Snapshot& s);
// Whether the logical unit offers the command (WRITE ATOMIC only with kCapAtomicWrite).
bool op_offered(const OpInfoEntry& e, const Snapshot& s);
// The designation descriptors of VPD page 83h (lu_pages.cc); CSCD descriptors name one of them.
std::vector<Bytes> lu_designators(const Snapshot& s);
// NOT READY, LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS with a progress indication.
Sense sanitize_in_progress(std::uint16_t progress);
// EXTENDED COPY limits (RECEIVE COPY RESULTS operating parameters; SPC-4 6.18.4).
inline constexpr std::uint16_t kXcopyMaxCscds = 2;
inline constexpr std::uint16_t kXcopyMaxSegments = 16;
inline constexpr std::uint32_t kXcopyMaxListBytes = 1024;

// A GenericTarget that paces the requests of one background operation (SANITIZE OVERWRITE,
// EXTENDED COPY) to LogicalUnitOptions::background_bytes_per_second: a request whose data would
// exceed the rate is issued later through LogicalUnitOptions::schedule. With `min_duration` (and
// the operation's `total_bytes`) the rate is at most total_bytes / min_duration, so that the
// operation lasts about that long; after_min_duration() runs the last step once it has. Keep it
// alive (shared) until the operation completes.
class Pacer : public GenericTarget, public std::enable_shared_from_this<Pacer> {
 public:
  Pacer(GenericTarget& inner, const LogicalUnitOptions& options, std::uint32_t block_size,
        std::uint64_t total_bytes = 0, std::chrono::nanoseconds min_duration = {});
  void execute(proto::Request request, std::function<void(proto::Reply)> done) override;
  // Runs `fn` now, or (through schedule) once min_duration has passed since the start.
  void after_min_duration(std::function<void()> fn);
  std::uint64_t rate() const { return rate_; }

 private:
  GenericTarget& inner_;
  const std::uint64_t rate_;
  const std::function<void(std::chrono::nanoseconds, std::function<void()>)> schedule_;
  const std::uint32_t block_size_;
  const std::chrono::steady_clock::time_point start_;
  const std::chrono::nanoseconds min_duration_;
  std::uint64_t bytes_ = 0;  // issued so far (requests of one chain are issued one at a time)
};

struct LuHandlers {
  static bool update_capacity(LogicalUnit& lu, const proto::Capacity& cap);
  static void capacity_then(CmdPtr c, std::function<void(CmdPtr)> then);

  static void test_unit_ready(CmdPtr c);
  static void request_sense(CmdPtr c);
  static void read(CmdPtr c);
  static void write(CmdPtr c);
  static void write_atomic(CmdPtr c);
  static void verify(CmdPtr c);
  static void write_and_verify(CmdPtr c);
  static void write_and_verify_blocks(CmdPtr c, const Rw& rw, std::uint64_t bytes,
                                      std::uint64_t needed);
  static void synchronize_cache(CmdPtr c);
  static void write_same(CmdPtr c);
  static void unmap(CmdPtr c);
  static void compare_and_write(CmdPtr c);
  static void orwrite(CmdPtr c);
  static void read_capacity10(CmdPtr c);
  static void read_capacity16(CmdPtr c);
  static void get_lba_status(CmdPtr c);
  static void start_stop_unit(CmdPtr c);
  static void prevent_allow(CmdPtr c);
  static void report_luns(CmdPtr c);
  static void prefetch(CmdPtr c);
  static void read_defect_data(CmdPtr c);
  // lu_sanitize.cc
  static void sanitize(CmdPtr c);
  // lu_copy.cc
  static void extended_copy(CmdPtr c);
  static void receive_copy_results(CmdPtr c);
  // lu_reservations.cc
  static void reserve6(CmdPtr c);
  static void release6(CmdPtr c);
  static void persistent_reserve_in(CmdPtr c);
  static void persistent_reserve_out(CmdPtr c);
  // lu_pages.cc
  static void inquiry(CmdPtr c);
  static void mode_sense(CmdPtr c);
  static void mode_select(CmdPtr c);
  static void report_supported_opcodes(CmdPtr c);
};

}  // namespace ipsan::client::scsi
