#include "ipsan/server/serve.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "ipsan/base/crypto.h"
#include "ipsan/base/units.h"
#include "ipsan/metrics/encode.h"
#include "ipsan/metrics/http.h"
#include "ipsan/netem/pcap.h"
#include "ipsan/server/admin.h"
#include "ipsan/server/server_metrics.h"

namespace ipsan::server {

namespace asio = boost::asio;

// --capture: the UDP transport's tap writes each datagram, the TCP transport's tap each
// connection as TCP segments (netem::TcpStreamRecorder), all with real addresses, into one file.
struct RunningServer::Capture {
  std::unique_ptr<netem::PcapWriter> writer;
  std::unique_ptr<netem::TcpStreamRecorder> tcp;
};

namespace {

netem::NetAddr net_addr(const asio::ip::address& ip, std::uint16_t port) {
  if (ip.is_v4()) return netem::NetAddr::ipv4(ip.to_v4().to_uint(), port);
  netem::NetAddr n;
  const auto b = ip.to_v6().to_bytes();
  std::copy(b.begin(), b.end(), n.bytes.begin());
  n.v6 = true;
  n.port = port;
  return n;
}

std::chrono::nanoseconds wall_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
}

void install_taps(netem::PcapWriter* writer, netem::TcpStreamRecorder* rec, ServeOptions& o) {
  o.udp_options.tap = [writer](bool outbound, const asio::ip::udp::endpoint& local,
                               const asio::ip::udp::endpoint& remote, ByteSpan d) {
    const auto l = net_addr(local.address(), local.port());
    const auto r = net_addr(remote.address(), remote.port());
    writer->write(wall_now(), outbound ? l : r, outbound ? r : l, d);
  };
  o.tcp_config.tap = [rec](const proto::TcpTapEvent& e) {
    using Kind = proto::TcpTapEvent::Kind;
    // The server's own connections: the peer is the client.
    switch (e.kind) {
      case Kind::kOpened:
        rec->open(e.connection, wall_now(), net_addr(e.remote.address(), e.remote.port()),
                  net_addr(e.local.address(), e.local.port()));
        break;
      case Kind::kReceived: rec->data(e.connection, wall_now(), true, e.data); break;
      case Kind::kSent: rec->data(e.connection, wall_now(), false, e.data); break;
      case Kind::kClosed: rec->close(e.connection, wall_now(), e.by_peer); break;
    }
  };
}

std::string endpoint_text(const asio::ip::address& a, std::uint16_t port) {
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(port);
}

}  // namespace

