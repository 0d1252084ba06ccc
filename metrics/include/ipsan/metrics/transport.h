// ipsan/metrics/transport.h: one naming of transport statistics for every program (server,
// iscsi-portal, nbd-export). A template over the statistics type (proto::TransportStats), so that
// metrics need not depend on proto.
#pragma once

#include <cstdint>
#include <string>

#include "ipsan/metrics/registry.h"

namespace ipsan::metrics {

// Reports `t` under `prefix` with `labels`: counters as <prefix>_<name>_total, srtt and cwnd as
// gauges <prefix>_srtt_seconds and <prefix>_cwnd_bytes (docs/METRICS.md).
template <class Stats>
void collect_transport_stats(Collect& c, const std::string& prefix, const Labels& labels,
                             const Stats& t) {
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    c.counter(prefix + "_" + name + "_total", help, labels, static_cast<double>(v));
  };
  counter("messages_sent", "RPC messages sent", t.messages_sent);
  counter("messages_received", "RPC messages received", t.messages_received);
  counter("datagrams_sent", "UDP datagrams sent (reliable UDP only)", t.datagrams_sent);
  counter("datagrams_received", "UDP datagrams received (reliable UDP only)",
          t.datagrams_received);
  counter("sent_bytes", "Bytes sent", t.bytes_sent);
  counter("received_bytes", "Bytes received", t.bytes_received);
  counter("retransmissions", "Packets retransmitted (reliable UDP)", t.retransmissions);
  counter("packets_lost", "Packets declared lost (reliable UDP)", t.packets_lost);
  counter("spurious_losses", "Packets declared lost and then acknowledged after all",
          t.spurious_losses);
  counter("pto", "Probe timeouts fired (reliable UDP)", t.pto_fired);
  counter("congestion_events", "Congestion window reductions (loss events taken as congestion)",
          t.congestion_events);
  counter("random_loss_events", "Loss events taken as random loss (window kept)",
          t.random_loss_events);
  counter("dropped_bad_crc", "Datagrams dropped for a bad checksum", t.dropped_bad_crc);
  counter("dropped_malformed", "Datagrams or records dropped as malformed", t.dropped_malformed);
  c.gauge(prefix + "_srtt_seconds", "Smoothed round-trip time (reliable UDP)", labels,
          t.srtt_us / 1e6);
  c.gauge(prefix + "_cwnd_bytes", "Congestion window (reliable UDP)", labels,
          static_cast<double>(t.cwnd_bytes));
}

}  // namespace ipsan::metrics
