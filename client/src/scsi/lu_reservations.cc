// SCSI logical unit emulation: reservations. Persistent reservations (SPC-4 5.13, 6.15, 6.16:
// PERSISTENT RESERVE IN/OUT) and SPC-2 RESERVE(6)/RELEASE(6), kept per LogicalUnit and therefore
// shared by every I_T nexus (iSCSI session) that reaches it. Registrations are keyed by the I_T
// nexus string of ScsiCommand::nexus; persistence through power loss (APTPL) is not offered.
#include <algorithm>

#include "ipsan/client/scsi/logical_unit.h"
#include "scsi/lu_internal.h"

namespace ipsan::client::scsi {
namespace {

constexpr std::uint8_t kWriteExclusive = 1;
constexpr std::uint8_t kExclusiveAccess = 3;
constexpr std::uint8_t kWriteExclusiveRegistrantsOnly = 5;
constexpr std::uint8_t kExclusiveAccessRegistrantsOnly = 6;
constexpr std::uint8_t kWriteExclusiveAllRegistrants = 7;
constexpr std::uint8_t kExclusiveAccessAllRegistrants = 8;

bool valid_type(std::uint8_t t) {
  return t == kWriteExclusive || t == kExclusiveAccess || (t >= 5 && t <= 8);
}
bool all_registrants(std::uint8_t t) {
  return t == kWriteExclusiveAllRegistrants || t == kExclusiveAccessAllRegistrants;
}
bool registrants_have_access(std::uint8_t t) {
  return t == kWriteExclusiveRegistrantsOnly || t == kExclusiveAccessRegistrantsOnly ||
         all_registrants(t);
}
bool exclusive_access(std::uint8_t t) {
  return t == kExclusiveAccess || t == kExclusiveAccessRegistrantsOnly ||
         t == kExclusiveAccessAllRegistrants;
}

const Sense kReservationsPreempted = make_sense(kUnitAttention, asc::kReservationsPreempted);
const Sense kReservationsReleased = make_sense(kUnitAttention, asc::kReservationsReleased);
const Sense kRegistrationsPreempted = make_sense(kUnitAttention, asc::kRegistrationsPreempted);

void conflict(const CmdPtr& c) {
  ScsiResult r;
  r.status = kStatusReservationConflict;
  c->done(std::move(r));
}

// Commands that never conflict with a reservation (SPC-4 table 52 and SPC-2 7.21.2 agree).
bool always_allowed(std::uint8_t op) {
  switch (op) {
    case 0x12:  // INQUIRY
    case 0xA0:  // REPORT LUNS
    case 0x03:  // REQUEST SENSE
    case 0xA3:  // REPORT SUPPORTED OPERATION CODES
      return true;
    default: return false;
  }
}

// Commands that only read (allowed under the Write Exclusive types).
bool reads_only(const Bytes& cdb) {
  switch (cdb[0]) {
    case 0x00:  // TEST UNIT READY
    case 0x08:
    case 0x28:
    case 0xA8:
    case 0x88:  // READ
    case 0x2F:
    case 0xAF:
    case 0x8F:  // VERIFY
    case 0x1A:
    case 0x5A:  // MODE SENSE
    case 0x25:  // READ CAPACITY(10)
    case 0x9E:  // READ CAPACITY(16), GET LBA STATUS
    case 0x34:
    case 0x90:  // PRE-FETCH
    case 0x37:
    case 0xB7:  // READ DEFECT DATA
      return true;
    default: return false;
  }
}

}  // namespace

bool LogicalUnit::reservation_conflict(const Bytes& cdb, const std::string& nexus) const {
  const std::uint8_t op = cdb[0];
  if (always_allowed(op)) return false;
  if (pr_.reserve6 && *pr_.reserve6 != nexus) {
    return op != 0x17;  // RELEASE(6) by another nexus is GOOD and does nothing
  }
  if (!pr_.held) return false;
  if (op == 0x5E || op == 0x5F) return false;  // PR IN / OUT judge for themselves
  if (op == 0x25 || (op == 0x9E && cdb.size() > 1 && (cdb[1] & 0x1F) == 0x10)) return false;
  if (op == 0x00) return false;  // TEST UNIT READY
  const bool registered = pr_.keys.count(nexus) != 0;
  const bool holder = all_registrants(pr_.type) ? registered : pr_.holder == nexus;
  if (holder) return false;
  if (registrants_have_access(pr_.type) && registered) return false;
  if (op == 0x16 || op == 0x17) return true;                      // RESERVE/RELEASE(6) under a PR
  if (op == 0x1E) return cdb.size() > 4 && (cdb[4] & 0x03) != 0;  // PREVENT conflicts
  if (exclusive_access(pr_.type)) return true;
  return !reads_only(cdb);
}

void LuHandlers::reserve6(CmdPtr c) {
  bool ok = false;
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    auto& pr = c->lu.pr_;
    const std::string& me = c->command.nexus;
    ok = !pr.held && (!pr.reserve6 || *pr.reserve6 == me);
    if (ok) pr.reserve6 = me;
  }
  if (!ok) return conflict(c);
  c->good();
}

