#include "ipsan/metrics/encode.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace ipsan::metrics {

namespace {

void escape_help(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void escape_label(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"')
      out += "\\\"";
    else
      out += c;
  }
}

void labels_text(std::string& out, const Labels& labels, const std::string* le) {
  if (labels.empty() && le == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    escape_label(out, v);
    out += '"';
  }
  if (le != nullptr) {
    if (!first) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void line(std::string& out, std::string_view name, std::string_view suffix, const Labels& labels,
          const std::string* le, const std::string& value) {
  out += name;
  out += suffix;
  labels_text(out, labels, le);
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integers (counters, byte counts) exactly, without an exponent, up to 2^53.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return std::to_string(static_cast<long long>(v));
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

std::string encode_text(const Snapshot& snapshot) {
  std::string out;
  out.reserve(4096);
  for (const auto& f : snapshot) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    escape_help(out, f.help);
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += to_string(f.type);
    out += '\n';
    for (const auto& s : f.samples) {
      if (f.type != Type::kHistogram) {
        line(out, f.name, "", s.labels, nullptr, format_value(s.value));
        continue;
      }
      const HistogramData& h = s.histogram;
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.bounds.size(); ++i) {
        cumulative += i < h.counts.size() ? h.counts[i] : 0;
        const std::string le = format_value(h.bounds[i]);
        line(out, f.name, "_bucket", s.labels, &le, std::to_string(cumulative));
      }
      const std::string inf = "+Inf";
      line(out, f.name, "_bucket", s.labels, &inf, std::to_string(h.count));
      line(out, f.name, "_sum", s.labels, nullptr, format_value(h.sum));
      line(out, f.name, "_count", s.labels, nullptr, std::to_string(h.count));
    }
  }
  return out;
}

nlohmann::json encode_json(const Snapshot& snapshot) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : snapshot) {
    nlohmann::json samples = nlohmann::json::array();
    for (const auto& s : f.samples) {
      nlohmann::json labels = nlohmann::json::object();
      for (const auto& [k, v] : s.labels) labels[k] = v;
      nlohmann::json j{{"labels", labels}};
      if (f.type == Type::kHistogram) {
        nlohmann::json buckets = nlohmann::json::array();
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < s.histogram.bounds.size(); ++i) {
          cumulative += i < s.histogram.counts.size() ? s.histogram.counts[i] : 0;
          buckets.push_back(nlohmann::json::array({s.histogram.bounds[i], cumulative}));
        }
        buckets.push_back(nlohmann::json::array({"+Inf", s.histogram.count}));
        j["buckets"] = buckets;
        j["sum"] = s.histogram.sum;
        j["count"] = s.histogram.count;
      } else if (s.value >= 0 && s.value < 9007199254740992.0 && s.value == std::floor(s.value)) {
        j["value"] = static_cast<std::uint64_t>(s.value);
      } else if (std::isfinite(s.value)) {
        j["value"] = s.value;
      } else {
        j["value"] = format_value(s.value);
      }
      samples.push_back(std::move(j));
    }
    out[f.name] = {{"help", f.help}, {"type", std::string(to_string(f.type))}, {"samples", samples}};
  }
  return out;
}

}  // namespace ipsan::metrics
