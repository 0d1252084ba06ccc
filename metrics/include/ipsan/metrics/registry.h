// ipsan/metrics/registry.h: live metrics (counters, gauges, histograms with fixed buckets, labels)
// and their snapshot, encoded as Prometheus text (encode.h) or JSON.
//
// Two ways to publish a value:
//  - Instruments owned by the registry: Family<Counter|Gauge|Histogram>::with(labels) returns a
//    reference that stays valid for the registry's life. Updating one is a relaxed atomic
//    operation (no lock, no allocation), so the data path may keep the reference and update it
//    from any thread. with() itself takes a lock: call it once, not per request.
//  - Collectors: functions run at scrape time that report values kept elsewhere (a server's plain
//    counters, a transport's statistics). A collector runs on the thread that calls snapshot(),
//    so whoever snapshots must be on the thread the collectors' data belongs to (the server's io
//    thread for ipsan server; see docs/METRICS.md).
//
// Names follow the Prometheus data model: metric [a-zA-Z_:][a-zA-Z0-9_:]*, label
// [a-zA-Z_][a-zA-Z0-9_]* (not starting with "__"). A bad name, or one name registered with two
// types, is a programming error: std::invalid_argument.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ipsan::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class Type { kCounter, kGauge, kHistogram };
std::string_view to_string(Type t);

bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);

struct HistogramData {
  std::vector<double> bounds;         // upper bounds, strictly increasing, finite
  std::vector<std::uint64_t> counts;  // per bucket (not cumulative); bounds.size() + 1 (+Inf)
  double sum = 0;
  std::uint64_t count = 0;
};

struct Sample {
  Labels labels;
  double value = 0;     // counter, gauge
  HistogramData histogram;  // histogram
};

struct FamilySnapshot {
  std::string name;
  std::string help;
  Type type = Type::kGauge;
  std::vector<Sample> samples;
};
using Snapshot = std::vector<FamilySnapshot>;

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void add(double d) { v_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Fixed buckets chosen at registration. observe() is a short linear scan and two relaxed atomic
// adds (and one for the sum).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  HistogramData data() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
  std::atomic<std::uint64_t> count_{0};
};

// Latency buckets in seconds, 50 us .. 10 s (storage requests over a LAN).
std::vector<double> latency_buckets();

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type)
      : name_(std::move(name)), help_(std::move(help)), type_(type) {}
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  Type type() const { return type_; }
  virtual void collect(std::vector<Sample>& out) const = 0;

 protected:
  static void check_labels(const Labels& labels);
  std::string name_, help_;
  Type type_;
};

template <class M>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Type type, std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type), bounds_(std::move(bounds)) {}
  // The instrument for these labels (created on first use). Stable for the registry's life.
  M& with(const Labels& labels = {}) {
    std::lock_guard lock(mu_);
    auto it = members_.find(labels);
    if (it != members_.end()) return *it->second;
    check_labels(labels);
    std::unique_ptr<M> m;
    if constexpr (std::is_same_v<M, Histogram>)
      m = std::make_unique<M>(bounds_);
    else
      m = std::make_unique<M>();
    M& ref = *m;
    members_.emplace(labels, std::move(m));
    return ref;
  }
  void collect(std::vector<Sample>& out) const override {
    std::lock_guard lock(mu_);
    for (const auto& [labels, m] : members_) {
      Sample s;
      s.labels = labels;
      if constexpr (std::is_same_v<M, Histogram>)
        s.histogram = m->data();
      else
        s.value = static_cast<double>(m->value());
      out.push_back(std::move(s));
    }
  }

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<M>> members_;
};

// What a collector reports into, at scrape time. Samples of one name are grouped into one family
// (with the help and type of the first report, or of a registered family of that name).
class Collect {
 public:
  void counter(std::string_view name, std::string_view help, Labels labels, double value);
  void gauge(std::string_view name, std::string_view help, Labels labels, double value);
  void histogram(std::string_view name, std::string_view help, Labels labels, HistogramData h);

 private:
  friend class Registry;
  void add(std::string_view name, std::string_view help, Type type, Sample s);
  Snapshot* out_ = nullptr;
};

class Registry {
 public:
  using Collector = std::function<void(Collect&)>;

  Family<Counter>& counter(std::string name, std::string help);
  Family<Gauge>& gauge(std::string name, std::string help);
  Family<Histogram>& histogram(std::string name, std::string help, std::vector<double> bounds);

  // Registers a collector; it stays until the returned id is passed to remove_collector().
  std::uint64_t add_collector(Collector c);
  void remove_collector(std::uint64_t id);

  // Everything now: registered families (in registration order), then collectors' families.
  // Families with no sample are left out.
  Snapshot snapshot() const;

 private:
  FamilyBase* find(std::string_view name) const;
  template <class M>
  Family<M>& add_family(std::string name, std::string help, Type type, std::vector<double> bounds);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::map<std::uint64_t, Collector> collectors_;
  std::uint64_t next_collector_ = 1;
};

}  // namespace ipsan::metrics
