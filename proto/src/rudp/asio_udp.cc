// Asio binding of the rudp engine: UdpClientTransport and UdpServerTransport (udp_transport.h).
//
// Each transport keeps its state in a Core held by shared_ptr; pending Asio handlers hold it
// alive, and the public object detaches itself (owner = nullptr) on destruction, so a callback
// may destroy the transport that invoked it.
#include <utility>  // before Asio (see README)

#include "ipsan/proto/rudp/udp_transport.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/system/system_error.hpp>

#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/proto/rudp/listener.h"

namespace ipsan::proto::rudp {
namespace {

namespace asio = boost::asio;
using asio::ip::udp;

constexpr std::size_t kBatch = 32;
constexpr std::size_t kRxBufSize = 65536;
constexpr std::size_t kMaxPerWake = 256;
constexpr std::size_t kMaxGsoSegments = 32;
constexpr std::size_t kMaxGsoBytes = 65000;  // one GSO message is one (unfragmented) IP packet

struct GsoControl {
  alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(std::uint16_t))];
};
struct GroControl {  // UDP_GRO: the segment size of a coalesced receive
  alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(int))];
};

void set_socket_options(udp::socket& s, const UdpOptions& opt, bool v6) {
  const int fd = s.native_handle();
  const int buf = opt.socket_buffer_bytes;
  // FORCE variants need CAP_NET_ADMIN; fall back silently (the kernel caps at rmem_max).
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
#ifdef IP_MTU_DISCOVER
  // Never let the kernel fragment: IP fragments are silently mis-reassembled under loss
  // (RFC 4963). rudp keeps every datagram within Config::max_datagram.
  if (v6) {
    const int v = IPV6_PMTUDISC_DO;
    setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v);
  } else {
    const int v = IP_PMTUDISC_DO;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
  }
#else
  (void)v6;
#endif
}

TransportStats to_transport_stats(const ConnectionStats& c) {
  TransportStats t;
  t.messages_sent = c.messages_sent;
  t.messages_received = c.messages_received;
  t.datagrams_sent = c.packets_sent;
  t.datagrams_received = c.packets_received;
  t.retransmissions = c.packets_retransmitted;
  t.dropped_bad_crc = c.dropped_bad_crc;
  t.dropped_unauthenticated = c.dropped_unauthenticated;
  t.dropped_malformed = c.dropped_malformed;
  t.bytes_sent = c.bytes_sent;
  t.bytes_received = c.bytes_received;
  t.srtt_us = c.srtt_us;
  t.packets_lost = c.packets_lost;
  t.spurious_losses = c.spurious_losses;
  t.pto_fired = c.pto_fired;
  t.congestion_events = c.congestion_events;
  t.random_loss_events = c.random_loss_events;
  t.cwnd_bytes = c.cwnd;
  return t;
}

asio::steady_timer::time_point to_timer_time(TimePoint t) {
  return asio::steady_timer::time_point(
      std::chrono::duration_cast<asio::steady_timer::duration>(t.time_since_epoch()));
}

// The source address as 16 bytes (IPv4 mapped into IPv6): what RETRY cookies and the
// per-source connection limit are bound to (not the port: one host, one budget).
std::array<std::uint8_t, 16> source_bytes(const udp::endpoint& e) {
  const auto a = e.address();
  return a.is_v4() ? asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()).to_bytes()
                   : a.to_v6().to_bytes();
}

std::string endpoint_string(const udp::endpoint& e) {
  return e.address().to_string() + ":" + std::to_string(e.port());
}

