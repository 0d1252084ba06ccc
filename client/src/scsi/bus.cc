#include "ipsan/client/scsi/bus.h"

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <memory>
#include <mutex>

namespace ipsan::client::scsi {
namespace {

bool parse_u32(std::string_view s, std::uint32_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::vector<LunMapping>, Error> parse_lun_mappings(std::string_view text) {
  std::vector<LunMapping> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    const std::size_t slash = item.rfind('/');
    if (eq == std::string_view::npos || slash == std::string_view::npos || slash < eq) {
      return fail("bad LUN mapping '" + std::string(item) + "': expected T:L=SERVER/DEVICE");
    }
    LunMapping m;
    std::string_view addr = item.substr(0, eq);
    const std::size_t colon = addr.find(':');
    bool ok = true;
    if (colon == std::string_view::npos) {
      ok = parse_u32(addr, m.lun);
    } else {
      ok = parse_u32(addr.substr(0, colon), m.target) && parse_u32(addr.substr(colon + 1), m.lun);
    }
    m.server = std::string(item.substr(eq + 1, slash - eq - 1));
    ok = ok && !m.server.empty() && parse_u32(item.substr(slash + 1), m.device_id);
    if (!ok || m.lun > 16383) {
      return fail("bad LUN mapping '" + std::string(item) +
                  "': expected T:L=SERVER/DEVICE with numbers, LUN <= 16383");
    }
    out.push_back(std::move(m));
  }
  return out;
}

void Bus::add_server(const std::string& name, GenericTarget& target) { servers_[name] = &target; }

Result<void, Error> Bus::map(const LunMapping& m) {
  auto server = servers_.find(m.server);
  if (server == servers_.end()) return fail("LUN mapping names unknown server '" + m.server + "'");
  if (m.lun > 16383) return fail("LUN " + std::to_string(m.lun) + " above 16383");
  const auto key = std::make_pair(m.target, m.lun);
  if (entries_.count(key)) {
    return fail("LUN " + std::to_string(m.target) + ":" + std::to_string(m.lun) + " mapped twice");
  }
  LogicalUnitOptions o = options_;
  o.lun = m.lun;
  o.read_only = o.read_only || m.read_only;
  o.removable = o.removable || m.removable;
  if (m.physical_block_size != 0) o.physical_block_size = m.physical_block_size;
  Entry e;
  e.mapping = m;
  e.lu = std::make_unique<LogicalUnit>(*server->second, m.device_id, o);
  e.ata = std::make_unique<ata::Device>(*server->second, m.device_id);
  entries_.emplace(key, std::move(e));
  return {};
}

void Bus::attach_all(std::function<void(Errc)> done) {
  struct State {
    std::mutex mu;
    std::size_t left = 0;
    Errc first = Errc::kOk;
    std::function<void(Errc)> done;
  };
  auto st = std::make_shared<State>();
  st->left = entries_.size() * 2 + 1;
  st->done = std::move(done);
  auto one = [st](Errc e) {
    std::function<void(Errc)> fire;
    Errc result;
    {
      std::lock_guard<std::mutex> lock(st->mu);
      if (e != Errc::kOk && st->first == Errc::kOk) st->first = e;
      if (--st->left != 0) return;
      fire = std::move(st->done);
      result = st->first;
    }
    if (fire) fire(result);
  };
  for (auto& [key, e] : entries_) {
    e.lu->attach(one);
    e.ata->attach(one);
  }
  one(Errc::kOk);
}

Errc Bus::attach_all_and_wait(int timeout_ms) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Errc result = Errc::kOk;
  };
  auto w = std::make_shared<Wait>();
  attach_all([w](Errc e) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->done = true;
    w->result = e;
    w->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(w->mu);
  if (!w->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return w->done; })) {
    return Errc::kTimeout;
  }
  return w->result;
}

LogicalUnit* Bus::find(std::uint32_t target, std::uint32_t lun) {
  auto it = entries_.find({target, lun});
  return it == entries_.end() ? nullptr : it->second.lu.get();
}

