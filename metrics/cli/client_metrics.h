// client_metrics.h: live metrics of a SanClient (the client driver behind `ipsan iscsi-portal`
// and `ipsan nbd-export`): its request counters and its transport's statistics, as
// ipsan_client_* and ipsan_client_transport_* (docs/METRICS.md).
//
// The SanClient lives on its own io thread; this copies its statistics there every `period` into
// a locked snapshot that a scrape on any other thread reads (values at most `period` old).
// Destroy it before the SanClient (and before its io_context stops for good).
#pragma once

#include <utility>  // before Asio

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>

#include "ipsan/client/san_client.h"
#include "ipsan/metrics/registry.h"
#include "ipsan/metrics/transport.h"

namespace ipsan::metrics {

class ClientMetrics {
 public:
  ClientMetrics(Registry& registry, boost::asio::io_context& client_io, client::SanClient& san,
                Labels labels = {},
                std::chrono::milliseconds period = std::chrono::milliseconds(500))
      : registry_(registry), state_(std::make_shared<State>(client_io, san, period)) {
    auto st = state_;
    collector_ = registry_.add_collector([st, labels](Collect& c) {
      std::lock_guard lock(st->mu);
      const client::ClientStats& s = st->stats;
      auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        c.counter(name, help, labels, static_cast<double>(v));
      };
      counter("ipsan_client_requests_total", "Requests issued to the ipsan server", s.requests);
      counter("ipsan_client_completed_total", "Requests completed", s.completed);
      counter("ipsan_client_failed_total", "Requests that failed", s.failed);
      counter("ipsan_client_timeouts_total", "Requests that timed out", s.timeouts);
      counter("ipsan_client_resent_total", "Calls re-sent after a transport change", s.resent);
      counter("ipsan_client_redriven_total", "Calls re-driven in a new session", s.redriven);
      counter("ipsan_client_logins_total", "Logins to the server", s.logins);
      counter("ipsan_client_reconnects_total", "Reconnections", s.reconnects);
      counter("ipsan_client_bad_replies_total", "Replies dropped (unparsable, unknown, bad MAC)",
              s.bad_replies);
      counter("ipsan_client_read_bytes_total", "Bytes read", s.bytes_read);
      counter("ipsan_client_written_bytes_total", "Bytes written", s.bytes_written);
      collect_transport_stats(c, "ipsan_client_transport", labels, st->transport);
    });
    boost::asio::post(client_io, [st] { State::tick(st); });
  }
  ~ClientMetrics() {
    registry_.remove_collector(collector_);
    state_->alive = false;
  }
  ClientMetrics(const ClientMetrics&) = delete;
  ClientMetrics& operator=(const ClientMetrics&) = delete;

 private:
  struct State {
    State(boost::asio::io_context& io, client::SanClient& s, std::chrono::milliseconds p)
        : timer(io), san(s), period(p) {}
    static void tick(const std::shared_ptr<State>& st) {  // on the client's io thread
      if (!st->alive) return;
      {
        std::lock_guard lock(st->mu);
        st->stats = st->san.stats();
        st->transport = st->san.transport_stats();
      }
      st->timer.expires_after(st->period);
      st->timer.async_wait([st](boost::system::error_code ec) {
        if (!ec) tick(st);
      });
    }
    boost::asio::steady_timer timer;
    client::SanClient& san;
    std::chrono::milliseconds period;
    std::atomic<bool> alive{true};
    std::mutex mu;
    client::ClientStats stats;
    proto::TransportStats transport;
  };
  Registry& registry_;
  std::shared_ptr<State> state_;
  std::uint64_t collector_ = 0;
};

}  // namespace ipsan::metrics