// Receive and send batches over one non-blocking socket. Addresses are used only when the
// socket is not connected (server).
class Io {
 public:
  Io(const UdpOptions& opt, std::size_t max_datagram)
      : opt_(opt),
        gso_(opt.gso),
        gro_(false),
        max_datagram_(max_datagram),
        rx_(kBatch * kRxBufSize),
        tx_(kBatch * max_datagram),
        tx_len_(kBatch, 0),
        tx_to_(kBatch) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      rx_iov_[i] = {rx_.data() + i * kRxBufSize, kRxBufSize};
      rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
      rx_msgs_[i].msg_hdr.msg_iovlen = 1;
    }
  }
  Io(const Io&) = delete;  // rx_msgs_ points into this object
  Io& operator=(const Io&) = delete;

  // UDP GRO (batched path only: the segment size comes in a control message): the kernel may
  // hand over a run of datagrams of one flow as one buffer instead of cutting, queueing and
  // copying them one by one (on loopback a GSO send arrives whole). receive() cuts it into the
  // original datagrams again. Switched off silently where the kernel does not know it.
  void enable_gro(udp::socket& s) {
    if (!opt_.batch_syscalls || !opt_.gro) return;
    const int on = 1;
    gro_ = setsockopt(s.native_handle(), SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
  }

  // Reads up to kBatch datagrams; calls f(span, from) for each. Returns how many (0: none).
  // `from` is filled only when `want_from` (an unconnected socket); otherwise it is empty.
  template <class F>
  std::size_t receive(udp::socket& s, bool want_from, F&& f) {
    const int fd = s.native_handle();
    if (opt_.batch_syscalls) {
      // The headers are set up once (constructor); the kernel writes only msg_len, msg_flags
      // and msg_namelen, so only the address length is reset here.
      for (std::size_t i = 0; i < kBatch; ++i) {
        msghdr& h = rx_msgs_[i].msg_hdr;
        h.msg_name = want_from ? &rx_addrs_[i] : nullptr;
        h.msg_namelen = want_from ? sizeof(sockaddr_storage) : 0;
        h.msg_control = gro_ ? rx_ctl_[i].buf : nullptr;
        h.msg_controllen = gro_ ? sizeof rx_ctl_[i].buf : 0;
      }
      const int n = recvmmsg(fd, rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return 0;
      for (int i = 0; i < n; ++i) {
        udp::endpoint from;
        const msghdr& h = rx_msgs_[i].msg_hdr;
        if (want_from && h.msg_namelen <= from.capacity()) {
          std::memcpy(from.data(), &rx_addrs_[i], h.msg_namelen);
          from.resize(h.msg_namelen);
        }
        const std::size_t len = (h.msg_flags & MSG_TRUNC) ? 0 : rx_msgs_[i].msg_len;
        const std::uint8_t* data = rx_.data() + i * kRxBufSize;
        // A coalesced run: segments of `seg` bytes, the last one possibly shorter.
        const std::size_t seg = gro_segment(h);
        const std::size_t step = seg > 0 && seg < len ? seg : len;
        std::size_t at = 0;
        do {
          const ByteSpan d(data + at, std::min(step, len - at));
          if (opt_.tap) tap(s, false, want_from ? from : remote(s), d);
          f(d, from);
          at += step;
        } while (at < len);
      }
      return static_cast<std::size_t>(n);
    }
    udp::endpoint from;
    boost::system::error_code ec;
    const std::size_t len = s.receive_from(asio::buffer(rx_.data(), kRxBufSize), from, 0, ec);
    if (ec) return 0;
    tap(s, false, from, ByteSpan(rx_.data(), len));
    f(ByteSpan(rx_.data(), len), from);
    return 1;
  }
  // The UDP_GRO segment size of a received message, 0 if it is a single datagram.
  static std::size_t gro_segment(const msghdr& h) {
    if (h.msg_controllen == 0) return 0;
    for (const cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr;
         c = CMSG_NXTHDR(const_cast<msghdr*>(&h), const_cast<cmsghdr*>(c))) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
          c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int v = 0;
        std::memcpy(&v, CMSG_DATA(c), sizeof v);
        return v > 0 ? static_cast<std::size_t>(v) : 0;
      }
    }
    return 0;
  }
  // Whether a receive() that returned `n` may have left datagrams in the socket. A short batch
  // drained it; anything arriving later wakes the next async_wait (Asio re-registers the socket
  // with EPOLL_CTL_MOD on every wait, which reports data already queued).
  bool may_have_more(std::size_t n) const { return opt_.batch_syscalls ? n == kBatch : n > 0; }

  // Batch of outgoing datagrams: fill slots, then flush.
  bool full() const { return tx_count_ == kBatch; }
  bool empty() const { return tx_sent_ == tx_count_; }
  MutableByteSpan slot() { return {tx_.data() + tx_count_ * max_datagram_, max_datagram_}; }
  void commit(std::size_t len, const udp::endpoint* to) {
    tx_len_[tx_count_] = len;
    if (to) tx_to_[tx_count_] = *to;
    ++tx_count_;
  }
  // Sends what is queued; returns false if the socket would block (call again when writable).
  bool flush(udp::socket& s, bool connected) {
    const int fd = s.native_handle();
    while (tx_sent_ < tx_count_) {
      if (opt_.batch_syscalls) {
        // Members, not zeroed locals: each used header is reset below, the rest is not read.
        auto& msgs = tx_msgs_;
        auto& iov = tx_iov_;
        auto& group = tx_group_;  // datagrams per message
        auto& ctl = tx_ctl_;
        std::size_t m = 0;
        for (std::size_t k = tx_sent_; k < tx_count_; ++m) {
          // With GSO, a run of equal-size datagrams to one destination (the last may be shorter)
          // goes down the stack as one message; the kernel (or NIC) cuts it into datagrams.
          std::size_t j = k + 1;
          std::size_t bytes = tx_len_[k];
          if (gso_) {
            while (j < tx_count_ && j - k < kMaxGsoSegments && tx_len_[j - 1] == tx_len_[k] &&
                   tx_len_[j] <= tx_len_[k] && bytes + tx_len_[j] <= kMaxGsoBytes &&
                   (connected || tx_to_[j] == tx_to_[k])) {
              bytes += tx_len_[j];
              ++j;
            }
          }
          for (std::size_t x = k; x < j; ++x)
            iov[x - tx_sent_] = {tx_.data() + x * max_datagram_, tx_len_[x]};
          msgs[m] = mmsghdr{};
          msghdr& h = msgs[m].msg_hdr;
          h.msg_iov = &iov[k - tx_sent_];
          h.msg_iovlen = j - k;
          if (!connected) {
            h.msg_name = tx_to_[k].data();
            h.msg_namelen = static_cast<socklen_t>(tx_to_[k].size());
          }
          if (j - k > 1) {
            h.msg_control = ctl[m].buf;
            h.msg_controllen = sizeof ctl[m].buf;
            cmsghdr* c = CMSG_FIRSTHDR(&h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
            const auto seg = static_cast<std::uint16_t>(tx_len_[k]);
            std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
          }
          group[m] = j - k;
          k = j;
        }
        const int r = sendmmsg(fd, msgs.data(), static_cast<unsigned>(m), MSG_DONTWAIT);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return false;
          if (errno == EINTR) continue;
          if (gso_ && group[0] > 1 && (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP)) {
            gso_ = false;  // no GSO on this path: fall back to one datagram per message
            continue;
          }
          ++send_errors_;
          tx_sent_ += group[0];  // e.g. ECONNREFUSED from an earlier ICMP: a "loss"
          continue;
        }
        for (int i = 0; i < r; ++i) {
          for (std::size_t g = 0; g < group[static_cast<std::size_t>(i)]; ++g) {
            tap_sent(s, connected, tx_sent_++);
          }
        }
      } else {
        boost::system::error_code ec;
        const auto buf = asio::buffer(tx_.data() + tx_sent_ * max_datagram_, tx_len_[tx_sent_]);
        if (connected) {
          s.send(buf, 0, ec);
        } else {
          s.send_to(buf, tx_to_[tx_sent_], 0, ec);
        }
        if (ec == asio::error::would_block || ec == asio::error::no_buffer_space) return false;
        if (ec && ec != asio::error::interrupted) ++send_errors_;
        if (!ec) tap_sent(s, connected, tx_sent_);
        if (ec != asio::error::interrupted) ++tx_sent_;
      }
    }
    tx_sent_ = tx_count_ = 0;
    return true;
  }
  std::uint64_t send_errors() const { return send_errors_; }

  // UdpOptions::tap, if set (captures).
  void tap(udp::socket& s, bool outbound, const udp::endpoint& peer, ByteSpan d) {
    if (!opt_.tap) return;
    boost::system::error_code ec;
    opt_.tap(outbound, s.local_endpoint(ec), peer, d);
  }
  static udp::endpoint remote(udp::socket& s) {
    boost::system::error_code ec;
    return s.remote_endpoint(ec);
  }
  void tap_sent(udp::socket& s, bool connected, std::size_t x) {
    if (!opt_.tap) return;
    boost::system::error_code ec;
    tap(s, true, connected ? s.remote_endpoint(ec) : tx_to_[x],
        ByteSpan(tx_.data() + x * max_datagram_, tx_len_[x]));
  }

 private:
  UdpOptions opt_;
  bool gso_;
  bool gro_;
  std::size_t max_datagram_;
  std::vector<std::uint8_t> rx_;
  std::array<mmsghdr, kBatch> rx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<sockaddr_storage, kBatch> rx_addrs_{};
  std::array<GroControl, kBatch> rx_ctl_{};
  std::vector<std::uint8_t> tx_;
  std::vector<std::size_t> tx_len_;
  std::vector<udp::endpoint> tx_to_;
  std::array<mmsghdr, kBatch> tx_msgs_{};
  std::array<iovec, kBatch> tx_iov_{};
  std::array<std::size_t, kBatch> tx_group_{};
  std::array<GsoControl, kBatch> tx_ctl_{};
  std::size_t tx_count_ = 0;
  std::size_t tx_sent_ = 0;
  std::uint64_t send_errors_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Timer. The engine's next deadline moves on nearly every packet (the PTO follows the newest
