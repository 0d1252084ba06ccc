// Fault schedule <-> TOML (toml++), and random schedules from a seed. Format: docs/HA.md.
#include "ipsan/ha/schedule.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "ipsan/base/rng.h"
#include "ipsan/base/units.h"

namespace ipsan::ha {
namespace {

constexpr std::size_t kMaxParties = 16;
constexpr std::size_t kMaxEvents = 10000;
constexpr Duration kMaxDuration = std::chrono::hours(24);

struct ActionName {
  Action action;
  std::string_view name;
};
constexpr ActionName kActions[] = {
    {Action::kKill, "kill"},       {Action::kStop, "stop"},   {Action::kCont, "cont"},
    {Action::kRestart, "restart"}, {Action::kStart, "start"}, {Action::kPartition, "partition"},
    {Action::kLoss, "loss"},       {Action::kDelay, "delay"}, {Action::kHeal, "heal"},
};

std::string at_line(const toml::node& n) {
  const auto& src = n.source();
  if (src.begin.line == 0) return "";
  return "line " + std::to_string(src.begin.line) + ": ";
}

Result<void, Error> check_keys(const toml::table& t, const std::string& label,
                               std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, node] : t) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return fail(at_line(node) + label + ": unknown key '" + std::string(key.str()) +
                  "' (allowed: " + list + ")");
    }
  }
  return {};
}

// A string value, or empty with `present` false when the key is absent.
Result<std::string, Error> get_string(const toml::table& t, std::string_view key,
                                      const std::string& label, bool& present) {
  present = false;
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::string();
  const auto* s = n->as_string();
  if (s == nullptr)
    return fail(at_line(*n) + label + ": '" + std::string(key) + "' must be a string");
  present = true;
  return s->get();
}

Result<Duration, Error> get_duration(const toml::table& t, std::string_view key,
                                     const std::string& label, bool& present) {
  auto s = get_string(t, key, label, present);
  if (!s) return tl::unexpected(s.error());
  if (!present) return Duration{};
  const std::string where = at_line(*t.get(key)) + label + ": '" + std::string(key) + "': ";
  if (!s->empty() && s->front() == '-') return fail(where + "negative duration '" + *s + "'");
  auto d = parse_duration(*s);
  if (!d) return fail(where + d.error().message);
  if (*d > kMaxDuration) return fail(where + "longer than 24h");
  return *d;
}

