// ipsan/server/serve.h: one way to assemble a running storage server.
//
// serve() turns options, keys and exports into a StorageServer listening on reliable UDP and/or
// TCP, with what goes around it: a pcap capture of its traffic (docs/CAPTURE.md), live metrics
// (a registry, optionally scraped over HTTP; docs/METRICS.md) and the admin socket (`ipsan stats`,
// online layout changes with a LayoutManager; docs/CONFIG.md). The server CLI, the tests'
// ServerThread, the embedded bench server and the conformance tests all start servers with it.
//
// Threading: call serve() on the io_context's thread (or before it runs); everything it returns
// lives on that thread.
#pragma once

#include <optional>

#include <utility>  // before Asio (GCC 12)

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/metrics/registry.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/keyring.h"
#include "ipsan/server/server.h"

namespace ipsan::metrics {
class HttpExposer;
}

namespace ipsan::server {

class LayoutManager;
class AdminEndpoint;
class ServerMetrics;

struct ServeOptions {
  ServerOptions server;
  boost::asio::ip::address address = boost::asio::ip::make_address("127.0.0.1");
  bool udp = true;
  std::uint16_t udp_port = 0;  // 0: any free port
  bool tcp = true;
  std::uint16_t tcp_port = 0;  // 0: the port UDP got if TCP can have it too, else any free port
  proto::rudp::Config rudp;
  proto::rudp::UdpOptions udp_options;
  proto::TcpConfig tcp_config;
  // Reliable UDP's reset/cookie secret from the key ring, so a restarted server with the same
  // keys is still recognised (docs/RUDP.md); otherwise udp_options.secret (all zero: random).
  bool udp_secret_from_keys = false;
  // Mixed into that secret when set (a server identity's private key: its key ring may be empty).
  std::optional<Key256> udp_secret_identity;
  // Record every datagram and TCP connection to this pcap file ("" none).
  std::string capture;
  // Live metrics: a registry fed by the data path. Always on with `metrics` or `admin_socket`.
  bool live_metrics = false;
  std::string metrics;  // serve them over HTTP at HOST:PORT ("" none; port 0: any)
  // Unix socket for `ipsan stats` and, with `layout`, online changes ("" none).
  std::filesystem::path admin_socket;
  LayoutManager* layout = nullptr;  // not owned; must outlive the running server
};

class RunningServer {
 public:
  ~RunningServer();
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  StorageServer& server() { return *server_; }
  const StorageServer& server() const { return *server_; }
  std::uint16_t udp_port() const { return udp_port_; }  // 0: no UDP listener
  std::uint16_t tcp_port() const { return tcp_port_; }  // 0: no TCP listener
  std::uint16_t metrics_port() const;                   // 0: no HTTP metrics
  const std::string& metrics_host() const { return metrics_host_; }
  metrics::Registry* registry() { return registry_.get(); }  // nullptr without live metrics
  // "udp=PORT tcp=PORT" (+ " metrics=PORT"): what --port-file holds.
  std::string port_line() const;
  // Writes port_line() atomically (a temporary file, then rename).
  Result<void, Error> write_port_file(const std::filesystem::path& path) const;
  // Stops accepting, waits for requests in flight, flushes back ends, closes the listeners, the
  // HTTP and admin endpoints and the capture file, then calls `done`. Idempotent.
  void stop(std::function<void()> done);

 private:
  friend Result<std::unique_ptr<RunningServer>, Error> serve(boost::asio::io_context& io,
                                                             ServeOptions options, KeyRing keys,
                                                             std::vector<Export> exports);
  struct Capture;
  RunningServer() = default;
  void close_extras();

  // Declaration order is destruction order reversed: the capture outlives the transports (in
  // the server), the registry outlives its collectors.
  std::unique_ptr<Capture> capture_;
  std::unique_ptr<metrics::Registry> registry_;
  std::unique_ptr<StorageServer> server_;
  std::unique_ptr<ServerMetrics> server_metrics_;
  std::unique_ptr<AdminEndpoint> admin_;
  std::unique_ptr<metrics::HttpExposer> exposer_;
  std::string metrics_host_;
  std::uint16_t udp_port_ = 0, tcp_port_ = 0;
  bool stopping_ = false;
};

// Builds and starts the server; the error says what could not be opened or bound.
Result<std::unique_ptr<RunningServer>, Error> serve(boost::asio::io_context& io,
                                                    ServeOptions options, KeyRing keys,
                                                    std::vector<Export> exports);

}  // namespace ipsan::server