// send, delayed-ACK and pacing deadlines come and go), and re-arming an Asio timer costs a
// timerfd_settime and a cancelled handler each time. So the timer is re-armed only when the
// deadline moves EARLIER than the pending expiry. A later deadline keeps the pending wait: it
// fires early, pump() finds nothing due (on_timer runs only when now >= next_deadline()) and
// arms again at the new deadline. Invariant after every pump(): while the engine has a deadline,
// a wait is pending at or before it, so no deadline is ever missed. `timer_gen` tells a stale
// handler (one that had already expired when it was replaced) from the current one.
template <class Core>
void arm_lazily(Core& c, std::optional<TimePoint> deadline) {
  if (!deadline) {
    // Nothing to wait for (closed, or no connections): drop a pending wait so a closed
    // transport does not keep the io_context busy.
    if (c.armed) {
      c.armed.reset();
      ++c.timer_gen;
      c.timer.cancel();
    }
    return;
  }
  if (c.armed && *c.armed <= *deadline) return;  // the pending wait comes first
  c.armed = deadline;
  const std::uint64_t gen = ++c.timer_gen;
  c.timer.expires_at(to_timer_time(*deadline));  // cancels the pending wait, if any
  c.timer.async_wait([w = c.weak_from_this(), gen](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (!self || ec || !self->owner || gen != self->timer_gen) return;
    self->armed.reset();
    self->pump();  // runs on_timer() if a deadline is due, then arms the next one
  });
}

