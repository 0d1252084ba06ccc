// UDP impairment proxy on Asio (ipsan/netem/udp_proxy.h).
#include "ipsan/netem/udp_proxy.h"

#include <boost/asio/steady_timer.hpp>

#include <linux/sock_diag.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "ipsan/base/log.h"
#include "ipsan/netem/pcap.h"

namespace ipsan::netem {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {

constexpr std::size_t kMaxDatagram = 65536;

NetAddr to_net_addr(const udp::endpoint& ep) {
  NetAddr a;
  if (ep.address().is_v4()) {
    a = NetAddr::ipv4(ep.address().to_v4().to_uint(), ep.port());
  } else {
    const auto b = ep.address().to_v6().to_bytes();
    std::copy(b.begin(), b.end(), a.bytes.begin());
    a.v6 = true;
    a.port = ep.port();
  }
  return a;
}

void set_buffers(udp::socket& s, int bytes) {
  if (bytes <= 0) return;
  const int fd = s.native_handle();
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
}

// Datagrams the kernel dropped on this socket (SK_MEMINFO_DROPS; 0 if unavailable).
std::uint64_t kernel_drops(udp::socket& s) {
  if (!s.is_open()) return 0;
  std::uint32_t info[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof info;
  if (getsockopt(s.native_handle(), SOL_SOCKET, SO_MEMINFO, info, &len) != 0 ||
      len < sizeof(std::uint32_t) * (SK_MEMINFO_DROPS + 1)) {
    return 0;
  }
  return info[SK_MEMINFO_DROPS];
}

}  // namespace

Result<udp::endpoint, Error> parse_endpoint(std::string_view text) {
  const auto bad = [&text](std::string_view why) {
    return fail(str_cat("bad address '", text, "': ", why,
                        " (expected ADDR:PORT, e.g. "
                        "127.0.0.1:5000 or [::1]:5000)"));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [ptr, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || ptr != port_text.data() + port_text.size() ||
      port > 65535) {
    return bad("port must be 0..65535");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("put IPv6 addresses in brackets");
  }
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code err;
  const auto addr = asio::ip::make_address(std::string(host), err);
  if (err) return bad("not a numeric IP address");
  return udp::endpoint(addr, static_cast<std::uint16_t>(port));
}

struct UdpProxy::Impl : std::enable_shared_from_this<UdpProxy::Impl> {
  struct Session {
    std::uint64_t id = 0;
    udp::endpoint client;
    udp::socket upstream;
    Bytes buf;
    TimePoint last_active{};
    explicit Session(asio::io_context& io) : upstream(io), buf(kMaxDatagram) {}
  };

  Impl(asio::io_context& io_, const UdpProxyOptions& options_)
      : io(io_),
        options(options_),
        listen(io_),
        release_timer(io_),
        sweep_timer(io_),
        up(options_.up, derive_seed(options_.seed, 0)),
        down(options_.down, derive_seed(options_.seed, 1)),
        listen_buf(kMaxDatagram) {}

  asio::io_context& io;
  UdpProxyOptions options;
  udp::socket listen;
  asio::steady_timer release_timer;
  asio::steady_timer sweep_timer;
  std::optional<TimePoint> armed_at;
  Impairment up;
  Impairment down;
  Bytes listen_buf;
  udp::endpoint listen_from;
  std::map<udp::endpoint, std::shared_ptr<Session>> by_client;
  std::map<std::uint64_t, std::shared_ptr<Session>> by_id;
  std::uint64_t next_session_id = 1;
  std::unique_ptr<Capture> capture;
  NetAddr forward_addr;
  std::uint64_t closed_socket_drops = 0;
  bool stopped = false;

  Result<void, Error> start() {
    boost::system::error_code ec;
    listen.open(options.listen.protocol(), ec);
    if (!ec) listen.bind(options.listen, ec);
    if (!ec) listen.non_blocking(true, ec);
    if (!ec) set_buffers(listen, options.socket_buffer_bytes);
    if (ec) {
      return fail(Errc::kIoError, str_cat("cannot listen on ", options.listen, ": ", ec.message()));
    }
    forward_addr = to_net_addr(options.forward);
    const TimePoint now = steady_now();
    up.set_epoch(now);
    down.set_epoch(now);
    if (!options.capture_path.empty()) {
      const auto offset = std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch() - now.time_since_epoch());
      auto cap = Capture::open(options.capture_path, offset);
      if (!cap) return make_unexpected(cap.error());
      capture = std::move(*cap);
      up.set_observer([this](const Event& ev) {
        const auto it = by_id.find(ev.tag);
        const NetAddr client = it == by_id.end() ? NetAddr{} : to_net_addr(it->second->client);
        capture->record(Direction::kUp, ev, client, forward_addr);
      });
      down.set_observer([this](const Event& ev) {
        const auto it = by_id.find(ev.tag);
        const NetAddr client = it == by_id.end() ? NetAddr{} : to_net_addr(it->second->client);
        capture->record(Direction::kDown, ev, forward_addr, client);
      });
    }
    receive_listen();
    arm_sweep();
    return {};
  }

  std::uint64_t socket_drops() {
    std::uint64_t n = closed_socket_drops + kernel_drops(listen);
    for (auto& [id, s] : by_id) n += kernel_drops(s->upstream);
    return n;
  }

  void stop() {
    if (stopped) return;
    closed_socket_drops = socket_drops();
    stopped = true;
    boost::system::error_code ec;
    listen.close(ec);
    release_timer.cancel();
    sweep_timer.cancel();
    for (auto& [id, s] : by_id) s->upstream.close(ec);
    by_id.clear();
    by_client.clear();
    if (capture) capture->close();
  }

  void receive_listen() {
    listen.async_receive_from(
        asio::buffer(listen_buf), listen_from,
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
          if (self->stopped) return;
          if (!ec) self->on_client_datagram(n);
          self->receive_listen();
        });
  }

