// Text forms of impairment settings and the named profiles (ipsan/netem/config.h).
#include "ipsan/netem/config.h"

#include <array>
#include <charconv>
#include <cmath>
#include <sstream>

#include "ipsan/base/log.h"

namespace ipsan::netem {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto pos = s.find(sep);
    out.push_back(trim(s.substr(0, pos)));
    if (pos == std::string_view::npos) break;
    s.remove_prefix(pos + 1);
  }
  return out;
}

// Splits "12.5ms" into a non-negative finite number and its unit suffix.
bool split_number(std::string_view text, double& number, std::string& unit) {
  text = trim(text);
  std::size_t end = 0;
  while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.')) ++end;
  if (end == 0) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + end, number);
  if (ec != std::errc{} || ptr != text.data() + end || !std::isfinite(number)) return false;
  unit = lower(trim(text.substr(end)));
  return true;
}

Result<std::uint64_t, Error> parse_count(std::string_view text, std::string_view what,
                                         std::uint64_t max) {
  text = trim(text);
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() || v > max) {
    return fail(str_cat("bad ", what, " '", text, "': expected a whole number up to ", max));
  }
  return v;
}

}  // namespace

Result<Duration, Error> parse_duration(std::string_view text) {
  double n = 0;
  std::string unit;
  if (!split_number(text, n, unit)) {
    return fail(str_cat("bad duration '", text, "': expected e.g. 10ms, 1.5s, 250us"));
  }
  double scale = 0;
  if (unit == "ns") {
    scale = 1;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "s") {
    scale = 1e9;
  } else if (unit == "m" || unit == "min") {
    scale = 60e9;
  } else if (unit.empty() && n == 0.0) {
    scale = 1;
  } else {
    return fail(str_cat("bad duration '", text, "': unit must be ns, us, ms, s or m"));
  }
  const double ns = n * scale;
  if (ns > 1e15) return fail(str_cat("duration '", text, "' is too long (limit 1e6 s)"));
  return Duration(std::llround(ns));
}

Result<double, Error> parse_probability(std::string_view text) {
  double n = 0;
  std::string unit;
  // A bare number is refused (except 0): tc reads "1" as 1 %, a fraction reading gives 100 %;
  // insisting on the sign avoids silently running the wrong experiment.
  if (!split_number(text, n, unit) || (unit != "%" && !(unit.empty() && n == 0.0))) {
    return fail(str_cat("bad probability '", text, "': expected a percentage such as 1% or 0.1%"));
  }
  const double p = n / 100.0;
  if (p > 1.0) return fail(str_cat("probability '", text, "' is above 100%"));
  return p;
}

Result<std::uint64_t, Error> parse_rate(std::string_view text) {
  double n = 0;
  std::string unit;
  if (!split_number(text, n, unit)) {
    return fail(str_cat("bad rate '", text, "': expected e.g. 100mbit, 1gbit, 64kbit"));
  }
  double scale = 0;
  if (unit.empty() || unit == "bit") {
    scale = 1;
  } else if (unit == "kbit") {
    scale = 1e3;
  } else if (unit == "mbit") {
    scale = 1e6;
  } else if (unit == "gbit") {
    scale = 1e9;
  } else if (unit == "bps") {
    scale = 8;
  } else if (unit == "kbps") {
    scale = 8e3;
  } else if (unit == "mbps") {
    scale = 8e6;
  } else if (unit == "gbps") {
    scale = 8e9;
  } else {
    return fail(str_cat("bad rate unit in '", text,
                        "': use bit, kbit, mbit, gbit (bits/s) or "
                        "bps, kbps, mbps, gbps (bytes/s)"));
  }
  const double bps = n * scale;
  if (bps > 1e13) return fail(str_cat("rate '", text, "' is too high (limit 10 tbit)"));
  if (bps != 0.0 && bps < 1.0) return fail(str_cat("rate '", text, "' is below 1 bit/s"));
  return static_cast<std::uint64_t>(std::llround(bps));
}