// ---------------------------------------------------------------------------------------------

class UdpClientTransport;

struct ClientCore : std::enable_shared_from_this<ClientCore> {
  ClientCore(asio::io_context& io_ctx, const udp::endpoint& srv, const Config& cfg,
             const UdpOptions& opt)
      : socket(io_ctx),
        timer(io_ctx),
        server(srv),
        conn(Connection::make_client(random_u64() | 1, cfg, steady_now())),
        io(opt, conn.config().max_datagram) {}

  udp::socket socket;
  asio::steady_timer timer;
  udp::endpoint server;
  Connection conn;
  Io io;
  UdpClientTransport* owner = nullptr;
  std::optional<TimePoint> armed;  // expiry of the pending timer wait (none: no wait)
  std::uint64_t timer_gen = 0;
  bool in_pump = false;
  bool pump_again = false;
  bool waiting_write = false;
  bool closed_reported = false;

  void start();
  void wait_read();
  void pump();
  void arm_timer() { arm_lazily(*this, conn.next_deadline()); }
};

class UdpClientTransport final : public ClientTransport {
 public:
  UdpClientTransport(asio::io_context& io, const udp::endpoint& server, const Config& cfg,
                     const UdpOptions& opt)
      : core_(std::make_shared<ClientCore>(io, server, cfg, opt)) {
    core_->socket.open(server.protocol());
    set_socket_options(core_->socket, opt, server.address().is_v6());
    core_->socket.non_blocking(true);
    core_->socket.connect(server);
    core_->io.enable_gro(core_->socket);
    core_->owner = this;
    core_->start();
  }
  ~UdpClientTransport() override {
    close();
    core_->owner = nullptr;
    boost::system::error_code ec;
    core_->timer.cancel();
    core_->socket.close(ec);
  }

