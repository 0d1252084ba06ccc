#include "ipsan/metrics/encode.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ipsan::metrics {
namespace {

TEST(MetricsEncode, Values) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(12345678901234), "12345678901234");
  EXPECT_EQ(format_value(-3), "-3");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(std::stod(format_value(1e-4)), 1e-4);
  EXPECT_EQ(format_value(INFINITY), "+Inf");
  EXPECT_EQ(format_value(-INFINITY), "-Inf");
  EXPECT_EQ(format_value(NAN), "NaN");
  EXPECT_EQ(std::stod(format_value(0.1 + 0.2)), 0.1 + 0.2);  // round trip
}

TEST(MetricsEncode, CounterAndEscaping) {
  Registry r;
  r.counter("req_total", "Requests \\ served\nper op").with({{"op", "a\"b\\c\nd"}}).inc(3);
  r.gauge("up", "Up").with().set(1);
  EXPECT_EQ(encode_text(r.snapshot()),
            "# HELP req_total Requests \\\\ served\\nper op\n"
            "# TYPE req_total counter\n"
            "req_total{op=\"a\\\"b\\\\c\\nd\"} 3\n"
            "# HELP up Up\n"
            "# TYPE up gauge\n"
            "up 1\n");
}

TEST(MetricsEncode, Histogram) {
  Registry r;
  auto& h = r.histogram("lat_seconds", "Latency", {0.001, 0.01, 0.1});
  Histogram& x = h.with({{"op", "read"}});
  for (double v : {0.0009765625, 0.0009765625, 0.0078125, 0.5}) x.observe(v);  // exact in binary
  EXPECT_EQ(encode_text(r.snapshot()),
            "# HELP lat_seconds Latency\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{op=\"read\",le=\"0.001\"} 2\n"
            "lat_seconds_bucket{op=\"read\",le=\"0.01\"} 3\n"
            "lat_seconds_bucket{op=\"read\",le=\"0.1\"} 3\n"
            "lat_seconds_bucket{op=\"read\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{op=\"read\"} 0.509765625\n"
            "lat_seconds_count{op=\"read\"} 4\n");
}

TEST(MetricsEncode, HistogramWithoutLabelsAndEmpty) {
  Registry r;
  r.histogram("h", "H", {1}).with();
  EXPECT_EQ(encode_text(r.snapshot()),
            "# HELP h H\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\n"
            "h_sum 0\nh_count 0\n");
}

TEST(MetricsEncode, Json) {
  Registry r;
  r.counter("c_total", "C").with({{"k", "v"}}).inc(7);
  r.histogram("h", "H", {1}).with().observe(2);
  r.gauge("g", "G").with().set(INFINITY);
  auto j = encode_json(r.snapshot());
  EXPECT_EQ(j["c_total"]["type"], "counter");
  EXPECT_EQ(j["c_total"]["samples"][0]["labels"]["k"], "v");
  EXPECT_EQ(j["c_total"]["samples"][0]["value"], 7);
  EXPECT_EQ(j["h"]["samples"][0]["count"], 1);
  EXPECT_EQ(j["h"]["samples"][0]["buckets"][0][1], 0);
  EXPECT_EQ(j["h"]["samples"][0]["buckets"][1][0], "+Inf");
  EXPECT_EQ(j["h"]["samples"][0]["buckets"][1][1], 1);
  EXPECT_EQ(j["g"]["samples"][0]["value"], "+Inf");
}

}  // namespace
}  // namespace ipsan::metrics
