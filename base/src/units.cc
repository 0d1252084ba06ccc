#include "ipsan/base/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace ipsan {
namespace {

// Splits "1.5s" into 1.5 and "s" (durations); false if the number part is malformed.
bool split_number(std::string_view text, double& value, std::string_view& suffix) {
  std::size_t i = 0;
  bool digits = false, dot = false;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || (text[i] == '.' && !dot))) {
    if (text[i] == '.')
      dot = true;
    else
      digits = true;
    ++i;
  }
  if (!digits) return false;
  std::string num(text.substr(0, i));
  char* end = nullptr;
  value = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(value)) return false;
  suffix = text.substr(i);
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  return true;
}

}  // namespace

// THE size parser (units.h): integers only, exact 64-bit arithmetic (no floating point), every
// overflow an error.
Result<std::uint64_t, Error> parse_size(std::string_view text) {
  if (text.empty()) return fail("empty size");
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    const auto d = static_cast<std::uint64_t>(text[i] - '0');
    if (v > (kMax - d) / 10) return fail("size '" + std::string(text) + "' is too large");
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return fail("bad size '" + std::string(text) + "' (expected e.g. 512, 64M, 1G)");
  std::string suffix(text.substr(i));
  for (auto& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      case 'p': shift = 50; break;
      case 'b': shift = 0; break;
      default:
        return fail("bad size suffix in '" + std::string(text) +
                    "' (whole numbers with K, M, G, T or P, e.g. 1536K rather than 1.5M)");
    }
    const std::string_view rest = std::string_view(suffix).substr(1);
    const bool ok = suffix[0] == 'b' ? rest.empty() : (rest.empty() || rest == "b" || rest == "ib");
    if (!ok) return fail("bad size suffix in '" + std::string(text) + "' (use K, M, G, T, P)");
  }
  if (shift > 0 && v > (kMax >> shift)) {
    return fail("size '" + std::string(text) + "' is too large");
  }
  return v << shift;
}

Result<Duration, Error> parse_duration(std::string_view text) {
  double v;
  std::string_view suf;
  if (!split_number(text, v, suf)) return fail("bad duration '" + std::string(text) + "'");
  double ns;
  if (suf.empty() || suf == "s")
    ns = v * 1e9;
  else if (suf == "ms")
    ns = v * 1e6;
  else if (suf == "us")
    ns = v * 1e3;
  else if (suf == "ns")
    ns = v;
  else if (suf == "m" || suf == "min")
    ns = v * 60e9;
  else if (suf == "h")
    ns = v * 3600e9;
  else
    return fail("bad duration unit in '" + std::string(text) + "' (use ns, us, ms, s, m, h)");
  if (ns > 9.0e18) return fail("duration '" + std::string(text) + "' too large");
  return Duration(static_cast<std::int64_t>(ns));
}

Result<HostPort, Error> parse_host_port(std::string_view text, std::string_view default_host,
                                        std::uint16_t default_port) {
  HostPort hp{std::string(default_host), default_port};
  std::string_view port_part;
  if (text.empty()) return hp;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return fail("bad address '" + std::string(text) + "'");
    hp.host = std::string(text.substr(1, close - 1));
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return fail("bad address '" + std::string(text) + "'");
      port_part = text.substr(close + 2);
    }
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      bool all_digits = text.find_first_not_of("0123456789") == std::string_view::npos;
      if (all_digits)
        port_part = text;
      else
        hp.host = std::string(text);
    } else {
      if (colon > 0) hp.host = std::string(text.substr(0, colon));
      port_part = text.substr(colon + 1);
    }
  }
  if (!port_part.empty()) {
    if (port_part.size() > 5 || port_part.find_first_not_of("0123456789") != std::string_view::npos)
      return fail("bad port in '" + std::string(text) + "'");
    unsigned long p = std::strtoul(std::string(port_part).c_str(), nullptr, 10);
    if (p > 65535) return fail("port out of range in '" + std::string(text) + "'");
    hp.port = static_cast<std::uint16_t>(p);
  }
  if (hp.host.empty()) return fail("empty host in '" + std::string(text) + "'");
  return hp;
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0 || v == std::floor(v))
    std::snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string format_duration(Duration d) {
  double ns = static_cast<double>(d.count());
  char buf[32];
  if (ns < 1e3)
    std::snprintf(buf, sizeof buf, "%.0f ns", ns);
  else if (ns < 1e6)
    std::snprintf(buf, sizeof buf, "%.1f us", ns / 1e3);
  else if (ns < 1e9)
    std::snprintf(buf, sizeof buf, "%.1f ms", ns / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2f s", ns / 1e9);
  return buf;
}

}  // namespace ipsan