  Errc send(Bytes message) override {
    if (!is_open()) return Errc::kConnectionLost;
    const Errc e = core_->conn.send(std::move(message), steady_now());
    if (e == Errc::kOk) core_->pump();
    return e;
  }
  void close() override {
    if (core_->conn.state() == State::kClosed) return;
    core_->conn.close(steady_now());
    core_->closed_reported = true;  // a local close is not reported through on_closed
    core_->pump();
  }
  bool is_open() const override { return core_->conn.state() != State::kClosed; }
  std::uint32_t peer_epoch() const override { return core_->conn.peer_epoch(); }
  TransportStats stats() const override {
    TransportStats t = to_transport_stats(core_->conn.stats());
    t.dropped_malformed += core_->io.send_errors();
    return t;
  }
  std::string describe() const override { return "udp " + endpoint_string(core_->server); }
  void bind_session(std::uint64_t session_id, const Key256& session_key) override {
    Connection& c = core_->conn;
    const Protection p = c.config().protection;
    std::optional<PacketKeys> keys;
    if (p != Protection::kOff) {
      keys = derive_packet_keys(session_key, c.id(), true, p == Protection::kEncrypted);
    }
    if (c.state() == State::kHandshake) {
      c.set_bind(session_id, keys);
    } else {
      c.protect(keys, /*send_now=*/true, steady_now());
    }
    core_->pump();
  }

  void deliver(Bytes m) {
    if (on_message) on_message(std::move(m));
  }
  void report_closed(Errc e) {
    if (on_closed) on_closed(e);
  }

 private:
  std::shared_ptr<ClientCore> core_;
};

void ClientCore::start() {
  wait_read();
  pump();
}

void ClientCore::wait_read() {
  socket.async_wait(
      udp::socket::wait_read, [w = weak_from_this()](const boost::system::error_code& ec) {
        auto self = w.lock();
        if (!self || ec || !self->owner) return;
        const TimePoint now = steady_now();
        auto on_dgram = [&](ByteSpan d, const udp::endpoint&) { self->conn.on_datagram(d, now); };
        // Drain a bounded number per wake-up so sends interleave with receives.
        for (std::size_t total = 0, n = kBatch; self->io.may_have_more(n) && total < kMaxPerWake;
             total += n) {
          n = self->io.receive(self->socket, false, on_dgram);
        }
        self->pump();
        if (self->owner && self->socket.is_open()) self->wait_read();
      });
}

void ClientCore::pump() {
  if (in_pump) {
    pump_again = true;
    return;
  }
  auto self = shared_from_this();
  in_pump = true;
  do {
    pump_again = false;
    TimePoint now = steady_now();
    if (auto d = conn.next_deadline(); d && *d <= now) conn.on_timer(now);
    // Deliver before transmitting: what the application sends from on_message (the next request
    // after a reply) and what delivering makes due (a FLOW update) leave in the same datagrams as
    // the ACK that is due, instead of the ACK going out alone first.
    bool delivered = false;
    while (auto m = conn.poll_message()) {
      if (!owner) break;
      delivered = true;
      owner->deliver(std::move(*m));
      if (!owner) break;
    }
    if (!owner) break;
    if (delivered) now = steady_now();
    // Transmit.
    if (!waiting_write) {
      while (true) {
        while (!io.full()) {
          const std::size_t n = conn.poll_transmit(io.slot(), now);
          if (n == 0) break;
          io.commit(n, nullptr);
        }
        if (io.empty()) break;
        if (!io.flush(socket, true)) {
          waiting_write = true;
          socket.async_wait(udp::socket::wait_write,
                            [w = weak_from_this()](const boost::system::error_code& ec) {
                              auto s = w.lock();
                              if (!s || ec || !s->owner) return;
                              s->waiting_write = false;
                              s->pump();
                            });
          break;
        }
      }
    }
    if (conn.state() == State::kClosed && !closed_reported) {
      closed_reported = true;
      owner->report_closed(conn.close_reason());
      if (!owner) break;
    }
  } while (pump_again);
  in_pump = false;
  if (owner) arm_timer();
}

// ---------------------------------------------------------------------------------------------

class UdpServerTransport;

