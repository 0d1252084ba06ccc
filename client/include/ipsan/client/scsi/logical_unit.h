// ipsan/client/scsi/logical_unit.h: the SCSI logical unit emulation of ipsan's client driver
// (patent FIG. 5 steps 515-575): decodes CDBs (SPC-4, SBC-3), answers INQUIRY locally from the
// identity cached at attach time, turns every medium command into generic requests
// (proto/generic.h) executed by a GenericTarget, and turns replies into status + sense.
//
// Threading: execute() may be called from any thread, also concurrently; internal state is under a
// mutex that is never held while calling the GenericTarget or a completion. Completions run on
// whatever thread the GenericTarget completes on (inline for synchronous targets). The
// GenericTarget must outlive the LogicalUnit, and the LogicalUnit must outlive attach() and every
// command in flight (completions refer to it).
//
// Ordering: commands are independent (SAM "simple" task attribute); a split transfer's chunks are
// issued one after another.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/client/scsi/sense.h"

namespace ipsan::client::scsi {

// "Transfer exactly what the command produces": no residual is computed.
inline constexpr std::uint32_t kAutoLength = std::numeric_limits<std::uint32_t>::max();

struct ScsiCommand {
  Bytes cdb;                                   // 6..16 bytes (longer is accepted, extra ignored)
  Bytes data_out;                              // data-out buffer (WRITE data, parameter lists)
  std::uint32_t data_in_length = kAutoLength;  // expected data-in transfer length (iSCSI EDTL)
  // The I_T nexus the command came through (iSCSI: "<InitiatorName>,i,0x<ISID>"); reservations
  // and unit attentions are kept per nexus. Empty = the default nexus of a local initiator.
  std::string nexus;
};

struct ScsiResult {
  std::uint8_t status = kStatusGood;
  Bytes sense;  // with CHECK CONDITION (autosense), fixed or descriptor format
  Bytes data_in;
  std::uint32_t residual = 0;  // bytes not transferred (underflow) or not asked for (overflow)
  bool overflow = false;       // true: residual counts bytes beyond the expected length
};

using ScsiDone = std::function<void(ScsiResult)>;

struct LogicalUnitOptions {
  std::uint64_t lun = 0;  // reported by a stand-alone REPORT LUNS (a Bus answers it otherwise)
  // Largest transfer of one command; reported as MAXIMUM TRANSFER LENGTH (Block Limits VPD).
  // Commands up to this size are split into requests of at most Identity::max_transfer_blocks.
  std::uint32_t max_command_bytes = 8u << 20;
  std::uint32_t max_unmap_descriptors = 256;
  std::uint32_t max_write_same_blocks = 1u << 22;
  // Physical block size reported by READ CAPACITY(16) (LOGICAL BLOCKS PER PHYSICAL BLOCK
  // EXPONENT) when larger than the logical block; 0 = same as the logical block.
  std::uint32_t physical_block_size = 0;
  // SANITIZE OVERWRITE / EXTENDED COPY move data in requests of at most this many bytes (and at
  // most Identity::max_transfer_blocks), one after another.
  std::uint32_t background_chunk_bytes = 1u << 20;
  // ... and move at most this many bytes per second (0: as fast as the target answers), so that a
  // sanitize or a large copy does not monopolise the SAN/IP link shared with the other LUNs.
  // Needs `schedule`.
  std::uint64_t background_bytes_per_second = 0;
  // A SANITIZE OVERWRITE takes at least this long (its writes are paced over it; 0: no minimum).
  // On a fast back end (a ramdisk) an overwrite otherwise ends before an initiator can observe it
  // in progress (libiscsi's Sanitize.Reset checks it is still running ~5 s after it started); on
  // a real disk it takes minutes to hours and the minimum changes nothing. Needs `schedule`.
  std::chrono::nanoseconds sanitize_min_duration = std::chrono::seconds(10);
  // Removable medium (INQUIRY RMB=1): START STOP UNIT with LOEJ ejects / loads the medium, PREVENT
  // ALLOW MEDIUM REMOVAL (per I_T nexus) keeps it in; without a medium, medium access commands
  // end NOT READY, MEDIUM NOT PRESENT. The medium is the same server device when loaded again.
  bool removable = false;
  // Write-protected export: MODE SENSE reports WP, commands that would change the medium end DATA
  // PROTECT, WRITE PROTECTED (as for a device the server exports read-only).
  bool read_only = false;
  // Runs `fn` once after `delay`, on any thread (the iSCSI portal: a timer of the SAN/IP driver's
  // io_context). Empty: background operations are not paced.
  std::function<void(std::chrono::nanoseconds delay, std::function<void()> fn)> schedule;
};

// Mode parameters that the emulation implements (SPC-4 7.5, SBC-3 6.4).
struct ModeParameters {
  bool wce = true;       // caching page: write cache enabled (writes without FUA may be volatile)
  bool rcd = false;      // caching page: read cache disable (accepted, no effect)
  bool d_sense = false;  // control page: descriptor format sense data
  bool swp = false;      // control page: software write protect
  bool operator==(const ModeParameters&) const = default;
};

class LogicalUnit {
 public:
  LogicalUnit(GenericTarget& target, std::uint32_t device_id, LogicalUnitOptions options = {});
  LogicalUnit(const LogicalUnit&) = delete;
  LogicalUnit& operator=(const LogicalUnit&) = delete;