Result<std::vector<Partition>, Error> parse_partitions(std::string_view text) {
  std::vector<Partition> out;
  if (lower(trim(text)) == "none") return out;
  for (const auto item : split(text, ',')) {
    const auto plus = item.find('+');
    if (plus == std::string_view::npos) {
      return fail(str_cat("bad partition '", item,
                          "': expected START+LENGTH[/PERIOD], e.g. "
                          "2s+500ms or 2s+500ms/10s"));
    }
    const auto slash = item.find('/', plus);
    Partition p;
    auto at = parse_duration(item.substr(0, plus));
    if (!at) return fail(str_cat("partition start: ", at.error().message));
    auto len = parse_duration(item.substr(
        plus + 1, slash == std::string_view::npos ? std::string_view::npos : slash - plus - 1));
    if (!len) return fail(str_cat("partition length: ", len.error().message));
    p.at = *at;
    p.length = *len;
    if (slash != std::string_view::npos) {
      auto period = parse_duration(item.substr(slash + 1));
      if (!period) return fail(str_cat("partition period: ", period.error().message));
      p.period = *period;
    }
    if (p.length <= Duration::zero()) {
      return fail(str_cat("bad partition '", item, "': length must be positive"));
    }
    if (p.period != Duration::zero() && p.period < p.length) {
      return fail(str_cat("bad partition '", item, "': period shorter than the length"));
    }
    out.push_back(p);
  }
  return out;
}

std::span<const std::string_view> option_names() {
  static constexpr std::array<std::string_view, 11> kNames = {
      "loss",    "burst", "delay", "jitter", "reorder",  "duplicate",
      "corrupt", "rate",  "queue", "mtu",    "partition"};
  return kNames;
}