struct ServerCore : std::enable_shared_from_this<ServerCore> {
  ServerCore(asio::io_context& io_ctx, std::uint32_t epoch, const Config& cfg,
             const UdpOptions& opt)
      : socket(io_ctx), timer(io_ctx), listener(epoch, cfg, opt.secret), io(opt, max_dg(cfg)) {
    // Totals outlive connections (stats() must not go back when one closes).
    listener.on_forget = [this](std::uint64_t, const Connection& c) {
      add_counters(closed_stats, to_transport_stats(c.stats()));
    };
  }
  static std::size_t max_dg(const Config& c) {
    return std::clamp(c.max_datagram, kMinDatagram, kMaxDatagram);
  }

  udp::socket socket;
  asio::steady_timer timer;
  Listener listener;
  Io io;
  std::map<std::uint64_t, udp::endpoint> peers;
  TransportStats closed_stats;  // counters of the connections already forgotten
  UdpServerTransport* owner = nullptr;
  std::optional<TimePoint> armed;  // expiry of the pending timer wait (none: no wait)
  std::uint64_t timer_gen = 0;
  bool in_pump = false;
  bool pump_again = false;
  bool waiting_write = false;
  std::array<std::uint8_t, kRetrySize> reset_buf{};

  void wait_read();
  void pump();
  void arm_timer() { arm_lazily(*this, listener.next_deadline()); }
};

class UdpServerTransport final : public ServerTransport {
 public:
  UdpServerTransport(asio::io_context& io, const udp::endpoint& bind, std::uint32_t epoch,
                     const Config& cfg, const UdpOptions& opt)
      : core_(std::make_shared<ServerCore>(io, epoch, cfg, opt)) {
    core_->socket.open(bind.protocol());
    set_socket_options(core_->socket, opt, bind.address().is_v6());
    core_->socket.bind(bind);
    core_->io.enable_gro(core_->socket);
    core_->socket.non_blocking(true);
    core_->owner = this;
    core_->listener.session_key =
        [this](std::uint64_t sid) -> std::optional<Listener::SessionKey> {
      if (!session_lookup) return std::nullopt;
      auto k = session_lookup(sid);
      if (!k) return std::nullopt;
      return Listener::SessionKey{k->key, k->protection >= 2   ? Protection::kEncrypted
                                          : k->protection == 1 ? Protection::kIntegrity
                                                               : Protection::kOff};
    };
    core_->wait_read();
  }
  // Abrupt, like a crash: no CLOSE datagrams (call close() first for an orderly shutdown).
  ~UdpServerTransport() override {
    core_->owner = nullptr;
    boost::system::error_code ec;
    core_->timer.cancel();
    core_->socket.close(ec);
  }

  Errc send(PeerId peer, Bytes message) override {
    Connection* c = core_->listener.find(peer);
    if (!c || c->state() == State::kClosed) return Errc::kConnectionLost;
    const Errc e = c->send(std::move(message), steady_now());
    if (e == Errc::kOk) core_->pump();
    return e;
  }
  void close_peer(PeerId peer) override {
    core_->listener.close(peer, steady_now());
    core_->pump();
  }
  void close() override {
    core_->listener.close_all(steady_now());
    core_->pump();
  }
  std::uint16_t local_port() const override {
    boost::system::error_code ec;
    return core_->socket.local_endpoint(ec).port();
  }
  TransportStats stats() const override {
    TransportStats t = core_->closed_stats;
    t.srtt_us = 0;  // gauges: of the live connections only
    t.cwnd_bytes = 0;
    core_->listener.for_each([&t](std::uint64_t, const Connection& c) {
      add_concurrent(t, to_transport_stats(c.stats()));
    });
    const ListenerStats& l = core_->listener.stats();
    t.dropped_bad_crc += l.dropped_bad_crc;
    t.dropped_malformed += l.dropped_malformed;
    return t;
  }
  void bind_session(PeerId peer, const Key256& session_key, std::uint32_t protection) override {
    const Protection p = protection >= 2   ? Protection::kEncrypted
                         : protection == 1 ? Protection::kIntegrity
                                           : Protection::kOff;
    core_->listener.protect(peer, session_key, p, steady_now());
    core_->pump();
  }
  void for_each_peer(
      const std::function<void(PeerId, const TransportStats&)>& f) const override {
    core_->listener.for_each(
        [&f](std::uint64_t id, const Connection& c) { f(id, to_transport_stats(c.stats())); });
  }
  std::string peer_name(PeerId peer) const override {
    auto it = core_->peers.find(peer);
    char id[24];
    std::snprintf(id, sizeof id, "%llx", static_cast<unsigned long long>(peer));
    return "udp " + (it == core_->peers.end() ? std::string("?") : endpoint_string(it->second)) +
           " conn " + id;
  }

