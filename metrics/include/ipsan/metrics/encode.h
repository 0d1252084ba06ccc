// ipsan/metrics/encode.h: a Snapshot as Prometheus text exposition format 0.0.4, or as JSON
// (`ipsan stats`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ipsan/metrics/registry.h"

namespace ipsan::metrics {

inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// # HELP / # TYPE lines, one line per sample; histograms as cumulative _bucket{le=...} (ending
// with le="+Inf"), _sum and _count. Help text escapes \ and newline; label values \, " and
// newline. Values: integers exactly, others in shortest round-trip form, +Inf, -Inf, NaN.
std::string encode_text(const Snapshot& snapshot);

// {"name": {"help": ..., "type": ..., "samples": [{"labels": {...}, "value": v} |
//   {"labels": {...}, "buckets": [[le, cumulative]...], "sum": s, "count": n}]}}
nlohmann::json encode_json(const Snapshot& snapshot);

// A double as the text format writes it.
std::string format_value(double v);

}  // namespace ipsan::metrics
