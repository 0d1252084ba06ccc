// LUN maps and buses for trace replay (ipsan/replay/trace_replay.h).
#include "ipsan/replay/trace_replay.h"

#include <charconv>
#include <set>

#include "ipsan/base/log.h"

namespace ipsan::replay {
namespace {

bool parse_u32(std::string_view s, std::uint32_t& out) {
  if (s.empty() || s.size() > 10) return false;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 0xFFFFFFFFu) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

}  // namespace

Result<std::vector<DeviceMapping>, Error> parse_device_map(std::string_view text) {
  std::vector<DeviceMapping> out;
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  if (text.empty()) return fail("empty LUN map");
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      return fail(
          str_cat("bad LUN map entry '", item, "' (expected LUN=DEVICE_ID or T:L=DEVICE_ID)"));
    }
    std::string_view left = item.substr(0, eq);
    DeviceMapping m;
    const auto colon = left.find(':');
    bool ok = true;
    if (colon != std::string_view::npos) {
      ok = parse_u32(left.substr(0, colon), m.target) && parse_u32(left.substr(colon + 1), m.lun);
    } else {
      ok = parse_u32(left, m.lun);
    }
    ok = ok && parse_u32(item.substr(eq + 1), m.device_id);
    if (!ok || m.lun > 16383) {
      return fail(str_cat("bad LUN map entry '", item, "' (numbers; LUN at most 16383)"));
    }
    if (!seen.insert({m.target, m.lun}).second) {
      return fail(str_cat("LUN ", m.target, ":", m.lun, " mapped twice"));
    }
    out.push_back(m);
  }
  return out;
}

Result<std::unique_ptr<client::scsi::Bus>, Error> make_bus(client::GenericTarget& target,
                                                           const std::vector<DeviceMapping>& map,
                                                           int attach_timeout_ms) {
  auto bus = std::make_unique<client::scsi::Bus>();
  bus->add_server("remote", target);
  for (const DeviceMapping& m : map) {
    auto r = bus->map({m.target, m.lun, "remote", m.device_id});
    if (!r) return make_unexpected(r.error());
  }
  const Errc e = bus->attach_all_and_wait(attach_timeout_ms);
  if (e != Errc::kOk) {
    return fail(e, str_cat("cannot attach the mapped devices: ", to_string(e),
                           " (is every DEVICE_ID of --map exported by the server?)"));
  }
  return bus;
}

}  // namespace ipsan::replay