  void deliver(PeerId p, Bytes m) {
    if (on_message) on_message(p, std::move(m));
  }
  void report_closed(PeerId p) {
    if (on_peer_closed) on_peer_closed(p);
  }

 private:
  std::shared_ptr<ServerCore> core_;
};

void ServerCore::wait_read() {
  socket.async_wait(
      udp::socket::wait_read, [w = weak_from_this()](const boost::system::error_code& ec) {
        auto self = w.lock();
        if (!self || ec || !self->owner) return;
        const TimePoint now = steady_now();
        auto on_dgram = [&](ByteSpan d, const udp::endpoint& from) {
          const auto src = source_bytes(from);
          const Listener::Routed r =
              self->listener.on_datagram(d, now, self->reset_buf, ByteSpan(src.data(), src.size()));
          if (r.conn_id) self->peers.try_emplace(*r.conn_id, from);
          if (r.reset_size) {
            boost::system::error_code ign;
            self->socket.send_to(asio::buffer(self->reset_buf.data(), r.reset_size), from, 0, ign);
            self->io.tap(self->socket, true, from, ByteSpan(self->reset_buf.data(), r.reset_size));
          }
        };
        for (std::size_t total = 0, n = kBatch; self->io.may_have_more(n) && total < kMaxPerWake;
             total += n) {
          n = self->io.receive(self->socket, true, on_dgram);
        }
        self->pump();
        if (self->owner && self->socket.is_open()) self->wait_read();
      });
}

void ServerCore::pump() {
  if (in_pump) {
    pump_again = true;
    return;
  }
  auto self = shared_from_this();
  in_pump = true;
  do {
    pump_again = false;
    const TimePoint now = steady_now();
    listener.on_timer(now);
    // Transmit before delivering (unlike ClientCore::pump): the replies to device requests come
    // later (back-end completions are posted), and what delivering makes due (a FLOW update once
    // the receive buffer is empty) then rides with the reply instead of going out alone.
    if (!waiting_write) {
      while (true) {
        while (!io.full()) {
          auto t = listener.poll_transmit(io.slot(), now);
          if (!t) break;
          auto p = peers.find(t->first);
          if (p == peers.end()) continue;  // no address (cannot happen): drop
          io.commit(t->second, &p->second);
        }
        if (io.empty()) break;
        if (!io.flush(socket, false)) {
          waiting_write = true;
          socket.async_wait(udp::socket::wait_write,
                            [w = weak_from_this()](const boost::system::error_code& ec) {
                              auto s = w.lock();
                              if (!s || ec || !s->owner) return;
                              s->waiting_write = false;
                              s->pump();
                            });
          break;
        }
      }
    }
    while (auto m = listener.poll_message()) {
      if (!owner) break;
      owner->deliver(m->first, std::move(m->second));
      if (!owner) break;
    }
    if (!owner) break;
    while (auto c = listener.poll_closed()) {
      peers.erase(c->first);
      // Closes we initiated (close_peer/close) are not reported back.
      if (c->second != Errc::kShutdown) owner->report_closed(c->first);
      if (!owner) break;
    }
    if (!owner) break;
  } while (pump_again);
  in_pump = false;
  if (owner) arm_timer();
}

}  // namespace

std::unique_ptr<ClientTransport> make_udp_client(asio::io_context& io, const udp::endpoint& server,
                                                 const Config& config, const UdpOptions& options) {
  return std::make_unique<UdpClientTransport>(io, server, config, options);
}

std::unique_ptr<ServerTransport> make_udp_server(asio::io_context& io, const udp::endpoint& bind,
                                                 std::uint32_t boot_epoch, const Config& config,
                                                 const UdpOptions& options) {
  return std::make_unique<UdpServerTransport>(io, bind, boot_epoch, config, options);
}

}  // namespace ipsan::proto::rudp
