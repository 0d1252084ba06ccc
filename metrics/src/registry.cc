#include "ipsan/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ipsan::metrics {

std::string_view to_string(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

namespace {
bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

bool valid_metric_name(std::string_view n) {
  if (n.empty() || !(alpha(n[0]) || n[0] == ':')) return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return alpha(c) || digit(c) || c == ':'; });
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || !alpha(n[0]) || n.substr(0, 2) == "__") return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return alpha(c) || digit(c); });
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1]))
      throw std::invalid_argument("histogram bounds must be finite and strictly increasing");
  }
  counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && !(v <= bounds_[i])) ++i;  // NaN lands in +Inf
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

HistogramData Histogram::data() const {
  HistogramData d;
  d.bounds = bounds_;
  d.counts.resize(bounds_.size() + 1);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    d.counts[i] = counts_[i].load(std::memory_order_relaxed);
    total += d.counts[i];
  }
  // Updates race with this read; report a count that agrees with the buckets (+Inf == _count).
  d.count = total;
  d.sum = sum_.load(std::memory_order_relaxed);
  return d;
}

std::vector<double> latency_buckets() {
  return {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
          0.5,   1,      2.5,    10};
}

void FamilyBase::check_labels(const Labels& labels) {
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i].first) || labels[i].first == "le" ||
        labels[i].first == "quantile")
      throw std::invalid_argument("bad label name '" + labels[i].first + "'");
    for (std::size_t j = 0; j < i; ++j)
      if (labels[j].first == labels[i].first)
        throw std::invalid_argument("label '" + labels[i].first + "' given twice");
  }
}

void Collect::counter(std::string_view name, std::string_view help, Labels labels, double value) {
  Sample s;
  s.labels = std::move(labels);
  s.value = value;
  add(name, help, Type::kCounter, std::move(s));
}

void Collect::gauge(std::string_view name, std::string_view help, Labels labels, double value) {
  Sample s;
  s.labels = std::move(labels);
  s.value = value;
  add(name, help, Type::kGauge, std::move(s));
}

void Collect::histogram(std::string_view name, std::string_view help, Labels labels,
                        HistogramData h) {
  Sample s;
  s.labels = std::move(labels);
  s.histogram = std::move(h);
  add(name, help, Type::kHistogram, std::move(s));
}

void Collect::add(std::string_view name, std::string_view help, Type type, Sample s) {
  if (!valid_metric_name(name))
    throw std::invalid_argument("bad metric name '" + std::string(name) + "'");
  for (const auto& [k, v] : s.labels) {
    if (!valid_label_name(k)) throw std::invalid_argument("bad label name '" + k + "'");
  }
  for (auto& f : *out_) {
    if (f.name != name) continue;
    if (f.type != type)
      throw std::invalid_argument("metric '" + std::string(name) + "' reported with two types");
    f.samples.push_back(std::move(s));
    return;
  }
  out_->push_back(FamilySnapshot{std::string(name), std::string(help), type, {}});
  out_->back().samples.push_back(std::move(s));
}

FamilyBase* Registry::find(std::string_view name) const {
  for (const auto& f : families_)
    if (f->name() == name) return f.get();
  return nullptr;
}

template <class M>
Family<M>& Registry::add_family(std::string name, std::string help, Type type,
                                std::vector<double> bounds) {
  if (!valid_metric_name(name)) throw std::invalid_argument("bad metric name '" + name + "'");
  std::lock_guard lock(mu_);
  if (FamilyBase* f = find(name)) {
    auto* typed = dynamic_cast<Family<M>*>(f);
    if (typed == nullptr || f->type() != type)
      throw std::invalid_argument("metric '" + name + "' registered with two types");
    return *typed;
  }
  auto f = std::make_unique<Family<M>>(std::move(name), std::move(help), type, std::move(bounds));
  Family<M>& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Counter>& Registry::counter(std::string name, std::string help) {
  return add_family<Counter>(std::move(name), std::move(help), Type::kCounter, {});
}

Family<Gauge>& Registry::gauge(std::string name, std::string help) {
  return add_family<Gauge>(std::move(name), std::move(help), Type::kGauge, {});
}

Family<Histogram>& Registry::histogram(std::string name, std::string help,
                                       std::vector<double> bounds) {
  Histogram check(bounds);  // validate before registering
  return add_family<Histogram>(std::move(name), std::move(help), Type::kHistogram,
                               std::move(bounds));
}

std::uint64_t Registry::add_collector(Collector c) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_collector_++;
  collectors_.emplace(id, std::move(c));
  return id;
}

void Registry::remove_collector(std::uint64_t id) {
  std::lock_guard lock(mu_);
  collectors_.erase(id);
}

Snapshot Registry::snapshot() const {
  Snapshot out;
  std::vector<Collector> collectors;
  {
    std::lock_guard lock(mu_);
    for (const auto& f : families_) {
      FamilySnapshot fs{f->name(), f->help(), f->type(), {}};
      f->collect(fs.samples);
      out.push_back(std::move(fs));
    }
    for (const auto& [id, c] : collectors_) collectors.push_back(c);
  }
  // Collectors run without the lock (they may take their own).
  Collect col;
  col.out_ = &out;
  for (const auto& c : collectors) c(col);
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const FamilySnapshot& f) { return f.samples.empty(); }),
            out.end());
  return out;
}

}  // namespace ipsan::metrics
