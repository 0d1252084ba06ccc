#include "ipsan/metrics/registry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

namespace ipsan::metrics {
namespace {

TEST(MetricsRegistry, Names) {
  EXPECT_TRUE(valid_metric_name("ipsan_device_requests_total"));
  EXPECT_TRUE(valid_metric_name("a:b_c9"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("9abc"));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_TRUE(valid_label_name("device"));
  EXPECT_FALSE(valid_label_name("__name__"));
  EXPECT_FALSE(valid_label_name("a:b"));
  Registry r;
  EXPECT_THROW(r.counter("bad-name", "x"), std::invalid_argument);
  r.counter("x_total", "x");
  EXPECT_THROW(r.gauge("x_total", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("y_total", "y").with({{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("y_total", "y").with({{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "h", {1, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h2", "h", {1, INFINITY}), std::invalid_argument);
}

TEST(MetricsRegistry, CountersGaugesLabels) {
  Registry r;
  auto& reqs = r.counter("req_total", "Requests");
  Counter& a = reqs.with({{"op", "read"}});
  Counter& b = reqs.with({{"op", "write"}});
  EXPECT_EQ(&a, &reqs.with({{"op", "read"}}));  // stable reference
  a.inc();
  a.inc(4);
  b.inc(2);
  Gauge& g = r.gauge("temp", "Temperature").with();
  g.set(1.5);
  g.add(-0.25);
  Snapshot s = r.snapshot();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "req_total");
  EXPECT_EQ(s[0].type, Type::kCounter);
  ASSERT_EQ(s[0].samples.size(), 2u);
  EXPECT_EQ(s[0].samples[0].labels, (Labels{{"op", "read"}}));
  EXPECT_EQ(s[0].samples[0].value, 5);
  EXPECT_EQ(s[0].samples[1].value, 2);
  EXPECT_EQ(s[1].samples[0].value, 1.25);
}

TEST(MetricsRegistry, HistogramBuckets) {
  Histogram h({1, 2, 5});
  for (double v : std::vector<double>{0.5, 1.0, 1.5, 2.0, 3.0, 7.0, NAN}) h.observe(v);
  HistogramData d = h.data();
  EXPECT_EQ(d.counts, (std::vector<std::uint64_t>{2, 2, 1, 2}));  // le is inclusive; NaN -> +Inf
  EXPECT_EQ(d.count, 7u);
  EXPECT_TRUE(std::isnan(d.sum));
  Histogram h2({1});
  h2.observe(0.25);
  h2.observe(4);
  EXPECT_EQ(h2.data().sum, 4.25);
}

TEST(MetricsRegistry, ConcurrentUpdatesAreCounted) {
  Registry r;
  Counter& c = r.counter("c_total", "c").with();
  Histogram& h = r.histogram("h_seconds", "h", {0.5}).with();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(i % 2 ? 1.0 : 0.0);
      }
    });
  // A scrape while updating is fine (values are a moment's, never torn).
  auto mid = r.snapshot();
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 40000u);
  auto d = h.data();
  EXPECT_EQ(d.count, 40000u);
  EXPECT_EQ(d.counts[0], 20000u);
  EXPECT_EQ(d.sum, 20000.0);
}

TEST(MetricsRegistry, CollectorsMergeByName) {
  Registry r;
  r.gauge("sessions", "Live sessions").with({{"server", "a"}}).set(1);
  int calls = 0;
  auto id = r.add_collector([&](Collect& c) {
    calls++;
    c.gauge("sessions", "ignored help", {{"server", "b"}}, 2);
    c.counter("bytes_total", "Bytes", {}, 10);
    c.counter("bytes_total", "Bytes", {{"dir", "in"}}, 3);
  });
  Snapshot s = r.snapshot();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "sessions");
  EXPECT_EQ(s[0].help, "Live sessions");
  EXPECT_EQ(s[0].samples.size(), 2u);
  EXPECT_EQ(s[1].samples.size(), 2u);
  EXPECT_EQ(calls, 1);
  r.remove_collector(id);
  EXPECT_EQ(r.snapshot().size(), 1u);
  r.add_collector([](Collect& c) { c.counter("sessions", "x", {}, 1); });
  EXPECT_THROW(r.snapshot(), std::invalid_argument);  // one name, two types
}

TEST(MetricsRegistry, EmptyFamiliesLeftOut) {
  Registry r;
  r.counter("unused_total", "never used");
  EXPECT_TRUE(r.snapshot().empty());
}

}  // namespace
}  // namespace ipsan::metrics