Result<std::uint64_t, Error> get_uint(const toml::table& t, std::string_view key,
                                      const std::string& label, std::uint64_t lo, std::uint64_t hi,
                                      std::uint64_t fallback) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return fallback;
  const auto* i = n->as_integer();
  if (i == nullptr || i->get() < 0 || static_cast<std::uint64_t>(i->get()) < lo ||
      static_cast<std::uint64_t>(i->get()) > hi) {
    return fail(at_line(*n) + label + ": '" + std::string(key) + "' must be an integer in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<std::uint64_t>(i->get());
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 32 || s == "client") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string fmt_duration(Duration d) {
  const auto ns = d.count();
  if (ns % 1'000'000'000 == 0) return std::to_string(ns / 1'000'000'000) + "s";
  if (ns % 1'000'000 == 0) return std::to_string(ns / 1'000'000) + "ms";
  if (ns % 1'000 == 0) return std::to_string(ns / 1'000) + "us";
  return std::to_string(ns) + "ns";
}

std::string fmt_percent(double p) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g%%", p * 100.0);
  return buf;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

std::string_view to_string(Action a) {
  for (const auto& n : kActions)
    if (n.action == a) return n.name;
  return "unknown";
}

bool is_link_action(Action a) {
  return a == Action::kPartition || a == Action::kLoss || a == Action::kDelay || a == Action::kHeal;
}

std::string client_link(std::string_view party) { return "client-" + std::string(party); }

Result<Schedule, Error> parse_schedule(std::string_view toml_text) {
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return fail("line " + std::to_string(b.line) + ": " + std::string(e.description()));
  }
  Schedule s;
  if (auto r = check_keys(root, "schedule", {"seed", "duration", "workload", "party", "event"}); !r)
    return tl::unexpected(r.error());
  if (auto v = get_uint(root, "seed", "schedule", 0, UINT64_MAX >> 1, 1); v)
    s.seed = *v;
  else
    return tl::unexpected(v.error());
  bool present = false;
  if (auto d = get_duration(root, "duration", "schedule", present); !d) {
    return tl::unexpected(d.error());
  } else if (present) {
    if (*d <= Duration::zero()) return fail("schedule: 'duration' must be positive");
    s.duration = *d;
  }

  // Parties.
  const toml::node* pn = root.get("party");
  if (pn == nullptr) return fail("schedule: no [[party]] (at least one server is needed)");
  const auto* parr = pn->as_array();
  if (parr == nullptr)
    return fail(at_line(*pn) + "schedule: 'party' must be an array of tables ([[party]])");
  if (parr->empty() || parr->size() > kMaxParties)
    return fail(at_line(*pn) + "schedule: 1 to " + std::to_string(kMaxParties) + " parties");
  std::set<std::string> names;
  for (const auto& node : *parr) {
    const auto* t = node.as_table();
    if (t == nullptr) return fail(at_line(node) + "party: must be a table");
    const std::string label = at_line(node) + "party";
    if (auto r = check_keys(*t, "party", {"name", "size", "backend"}); !r)
      return tl::unexpected(r.error());
    PartySpec p;
    auto name = get_string(*t, "name", label, present);
    if (!name) return tl::unexpected(name.error());
    if (!present) return fail(label + ": missing 'name'");
    if (!valid_name(*name))
      return fail(label + ": bad name '" + *name +
                  "' (1-32 of A-Z a-z 0-9 _; 'client' is reserved)");
    if (!names.insert(*name).second) return fail(label + ": duplicate name '" + *name + "'");
    p.name = *name;
    auto size = get_string(*t, "size", label, present);
    if (!size) return tl::unexpected(size.error());
    if (present) {
      auto v = parse_size(*size);
      if (!v) return fail(label + ": 'size': " + v.error().message);
      if (*v < (1u << 20) || *v > (1ull << 40) || *v % 4096 != 0)
        return fail(label + ": 'size' must be a multiple of 4 KiB in [1 MiB, 1 TiB]");
      p.size = *v;
    }
    auto backend = get_string(*t, "backend", label, present);
    if (!backend) return tl::unexpected(backend.error());
    if (present) {
      if (*backend != "file" && *backend != "ram")
        return fail(label + ": 'backend' must be \"file\" or \"ram\"");
      p.backend = *backend;
    }
    s.parties.push_back(std::move(p));
  }

  // Workload.
  s.workload.target = s.parties.front().name;
  if (const toml::node* wn = root.get("workload")) {
    const auto* t = wn->as_table();
    if (t == nullptr) return fail(at_line(*wn) + "schedule: 'workload' must be a table");
    const std::string label = at_line(*wn) + "workload";
    if (auto r = check_keys(*t, "workload", {"target", "blocks", "queue_depth", "request_timeout"});
        !r)
      return tl::unexpected(r.error());
    auto target = get_string(*t, "target", label, present);
    if (!target) return tl::unexpected(target.error());
    if (present) {
      if (names.count(*target) == 0)
        return fail(label + ": unknown target party '" + *target + "'");
      s.workload.target = *target;
    }
    auto blocks = get_uint(*t, "blocks", label, 1, 1u << 20, s.workload.blocks);
    if (!blocks) return tl::unexpected(blocks.error());
    s.workload.blocks = *blocks;
    auto qd = get_uint(*t, "queue_depth", label, 1, 64, s.workload.queue_depth);
    if (!qd) return tl::unexpected(qd.error());
    s.workload.queue_depth = static_cast<std::uint32_t>(*qd);
    auto rt = get_duration(*t, "request_timeout", label, present);
    if (!rt) return tl::unexpected(rt.error());
    if (present) {
      if (*rt < std::chrono::seconds(1)) return fail(label + ": 'request_timeout' below 1s");
      s.workload.request_timeout = *rt;
    }
  }
  for (const auto& p : s.parties) {
    if (p.name == s.workload.target && s.workload.blocks * 4096 > p.size)
      return fail("workload: " + std::to_string(s.workload.blocks) +
                  " blocks of 4 KiB do not fit party '" + p.name + "'");
  }

  // Events.
  if (const toml::node* en = root.get("event")) {
    const auto* earr = en->as_array();
    if (earr == nullptr)
      return fail(at_line(*en) + "schedule: 'event' must be an array of tables ([[event]])");
    if (earr->size() > kMaxEvents) return fail(at_line(*en) + "schedule: too many events");
    for (const auto& node : *earr) {
      const auto* t = node.as_table();
      if (t == nullptr) return fail(at_line(node) + "event: must be a table");
      const std::string label = at_line(node) + "event";
      if (auto r = check_keys(*t, "event", {"at", "do", "party", "link", "for", "value"}); !r)
        return tl::unexpected(r.error());
      EventSpec e;
      auto at = get_duration(*t, "at", label, present);
      if (!at) return tl::unexpected(at.error());
      if (!present) return fail(label + ": missing 'at'");
      if (*at > s.duration) return fail(label + ": 'at' is after the end of the run ('duration')");
      e.at = *at;
      auto act = get_string(*t, "do", label, present);
      if (!act) return tl::unexpected(act.error());
      if (!present) return fail(label + ": missing 'do'");
      bool known = false;
      for (const auto& n : kActions)
        if (n.name == *act) e.action = n.action, known = true;
      if (!known)
        return fail(label + ": unknown action '" + *act +
                    "' (kill, stop, cont, restart, start, partition, loss, delay, heal)");
      const bool link = is_link_action(e.action);
      bool has_party = false, has_link = false, has_for = false, has_value = false;
      auto party = get_string(*t, "party", label, has_party);
      if (!party) return tl::unexpected(party.error());
      auto lname = get_string(*t, "link", label, has_link);
      if (!lname) return tl::unexpected(lname.error());
      auto len = get_duration(*t, "for", label, has_for);
      if (!len) return tl::unexpected(len.error());
      auto value = get_string(*t, "value", label, has_value);
      if (!value) return tl::unexpected(value.error());
      if (link) {
        if (!has_link || has_party)
          return fail(label + ": '" + *act + "' needs 'link' (and no 'party')");
        bool found = false;
        for (const auto& p : s.parties) found = found || client_link(p.name) == *lname;
        if (!found) return fail(label + ": unknown link '" + *lname + "' (links are client-PARTY)");
        e.target = *lname;
        if (has_for && e.action == Action::kHeal) return fail(label + ": 'heal' takes no 'for'");
        if (has_for && *len <= Duration::zero()) return fail(label + ": 'for' must be positive");
        e.length = *len;
      } else {
        if (!has_party || has_link || has_for)
          return fail(label + ": '" + *act + "' needs 'party' (and no 'link' or 'for')");
        if (names.count(*party) == 0) return fail(label + ": unknown party '" + *party + "'");
        e.target = *party;
      }
      if (e.action == Action::kLoss || e.action == Action::kDelay) {
        if (!has_value) return fail(label + ": '" + *act + "' needs 'value'");
        if (e.action == Action::kLoss) {
          if (value->empty() || value->back() != '%')
            return fail(label + ": loss 'value' is a percentage, e.g. \"10%\"");
          char* end = nullptr;
          const std::string num = value->substr(0, value->size() - 1);
          const double v = std::strtod(num.c_str(), &end);
          if (num.empty() || end != num.c_str() + num.size() || !(v >= 0.0 && v <= 100.0))
            return fail(label + ": bad loss '" + *value + "' (0% to 100%)");
          e.loss = v / 100.0;
        } else {
          if (!value->empty() && value->front() == '-') return fail(label + ": negative delay");
          auto d = parse_duration(*value);
          if (!d) return fail(label + ": 'value': " + d.error().message);
          if (*d > std::chrono::seconds(10)) return fail(label + ": delay above 10s");
          e.delay = *d;
        }
      } else if (has_value) {
        return fail(label + ": '" + *act + "' takes no 'value'");
      }
      s.events.push_back(std::move(e));
    }
  }
  std::stable_sort(s.events.begin(), s.events.end(),
                   [](const EventSpec& a, const EventSpec& b) { return a.at < b.at; });
  return s;
}

