// SCSI logical unit emulation: dispatch, unit attentions, and the medium commands (SBC-3).
// The decoding of each CDB field follows SPC-4 / SBC-3; field pointers in sense data point at the
// first byte (and most significant bit) of the offending field.
#include "ipsan/client/scsi/logical_unit.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <utility>

#include "ipsan/proto/codec.h"
#include "scsi/io_chain.h"
#include "scsi/lu_internal.h"

namespace ipsan::client::scsi {

using detail::Chain;
using detail::run_chain;

// ---------------------------------------------------------------------------------------------
// Results.

ScsiResult good_result(const ScsiCommand& command, Bytes data) {
  ScsiResult r;
  r.status = kStatusGood;
  if (command.data_in_length != kAutoLength) {
    const std::size_t edtl = command.data_in_length;
    if (data.size() > edtl) {
      r.residual = static_cast<std::uint32_t>(data.size() - edtl);
      r.overflow = true;
      data.resize(edtl);
    } else if (data.size() < edtl) {
      r.residual = static_cast<std::uint32_t>(edtl - data.size());
    }
  }
  r.data_in = std::move(data);
  return r;
}

ScsiResult check_condition(const Sense& sense, bool descriptor_format) {
  ScsiResult r;
  r.status = kStatusCheckCondition;
  r.sense = encode_sense(sense, descriptor_format);
  return r;
}

void Cmd::good(Bytes data) { done(good_result(command, std::move(data))); }

void Cmd::good_write(std::uint64_t needed_bytes) {
  ScsiResult r = good_result(command, {});
  if (command.data_in_length == kAutoLength || command.data_in_length == 0) {
    r.residual = 0;
    r.overflow = false;
  }
  if (data_out_size > needed_bytes) {
    r.residual = static_cast<std::uint32_t>(data_out_size - needed_bytes);
    r.overflow = false;
  }
  done(std::move(r));
}

void Cmd::check(const Sense& sense) { done(check_condition(sense, s.mode.d_sense)); }

void Cmd::short_data_out(std::uint64_t needed_bytes) {
  // The initiator sent less data-out than the CDB asks for (iSCSI: EDTL too small). As iSCSI
  // targets do (and libiscsi's residual tests accept): ILLEGAL REQUEST, INVALID FIELD IN
  // INFORMATION UNIT, nothing written, overflow residual = the missing bytes.
  ScsiResult r = check_condition(
      make_sense(kIllegalRequest, asc::kInvalidFieldInCommandInformationUnit), s.mode.d_sense);
  r.residual = static_cast<std::uint32_t>(needed_bytes - data_out_size);
  r.overflow = true;
  done(std::move(r));
}

void Cmd::good_partial(std::uint64_t needed_bytes) {
  ScsiResult r = good_result(command, {});
  r.residual = static_cast<std::uint32_t>(needed_bytes -
                                          std::min<std::uint64_t>(needed_bytes, data_out_size));
  r.overflow = r.residual != 0;
  done(std::move(r));
}

void Cmd::fail(Errc e, Direction direction) {
  if (e == Errc::kCapacityChanged) {
    // The server says the size changed: learn the new size, then report the unit attention.
    auto self = shared_from_this();
    proto::Request r;
    r.op = proto::Op::kCapacity;
    r.device_id = lu.device_id_;
    lu.target_.execute(std::move(r), [self](proto::Reply reply) {
      if (reply.status == Errc::kOk) LuHandlers::update_capacity(self->lu, reply.capacity);
      {
        std::lock_guard<std::mutex> lock(self->lu.mu_);
        self->lu.ua_all(make_sense(kUnitAttention, asc::kCapacityDataHasChanged),
                        &self->command.nexus);
      }
      self->check(make_sense(kUnitAttention, asc::kCapacityDataHasChanged));
    });
    return;
  }
  const ErrcMapping m = map_errc(e, direction);
  if (m.status == kStatusCheckCondition) {
    check(m.sense);
  } else {
    ScsiResult r;
    r.status = m.status;
    done(std::move(r));
  }
}

// ---------------------------------------------------------------------------------------------
// The command table.

namespace {
constexpr std::uint8_t kAllowStopped = 1;    // allowed while the medium is stopped
constexpr std::uint8_t kNoUa = 2;            // does not report (or clear) unit attentions
constexpr std::uint8_t kNoAttach = 4;        // works before attach completed
constexpr std::uint8_t kDuringSanitize = 8;  // allowed while a SANITIZE runs (SBC-4 4.11.2)
}  // namespace

const std::vector<OpInfoEntry>& op_table() {
  using H = LuHandlers;
  // clang-format off
  static const std::vector<OpInfoEntry> kTable = {
      {0x00, 0, false, 6, {0x00, 0, 0, 0, 0, 0}, 0, &H::test_unit_ready, "TEST UNIT READY"},
      {0x03, 0, false, 6, {0x03, 0x01, 0, 0, 0xFF, 0},
       kAllowStopped | kNoUa | kNoAttach | kDuringSanitize, &H::request_sense, "REQUEST SENSE"},
      {0x08, 0, false, 6, {0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0}, 0, &H::read, "READ(6)"},
      {0x0A, 0, false, 6, {0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0}, 0, &H::write, "WRITE(6)"},
      {0x12, 0, false, 6, {0x12, 0x01, 0xFF, 0xFF, 0xFF, 0},
       kAllowStopped | kNoUa | kNoAttach | kDuringSanitize, &H::inquiry, "INQUIRY"},
      {0x15, 0, false, 6, {0x15, 0x11, 0, 0, 0xFF, 0}, kAllowStopped, &H::mode_select,
       "MODE SELECT(6)"},
      {0x1A, 0, false, 6, {0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0}, kAllowStopped, &H::mode_sense,
       "MODE SENSE(6)"},
      {0x1B, 0, false, 6, {0x1B, 0x01, 0, 0x0F, 0xF7, 0}, kAllowStopped, &H::start_stop_unit,
       "START STOP UNIT"},
      {0x16, 0, false, 6, {0x16, 0, 0, 0, 0, 0}, kAllowStopped, &H::reserve6, "RESERVE(6)"},
      {0x17, 0, false, 6, {0x17, 0, 0, 0, 0, 0}, kAllowStopped, &H::release6, "RELEASE(6)"},
      {0x1E, 0, false, 6, {0x1E, 0, 0, 0, 0x03, 0}, kAllowStopped, &H::prevent_allow,
       "PREVENT ALLOW MEDIUM REMOVAL"},
      {0x25, 0, false, 10, {0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0}, 0,
       &H::read_capacity10, "READ CAPACITY(10)"},
      {0x28, 0, false, 10, {0x28, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0, &H::read,
       "READ(10)"},
      {0x2A, 0, false, 10, {0x2A, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0, &H::write,
       "WRITE(10)"},
      {0x2E, 0, false, 10, {0x2E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0,
       &H::write_and_verify, "WRITE AND VERIFY(10)"},
      {0x2F, 0, false, 10, {0x2F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0, &H::verify,
       "VERIFY(10)"},
      {0x34, 0, false, 10, {0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0,
       &H::prefetch, "PRE-FETCH(10)"},
      {0x37, 0, false, 10, {0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0}, 0, &H::read_defect_data,
       "READ DEFECT DATA(10)"},
      {0x35, 0, false, 10, {0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0,
       &H::synchronize_cache, "SYNCHRONIZE CACHE(10)"},
      {0x41, 0, false, 10, {0x41, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0}, 0,
       &H::write_same, "WRITE SAME(10)"},
      {0x42, 0, false, 10, {0x42, 0x01, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0}, 0, &H::unmap, "UNMAP"},
      {0x48, 0x01, true, 10, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, 0, &H::sanitize,
       "SANITIZE (OVERWRITE)"},
      {0x48, 0x02, true, 10, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, 0, &H::sanitize,
       "SANITIZE (BLOCK ERASE)"},
      {0x48, 0x03, true, 10, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, 0, &H::sanitize,
       "SANITIZE (CRYPTO ERASE)"},
      {0x48, 0x1F, true, 10, {0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, 0, &H::sanitize,
       "SANITIZE (EXIT FAILURE MODE)"},
      {0x55, 0, false, 10, {0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, kAllowStopped,
       &H::mode_select, "MODE SELECT(10)"},
      {0x5A, 0, false, 10, {0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0}, kAllowStopped,
       &H::mode_sense, "MODE SENSE(10)"},
      {0x5E, 0, false, 10, {0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0}, kAllowStopped,
       &H::persistent_reserve_in, "PERSISTENT RESERVE IN"},
      {0x5F, 0, false, 10, {0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0}, kAllowStopped,
       &H::persistent_reserve_out, "PERSISTENT RESERVE OUT"},
      {0x83, 0x00, true, 16,
       {0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, 0, &H::extended_copy,
       "EXTENDED COPY(LID1)"},
      {0x84, 0x00, true, 16,
       {0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kAllowStopped,
       &H::receive_copy_results, "RECEIVE COPY RESULTS (COPY STATUS)"},
      {0x84, 0x03, true, 16,
       {0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, kAllowStopped,
       &H::receive_copy_results, "RECEIVE COPY RESULTS (OPERATING PARAMETERS)"},
      {0x88, 0, false, 16,
      {0x88, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::read, "READ(16)"},
      {0x89, 0, false, 16,
       {0x89, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0}, 0,
       &H::compare_and_write, "COMPARE AND WRITE"},
      {0x8A, 0, false, 16,
      {0x8A, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::write, "WRITE(16)"},
      {0x8B, 0, false, 16,
      {0x8B, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::orwrite, "ORWRITE(16)"},
      {0x8E, 0, false, 16,
      {0x8E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::write_and_verify, "WRITE AND VERIFY(16)"},
      {0x8F, 0, false, 16,
      {0x8F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::verify, "VERIFY(16)"},
      {0x90, 0, false, 16,
      {0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::prefetch, "PRE-FETCH(16)"},
      {0x91, 0, false, 16,
      {0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::synchronize_cache, "SYNCHRONIZE CACHE(16)"},
      {0x93, 0, false, 16,
      {0x93, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0},
       0, &H::write_same, "WRITE SAME(16)"},
      {0x9C, 0, false, 16,
      {0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0x1F, 0},
       0, &H::write_atomic, "WRITE ATOMIC(16)"},
      {0x9E, 0x10, true, 16,
      {0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0},
       0, &H::read_capacity16, "READ CAPACITY(16)"},
      {0x9E, 0x12, true, 16,
      {0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, 0,
       &H::get_lba_status, "GET LBA STATUS"},
      {0xA0, 0, false, 12, {0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
       kAllowStopped | kNoUa | kNoAttach | kDuringSanitize, &H::report_luns, "REPORT LUNS"},
      {0xA3, 0x0C, true, 12, {0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0},
       kAllowStopped | kNoAttach, &H::report_supported_opcodes,
       "REPORT SUPPORTED OPERATION CODES"},
      {0xA8, 0, false, 12, {0xA8, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0}, 0,
       &H::read, "READ(12)"},
      {0xAA, 0, false, 12, {0xAA, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0}, 0,
       &H::write, "WRITE(12)"},
      {0xAE, 0, false, 12, {0xAE, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0}, 0,
       &H::write_and_verify, "WRITE AND VERIFY(12)"},
      {0xAF, 0, false, 12, {0xAF, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0}, 0,
       &H::verify, "VERIFY(12)"},
      {0xB7, 0, false, 12, {0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0}, 0,
       &H::read_defect_data, "READ DEFECT DATA(12)"},
  };
  // clang-format on
  return kTable;
}

bool opcode_has_service_actions(std::uint8_t opcode) {
  return opcode == 0x9E || opcode == 0xA3 || opcode == 0x48 || opcode == 0x83 || opcode == 0x84;
}

const OpInfoEntry* find_op(std::uint8_t opcode, std::uint16_t sa) {
  const bool has_sa = opcode_has_service_actions(opcode);
  for (const auto& e : op_table()) {
    if (e.opcode == opcode && (!has_sa || e.sa == sa)) return &e;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// LogicalUnit.

namespace {
LogicalUnitOptions sane(LogicalUnitOptions o) {
  o.max_command_bytes = std::max<std::uint32_t>(o.max_command_bytes, 4096);
  o.max_write_same_blocks = std::max<std::uint32_t>(o.max_write_same_blocks, 1);
  o.background_chunk_bytes = std::clamp<std::uint32_t>(o.background_chunk_bytes, 4096, 64u << 20);
  return o;
}
}  // namespace

LogicalUnit::LogicalUnit(GenericTarget& target, std::uint32_t device_id, LogicalUnitOptions options)
    : real_target_(target),
      tap_(*this, target),
      target_(tap_),
      device_id_(device_id),
      options_(sane(options)) {}

void LogicalUnit::Tap::execute(proto::Request request, std::function<void(proto::Reply)> done) {
  if (request.op == proto::Op::kWrite) {
    std::lock_guard<std::mutex> lock(lu_.mu_);
    lu_.erased_all_ = false;
  }
  real_.execute(std::move(request), std::move(done));
}

void LogicalUnit::attach(std::function<void(Errc)> done) {
  proto::Request r;
  r.op = proto::Op::kIdentify;
  r.device_id = device_id_;
  target_.execute(std::move(r), [this, done = std::move(done)](proto::Reply reply) {
    Errc e = reply.status;
    const auto& id = reply.identity;
    // The identity comes from the network: refuse geometry that would break the arithmetic.
    if (e == Errc::kOk && !proto::valid_geometry(id.block_size, id.block_count)) {
      e = Errc::kBadMessage;
    }
    if (e == Errc::kOk) {
      std::lock_guard<std::mutex> lock(mu_);
      identity_ = id;
      block_size_ = id.block_size;
      block_count_ = id.block_count;
      default_ = ModeParameters{};
      default_.wce = (id.capabilities & proto::kCapFlush) != 0;
      current_ = saved_ = default_;
      unit_attentions_[""];
      ua_all(make_sense(kUnitAttention, asc::kPowerOnResetOccurred));
      stopped_ = false;
      medium_present_ = true;
      prevent_removal_.clear();
      attached_ = true;
    }
    done(e);
  });
}

bool LogicalUnit::attached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attached_;
}

proto::Identity LogicalUnit::identity() const {
  std::lock_guard<std::mutex> lock(mu_);
  return identity_;
}

ModeParameters LogicalUnit::mode_parameters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

void LogicalUnit::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  current_ = saved_;
  stopped_ = false;
  prevent_removal_.clear();  // a logical unit reset allows medium removal (SPC-4 6.13)
  pr_.reserve6.reset();      // a reset ends RESERVE(6), not persistent reservations
  // A running SANITIZE goes on (SBC-4 4.11.2); held EXTENDED COPY results are discarded.
  for (auto it = copies_.begin(); it != copies_.end();) {
    it = it->second.status != 0 ? copies_.erase(it) : std::next(it);
  }
  unit_attentions_[""];
  ua_all(make_sense(kUnitAttention, asc::kPowerOnResetOccurred));
}

void LogicalUnit::ua_all(const Sense& sense, const std::string* except) {
  for (auto& [nexus, q] : unit_attentions_) {
    if (except != nullptr && nexus == *except) continue;
    if (sense.asc == 0x29) q.clear();  // a reset supersedes what was pending
    if (q.size() < 16) q.push_back(sense);
  }
}

void LogicalUnit::ua_one(const std::string& nexus, const Sense& sense) {
  auto& q = unit_attentions_[nexus];
  if (q.size() < 16) q.push_back(sense);
}

std::uint16_t LogicalUnit::sanitize_progress_locked() const {
  if (sanitize_total_ == 0) return 0;
  const std::uint64_t done = std::min(sanitize_done_, sanitize_total_);
  return static_cast<std::uint16_t>(static_cast<double>(done) /
                                    static_cast<double>(sanitize_total_) * 65535.0);
}

Sense sanitize_in_progress(std::uint16_t progress) {
  Sense s = make_sense(kNotReady, asc::kNotReadySanitizeInProgress);
  s.sks = std::array<std::uint8_t, 3>{0x80, static_cast<std::uint8_t>(progress >> 8),
                                      static_cast<std::uint8_t>(progress)};
  return s;
}

void LogicalUnit::nexus_lost(const std::string& nexus) {
  std::lock_guard<std::mutex> lock(mu_);
  // EXTENDED COPY results held for the nexus go with it (SPC-4 5.17.4.3).
  for (auto it = copies_.begin(); it != copies_.end();) {
    it = (it->first.first == nexus && it->second.status != 0) ? copies_.erase(it) : std::next(it);
  }
  if (pr_.reserve6 && *pr_.reserve6 == nexus) pr_.reserve6.reset();
  prevent_removal_.erase(nexus);
  // The nexus may come back (same initiator port): it then starts with I_T NEXUS LOSS OCCURRED.
  auto it = unit_attentions_.find(nexus);
  if (it != unit_attentions_.end())
    it->second.assign(1, make_sense(kUnitAttention, asc::kItNexusLossOccurred));
}

void LogicalUnit::execute(const ScsiCommand& command, ScsiDone done) {
  auto c = std::make_shared<Cmd>(*this, command, std::move(done));
  const Bytes& cdb = c->command.cdb;
  std::optional<Sense> ua;
  bool conflict = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    c->s.attached = attached_;
    c->s.identity = identity_;
    c->s.block_count = block_count_;
    c->s.block_size = block_size_;
    c->s.mode = current_;
    c->s.saved = saved_;
    c->s.defaults = default_;
    c->s.stopped = stopped_;
    c->s.prevent = !prevent_removal_.empty();
    c->s.medium_present = medium_present_;
    c->s.options = options_;
    c->s.sanitizing = sanitizing_;
    c->s.sanitize_failed = sanitize_failed_;
    c->s.sanitize_progress = sanitize_progress_locked();
    auto& uas = unit_attentions_[c->command.nexus];
    if (!cdb.empty() && cdb[0] != 0x12 && cdb[0] != 0xA0 && cdb[0] != 0x03 && !uas.empty()) {
      ua = uas.front();
      uas.pop_front();
    }
    conflict = !ua && !cdb.empty() && reservation_conflict(cdb, c->command.nexus);
  }
  if (cdb.empty()) return c->check(make_sense(kIllegalRequest, asc::kInvalidCommandOperationCode));
  if (ua) return c->check(*ua);
  if (conflict) {
    ScsiResult r;
    r.status = kStatusReservationConflict;
    return c->done(std::move(r));
  }
  const std::uint16_t sa = cdb.size() > 1 ? (cdb[1] & 0x1F) : 0;
  const OpInfoEntry* op = find_op(cdb[0], sa);
  if (op != nullptr && !op_offered(*op, c->s)) op = nullptr;
  if (op == nullptr) {
    if (opcode_has_service_actions(cdb[0])) return c->check(invalid_field_in_cdb(1, 4));
    return c->check(make_sense(kIllegalRequest, asc::kInvalidCommandOperationCode));
  }
  if (cdb.size() < op->cdb_length) return c->check(invalid_field_in_cdb(0));
  // Reserved bits (those the CDB usage map does not list); vendor bits of the control byte pass.
  for (std::size_t i = 1; i < op->cdb_length; ++i) {
    std::uint8_t allowed = op->usage[i];
    if (i == op->cdb_length - 1u) allowed |= 0xC0;
    const std::uint8_t bad = static_cast<std::uint8_t>(cdb[i] & ~allowed);
    if (bad != 0) {
      int bit = 7;
      while (!(bad & (1u << bit))) --bit;
      return c->check(invalid_field_in_cdb(static_cast<std::uint16_t>(i), bit));
    }
  }
  if (!c->s.attached && !(op->flags & kNoAttach)) {
    return c->check(make_sense(kNotReady, asc::kNotReadyBecomingReady));  // attach in progress
  }
  if (c->s.sanitizing && !(op->flags & kDuringSanitize)) {
    return c->check(sanitize_in_progress(c->s.sanitize_progress));
  }
  if (c->s.sanitize_failed && !(op->flags & kDuringSanitize) && cdb[0] != 0x48) {
    return c->check(make_sense(kMediumError, asc::kSanitizeCommandFailed));
  }
  if (!c->s.medium_present && !(op->flags & kAllowStopped)) {
    return c->check(make_sense(kNotReady, asc::kMediumNotPresent));
  }
  if (c->s.stopped && !(op->flags & kAllowStopped)) {
    return c->check(make_sense(kNotReady, asc::kNotReadyInitializingCommandRequired));
  }
  op->handler(c);
}

// ---------------------------------------------------------------------------------------------
// Medium commands.

bool LuHandlers::update_capacity(LogicalUnit& lu, const proto::Capacity& cap) {
  if (cap.block_count == 0 || !proto::valid_geometry(cap.block_size, cap.block_count)) {
    return false;
  }
  std::lock_guard<std::mutex> lock(lu.mu_);
  const bool changed = cap.block_count != lu.block_count_ || cap.block_size != lu.block_size_;
  lu.block_count_ = cap.block_count;
  lu.block_size_ = cap.block_size;
  lu.identity_.block_count = cap.block_count;
  lu.identity_.block_size = cap.block_size;
  return changed;
}

bool out_of_range(const Snapshot& s, std::uint64_t lba, std::uint64_t blocks) {
  return lba > s.block_count || blocks > s.block_count - lba;
}

std::optional<Sense> write_protect_sense(const Snapshot& s) {
  if ((s.identity.capabilities & proto::kCapReadOnly) || s.options.read_only) {
    return make_sense(kDataProtect, asc::kWriteProtected);
  }
  if (s.mode.swp) return make_sense(kDataProtect, asc::kSoftwareWriteProtected);
  return std::nullopt;
}

std::uint32_t write_flags(const Snapshot& s, bool fua) {
  return (fua || !s.mode.wce) ? proto::kFlagFua : 0u;
}

struct Rw {
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
  std::uint16_t length_byte = 0;  // first byte of the transfer length field
  std::uint8_t flags = 0;         // CDB byte 1
};

namespace {

Rw decode_rw(const Bytes& cdb) {
  Rw rw;
  rw.flags = cdb[1];
  switch (cdb[0]) {
    case 0x08:
    case 0x0A:
      rw.lba = (std::uint64_t{cdb[1] & 0x1Fu} << 16) | load_be16(&cdb[2]);
      rw.blocks = cdb[4] == 0 ? 256 : cdb[4];
      rw.length_byte = 4;
      rw.flags = 0;
      break;
    case 0xA8:
    case 0xAA:
    case 0xAE:
    case 0xAF:
      rw.lba = load_be32(&cdb[2]);
      rw.blocks = load_be32(&cdb[6]);
      rw.length_byte = 6;
      break;
    case 0x88:
    case 0x8A:
    case 0x8B:
    case 0x8E:
    case 0x8F:
    case 0x90:
    case 0x91:
    case 0x93:
      rw.lba = load_be64(&cdb[2]);
      rw.blocks = load_be32(&cdb[10]);
      rw.length_byte = 10;
      break;
    case 0x89:
      rw.lba = load_be64(&cdb[2]);
      rw.blocks = cdb[13];
      rw.length_byte = 13;
      break;
    case 0x9C:  // WRITE ATOMIC(16): ATOMIC BOUNDARY in bytes 10-11, TRANSFER LENGTH 12-13
      rw.lba = load_be64(&cdb[2]);
      rw.blocks = load_be16(&cdb[12]);
      rw.length_byte = 12;
      break;
    default:  // 10-byte CDBs
      rw.lba = load_be32(&cdb[2]);
      rw.blocks = load_be16(&cdb[7]);
      rw.length_byte = 7;
      break;
  }
  return rw;
}

bool too_large(const Snapshot& s, std::uint64_t blocks) {
  return blocks * s.block_size > s.options.max_command_bytes;
}

// Offset of the first differing byte, or -1.
std::int64_t first_difference(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<std::int64_t>(i);
  }
  return -1;
}

Sense miscompare_at(std::uint64_t offset) {
  Sense s = make_sense(kMiscompare, asc::kMiscompareDuringVerify);
  s.information = offset;
  return s;
}

}  // namespace

void LuHandlers::test_unit_ready(CmdPtr c) {
  proto::Request r;
  r.op = proto::Op::kReady;
  r.device_id = c->lu.device_id_;
  c->lu.target_.execute(std::move(r), [c](proto::Reply reply) {
    if (reply.status != Errc::kOk) return c->fail(reply.status, Direction::kNone);
    if (update_capacity(c->lu, reply.capacity)) {
      {
        std::lock_guard<std::mutex> lock(c->lu.mu_);
        c->lu.ua_all(make_sense(kUnitAttention, asc::kCapacityDataHasChanged), &c->command.nexus);
      }
      return c->check(make_sense(kUnitAttention, asc::kCapacityDataHasChanged));
    }
    c->good();
  });
}

void LuHandlers::read(CmdPtr c) {
  const Rw rw = decode_rw(c->command.cdb);
  if (rw.flags & 0xE0) return c->check(invalid_field_in_cdb(1, 7));  // RDPROTECT
  if (too_large(c->s, rw.blocks)) return c->check(invalid_field_in_cdb(rw.length_byte));
  if (out_of_range(c->s, rw.lba, rw.blocks))
    return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
  if (rw.blocks == 0) return c->good();
  detail::read_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, c->s.block_size,
                      c->s.identity.max_transfer_blocks, [c](Errc e, Bytes data) {
                        if (e != Errc::kOk) return c->fail(e, Direction::kRead);
                        c->good(std::move(data));
                      });
}

// Checks shared by the commands that carry write data; returns false after completing `c`.
static bool check_write_common(const CmdPtr& c, const Rw& rw, std::uint64_t data_bytes,
                               bool partial_ok = false) {
  if (rw.flags & 0xE0) {
    c->check(invalid_field_in_cdb(1, 7));  // WRPROTECT
    return false;
  }
  if (too_large(c->s, rw.blocks)) {
    c->check(invalid_field_in_cdb(rw.length_byte));
    return false;
  }
  if (auto wp = write_protect_sense(c->s)) {
    c->check(*wp);
    return false;
  }
  if (out_of_range(c->s, rw.lba, rw.blocks)) {
    c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
    return false;
  }
  if (c->command.data_out.size() < data_bytes && !partial_ok) {
    c->short_data_out(data_bytes);
    return false;
  }
  return true;
}

// WRITE and WRITE AND VERIFY with less data-out than the CDB asks for (iSCSI EDTL below the
// transfer length): as Linux LIO and libiscsi's residual tests expect, the whole blocks that did
// arrive are written and the command ends GOOD with an overflow residual of the missing bytes.
static std::uint64_t partial_blocks(const CmdPtr& c, const Rw& rw) {
  return std::min<std::uint64_t>(rw.blocks, c->command.data_out.size() / c->s.block_size);
}

void LuHandlers::write(CmdPtr c) {
  Rw rw = decode_rw(c->command.cdb);
  const std::uint64_t needed = rw.blocks * c->s.block_size;
  if (!check_write_common(c, rw, needed, true)) return;
  rw.blocks = partial_blocks(c, rw);
  const std::uint64_t bytes = rw.blocks * c->s.block_size;
  if (bytes < needed && rw.blocks == 0) return c->good_partial(needed);
  if (rw.blocks == 0) return c->good_write(0);
  // The command's own copy of the data-out is not needed any more: move it (no 8 MiB copy).
  auto data = std::make_shared<Bytes>(std::move(c->command.data_out));
  data->resize(static_cast<std::size_t>(bytes));
  detail::write_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, c->s.block_size,
                       c->s.identity.max_transfer_blocks, write_flags(c->s, rw.flags & 0x08),
                       std::move(data), [c, bytes, needed](Errc e) {
                         if (e != Errc::kOk) return c->fail(e, Direction::kWrite);
                         if (bytes < needed) return c->good_partial(needed);
                         c->good_write(bytes);
                       });
}

bool op_offered(const OpInfoEntry& e, const Snapshot& s) {
  if (e.opcode == 0x9C) return max_atomic_blocks(s) != 0;
  return true;
}

std::uint32_t max_atomic_blocks(const Snapshot& s) {
  if (!(s.identity.capabilities & proto::kCapAtomicWrite)) return 0;
  return std::min<std::uint32_t>(
      {s.identity.max_transfer_blocks, s.options.max_command_bytes / s.block_size, 0xFFFF});
}

void LuHandlers::write_atomic(CmdPtr c) {
  // SBC-4 5.48: all of it or none of it. Sent as ONE generic WRITE with kFlagAtomic, which the
  // server applies atomically or refuses (never split: a split write would not be atomic).
  Rw rw = decode_rw(c->command.cdb);
  const std::uint32_t bs = c->s.block_size;
  // ATOMIC ALIGNMENT and GRANULARITY are 0 (none); atomic boundaries are not offered (their
  // CDB bytes are reserved in the usage map, so non-zero ones were refused already).
  if (rw.blocks > max_atomic_blocks(c->s)) return c->check(invalid_field_in_cdb(12));
  const std::uint64_t bytes = rw.blocks * bs;
  if (!check_write_common(c, rw, bytes)) return;
  if (rw.blocks == 0) return c->good_write(0);
  proto::Request r;
  r.op = proto::Op::kWrite;
  r.device_id = c->lu.device_id_;
  r.lba = rw.lba;
  r.blocks = static_cast<std::uint32_t>(rw.blocks);
  r.flags = write_flags(c->s, rw.flags & 0x08) | proto::kFlagAtomic;
  r.data = std::move(c->command.data_out);
  r.data.resize(static_cast<std::size_t>(bytes));
  c->lu.target_.execute(std::move(r), [c, bytes](proto::Reply reply) {
    if (reply.status != Errc::kOk) return c->fail(reply.status, Direction::kWrite);
    c->good_write(bytes);
  });
}

void LuHandlers::verify(CmdPtr c) {
  const Rw rw = decode_rw(c->command.cdb);
  const int bytchk = (rw.flags >> 1) & 3;
  if (rw.flags & 0xE0) return c->check(invalid_field_in_cdb(1, 7));  // VRPROTECT
  if (bytchk == 2) return c->check(invalid_field_in_cdb(1, 2));
  if (too_large(c->s, rw.blocks)) return c->check(invalid_field_in_cdb(rw.length_byte));
  if (out_of_range(c->s, rw.lba, rw.blocks))
    return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
  if (rw.blocks == 0) return c->good();
  const std::uint64_t bs = c->s.block_size;
  const std::uint64_t needed = bytchk == 0 ? 0 : bytchk == 1 ? rw.blocks * bs : bs;
  if (c->command.data_out.size() < needed) return c->short_data_out(needed);
  detail::read_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, c->s.block_size,
                      c->s.identity.max_transfer_blocks,
                      [c, bytchk, bs, needed](Errc e, Bytes data) {
                        if (e != Errc::kOk) return c->fail(e, Direction::kRead);
                        const std::uint8_t* expect = c->command.data_out.data();
                        for (std::size_t off = 0; bytchk != 0 && off < data.size(); off += bs) {
                          const std::uint8_t* want = bytchk == 1 ? expect + off : expect;
                          const auto d = first_difference(data.data() + off, want, bs);
                          if (d >= 0)
                            return c->check(miscompare_at(off + static_cast<std::uint64_t>(d)));
                        }
                        c->good_write(needed);
                      });
}

void LuHandlers::write_and_verify(CmdPtr c) {
  const Rw rw = decode_rw(c->command.cdb);
  const int bytchk = (rw.flags >> 1) & 3;
  if (bytchk >= 2) return c->check(invalid_field_in_cdb(1, 2));
  const std::uint64_t needed = rw.blocks * c->s.block_size;
  if (!check_write_common(c, rw, needed, true)) return;
  Rw part = rw;
  part.blocks = partial_blocks(c, rw);
  const std::uint64_t bytes = part.blocks * c->s.block_size;
  if (bytes < needed) {
    if (part.blocks == 0) return c->good_partial(needed);
    return write_and_verify_blocks(c, part, bytes, needed);
  }
  if (rw.blocks == 0) return c->good_write(0);
  write_and_verify_blocks(c, rw, bytes, bytes);
}

void LuHandlers::write_and_verify_blocks(CmdPtr c, const Rw& rw, std::uint64_t bytes,
                                         std::uint64_t needed) {
  auto data =
      std::make_shared<Bytes>(c->command.data_out.begin(),
                              c->command.data_out.begin() + static_cast<std::ptrdiff_t>(bytes));
  // Verification means the data is on the medium: write with FUA, then read back and compare.
  detail::write_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, c->s.block_size,
                       c->s.identity.max_transfer_blocks, proto::kFlagFua, data,
                       [c, rw, data, bytes, needed](Errc e) {
                         if (e != Errc::kOk) return c->fail(e, Direction::kWrite);
                         detail::read_blocks(
                             c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, c->s.block_size,
                             c->s.identity.max_transfer_blocks,
                             [c, data, bytes, needed](Errc e2, Bytes back) {
                               if (e2 != Errc::kOk) return c->fail(e2, Direction::kRead);
                               const auto d = first_difference(back.data(), data->data(), bytes);
                               if (d >= 0)
                                 return c->check(miscompare_at(static_cast<std::uint64_t>(d)));
                               if (bytes < needed) return c->good_partial(needed);
                               c->good_write(bytes);
                             });
                       });
}

void LuHandlers::synchronize_cache(CmdPtr c) {
  const Rw rw = decode_rw(c->command.cdb);
  if (out_of_range(c->s, rw.lba, rw.blocks))
    return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
  // IMMED is accepted; status is returned after the flush completes (allowed, and errors surface).
  if (!(c->s.identity.capabilities & proto::kCapFlush)) return c->good();  // no volatile cache
  proto::Request r;
  r.op = proto::Op::kFlush;
  r.device_id = c->lu.device_id_;
  c->lu.target_.execute(std::move(r), [c](proto::Reply reply) {
    if (reply.status != Errc::kOk) return c->fail(reply.status, Direction::kWrite);
    c->good();
  });
}

void LuHandlers::write_same(CmdPtr c) {
  Rw rw = decode_rw(c->command.cdb);
  const bool ws16 = c->command.cdb[0] == 0x93;
  const bool unmap = rw.flags & 0x08;
  const bool ndob = ws16 && (rw.flags & 0x01);
  if (rw.flags & 0xE0) return c->check(invalid_field_in_cdb(1, 7));
  if (rw.flags & 0x10) return c->check(invalid_field_in_cdb(1, 4));  // ANCHOR: not supported
  if (rw.blocks > c->s.options.max_write_same_blocks) {
    return c->check(invalid_field_in_cdb(rw.length_byte));  // MAXIMUM WRITE SAME LENGTH
  }
  // The range first: libiscsi expects 0 blocks past the end to be LBA OUT OF RANGE.
  if (out_of_range(c->s, rw.lba, rw.blocks))
    return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
  if (rw.blocks == 0) {
    // WSNZ=0 (Block Limits VPD): NUMBER OF LOGICAL BLOCKS 0 means from LBA to the last LBA
    // (SBC-4 5.50), as tgt does; more than MAXIMUM WRITE SAME LENGTH that way is refused too.
    rw.blocks = c->s.block_count - rw.lba;
    if (rw.blocks > c->s.options.max_write_same_blocks) {
      return c->check(invalid_field_in_cdb(rw.length_byte));
    }
  }
  if (auto wp = write_protect_sense(c->s)) return c->check(*wp);
  const std::uint32_t bs = c->s.block_size;
  if (!ndob && c->command.data_out.size() < bs) return c->short_data_out(bs);
  // More than one block of data-out contradicts the CDB (as LIO; libiscsi InvalidDataOutSize).
  if (!ndob && c->command.data_out.size() > bs) return c->check(invalid_field_in_cdb(0));
  const std::uint64_t needed = ndob ? 0 : bs;
  if (rw.blocks == 0) return c->good_write(needed);  // 0 blocks at the end of the medium
  Bytes block =
      ndob ? Bytes(bs, 0) : Bytes(c->command.data_out.begin(), c->command.data_out.begin() + bs);
  const bool zero = std::all_of(block.begin(), block.end(), [](std::uint8_t b) { return b == 0; });
  const std::uint32_t caps = c->s.identity.capabilities;
  auto finish = [c, needed](Errc e) {
    if (e != Errc::kOk) return c->fail(e, Direction::kWrite);
    c->good_write(needed);
  };
  // UNMAP=1 on a thin LUN (LBPRZ=1): deallocate, whatever the block holds (SBC-4 5.50 lets the
  // device server write or unmap each LBA; tgt and LIO unmap, libiscsi's UnmapUntilEnd expects
  // zeroes back). Otherwise zeroes are written as WRITE ZEROES.
  const bool deallocate = unmap && (caps & proto::kCapTrim);
  if ((zero || deallocate) && (caps & (proto::kCapWriteZeroes | proto::kCapTrim))) {
    proto::Request r;
    r.device_id = c->lu.device_id_;
    r.lba = rw.lba;
    r.blocks = static_cast<std::uint32_t>(rw.blocks);
    if (caps & proto::kCapWriteZeroes) {
      r.op = proto::Op::kWriteZeroes;
      r.flags = unmap ? proto::kFlagMayTrim : 0u;
    } else if (unmap) {
      r.op = proto::Op::kTrim;  // reads of trimmed blocks return zeroes (LBPRZ=1)
    }
    if (r.op != proto::Op::kNull) {
      c->lu.target_.execute(std::move(r), [finish](proto::Reply reply) { finish(reply.status); });
      return;
    }
  }
  // Writes of the repeated block, at most one request's worth of memory at a time.
  std::uint64_t per = detail::chunk_blocks(c->s.identity.max_transfer_blocks);
  per =
      std::max<std::uint64_t>(1, std::min<std::uint64_t>(per, c->s.options.max_command_bytes / bs));
  auto chain = std::make_shared<Chain>();
  chain->target = &c->lu.target_;
  chain->count = static_cast<std::size_t>((rw.blocks + per - 1) / per);
  const std::uint32_t flags = write_flags(c->s, false);
  const std::uint32_t device = c->lu.device_id_;
  chain->make = [block = std::move(block), rw, per, flags, device](std::size_t i) {
    proto::Request r;
    r.op = proto::Op::kWrite;
    r.device_id = device;
    r.lba = rw.lba + i * per;
    r.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(per, rw.blocks - i * per));
    r.flags = flags;
    r.data.reserve(std::size_t{r.blocks} * block.size());
    for (std::uint32_t b = 0; b < r.blocks; ++b)
      r.data.insert(r.data.end(), block.begin(), block.end());
    return r;
  };
  chain->done = finish;
  run_chain(std::move(chain));
}

void LuHandlers::unmap(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  if (!(c->s.identity.capabilities & proto::kCapTrim)) {
    return c->check(make_sense(kIllegalRequest, asc::kInvalidCommandOperationCode));
  }
  if (cdb[1] & 0x01) return c->check(invalid_field_in_cdb(1, 0));  // ANCHOR
  const std::size_t param_len = load_be16(&cdb[7]);
  if (param_len == 0) return c->good();
  if (auto wp = write_protect_sense(c->s)) return c->check(*wp);
  const Bytes& p = c->command.data_out;
  const std::size_t avail = std::min(param_len, p.size());
  if (avail < 8) return c->check(make_sense(kIllegalRequest, asc::kParameterListLengthError));
  const std::size_t bd_len = load_be16(&p[2]);
  if (bd_len + 8 > avail)
    return c->check(make_sense(kIllegalRequest, asc::kParameterListLengthError));
  const std::size_t n = bd_len / 16;  // a truncated last descriptor is ignored (SBC-3 5.28.2)
  if (n > c->s.options.max_unmap_descriptors) {
    return c->check(invalid_field_in_parameter_list(2));
  }
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ranges;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t off = 8 + 16 * i;
    const std::uint64_t lba = load_be64(&p[off]);
    const std::uint32_t count = load_be32(&p[off + 8]);
    if (count > c->s.options.max_write_same_blocks) {
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off + 8)));
    }
    if (out_of_range(c->s, lba, count))
      return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
    if (count != 0) ranges.emplace_back(lba, count);
  }
  // Adjacent or overlapping descriptors become one TRIM (trimming is idempotent): an initiator
  // that unmaps block by block costs one round trip, not one per block.
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<std::uint64_t, std::uint32_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty()) {
      auto& last = merged.back();
      const std::uint64_t end = last.first + last.second;
      const std::uint64_t new_end = std::max<std::uint64_t>(end, r.first + r.second);
      if (r.first <= end && new_end - last.first <= 0xFFFFFFFFu) {
        last.second = static_cast<std::uint32_t>(new_end - last.first);
        continue;
      }
    }
    merged.push_back(r);
  }
  ranges = std::move(merged);
  auto chain = std::make_shared<Chain>();
  chain->target = &c->lu.target_;
  chain->count = ranges.size();
  const std::uint32_t device = c->lu.device_id_;
  chain->make = [ranges = std::move(ranges), device](std::size_t i) {
    proto::Request r;
    r.op = proto::Op::kTrim;
    r.device_id = device;
    r.lba = ranges[i].first;
    r.blocks = ranges[i].second;
    return r;
  };
  chain->done = [c, param_len](Errc e) {
    if (e != Errc::kOk) return c->fail(e, Direction::kWrite);
    c->good_write(param_len);
  };
  run_chain(std::move(chain));
}

void LuHandlers::compare_and_write(CmdPtr c) {
  const Rw rw = decode_rw(c->command.cdb);
  const std::uint32_t bs = c->s.block_size;
  if (rw.blocks > max_compare_and_write_blocks(c->s)) {
    return c->check(invalid_field_in_cdb(13));
  }
  const std::uint64_t half = rw.blocks * bs;
  // NUMBER OF LOGICAL BLOCKS is one byte: an initiator asking for 256 blocks sends 0 with data.
  if (rw.blocks == 0 && !c->command.data_out.empty()) return c->check(invalid_field_in_cdb(13));
  if (!check_write_common(c, rw, 2 * half)) return;
  if (c->command.data_out.size() > 2 * half) return c->check(invalid_field_in_cdb(0));
  if (rw.blocks == 0) return c->good_write(0);
  // Not atomic against other initiators: the generic protocol has no compare-and-write op.
  detail::read_blocks(
      c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, bs, c->s.identity.max_transfer_blocks,
      [c, rw, half, bs](Errc e, Bytes current) {
        if (e != Errc::kOk) return c->fail(e, Direction::kRead);
        const auto d = first_difference(current.data(), c->command.data_out.data(), half);
        if (d >= 0) return c->check(miscompare_at(static_cast<std::uint64_t>(d)));
        auto data = std::make_shared<Bytes>(
            c->command.data_out.begin() + static_cast<std::ptrdiff_t>(half),
            c->command.data_out.begin() + static_cast<std::ptrdiff_t>(2 * half));
        detail::write_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, bs,
                             c->s.identity.max_transfer_blocks, write_flags(c->s, rw.flags & 0x08),
                             std::move(data), [c, half](Errc e2) {
                               if (e2 != Errc::kOk) return c->fail(e2, Direction::kWrite);
                               c->good_write(2 * half);
                             });
      });
}

void LuHandlers::orwrite(CmdPtr c) {
  // SBC-3 5.8: new = old OR data-out. Like COMPARE AND WRITE, not atomic against other initiators
  // (the generic protocol has no read-modify-write op).
  const Rw rw = decode_rw(c->command.cdb);
  const std::uint32_t bs = c->s.block_size;
  const std::uint64_t bytes = rw.blocks * bs;
  if (!check_write_common(c, rw, bytes)) return;
  if (rw.blocks == 0) return c->good_write(0);
  detail::read_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, bs,
                      c->s.identity.max_transfer_blocks, [c, rw, bytes, bs](Errc e, Bytes current) {
                        if (e != Errc::kOk) return c->fail(e, Direction::kRead);
                        auto data = std::make_shared<Bytes>(std::move(current));
                        for (std::size_t i = 0; i < bytes; ++i)
                          (*data)[i] |= c->command.data_out[i];
                        detail::write_blocks(c->lu.target_, c->lu.device_id_, rw.lba, rw.blocks, bs,
                                             c->s.identity.max_transfer_blocks,
                                             write_flags(c->s, rw.flags & 0x08), std::move(data),
                                             [c, bytes](Errc e2) {
                                               if (e2 != Errc::kOk)
                                                 return c->fail(e2, Direction::kWrite);
                                               c->good_write(bytes);
                                             });
                      });
}

std::uint32_t max_compare_and_write_blocks(const Snapshot& s) {
  const std::uint32_t by_memory = s.options.max_command_bytes / (2 * s.block_size);
  return std::max<std::uint32_t>(1, std::min<std::uint32_t>(255, by_memory));
}

void LuHandlers::read_capacity10(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  if (!(cdb[8] & 1) && load_be32(&cdb[2]) != 0) return c->check(invalid_field_in_cdb(2));
  capacity_then(c, [](CmdPtr c2) {
    Bytes d(8, 0);
    const std::uint64_t last = c2->s.block_count == 0 ? 0 : c2->s.block_count - 1;
    store_be32(&d[0], last > 0xFFFFFFFEull ? 0xFFFFFFFFu : static_cast<std::uint32_t>(last));
    store_be32(&d[4], c2->s.block_size);
    c2->good(std::move(d));
  });
}

void LuHandlers::read_capacity16(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  if (!(cdb[14] & 1) && load_be64(&cdb[2]) != 0) return c->check(invalid_field_in_cdb(2));
  const std::uint32_t alloc = load_be32(&cdb[10]);
  capacity_then(c, [alloc](CmdPtr c2) {
    Bytes d(32, 0);
    store_be64(&d[0], c2->s.block_count == 0 ? 0 : c2->s.block_count - 1);
    store_be32(&d[8], c2->s.block_size);
    for (std::uint32_t p = c2->s.block_size * 2;
         p <= c2->s.options.physical_block_size && d[13] < 15; p *= 2) {
      ++d[13];  // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
    }
    if (c2->s.identity.capabilities & proto::kCapTrim) d[14] = 0x80 | 0x40;  // LBPME, LBPRZ
    if (d.size() > alloc) d.resize(alloc);
    c2->good(std::move(d));
  });
}

void LuHandlers::capacity_then(CmdPtr c, std::function<void(CmdPtr)> then) {
  proto::Request r;
  r.op = proto::Op::kCapacity;
  r.device_id = c->lu.device_id_;
  c->lu.target_.execute(std::move(r), [c, then = std::move(then)](proto::Reply reply) {
    if (reply.status != Errc::kOk) return c->fail(reply.status, Direction::kNone);
    update_capacity(c->lu, reply.capacity);
    {
      std::lock_guard<std::mutex> lock(c->lu.mu_);
      c->s.block_count = c->lu.block_count_;
      c->s.block_size = c->lu.block_size_;
    }
    then(c);
  });
}

void LuHandlers::get_lba_status(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const std::uint64_t lba = load_be64(&cdb[2]);
  const std::uint32_t alloc = load_be32(&cdb[10]);
  if (lba >= c->s.block_count) return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
  const std::uint64_t remaining = c->s.block_count - lba;
  auto descriptor = [](Bytes& d, std::uint64_t start, std::uint64_t count, std::uint8_t status) {
    std::uint8_t desc[16] = {};
    store_be64(&desc[0], start);
    store_be32(&desc[8], static_cast<std::uint32_t>(count));
    desc[12] = status;
    d.insert(d.end(), desc, desc + 16);
  };
  auto finish = [c, alloc](Bytes d) {
    store_be32(&d[0], static_cast<std::uint32_t>(d.size() - 4));
    if (d.size() > alloc) d.resize(alloc);
    c->good(std::move(d));
  };
  if (!(c->s.identity.capabilities & proto::kCapTrim)) {
    // Fully provisioned: everything is mapped.
    Bytes d(8, 0);
    descriptor(d, lba, std::min<std::uint64_t>(remaining, 0xFFFFFFFFu), 0);
    return finish(std::move(d));
  }
  // The generic protocol has no allocation query. With LBPRZ=1 a deallocated block reads as
  // zeroes, so a window of blocks is read and zero blocks are reported deallocated (status 1),
  // the others mapped (0). Fewer descriptors than the whole range is allowed (SBC-3 5.5.2): the
  // initiator asks again from the next LBA.
  const std::uint64_t window = std::min<std::uint64_t>(
      {remaining, 2048,
       std::max<std::uint64_t>(1, c->s.options.max_command_bytes / c->s.block_size)});
  const std::size_t max_desc = alloc < 24 ? 1 : (alloc - 8) / 16;
  detail::read_blocks(c->lu.target_, c->lu.device_id_, lba, window, c->s.block_size,
                      c->s.identity.max_transfer_blocks,
                      [c, lba, window, max_desc, descriptor, finish](Errc e, Bytes data) {
                        if (e != Errc::kOk) return c->fail(e, Direction::kRead);
                        const std::size_t bs = c->s.block_size;
                        auto is_zero = [&](std::uint64_t b) {
                          const auto first = data.begin() + static_cast<std::ptrdiff_t>(b * bs);
                          return std::all_of(first, first + static_cast<std::ptrdiff_t>(bs),
                                             [](std::uint8_t x) { return x == 0; });
                        };
                        Bytes d(8, 0);
                        std::uint64_t b = 0;
                        while (b < window && (d.size() - 8) / 16 < max_desc) {
                          const bool zero = is_zero(b);
                          std::uint64_t end = b + 1;
                          while (end < window && is_zero(end) == zero) ++end;
                          descriptor(d, lba + b, end - b, zero ? 1 : 0);
                          b = end;
                        }
                        // After a SANITIZE erase through this unit with no WRITE since, the
                        // deallocated run read up to the window's end goes on to the last LBA.
                        bool erased = false;
                        {
                          std::lock_guard<std::mutex> lock(c->lu.mu_);
                          erased = c->lu.erased_all_;
                        }
                        if (erased && b == window && d.size() > 8 && d[d.size() - 4] == 1) {
                          std::uint8_t* last = &d[d.size() - 16];
                          const std::uint64_t start = load_be64(last);
                          const std::uint64_t count =
                              std::min<std::uint64_t>(c->s.block_count - start, 0xFFFFFFFFu);
                          store_be32(last + 8, static_cast<std::uint32_t>(count));
                        }
                        finish(std::move(d));
                      });
}

void LuHandlers::start_stop_unit(CmdPtr c) {
  const std::uint8_t b4 = c->command.cdb[4];
  const bool removable = c->s.options.removable;
  // POWER CONDITION: a fixed unit has none to offer. A removable one, as tgt, accepts and ignores
  // them (SBC-4 5.25: with a power condition, START and LOEJ are ignored).
  if (b4 >> 4) {
    if (!removable) return c->check(invalid_field_in_cdb(4, 7));
    return c->good();
  }
  const bool start = b4 & 0x01;
  const bool loej = b4 & 0x02;
  const bool no_flush = b4 & 0x04;
  // A fixed medium (RMB=0) has nothing to load or eject (as LIO; libiscsi expects an eject to
  // fail on a non-removable unit).
  if (loej && !c->s.options.removable) return c->check(invalid_field_in_cdb(4, 1));
  // A removable one: while some nexus prevents medium removal, neither eject nor load (as tgt;
  // SBC-4 5.25: LOEJ with PREVENT in effect ends ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED).
  if (loej && c->s.prevent)
    return c->check(make_sense(kIllegalRequest, asc::kMediumRemovalPrevented));
  proto::Request r;
  r.device_id = c->lu.device_id_;
  if (start) {
    r.op = proto::Op::kReady;
  } else if (!no_flush && c->s.medium_present && (c->s.identity.capabilities & proto::kCapFlush)) {
    r.op = proto::Op::kFlush;
  }
  // A removable unit, as tgt, does not stop without LOEJ (libiscsi's StartStopUnit.NoLoej expects
  // it ready after a STOP): only the cache is flushed. Its medium is loaded or not.
  auto finish = [c, start, loej, removable] {
    {
      std::lock_guard<std::mutex> lock(c->lu.mu_);
      if (loej && !start && !c->lu.prevent_removal_.empty()) {
        return c->check(
            make_sense(kIllegalRequest, asc::kMediumRemovalPrevented));  // prevented meanwhile
      }
      if (!removable) c->lu.stopped_ = !start;
      if (loej) c->lu.medium_present_ = start;
    }
    c->good();
  };
  if (r.op == proto::Op::kNull) return finish();
  c->lu.target_.execute(std::move(r), [c, start, finish](proto::Reply reply) {
    if (reply.status != Errc::kOk) {
      return c->fail(reply.status, start ? Direction::kNone : Direction::kWrite);
    }
    finish();
  });
}

void LuHandlers::prefetch(CmdPtr c) {
  const Rw rw = decode_rw(c->command.cdb);
  if (out_of_range(c->s, rw.lba, rw.blocks))
    return c->check(make_sense(kIllegalRequest, asc::kLbaOutOfRange));
  // Nothing to stage: the server's back end caches as it sees fit. IMMED or not, GOOD means
  // "done" (CONDITION MET would promise cache space, SBC-3 5.9).
  c->good();
}

void LuHandlers::read_defect_data(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const bool twelve = cdb[0] == 0xB7;
  const std::uint8_t format = (twelve ? cdb[1] : cdb[2]) & 0x07;
  const std::uint32_t alloc = twelve ? load_be32(&cdb[6]) : load_be16(&cdb[7]);
  // No defects to report: an empty list in the format asked for (SBC-3 5.11/5.12).
  Bytes d(twelve ? 8 : 4, 0);
  d[1] = static_cast<std::uint8_t>((twelve ? cdb[1] : cdb[2]) & 0x18) | format;
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

void LuHandlers::prevent_allow(CmdPtr c) {
  const std::uint8_t prevent = c->command.cdb[4] & 0x03;
  if (prevent > 1) return c->check(invalid_field_in_cdb(4, 1));
  {
    // Per I_T nexus (SPC-4 6.13): removal is prevented while any nexus prevents it; a nexus's
    // prevention ends with ALLOW, the nexus (nexus_lost) or a logical unit reset.
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    if (prevent == 1) {
      c->lu.prevent_removal_.insert(c->command.nexus);
    } else {
      c->lu.prevent_removal_.erase(c->command.nexus);
    }
  }
  c->good();
}

void LuHandlers::request_sense(CmdPtr c) {
  const bool desc = c->command.cdb[1] & 0x01;
  const std::uint8_t alloc = c->command.cdb[4];
  Sense s = make_sense(kNoSense, asc::kNoAdditionalSense);
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    auto& uas = c->lu.unit_attentions_[c->command.nexus];
    if (!uas.empty()) {
      s = uas.front();
      uas.pop_front();
    } else if (c->lu.sanitizing_) {
      s = sanitize_in_progress(c->lu.sanitize_progress_locked());
    } else if (c->lu.sanitize_failed_) {
      s = make_sense(kMediumError, asc::kSanitizeCommandFailed);
    } else if (!c->lu.attached_) {
      s = make_sense(kNotReady, asc::kNotReadyBecomingReady);
    } else if (!c->lu.medium_present_) {
      s = make_sense(kNotReady, asc::kMediumNotPresent);
    } else if (c->lu.stopped_) {
      s = make_sense(kNotReady, asc::kNotReadyInitializingCommandRequired);
    }
  }
  Bytes d = encode_sense(s, desc);
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

void LuHandlers::report_luns(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const std::uint32_t alloc = load_be32(&cdb[6]);
  if (alloc < 16) return c->check(invalid_field_in_cdb(6));
  const std::uint8_t select = cdb[2];
  if (select > 2) return c->check(invalid_field_in_cdb(2));
  std::vector<std::uint64_t> luns;
  if (select != 1) luns.push_back(c->s.options.lun);
  Bytes d = report_luns_data(luns);
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

Bytes report_luns_data(const std::vector<std::uint64_t>& luns) {
  Bytes d(8 + 8 * luns.size(), 0);
  store_be32(&d[0], static_cast<std::uint32_t>(8 * luns.size()));
  for (std::size_t i = 0; i < luns.size(); ++i) {
    const std::uint64_t lun = luns[i];
    std::uint8_t* p = &d[8 + 8 * i];
    if (lun < 256) {
      p[1] = static_cast<std::uint8_t>(lun);
    } else {
      p[0] = static_cast<std::uint8_t>(0x40 | ((lun >> 8) & 0x3F));
      p[1] = static_cast<std::uint8_t>(lun);
    }
  }
  return d;
}

}  // namespace ipsan::client::scsi
