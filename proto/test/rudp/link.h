// In-memory lossy link between one rudp client Connection and one rudp Listener, on a virtual
// clock. Every impairment (drop, burst drop, duplicate, reorder, delay, corrupt) is decided per
// datagram by a seeded Rng; tests print the seed so a failure can be replayed.
// Threading: single-threaded test helper.
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "ipsan/base/clock.h"
#include "ipsan/base/rng.h"
#include "ipsan/proto/rudp/connection.h"
#include "ipsan/proto/rudp/listener.h"

namespace ipsan::proto::rudp::test {

struct Impairment {
  double loss = 0;         // independent drop probability
  double burst_start = 0;  // probability a loss burst starts at a datagram
  int burst_length = 0;    // datagrams dropped by one burst
  double duplicate = 0;
  double reorder = 0;  // probability of extra delay (overtaken by later datagrams)
  Duration reorder_delay = 300us;
  // true: a reordered datagram skips `delay` and the jitter instead (Linux netem's and
  // `ipsan netem`'s "reorder": it overtakes everything in flight).
  bool reorder_skips = false;
  double corrupt = 0;     // flip one random bit
  Duration delay = 20us;  // one way
  Duration jitter = 0us;
  // Bottleneck rate in bytes per second (0: unlimited). Datagrams are serialized one after the
  // other (an unbounded FIFO queue) before the delay.
  double rate_bytes_per_sec = 0;
  // With a rate: tail drop when more than this many bytes wait in the FIFO (0: unbounded).
  double queue_limit_bytes = 0;
};

enum class Dir { kToServer, kToClient };

// The server secret (reset tokens, cookies) the link's listeners share across restarts.
inline const Key256 kLinkSecret = [] {
  Key256 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(0xa0 + i);
  return k;
}();

class Link {
 public:
  Link(std::uint64_t seed, const Config& client_cfg, const Config& server_cfg,
       std::uint32_t epoch = 7, std::uint64_t conn_id = 0x1234abcd5678ef01ull)
      : rng_(seed),
        client_(Connection::make_client(conn_id, client_cfg, clock_.now())),
        server_(std::make_unique<Listener>(epoch, server_cfg, kLinkSecret)),
        server_cfg_(server_cfg) {
    std::printf("rudp link seed=%llu\n", static_cast<unsigned long long>(seed));
  }

  Impairment to_server;
  Impairment to_client;
  // Return true to drop a datagram (called before the random impairments).
  std::function<bool(Dir, ByteSpan)> filter;
  // Sees every datagram offered to the link (before impairments).
  std::function<void(Dir, ByteSpan, TimePoint)> tap;
  // Called on every pump after messages were collected (an application reacting at once, e.g.
  // a server answering requests); whatever it queues is transmitted in the same pump.
  std::function<void()> app;

  VirtualClock& clock() { return clock_; }
  Connection& client() { return client_; }
  Listener& server() { return *server_; }
  Connection* server_conn() { return server_->find(client_.id()); }
  std::vector<Bytes>& client_received() { return client_rx_; }
  std::vector<std::pair<std::uint64_t, Bytes>>& server_received() { return server_rx_; }
  std::uint64_t sent(Dir d) const { return sent_[static_cast<int>(d)]; }
  std::uint64_t resets_to_client() const { return resets_; }
  std::uint64_t queue_drops(Dir d) const { return queue_drops_[static_cast<int>(d)]; }
  bool poll_server_messages = true;
  bool poll_client_messages = true;
  // Marks every server connection verified (protection off) as soon as it exists, as a login
  // would: the engine tests send large messages without logging in.
  bool auto_verify = true;
  // Source address the server sees for datagrams from the client.
  Bytes client_source{127, 0, 0, 1};

  // Protects both ends with keys derived from `session_key` (what login does): the server arms,
  // the client switches at once.
  void protect(const Key256& session_key, Protection p) {
    const TimePoint now = clock_.now();
    server_->protect(client_.id(), session_key, p, now);
    client_.protect(p == Protection::kOff
                        ? std::nullopt
                        : std::optional<PacketKeys>(derive_packet_keys(
                              session_key, client_.id(), true, p == Protection::kEncrypted)),
                    /*send_now=*/true, now);
  }

  // Replaces the server by a new incarnation (restart): every connection is forgotten.
  void restart_server(std::uint32_t new_epoch) {
    server_ = std::make_unique<Listener>(new_epoch, server_cfg_, kLinkSecret);
  }
  // Injects a raw datagram as if it arrived now.
  void inject(Dir d, ByteSpan data) { deliver(d, Bytes(data.begin(), data.end())); }

  // Runs the event loop until pred() holds or virtual time passes `limit`. Returns pred().
  bool run_until(const std::function<bool()>& pred, Duration limit = std::chrono::seconds(30)) {
    const TimePoint end = clock_.now() + limit;
    for (std::size_t iter = 0; iter < 50'000'000; ++iter) {
      pump();
      if (pred()) return true;
      std::optional<TimePoint> t;
      auto consider = [&t](std::optional<TimePoint> x) {
        if (x && (!t || *x < *t)) t = x;
      };
      if (!queue_.empty()) consider(queue_.begin()->first.first);
      consider(client_.next_deadline());
      consider(server_->next_deadline());
      if (!t || *t > end) {
        clock_.advance_to(end);
        return pred();
      }
      clock_.advance_to(*t);
      const TimePoint now = clock_.now();
      while (!queue_.empty() && queue_.begin()->first.first <= now) {
        auto node = queue_.extract(queue_.begin());
        deliver(node.mapped().first, std::move(node.mapped().second));
      }
      if (auto d = client_.next_deadline(); d && *d <= now) client_.on_timer(now);
      server_->on_timer(now);
    }
    return pred();
  }
  void run_for(Duration d) {
    run_until([] { return false; }, d);
  }