  void on_client_datagram(std::size_t n) {
    const TimePoint now = steady_now();
    auto session = session_for(listen_from, now);
    if (!session) return;
    session->last_active = now;
    up.submit(Bytes(listen_buf.begin(), listen_buf.begin() + static_cast<std::ptrdiff_t>(n)), now,
              session->id);
    pump();
  }

  std::shared_ptr<Session> session_for(const udp::endpoint& client, TimePoint now) {
    if (auto it = by_client.find(client); it != by_client.end()) return it->second;
    if (by_client.size() >= options.max_clients) {
      IPSAN_LOG(LogLevel::kWarn, "netem", "too many clients (", options.max_clients,
                "); dropping datagram from ", client);
      return nullptr;
    }
    auto s = std::make_shared<Session>(io);
    boost::system::error_code ec;
    s->upstream.open(options.forward.protocol(), ec);
    if (!ec) s->upstream.connect(options.forward, ec);
    if (!ec) s->upstream.non_blocking(true, ec);
    if (!ec) set_buffers(s->upstream, options.socket_buffer_bytes);
    if (ec) {
      IPSAN_LOG(LogLevel::kWarn, "netem", "cannot open upstream socket to ", options.forward, ": ",
                ec.message());
      return nullptr;
    }
    s->id = next_session_id++;
    s->client = client;
    s->last_active = now;
    by_client.emplace(client, s);
    by_id.emplace(s->id, s);
    receive_upstream(s);
    return s;
  }

  void receive_upstream(const std::shared_ptr<Session>& s) {
    s->upstream.async_receive(
        asio::buffer(s->buf),
        [self = shared_from_this(), s](const boost::system::error_code& ec, std::size_t n) {
          if (self->stopped || !s->upstream.is_open()) return;
          if (!ec) {
            const TimePoint now = steady_now();
            s->last_active = now;
            self->down.submit(
                Bytes(s->buf.begin(), s->buf.begin() + static_cast<std::ptrdiff_t>(n)), now, s->id);
            self->pump();
          }
          // Errors such as ECONNREFUSED (no server yet) are transient: keep receiving.
          self->receive_upstream(s);
        });
  }

  void pump() {
    if (stopped) return;
    const TimePoint now = steady_now();
    boost::system::error_code ec;
    while (auto r = up.poll_release_tagged(now)) {
      const auto it = by_id.find(r->tag);
      if (it != by_id.end()) it->second->upstream.send(asio::buffer(r->data), 0, ec);
    }
    while (auto r = down.poll_release_tagged(now)) {
      const auto it = by_id.find(r->tag);
      if (it != by_id.end()) listen.send_to(asio::buffer(r->data), it->second->client, 0, ec);
    }
    arm_release();
  }

  void arm_release() {
    std::optional<TimePoint> next = up.next_release();
    if (const auto d = down.next_release(); d && (!next || *d < *next)) next = d;
    if (!next || (armed_at && *armed_at <= *next)) return;
    armed_at = next;
    release_timer.expires_at(std::chrono::time_point_cast<asio::steady_timer::duration>(*next));
    release_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;  // cancelled: a newer wait replaced this one
      self->armed_at.reset();
      self->pump();
    });
  }

  void arm_sweep() {
    sweep_timer.expires_after(std::chrono::seconds(1));
    sweep_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;
      const TimePoint cutoff = steady_now() - self->options.idle_timeout;
      for (auto it = self->by_id.begin(); it != self->by_id.end();) {
        if (it->second->last_active < cutoff) {
          boost::system::error_code ignored;
          self->closed_socket_drops += kernel_drops(it->second->upstream);
          it->second->upstream.close(ignored);
          self->by_client.erase(it->second->client);
          it = self->by_id.erase(it);
        } else {
          ++it;
        }
      }
      // Keeps capture files current for readers and for a proxy killed without a chance to close.
      if (self->capture) self->capture->flush();
      self->arm_sweep();
    });
  }
};

Result<std::unique_ptr<UdpProxy>, Error> UdpProxy::create(asio::io_context& io,
                                                          const UdpProxyOptions& options) {
  if (const std::string why = validate(options.up); !why.empty()) return fail("up: " + why);
  if (const std::string why = validate(options.down); !why.empty()) return fail("down: " + why);
  auto impl = std::make_shared<Impl>(io, options);
  if (auto r = impl->start(); !r) {
    impl->stop();
    return make_unexpected(r.error());
  }
  return std::unique_ptr<UdpProxy>(new UdpProxy(std::move(impl)));
}

UdpProxy::~UdpProxy() { impl_->stop(); }

udp::endpoint UdpProxy::local_endpoint() const {
  boost::system::error_code ec;
  return impl_->listen.local_endpoint(ec);
}

void UdpProxy::stop() { impl_->stop(); }
void UdpProxy::set_impairment(const ImpairmentConfig& up, const ImpairmentConfig& down) {
  impl_->up.set_config(up);
  impl_->down.set_config(down);
}
Counters UdpProxy::up_counters() const { return impl_->up.counters(); }
Counters UdpProxy::down_counters() const { return impl_->down.counters(); }
std::size_t UdpProxy::clients() const { return impl_->by_id.size(); }
std::uint64_t UdpProxy::socket_drops() const { return impl_->socket_drops(); }

}  // namespace ipsan::netem