  // Fetches and caches the identity (one IDENTIFY request) and establishes the unit attention
  // POWER ON, RESET, OR BUS DEVICE RESET OCCURRED. `done` gets the IDENTIFY status.
  void attach(std::function<void(Errc)> done);
  bool attached() const;
  proto::Identity identity() const;
  std::uint32_t device_id() const { return device_id_; }
  GenericTarget& target() const { return real_target_; }

  void execute(const ScsiCommand& command, ScsiDone done);

  // Logical unit reset: mode parameters back to saved values, medium started, removal allowed,
  // pending unit attentions replaced by 29h/00h.
  void reset();
  // The I_T nexus ended (iSCSI session closed): its RESERVE(6) reservation and medium-removal
  // prevention end with it (persistent reservations stay).
  void nexus_lost(const std::string& nexus);
  ModeParameters mode_parameters() const;

 private:
  friend struct LuHandlers;  // the per-command handlers (src/scsi/lu_internal.h)
  friend struct Cmd;

  // Every request of the logical unit passes here on its way to the real target: a WRITE ends
  // the "erased by SANITIZE, nothing written since" state that GET LBA STATUS reports.
  class Tap : public GenericTarget {
   public:
    Tap(LogicalUnit& lu, GenericTarget& real) : lu_(lu), real_(real) {}
    void execute(proto::Request request, std::function<void(proto::Reply)> done) override;

   private:
    LogicalUnit& lu_;
    GenericTarget& real_;
  };

  GenericTarget& real_target_;
  Tap tap_;
  GenericTarget& target_;  // = tap_
  const std::uint32_t device_id_;
  const LogicalUnitOptions options_;

  mutable std::mutex mu_;
  bool attached_ = false;
  proto::Identity identity_;
  std::uint64_t block_count_ = 0;
  std::uint32_t block_size_ = 512;
  ModeParameters current_;
  ModeParameters saved_;
  ModeParameters default_;
  // Unit attentions per I_T nexus ("" = the default nexus). A nexus is known from its first
  // command on; conditions for "every nexus" go to every known one.
  std::map<std::string, std::deque<Sense>> unit_attentions_;
  bool stopped_ = false;
  bool medium_present_ = true;          // removable units only: false after an eject
  std::set<std::string> prevent_removal_;  // the nexuses that PREVENT MEDIUM REMOVAL

  // Reservations (SPC-4 5.13 persistent; SPC-2 RESERVE(6)), shared by every nexus of this LU.
  struct Reservations {
    std::map<std::string, std::uint64_t> keys;  // registered nexus -> reservation key
    std::uint32_t generation = 0;
    bool held = false;
    std::string holder;  // for the all-registrants types: the nexus that reserved
    std::uint8_t type = 0;
    std::optional<std::string> reserve6;  // RESERVE(6) holder
  };
  Reservations pr_;

  // SANITIZE (SBC-4 4.11): while one runs, medium commands end NOT READY, SANITIZE IN PROGRESS;
  // a failed one leaves the unit in sanitize failure mode until EXIT FAILURE MODE (or success).
  bool sanitizing_ = false;
  bool sanitize_failed_ = false;
  std::uint64_t sanitize_done_ = 0;   // progress: blocks (or passes x blocks) done
  std::uint64_t sanitize_total_ = 0;  // ... of this many
  // The whole medium was deallocated by SANITIZE BLOCK/CRYPTO ERASE through this unit and no WRITE
  // was issued since (GET LBA STATUS may then report deallocated blocks beyond what it reads).
  bool erased_all_ = false;

  // EXTENDED COPY (LID1) status held per (I_T nexus, list identifier) for RECEIVE COPY RESULTS.
  struct CopyStatus {
    std::uint8_t status = 0;  // 00h in progress, 01h completed, 02h completed with an error
    bool hold = true;         // LIST ID USAGE 00b: held after completion until reported
    std::uint16_t segments = 0;
    std::uint64_t bytes = 0;
  };
  std::map<std::pair<std::string, std::uint8_t>, CopyStatus> copies_;

  // Under mu_.
  std::uint16_t sanitize_progress_locked() const;  // 0..65535 (SPC-4 progress indication)
  void ua_all(const Sense& sense, const std::string* except = nullptr);
  void ua_one(const std::string& nexus, const Sense& sense);
  bool reservation_conflict(const Bytes& cdb, const std::string& nexus) const;
};

// Standard INQUIRY data for a LUN without a logical unit (peripheral qualifier 011b, type 1Fh).
Bytes inquiry_data_no_lun(std::uint32_t allocation_length);
// REPORT LUNS parameter data for `luns` (SAM-5 single-level LUN encoding: peripheral addressing
// below 256, flat space addressing up to 16383).
Bytes report_luns_data(const std::vector<std::uint64_t>& luns);
// Completes a command with the data it produced, applying SPC-4 residual rules against
// command.data_in_length.
ScsiResult good_result(const ScsiCommand& command, Bytes data);
ScsiResult check_condition(const Sense& sense, bool descriptor_format);

}  // namespace ipsan::client::scsi