 private:
  void pump() {
    const TimePoint now = clock_.now();
    Bytes buf(65536);
    for (std::size_t n; (n = client_.poll_transmit(buf, now)) > 0;) {
      offer(Dir::kToServer, ByteSpan(buf.data(), n));
    }
    while (auto t = server_->poll_transmit(buf, now)) {
      offer(Dir::kToClient, ByteSpan(buf.data(), t->second));
    }
    if (poll_client_messages) {
      while (auto m = client_.poll_message()) client_rx_.push_back(std::move(*m));
    }
    if (poll_server_messages) {
      while (auto m = server_->poll_message()) server_rx_.push_back(std::move(*m));
    }
    while (server_->poll_closed()) {
    }
    if (app) {
      app();
      for (std::size_t n; (n = client_.poll_transmit(buf, now)) > 0;) {
        offer(Dir::kToServer, ByteSpan(buf.data(), n));
      }
      while (auto t = server_->poll_transmit(buf, now)) {
        offer(Dir::kToClient, ByteSpan(buf.data(), t->second));
      }
    }
  }

  void offer(Dir d, ByteSpan data) {
    ++sent_[static_cast<int>(d)];
    if (tap) tap(d, data, clock_.now());
    if (filter && filter(d, data)) return;
    Impairment& im = d == Dir::kToServer ? to_server : to_client;
    int& burst = burst_left_[static_cast<int>(d)];
    if (burst > 0) {
      --burst;
      return;
    }
    if (im.burst_start > 0 && rng_.chance(im.burst_start)) {
      burst = im.burst_length - 1;
      return;
    }
    if (rng_.chance(im.loss)) return;
    const int copies = rng_.chance(im.duplicate) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      Bytes b(data.begin(), data.end());
      if (!b.empty() && rng_.chance(im.corrupt)) {
        const std::uint64_t bit = rng_.below(b.size() * 8);
        b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      }
      Duration delay = im.delay;
      if (im.rate_bytes_per_sec > 0 && c == 0) {
        TimePoint& busy = busy_until_[static_cast<int>(d)];
        if (im.queue_limit_bytes > 0 && busy > clock_.now() &&
            to_seconds(busy - clock_.now()) * im.rate_bytes_per_sec > im.queue_limit_bytes) {
          ++queue_drops_[static_cast<int>(d)];
          return;
        }
        busy = std::max(busy, clock_.now()) +
               Duration(static_cast<std::int64_t>(static_cast<double>(b.size()) * 1e9 /
                                                  im.rate_bytes_per_sec));
        serial_done_ = busy;
      }
      if (im.rate_bytes_per_sec > 0) delay += serial_done_ - clock_.now();
      if (im.jitter > Duration::zero()) {
        delay += Duration(static_cast<std::int64_t>(rng_.below(im.jitter.count())));
      }
      if (rng_.chance(im.reorder)) {
        if (im.reorder_skips) {
          delay = Duration::zero();
        } else {
          delay += im.reorder_delay;
        }
      }
      queue_.emplace(std::make_pair(clock_.now() + delay, seq_++), std::make_pair(d, std::move(b)));
    }
  }

  void deliver(Dir d, Bytes b) {
    const TimePoint now = clock_.now();
    if (d == Dir::kToServer) {
      std::array<std::uint8_t, 64> reset{};
      const auto r = server_->on_datagram(b, now, reset, client_source);
      if (r.conn_id && auto_verify) {
        server_->protect(*r.conn_id, Key256{}, Protection::kOff, now);
      }
      if (r.reset_size) {
        ++resets_;
        offer(Dir::kToClient, ByteSpan(reset.data(), r.reset_size));
      }
    } else {
      client_.on_datagram(b, now);
    }
  }

  VirtualClock clock_;
  Rng rng_;
  Connection client_;
  std::unique_ptr<Listener> server_;
  Config server_cfg_;
  std::map<std::pair<TimePoint, std::uint64_t>, std::pair<Dir, Bytes>> queue_;
  std::uint64_t seq_ = 0;
  std::uint64_t sent_[2] = {0, 0};
  int burst_left_[2] = {0, 0};
  std::uint64_t queue_drops_[2] = {0, 0};
  TimePoint busy_until_[2] = {};
  TimePoint serial_done_{};
  std::uint64_t resets_ = 0;
  std::vector<Bytes> client_rx_;
  std::vector<std::pair<std::uint64_t, Bytes>> server_rx_;
};

// Message whose content encodes (tag, length) so corruption or mix-ups are detectable.
inline Bytes make_message(std::uint64_t tag, std::size_t len) {
  Bytes b(len);
  std::uint64_t s = tag * 0x9E3779B97F4A7C15ull + len;
  for (std::size_t i = 0; i < len; i += 8) {
    const std::uint64_t v = splitmix64(s);
    for (std::size_t k = 0; k < 8 && i + k < len; ++k)
      b[i + k] = static_cast<std::uint8_t>(v >> (8 * k));
  }
  if (len >= 8) {
    for (int k = 0; k < 8; ++k) b[k] = static_cast<std::uint8_t>(tag >> (8 * k));
  }
  return b;
}

inline std::uint64_t message_tag(const Bytes& b) {
  std::uint64_t t = 0;
  if (b.size() >= 8) {
    for (int k = 0; k < 8; ++k) t |= std::uint64_t{b[k]} << (8 * k);
  }
  return t;
}

}  // namespace ipsan::proto::rudp::test