void LuHandlers::release6(CmdPtr c) {
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    auto& pr = c->lu.pr_;
    if (pr.reserve6 && *pr.reserve6 == c->command.nexus) pr.reserve6.reset();
  }
  c->good();
}

void LuHandlers::persistent_reserve_in(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const std::uint8_t sa = cdb[1] & 0x1F;
  const std::uint16_t alloc = load_be16(&cdb[7]);
  Bytes d;
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    const auto& pr = c->lu.pr_;
    switch (sa) {
      case 0: {  // READ KEYS
        d.assign(8, 0);
        store_be32(&d[0], pr.generation);
        for (const auto& [nexus, key] : pr.keys) {
          std::uint8_t k[8];
          store_be64(k, key);
          d.insert(d.end(), k, k + 8);
        }
        store_be32(&d[4], static_cast<std::uint32_t>(d.size() - 8));
        break;
      }
      case 1: {  // READ RESERVATION
        d.assign(8, 0);
        store_be32(&d[0], pr.generation);
        if (pr.held) {
          d.resize(24, 0);
          store_be32(&d[4], 16);
          if (!all_registrants(pr.type)) {
            auto it = pr.keys.find(pr.holder);
            store_be64(&d[8], it == pr.keys.end() ? 0 : it->second);
          }
          d[21] = pr.type;  // scope 0 (LU_SCOPE) in the high nibble
        }
        break;
      }
      case 2: {  // REPORT CAPABILITIES
        d.assign(8, 0);
        store_be16(&d[0], 8);
        d[2] = 0x10;  // CRH: RESERVE(6)/RELEASE(6) are handled as SPC-4 5.13.3 says
        d[3] = 0x80;  // TMV: the type mask is valid; PTPL_A = 0
        d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;  // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
        d[5] = 0x01;                              // EX_AC_AR
        break;
      }
      case 3: {  // READ FULL STATUS
        d.assign(8, 0);
        store_be32(&d[0], pr.generation);
        for (const auto& [nexus, key] : pr.keys) {
          // Transport ID: iSCSI initiator port (format 01b, protocol 5), NUL-terminated, padded.
          std::string name = nexus.empty() ? std::string("local") : nexus;
          Bytes tid(4, 0);
          tid[0] = 0x45;
          tid.insert(tid.end(), name.begin(), name.end());
          tid.push_back(0);
          while (tid.size() % 4) tid.push_back(0);
          store_be16(&tid[2], static_cast<std::uint16_t>(tid.size() - 4));
          Bytes desc(24, 0);
          store_be64(&desc[0], key);
          const bool holder = pr.held && (all_registrants(pr.type) || pr.holder == nexus);
          desc[12] = holder ? 0x01 : 0x00;
          if (holder) desc[13] = pr.type;
          store_be16(&desc[18], 1);  // relative target port identifier
          store_be32(&desc[20], static_cast<std::uint32_t>(tid.size()));
          d.insert(d.end(), desc.begin(), desc.end());
          d.insert(d.end(), tid.begin(), tid.end());
        }
        store_be32(&d[4], static_cast<std::uint32_t>(d.size() - 8));
        break;
      }
      default: break;
    }
  }
  if (sa > 3) return c->check(invalid_field_in_cdb(1, 4));
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