Result<void, Error> apply_option(ImpairmentConfig& c, std::string_view name,
                                 std::string_view value) {
  auto with_name = [&](const Error& e) {
    return fail(str_cat("--", name, " ", value, ": ", e.message));
  };
  if (name == "loss" || name == "reorder" || name == "duplicate") {
    auto p = parse_probability(value);
    if (!p) return with_name(p.error());
    (name == "loss" ? c.loss : name == "reorder" ? c.reorder : c.duplicate) = *p;
    return {};
  }
  if (name == "burst") {
    if (lower(trim(value)) == "off" || trim(value) == "0") {
      c.burst = GilbertElliott{};
      return {};
    }
    const auto parts = split(value, ',');
    if (parts.size() != 2 && parts.size() != 4) {
      return with_name(Error{Errc::kInvalidArgument, "expected p,r or p,r,h,k"});
    }
    double v[4] = {0, 1, 0, 1};
    for (std::size_t i = 0; i < parts.size(); ++i) {
      auto p = parse_probability(parts[i]);
      if (!p) return with_name(p.error());
      v[i] = *p;
    }
    if (v[0] > 0 && v[1] <= 0) {
      return with_name(Error{Errc::kInvalidArgument, "r must be > 0 when p > 0"});
    }
    c.burst = GilbertElliott{v[0], v[1], v[2], v[3]};
    return {};
  }
  if (name == "delay") {
    auto d = parse_duration(value);
    if (!d) return with_name(d.error());
    c.delay = *d;
    return {};
  }
  if (name == "jitter") {
    const auto parts = split(value, ',');
    auto d = parse_duration(parts[0]);
    if (!d) return with_name(d.error());
    ImpairmentConfig next = c;
    next.jitter = *d;
    next.jitter_distribution = JitterDistribution::kUniform;
    next.jitter_reorders = false;
    for (std::size_t i = 1; i < parts.size(); ++i) {
      const std::string word = lower(parts[i]);
      if (word == "uniform") {
        next.jitter_distribution = JitterDistribution::kUniform;
      } else if (word == "normal") {
        next.jitter_distribution = JitterDistribution::kNormal;
      } else if (word == "reorder") {
        next.jitter_reorders = true;
      } else {
        return with_name(Error{Errc::kInvalidArgument, str_cat("unknown jitter flag '", parts[i],
                                                               "' (uniform, normal, reorder)")});
      }
    }
    c = next;
    return {};
  }
  if (name == "corrupt") {
    const auto parts = split(value, ',');
    if (parts.size() > 2) return with_name(Error{Errc::kInvalidArgument, "expected P[,BITS]"});
    auto p = parse_probability(parts[0]);
    if (!p) return with_name(p.error());
    std::uint32_t bits = 1;
    if (parts.size() == 2) {
      auto b = parse_count(parts[1], "bit count", 64);
      if (!b) return with_name(b.error());
      if (*b == 0) return with_name(Error{Errc::kInvalidArgument, "bit count must be >= 1"});
      bits = static_cast<std::uint32_t>(*b);
    }
    c.corrupt = *p;
    c.corrupt_max_bits = bits;
    return {};
  }
  if (name == "rate") {
    auto r = parse_rate(value);
    if (!r) return with_name(r.error());
    c.rate_bps = *r;
    return {};
  }
  if (name == "queue") {
    auto q = parse_count(value, "queue length", 10'000'000);
    if (!q) return with_name(q.error());
    c.queue_limit = static_cast<std::uint32_t>(*q);
    return {};
  }
  if (name == "mtu") {
    const auto parts = split(value, ',');
    if (parts.size() > 2) return with_name(Error{Errc::kInvalidArgument, "expected N[,truncate]"});
    auto m = parse_count(parts[0], "mtu", 1u << 24);
    if (!m) return with_name(m.error());
    bool truncate = false;
    if (parts.size() == 2) {
      const std::string word = lower(parts[1]);
      if (word == "truncate") {
        truncate = true;
      } else if (word != "drop") {
        return with_name(Error{Errc::kInvalidArgument, "second field must be truncate or drop"});
      }
    }
    c.mtu = static_cast<std::uint32_t>(*m);
    c.mtu_truncate = truncate;
    return {};
  }
  if (name == "partition") {
    auto p = parse_partitions(value);
    if (!p) return with_name(p.error());
    c.partitions = std::move(*p);
    return {};
  }
  return fail(str_cat("unknown impairment option '", name, "'"));
}

Result<ImpairmentConfig, Error> parse_spec(std::string_view spec, ImpairmentConfig base) {
  for (const auto item : split(spec, ' ')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      return fail(str_cat("bad spec item '", item, "': expected NAME=VALUE"));
    }
    auto r = apply_option(base, item.substr(0, eq), item.substr(eq + 1));
    if (!r) return make_unexpected(r.error());
  }
  return base;
}

std::string format_duration(Duration d) {
  const auto ns = d.count();
  std::ostringstream os;
  if (ns != 0 && ns % 1'000'000'000 == 0) {
    os << ns / 1'000'000'000 << "s";
  } else if (ns != 0 && ns % 1'000'000 == 0) {
    os << ns / 1'000'000 << "ms";
  } else if (ns != 0 && ns % 1'000 == 0) {
    os << ns / 1'000 << "us";
  } else {
    os << ns << "ns";
  }
  return os.str();
}

namespace {
std::string pct(double p) {
  std::ostringstream os;
  os << p * 100.0 << "%";
  return os.str();
}
}  // namespace