Result<std::unique_ptr<RunningServer>, Error> serve(asio::io_context& io, ServeOptions o,
                                                    KeyRing keys, std::vector<Export> exports) {
  if (!o.udp && !o.tcp) return fail("serve: neither UDP nor TCP to listen on");
  std::unique_ptr<RunningServer> rs(new RunningServer());
  if (!o.capture.empty()) {
    auto w = netem::PcapWriter::open(o.capture);
    if (!w) return fail("--capture: " + w.error().message);
    rs->capture_ = std::make_unique<RunningServer::Capture>();
    rs->capture_->writer = std::move(*w);
    rs->capture_->tcp = std::make_unique<netem::TcpStreamRecorder>(*rs->capture_->writer);
    install_taps(rs->capture_->writer.get(), rs->capture_->tcp.get(), o);
  }
  if (o.udp_secret_from_keys)
    o.udp_options.secret = keys.derive_secret("ipsan-rudp-server-secret-v1");
  if (o.udp_secret_identity) {
    const Digest256 d = hmac_sha256(*o.udp_secret_identity,
                                    {as_bytes("ipsan-rudp-server-secret-v1"), o.udp_options.secret});
    std::copy(d.begin(), d.end(), o.udp_options.secret.begin());
  }
  try {
    rs->server_ =
        std::make_unique<StorageServer>(io, o.server, std::move(keys), std::move(exports));
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  StorageServer& server = *rs->server_;
  if (o.udp) {
    try {
      auto t = proto::rudp::make_udp_server(io, asio::ip::udp::endpoint(o.address, o.udp_port),
                                            server.boot_epoch(), o.rudp, o.udp_options);
      rs->udp_port_ = t->local_port();
      server.attach(std::move(t));
    } catch (const std::exception& e) {
      return fail("cannot listen on udp " + endpoint_text(o.address, o.udp_port) + ": " + e.what());
    }
  }
  if (o.tcp) {
    // With port 0, try to give TCP the number UDP got so one port serves both.
    const std::uint16_t want = o.tcp_port != 0 ? o.tcp_port : rs->udp_port_;
    std::unique_ptr<proto::ServerTransport> t;
    try {
      try {
        t = proto::make_tcp_server(io, asio::ip::tcp::endpoint(o.address, want), o.tcp_config);
      } catch (const std::exception&) {
        if (o.tcp_port != 0 || want == 0) throw;
        t = proto::make_tcp_server(io, asio::ip::tcp::endpoint(o.address, 0), o.tcp_config);
      }
    } catch (const std::exception& e) {
      return fail("cannot listen on tcp " + endpoint_text(o.address, o.tcp_port) + ": " + e.what());
    }
    rs->tcp_port_ = t->local_port();
    server.attach(std::move(t));
  }
  server.start();
  // Live metrics: recorded on the io thread, scraped there (HTTP) or read by `ipsan stats`.
  if (o.live_metrics || !o.metrics.empty() || !o.admin_socket.empty()) {
    rs->registry_ = std::make_unique<metrics::Registry>();
    rs->server_metrics_ = std::make_unique<ServerMetrics>(*rs->registry_, server);
  }
  if (!o.metrics.empty()) {
    auto hp = parse_host_port(o.metrics, "127.0.0.1", 0);
    if (!hp) return fail("--metrics: " + hp.error().message);
    metrics::Registry* reg = rs->registry_.get();
    auto e = metrics::HttpExposer::start(io, hp->host, hp->port,
                                         [reg] { return metrics::encode_text(reg->snapshot()); });
    if (!e) return fail("--metrics: " + e.error().message);
    rs->exposer_ = std::move(*e);
    rs->metrics_host_ = hp->host;
  }
  if (!o.admin_socket.empty()) {
    metrics::Registry* reg = rs->registry_.get();
    LayoutManager* layout = o.layout;
    try {
      rs->admin_ = std::make_unique<AdminEndpoint>(
          io, o.admin_socket, [reg, layout, &server](const nlohmann::json& req) -> nlohmann::json {
            if (req.value("op", std::string()) == "stats") return stats_reply(*reg);
            if (layout == nullptr)
              return {{"ok", false},
                      {"error", "online changes need a server started with --config"}};
            return layout->handle(req, server);
          });
    } catch (const std::exception& e) {
      return fail(e.what());
    }
  }
  return rs;
}

RunningServer::~RunningServer() {
  // Endpoints that reach into the server go first; the server (and its transports, whose taps
  // write into the capture) before the capture.
  exposer_.reset();
  admin_.reset();
  server_metrics_.reset();
  server_.reset();
  if (capture_) capture_->writer->close();
}

std::uint16_t RunningServer::metrics_port() const { return exposer_ ? exposer_->port() : 0; }

std::string RunningServer::port_line() const {
  std::string s = "udp=" + std::to_string(udp_port_) + " tcp=" + std::to_string(tcp_port_);
  if (exposer_) s += " metrics=" + std::to_string(exposer_->port());
  return s;
}

Result<void, Error> RunningServer::write_port_file(const std::filesystem::path& path) const {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp);
    f << port_line() << "\n";
    if (!f.flush()) return fail("cannot write port file " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return fail("cannot write port file " + path.string() + ": " + ec.message());
  return {};
}

void RunningServer::close_extras() {
  // The capture stays open until destruction: closing connections may still record segments.
  if (exposer_) exposer_->stop();
  admin_.reset();
}

void RunningServer::stop(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  server_->stop([this, done = std::move(done)] {
    close_extras();
    if (done) done();
  });
}

}  // namespace ipsan::server