void LuHandlers::persistent_reserve_out(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const std::uint8_t sa = cdb[1] & 0x1F;
  const std::uint8_t scope = cdb[2] >> 4;
  const std::uint8_t type = cdb[2] & 0x0F;
  const std::uint32_t plen = load_be32(&cdb[5]);
  if (sa > 6) return c->check(invalid_field_in_cdb(1, 4));  // REGISTER AND MOVE: not offered
  if (plen != 24) return c->check(make_sense(kIllegalRequest, asc::kParameterListLengthError));
  if (c->command.data_out.size() < 24) return c->short_data_out(24);
  const Bytes& p = c->command.data_out;
  const std::uint64_t key = load_be64(&p[0]);
  const std::uint64_t sa_key = load_be64(&p[8]);
  const std::uint8_t flags = p[20];
  if (flags & 0x08) return c->check(invalid_field_in_parameter_list(20, 3));  // SPEC_I_PT
  if (flags & 0x04) return c->check(invalid_field_in_parameter_list(20, 2));  // ALL_TG_PT
  if (flags & 0x01) return c->check(invalid_field_in_parameter_list(20, 0));  // APTPL
  const bool needs_type = sa == 1 || sa == 2 || sa == 4 || sa == 5;
  if (needs_type && scope != 0) return c->check(invalid_field_in_cdb(2, 7));
  if (needs_type && !valid_type(type)) return c->check(invalid_field_in_cdb(2, 3));

  enum class Outcome { kGood, kConflict, kBadRelease, kBadParameter };
  Outcome out = Outcome::kGood;
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    LogicalUnit& lu = c->lu;
    auto& pr = lu.pr_;
    const std::string& me = c->command.nexus;
    auto mine = pr.keys.find(me);
    const bool registered = mine != pr.keys.end();
    auto is_holder = [&](const std::string& n) {
      return pr.held && (all_registrants(pr.type) ? pr.keys.count(n) != 0 : pr.holder == n);
    };
    // Removes one registration; ends the reservation when its holder goes.
    auto unregister = [&](const std::string& n) {
      const bool was_holder = is_holder(n);
      pr.keys.erase(n);
      if (!was_holder) return;
      if (all_registrants(pr.type) && !pr.keys.empty()) return;
      const std::uint8_t old_type = pr.type;
      pr.held = false;
      pr.holder.clear();
      pr.type = 0;
      if (registrants_have_access(old_type) && !all_registrants(old_type)) {
        for (const auto& [other, k] : pr.keys) lu.ua_one(other, kReservationsReleased);
      }
    };
    if (pr.reserve6 && *pr.reserve6 != me) {
      out = Outcome::kConflict;
    } else if (sa == 0 || sa == 6) {  // REGISTER, REGISTER AND IGNORE EXISTING KEY
      if (sa == 0 && !registered && key != 0) {
        out = Outcome::kConflict;
      } else if (sa == 0 && registered && key != mine->second) {
        out = Outcome::kConflict;
      } else if (sa_key == 0) {
        if (registered) unregister(me);
        ++pr.generation;
      } else {
        pr.keys[me] = sa_key;
        ++pr.generation;
      }
    } else if (!registered || key != mine->second) {
      out = Outcome::kConflict;
    } else if (sa == 1) {  // RESERVE
      if (!pr.held) {
        pr.held = true;
        pr.holder = me;
        pr.type = type;
      } else if (!is_holder(me) || pr.type != type) {
        out = Outcome::kConflict;
      }
    } else if (sa == 2) {  // RELEASE
      if (pr.held && is_holder(me)) {
        if (pr.type != type) {
          out = Outcome::kBadRelease;
        } else {
          const std::uint8_t old_type = pr.type;
          pr.held = false;
          pr.holder.clear();
          pr.type = 0;
          if (registrants_have_access(old_type)) {
            for (const auto& [other, k] : pr.keys) {
              if (other != me) lu.ua_one(other, kReservationsReleased);
            }
          }
        }
      }
    } else if (sa == 3) {  // CLEAR
      for (const auto& [other, k] : pr.keys) {
        if (other != me) lu.ua_one(other, kReservationsPreempted);
      }
      pr.keys.clear();
      pr.held = false;
      pr.holder.clear();
      pr.type = 0;
      ++pr.generation;
    } else {  // PREEMPT, PREEMPT AND ABORT
      std::vector<std::string> victims;
      for (const auto& [other, k] : pr.keys) {
        if (k == sa_key && other != me) victims.push_back(other);
      }
      if (pr.held && all_registrants(pr.type) && sa_key == 0) {
        // Everyone else goes; the reservation becomes ours with the new type.
        victims.clear();
        for (const auto& [other, k] : pr.keys) {
          if (other != me) victims.push_back(other);
        }
        for (const auto& v : victims) {
          pr.keys.erase(v);
          lu.ua_one(v, kRegistrationsPreempted);
        }
        pr.holder = me;
        pr.type = type;
        ++pr.generation;
      } else if (pr.held && !all_registrants(pr.type) && pr.keys.count(pr.holder) &&
                 pr.keys[pr.holder] == sa_key) {
        // Preempting the holder: its registrations go and the reservation moves to us.
        for (const auto& v : victims) {
          pr.keys.erase(v);
          lu.ua_one(v, kRegistrationsPreempted);
        }
        const bool type_changed = pr.type != type;
        pr.holder = me;
        pr.type = type;
        if (type_changed) {
          for (const auto& [other, k] : pr.keys) {
            if (other != me) lu.ua_one(other, kReservationsReleased);
          }
        }
        ++pr.generation;
      } else if (sa_key == 0) {
        out = Outcome::kBadParameter;
      } else if (victims.empty()) {
        out = Outcome::kConflict;
      } else {
        for (const auto& v : victims) {
          const bool was_holder = is_holder(v);
          pr.keys.erase(v);
          lu.ua_one(v, kRegistrationsPreempted);
          if (was_holder && all_registrants(pr.type) && pr.keys.empty()) pr.held = false;
        }
        ++pr.generation;
      }
    }
  }
  switch (out) {
    case Outcome::kGood: return c->good_write(24);
    case Outcome::kConflict: return conflict(c);
    case Outcome::kBadRelease:
      return c->check(make_sense(kIllegalRequest, asc::kInvalidReleaseOfPersistentReservation));
    case Outcome::kBadParameter: return c->check(invalid_field_in_parameter_list(8));
  }
}

}  // namespace ipsan::client::scsi
