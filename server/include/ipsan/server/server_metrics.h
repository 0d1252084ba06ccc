// ipsan/server/server_metrics.h: a StorageServer's live metrics in a metrics::Registry
// (docs/METRICS.md): per device requests, errors, bytes and latency histograms (recorded on the
// data path through StorageServer::set_io_observer), and at scrape time the server's counters,
// sessions, exports, transport totals and per-connection transport statistics.
//
// Threading: construct, scrape (Registry::snapshot) and destroy on the server's io thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ipsan/metrics/registry.h"
#include "ipsan/server/server.h"

namespace ipsan::server {

class ServerMetrics {
 public:
  ServerMetrics(metrics::Registry& registry, StorageServer& server);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

 private:
  struct DeviceOp {
    metrics::Counter* requests = nullptr;
    metrics::Counter* errors = nullptr;
    metrics::Counter* bytes = nullptr;
    metrics::Histogram* latency = nullptr;
  };
  void on_io(const IoEvent& e);
  void collect(metrics::Collect& c);

  metrics::Registry& registry_;
  StorageServer& server_;
  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Counter>& errors_;
  metrics::Family<metrics::Counter>& bytes_;
  metrics::Family<metrics::Histogram>& latency_;
  std::unordered_map<std::uint64_t, DeviceOp> device_ops_;  // key: device id << 8 | op
  std::uint64_t collector_ = 0;
};

}  // namespace ipsan::server
