// server.cc: TCP and UDP listeners for the NAS (see ipsan/nas/server.h).
#include "ipsan/nas/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <set>

#include "ipsan/base/log.h"
#include "ipsan/proto/tcp_transport.h"

namespace ipsan::nas {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {
constexpr std::size_t kMaxRecord = (1u << 20) + 4096;  // a 1 MiB WRITE plus headers
constexpr int kMaxQueued = 32;
constexpr std::size_t kFragment = 1u << 20;
}  // namespace

struct NasServer::Impl : std::enable_shared_from_this<NasServer::Impl> {
  asio::io_context& net;
  asio::io_context& fs_io;
  Nas& nas;
  ServerOptions opt;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<std::unique_ptr<udp::socket>> udps;
  bool stopped = false;

  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(std::shared_ptr<Impl> o, tcp::socket s)
        : owner(std::move(o)), sock(std::move(s)), reader(kMaxRecord) {}
    std::shared_ptr<Impl> owner;
    tcp::socket sock;
    proto::RecordReader reader;
    std::array<std::uint8_t, 65536> buf{};
    std::deque<Bytes> outq;
    bool writing = false;
    bool reading = false;
    int queued = 0;
    bool dead = false;
    Peer peer;

    void read() {
      if (dead || reading || queued >= kMaxQueued) return;
      reading = true;
      sock.async_read_some(asio::buffer(buf), [self = shared_from_this()](
                                                  boost::system::error_code ec, std::size_t n) {
        self->reading = false;
        if (ec || self->owner->stopped) return self->close();
        std::vector<Bytes> recs;
        if (self->reader.feed(ByteSpan(self->buf.data(), n), recs) != Errc::kOk) {
          IPSAN_LOG(LogLevel::kWarn, "nas", "record too large from ",
                    self->peer.address.to_string(), ": closing");
          return self->close();
        }
        for (auto& r : recs) self->submit(std::move(r));
        self->read();
      });
    }
    void submit(Bytes rec) {
      ++queued;
      asio::post(owner->fs_io, [self = shared_from_this(), rec = std::move(rec)] {
        Bytes reply = self->owner->nas.handle(rec, self->peer);
        asio::post(self->owner->net, [self, reply = std::move(reply)]() mutable {
          --self->queued;
          if (!reply.empty()) self->send(std::move(reply));
          self->read();
        });
      });
    }
    void send(Bytes reply) {
      if (dead) return;
      Bytes framed;
      framed.reserve(reply.size() + 8);
      proto::append_record(framed, reply, kFragment);
      outq.push_back(std::move(framed));
      pump();
    }
    void pump() {
      if (writing || outq.empty() || dead) return;
      writing = true;
      asio::async_write(sock, asio::buffer(outq.front()),
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                          self->writing = false;
                          self->outq.pop_front();
                          if (ec) return self->close();
                          self->pump();
                        });
    }
    void close() {
      if (dead) return;
      dead = true;
      boost::system::error_code ec;
      sock.close(ec);
    }
  };
  std::set<std::weak_ptr<Conn>, std::owner_less<std::weak_ptr<Conn>>> conns;

  Impl(asio::io_context& n, asio::io_context& f, Nas& s, ServerOptions o)
      : net(n), fs_io(f), nas(s), opt(std::move(o)) {}

  void accept(tcp::acceptor& a) {
    a.async_accept([self = shared_from_this(), &a](boost::system::error_code ec, tcp::socket s) {
      if (self->stopped) return;
      if (!ec) {
        boost::system::error_code ig;
        s.set_option(tcp::no_delay(true), ig);
        auto ep = s.remote_endpoint(ig);
        auto c = std::make_shared<Conn>(self, std::move(s));
        c->peer.address = ep.address();
        c->peer.tcp = true;
        std::erase_if(self->conns, [](const auto& w) { return w.expired(); });
        self->conns.insert(c);
        c->read();
      }
      self->accept(a);
    });
  }

  struct UdpRx {
    std::array<std::uint8_t, 65536> buf{};
    udp::endpoint from;
  };
  void receive(udp::socket& s, std::shared_ptr<UdpRx> rx) {
    s.async_receive_from(
        asio::buffer(rx->buf), rx->from,
        [self = shared_from_this(), &s, rx](boost::system::error_code ec, std::size_t n) {
          if (self->stopped) return;
          if (!ec) {
            Bytes msg(rx->buf.begin(), rx->buf.begin() + static_cast<std::ptrdiff_t>(n));
            udp::endpoint from = rx->from;
            asio::post(self->fs_io, [self, &s, msg = std::move(msg), from] {
              Peer p{from.address(), false};
              Bytes reply = self->nas.handle(msg, p);
              if (reply.empty()) return;
              asio::post(self->net, [self, &s, reply = std::move(reply), from] {
                if (self->stopped) return;
                boost::system::error_code ig;
                s.send_to(asio::buffer(reply), from, 0, ig);
              });
            });
          }
          self->receive(s, rx);
        });
  }

  Result<void, Error> listen(std::uint16_t port, bool main) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(opt.host, ec);
    if (ec) return fail("bad listen address '" + opt.host + "'");
    auto a = std::make_unique<tcp::acceptor>(net);
    tcp::endpoint ep(addr, port);
    a->open(ep.protocol(), ec);
    if (!ec) a->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) a->bind(ep, ec);
    if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(Errc::kBusy, "cannot listen on TCP " + opt.host + ":" + std::to_string(port) +
                                   ": " + ec.message());
    }
    const std::uint16_t bound = a->local_endpoint().port();
    accept(*a);
    acceptors.push_back(std::move(a));
    if (opt.udp || !main) {
      auto u = std::make_unique<udp::socket>(net);
      udp::endpoint uep(addr, bound);
      u->open(uep.protocol(), ec);
      if (!ec) u->bind(uep, ec);
      if (ec) {
        return fail(Errc::kBusy, "cannot bind UDP " + opt.host + ":" + std::to_string(bound) +
                                     ": " + ec.message());
      }
      receive(*u, std::make_shared<UdpRx>());
      udps.push_back(std::move(u));
    }
    return {};
  }
};

NasServer::NasServer(asio::io_context& net, asio::io_context& fs_io, Nas& nas,
                     ServerOptions options)
    : impl_(std::make_shared<Impl>(net, fs_io, nas, std::move(options))) {}

NasServer::~NasServer() { stop(); }

Result<void, Error> NasServer::start() {
  if (auto r = impl_->listen(impl_->opt.port, true); !r) return r;
  if (impl_->opt.portmap_port != 0) {
    if (auto r = impl_->listen(impl_->opt.portmap_port, false); !r) return r;
  }
  const std::uint16_t t = tcp_port(), u = udp_port();
  asio::post(impl_->fs_io, [nas = &impl_->nas, t, u] { nas->set_ports(t, u); });
  return {};
}

void NasServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ec;
  for (auto& a : impl_->acceptors) a->close(ec);
  for (auto& u : impl_->udps) u->close(ec);
  for (auto& w : impl_->conns) {
    if (auto c = w.lock()) c->close();
  }
  impl_->conns.clear();
}

std::uint16_t NasServer::tcp_port() const {
  return impl_->acceptors.empty() ? 0 : impl_->acceptors[0]->local_endpoint().port();
}
std::uint16_t NasServer::udp_port() const {
  return impl_->opt.udp && !impl_->udps.empty() ? impl_->udps[0]->local_endpoint().port() : 0;
}

}  // namespace ipsan::nas