std::string describe(const ImpairmentConfig& c) {
  std::ostringstream os;
  auto item = [&os](std::string_view name, const std::string& value) {
    if (os.tellp() > 0) os << ' ';
    os << name << '=' << value;
  };
  if (c.loss > 0) item("loss", pct(c.loss));
  if (c.burst.p > 0) {
    item("burst",
         str_cat(pct(c.burst.p), ",", pct(c.burst.r), ",", pct(c.burst.h), ",", pct(c.burst.k)));
  }
  if (c.delay > Duration::zero()) item("delay", format_duration(c.delay));
  if (c.jitter > Duration::zero()) {
    item("jitter", str_cat(format_duration(c.jitter),
                           c.jitter_distribution == JitterDistribution::kNormal ? ",normal" : "",
                           c.jitter_reorders ? ",reorder" : ""));
  }
  if (c.reorder > 0) item("reorder", pct(c.reorder));
  if (c.duplicate > 0) item("duplicate", pct(c.duplicate));
  if (c.corrupt > 0) item("corrupt", str_cat(pct(c.corrupt), ",", c.corrupt_max_bits));
  if (c.rate_bps > 0) {
    item("rate", str_cat(c.rate_bps, "bit"));
    item("queue", std::to_string(c.queue_limit));
  }
  if (c.mtu > 0) item("mtu", str_cat(c.mtu, c.mtu_truncate ? ",truncate" : ""));
  if (!c.partitions.empty()) {
    std::string parts;
    for (const auto& p : c.partitions) {
      if (!parts.empty()) parts += ',';
      parts += str_cat(format_duration(p.at), "+", format_duration(p.length));
      if (p.period > Duration::zero()) parts += "/" + format_duration(p.period);
    }
    item("partition", parts);
  }
  const std::string out = os.str();
  return out.empty() ? "none" : out;
}

std::span<const Profile> profiles() {
  static constexpr std::array<Profile, 12> kProfiles = {{
      {"lan", "data-centre LAN: 50 us one-way, 10 gbit/s", "delay=50us rate=10gbit queue=1000"},
      {"wan-20ms", "WAN, 20 ms RTT: 10 ms one-way +- 1 ms (normal, FIFO)",
       "delay=10ms jitter=1ms,normal"},
      {"wan-50ms", "WAN, 50 ms RTT: 25 ms one-way +- 2 ms (normal, FIFO)",
       "delay=25ms jitter=2ms,normal"},
      {"lossy-0.1pct", "0.1 % random loss, 1 ms one-way", "delay=1ms loss=0.1%"},
      {"lossy-1pct", "1 % random loss, 1 ms one-way", "delay=1ms loss=1%"},
      {"lossy-5pct", "5 % random loss, 1 ms one-way", "delay=1ms loss=5%"},
      {"bursty", "Gilbert-Elliott bursts: p=1 %, r=25 % (mean burst 4, ~3.8 % loss), 1 ms one-way",
       "delay=1ms burst=1%,25%"},
      {"reorder", "10 % of datagrams skip a 5 ms delay (reordered)", "delay=5ms reorder=10%"},
      {"duplicate", "1 % of datagrams duplicated, 1 ms one-way", "delay=1ms duplicate=1%"},
      {"corrupt", "0.5 % of datagrams get 1-3 bits flipped, 1 ms one-way",
       "delay=1ms corrupt=0.5%,3"},
      {"nasty",
       "everything: 20 ms +- 5 ms reordering jitter, 1 % loss, bursts, 5 % reorder, "
       "1 % duplicate, 0.1 % corrupt",
       "delay=20ms jitter=5ms,reorder loss=1% burst=0.5%,30% reorder=5% duplicate=1% "
       "corrupt=0.1%,2"},
      {"partition", "500 ms outage 2 s after start, repeating every 10 s; 1 ms one-way",
       "delay=1ms partition=2s+500ms/10s"},
  }};
  return kProfiles;
}

std::vector<std::string_view> profile_names() {
  std::vector<std::string_view> out;
  for (const auto& p : profiles()) out.push_back(p.name);
  return out;
}

Result<ImpairmentConfig, Error> profile_by_name(std::string_view name) {
  for (const auto& p : profiles()) {
    if (p.name == name) return parse_spec(p.spec);
  }
  std::string known;
  for (const auto& p : profiles()) known += str_cat(known.empty() ? "" : ", ", p.name);
  return fail(str_cat("unknown profile '", name, "' (known: ", known, ")"));
}

}  // namespace ipsan::netem