std::string format_schedule(const Schedule& s) {
  std::ostringstream o;
  o << "# ipsan chaos schedule (docs/HA.md); rerun: ipsan chaos run FILE --seed " << s.seed << "\n";
  o << "seed = " << s.seed << "\n";
  o << "duration = " << quoted(fmt_duration(s.duration)) << "\n\n";
  o << "[workload]\n";
  o << "target = " << quoted(s.workload.target) << "\n";
  o << "blocks = " << s.workload.blocks << "\n";
  o << "queue_depth = " << s.workload.queue_depth << "\n";
  o << "request_timeout = " << quoted(fmt_duration(s.workload.request_timeout)) << "\n";
  for (const auto& p : s.parties) {
    o << "\n[[party]]\nname = " << quoted(p.name) << "\nsize = " << quoted(std::to_string(p.size))
      << "\n";
    if (p.backend != "file") o << "backend = " << quoted(p.backend) << "\n";
  }
  for (const auto& e : s.events) {
    o << "\n[[event]]\nat = " << quoted(fmt_duration(e.at))
      << "\ndo = " << quoted(to_string(e.action)) << "\n";
    o << (is_link_action(e.action) ? "link = " : "party = ") << quoted(e.target) << "\n";
    if (e.action == Action::kLoss) o << "value = " << quoted(fmt_percent(e.loss)) << "\n";
    if (e.action == Action::kDelay) o << "value = " << quoted(fmt_duration(e.delay)) << "\n";
    if (is_link_action(e.action) && e.length > Duration::zero())
      o << "for = " << quoted(fmt_duration(e.length)) << "\n";
  }
  return o.str();
}