ata::Device* Bus::find_ata(std::uint32_t target, std::uint32_t lun) {
  auto it = entries_.find({target, lun});
  return it == entries_.end() ? nullptr : it->second.ata.get();
}

std::vector<std::uint64_t> Bus::luns(std::uint32_t target) const {
  std::vector<std::uint64_t> out;
  for (const auto& [key, e] : entries_) {
    if (key.first == target) out.push_back(key.second);
  }
  return out;
}

std::vector<LunMapping> Bus::mappings() const {
  std::vector<LunMapping> out;
  for (const auto& [key, e] : entries_) out.push_back(e.mapping);
  return out;
}

void Bus::reset_all() {
  for (auto& [key, e] : entries_) {
    e.lu->reset();
    e.ata->reset();
  }
}

void Bus::reset_target(std::uint32_t target, bool cold) {
  (void)cold;  // no power cycle to emulate: both are a logical unit reset of every LUN
  for (auto& [key, e] : entries_) {
    if (key.first != target) continue;
    e.lu->reset();
    e.ata->reset();
  }
}

void Bus::nexus_lost(std::uint32_t target, const std::string& nexus) {
  for (auto& [key, e] : entries_) {
    if (key.first == target) e.lu->nexus_lost(nexus);
  }
}

void Bus::execute(std::uint32_t target, std::uint32_t lun, const ScsiCommand& command,
                  ScsiDone done) {
  const Bytes& cdb = command.cdb;
  if (!cdb.empty() && cdb[0] == 0xA0 && cdb.size() >= 12) {
    // REPORT LUNS, for mapped and unmapped LUNs alike (SPC-4 6.33).
    const std::uint32_t alloc = load_be32(&cdb[6]);
    const std::uint8_t select = cdb[2];
    const bool reserved =
        cdb[1] != 0 || cdb[3] || cdb[4] || cdb[5] || cdb[10] || (cdb[11] & 0x3F) != 0;
    if (reserved || alloc < 16 || select > 2) {
      const bool d_sense = [&] {
        LogicalUnit* lu = find(target, lun);
        return lu != nullptr && lu->mode_parameters().d_sense;
      }();
      Sense s = select > 2 ? invalid_field_in_cdb(2) : invalid_field_in_cdb(6);
      if (reserved) {
        for (std::size_t i : {1u, 3u, 4u, 5u, 10u, 11u}) {
          const std::uint8_t bad = i == 11 ? (cdb[i] & 0x3F) : cdb[i];
          if (bad == 0) continue;
          int bit = 7;
          while (!(bad & (1u << bit))) --bit;
          s = invalid_field_in_cdb(static_cast<std::uint16_t>(i), bit);
          break;
        }
      }
      return done(check_condition(s, d_sense));
    }
    Bytes d = report_luns_data(select == 1 ? std::vector<std::uint64_t>{} : luns(target));
    if (d.size() > alloc) d.resize(alloc);
    return done(good_result(command, std::move(d)));
  }
  if (LogicalUnit* lu = find(target, lun)) return lu->execute(command, std::move(done));
  // No logical unit here (SPC-4 3.1.69 / 6.6.2).
  if (!cdb.empty() && cdb[0] == 0x12 && cdb.size() >= 6) {
    return done(good_result(command, inquiry_data_no_lun(load_be16(&cdb[3]))));
  }
  const Sense s = make_sense(kIllegalRequest, asc::kLogicalUnitNotSupported);
  if (!cdb.empty() && cdb[0] == 0x03 && cdb.size() >= 6) {
    Bytes d = encode_sense(s, cdb[1] & 0x01);
    if (d.size() > cdb[4]) d.resize(cdb[4]);
    return done(good_result(command, std::move(d)));
  }
  done(check_condition(s, false));
}

void Bus::execute_ata(std::uint32_t target, std::uint32_t lun, const ata::Taskfile& taskfile,
                      ata::AtaDone done) {
  if (ata::Device* d = find_ata(target, lun)) return d->execute(taskfile, std::move(done));
  ata::AtaResult r;
  r.status = ata::kStatusDrdy | ata::kStatusErr;
  r.error = ata::kErrorAbrt;
  done(std::move(r));
}

}  // namespace ipsan::client::scsi
