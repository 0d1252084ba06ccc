#include "ipsan/server/server_metrics.h"

#include <algorithm>

#include "ipsan/metrics/transport.h"

namespace ipsan::server {

using metrics::Collect;
using metrics::Labels;
using metrics::collect_transport_stats;

ServerMetrics::ServerMetrics(metrics::Registry& registry, StorageServer& server)
    : registry_(registry),
      server_(server),
      requests_(registry.counter("ipsan_device_requests_total",
                                 "Device requests executed, by device and operation")),
      errors_(registry.counter("ipsan_device_errors_total",
                               "Device requests that failed or were refused, by device and "
                               "operation")),
      bytes_(registry.counter("ipsan_device_bytes_total",
                              "Bytes read, written, trimmed or zeroed, by device and operation")),
      latency_(registry.histogram("ipsan_device_request_duration_seconds",
                                  "Device request latency in the server (admission to reply)",
                                  metrics::latency_buckets())) {
  server_.set_io_observer([this](const IoEvent& e) { on_io(e); });
  collector_ = registry_.add_collector([this](Collect& c) { collect(c); });
}

ServerMetrics::~ServerMetrics() {
  server_.set_io_observer(nullptr);
  registry_.remove_collector(collector_);
}

void ServerMetrics::on_io(const IoEvent& e) {
  const std::uint64_t key = (std::uint64_t{e.device_id} << 8) | static_cast<std::uint8_t>(e.op);
  auto it = device_ops_.find(key);
  if (it == device_ops_.end()) {  // first request of this kind: find the instruments once
    const Labels l{{"device", std::to_string(e.device_id)}, {"op", proto::op_name(e.op)}};
    DeviceOp d{&requests_.with(l), &errors_.with(l), &bytes_.with(l), &latency_.with(l)};
    it = device_ops_.emplace(key, d).first;
  }
  DeviceOp& d = it->second;
  d.requests->inc();
  if (e.status != Errc::kOk) d.errors->inc();
  d.bytes->inc(e.bytes);
  d.latency->observe(std::chrono::duration<double>(e.latency).count());
}

void ServerMetrics::collect(Collect& c) {
  const ServerStats s = server_.stats();
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    c.counter(name, help, {}, static_cast<double>(v));
  };
  counter("ipsan_server_calls_total", "RPC messages received", s.calls);
  counter("ipsan_server_executed_total", "Device requests executed", s.executed);
  counter("ipsan_server_replayed_total", "Retransmitted calls answered from the slot cache",
          s.replayed);
  counter("ipsan_server_misordered_total", "Stale or duplicate calls refused", s.misordered);
  counter("ipsan_server_rejected_total", "RPC-level rejections (garbage, unknown procedure)",
          s.rejected);
  counter("ipsan_server_auth_failures_total",
          "Authentication failures (bad login proof, bad MAC, unknown session)", s.auth_failures);
  counter("ipsan_server_dropped_total", "Unparsable messages dropped", s.dropped);
  counter("ipsan_server_logins_total", "Successful logins", s.logins);
  counter("ipsan_server_read_bytes_total", "Bytes read from back ends", s.bytes_read);
  counter("ipsan_server_written_bytes_total", "Bytes written to back ends", s.bytes_written);
  counter("ipsan_server_backend_errors_total", "Device requests that ended in an error",
          s.device_errors);
  c.gauge("ipsan_server_sessions", "Live sessions", {}, static_cast<double>(s.sessions));
  c.gauge("ipsan_server_boot_epoch", "Boot epoch (changes at every start)", {},
          server_.boot_epoch());

  for (const auto& e : server_.exports()) {
    const auto g = e.backend->geometry();
    const Labels l{{"device", std::to_string(e.device_id)}, {"name", e.name}};
    c.gauge("ipsan_device_capacity_bytes", "Exported device capacity", l,
            static_cast<double>(g.block_count) * g.block_size);
    c.gauge("ipsan_device_block_size_bytes", "Exported device block size", l, g.block_size);
  }

  // Which session a connection carries (if any).
  std::map<std::pair<std::size_t, proto::PeerId>, SessionInfo> by_route;
  for (const auto& si : server_.sessions()) {
    const std::string conn = si.has_route
                                 ? server_.transport(si.transport).peer_name(si.peer)
                                 : std::string();
    c.gauge("ipsan_session_info", "Live sessions: client name and the connection in use",
            {{"session", std::to_string(si.id)}, {"client", si.client}, {"connection", conn}}, 1);
    if (si.has_route) by_route[{si.transport, si.peer}] = si;
  }

  for (std::size_t i = 0; i < server_.transport_count(); ++i) {
    const proto::ServerTransport& t = server_.transport(i);
    const std::string kind = t.peer_name(0).substr(0, 3);  // "udp" or "tcp"
    t.for_each_peer([&](proto::PeerId peer, const proto::TransportStats& ps) {
      Labels l{{"transport", kind}, {"connection", t.peer_name(peer)}};
      auto r = by_route.find({i, peer});
      l.emplace_back("session", r == by_route.end() ? "" : std::to_string(r->second.id));
      l.emplace_back("client", r == by_route.end() ? "" : r->second.client);
      collect_transport_stats(c, "ipsan_connection", l, ps);
    });
    // Totals include closed connections (the transports keep their counters).
    collect_transport_stats(c, "ipsan_transport",
                            {{"transport", kind}, {"index", std::to_string(i)}}, t.stats());
  }
}

}  // namespace ipsan::server