Schedule generate_schedule(std::uint64_t seed) {
  Rng rng(seed ^ 0x6368616f73ull);  // "chaos"
  Schedule s;
  s.seed = seed & (UINT64_MAX >> 1);
  const auto ms = [](std::uint64_t v) { return Duration(std::chrono::milliseconds(v)); };
  s.duration = ms(8000 + 1000 * rng.below(5));
  s.parties.push_back(PartySpec{"A", 64ull << 20, "file"});
  s.workload.target = "A";
  s.workload.blocks = 256 + 256 * rng.below(4);
  s.workload.queue_depth = static_cast<std::uint32_t>(1 + rng.below(8));
  const std::string link = client_link("A");
  const std::uint64_t faults = 2 + rng.below(4);
  const std::uint64_t window = static_cast<std::uint64_t>(s.duration.count() / 1'000'000) - 1000;
  for (std::uint64_t i = 0; i < faults; ++i) {
    const std::uint64_t at = 500 + rng.below(window - 500);
    const std::uint64_t left = static_cast<std::uint64_t>(s.duration.count() / 1'000'000) - at;
    const std::uint64_t len = 200 + rng.below(std::min<std::uint64_t>(left, 3000));
    EventSpec e;
    e.at = ms(at);
    switch (rng.below(5)) {
      case 0:  // kill -9, restart later
        e.action = Action::kKill;
        e.target = "A";
        s.events.push_back(e);
        e.at = ms(std::min(at + len, at + left));
        e.action = Action::kRestart;
        break;
      case 1:  // stop (SIGSTOP), continue later
        e.action = Action::kStop;
        e.target = "A";
        s.events.push_back(e);
        e.at = ms(std::min(at + len, at + left));
        e.action = Action::kCont;
        break;
      case 2:
        e.action = Action::kPartition;
        e.target = link;
        e.length = ms(len);
        break;
      case 3:
        e.action = Action::kLoss;
        e.target = link;
        e.loss = static_cast<double>(1 + rng.below(30)) / 100.0;
        e.length = ms(len);
        break;
      default:
        e.action = Action::kDelay;
        e.target = link;
        e.delay = ms(5 + rng.below(96));
        e.length = ms(len);
        break;
    }
    s.events.push_back(e);
  }
  std::stable_sort(s.events.begin(), s.events.end(),
                   [](const EventSpec& a, const EventSpec& b) { return a.at < b.at; });
  return s;
}

}  // namespace ipsan::ha
