// ipsan/testing/server_thread.h: a StorageServer on its own io thread, for the tests that run
// their clients on the test's thread (integration, reliable-udp conformance, replay). One place
// for the start-up and the orderly stop (flush back ends, close transports) every such fixture
// needs; the fixtures add only what is theirs (back ends, taps, keys).
//
// Threading: the constructor and every member are called from the test's thread; the server,
// its transports and `make_exports` run on the owned io thread (run_on_io() hops there and
// waits).
#pragma once

#include <utility>  // before Asio (GCC 12)

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/base/crypto.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/server.h"

namespace ipsan::testing {

struct ServerThreadOptions {
  server::ServerOptions server;
  std::vector<std::pair<std::string, Key256>> clients;  // name and key of each client
  // Reliable UDP and TCP listeners; port 0 picks a free port (see udp_port() / tcp_port()).
  bool udp = true;
  boost::asio::ip::udp::endpoint udp_bind{boost::asio::ip::make_address("127.0.0.1"), 0};
  proto::rudp::Config rudp;
  proto::rudp::UdpOptions udp_options;
  bool tcp = true;
  boost::asio::ip::tcp::endpoint tcp_bind{boost::asio::ip::make_address("127.0.0.1"), 0};
  proto::TcpConfig tcp_config;
};

class ServerThread {
 public:
  // Fills the exports on the io thread; returns "" or why it could not (then nothing starts and
  // error() says why).
  using MakeExports = std::function<std::string(std::vector<server::Export>&)>;

  ServerThread(ServerThreadOptions options, const MakeExports& make_exports)
      : work_(boost::asio::make_work_guard(io_)) {
    thread_ = std::thread([this] { io_.run(); });
    run_on_io([&] {
      server::KeyRing keys;
      for (const auto& [name, key] : options.clients) (void)keys.add(name, key);
      std::vector<server::Export> exports;
      error_ = make_exports(exports);
      if (!error_.empty()) return;
      server_ = std::make_unique<server::StorageServer>(io_, options.server, std::move(keys),
                                                        std::move(exports));
      if (options.udp) {
        auto u = proto::rudp::make_udp_server(io_, options.udp_bind, server_->boot_epoch(),
                                              options.rudp, options.udp_options);
        udp_port_ = u->local_port();
        server_->attach(std::move(u));
      }
      if (options.tcp) {
        auto t = proto::make_tcp_server(io_, options.tcp_bind, options.tcp_config);
        tcp_port_ = t->local_port();
        server_->attach(std::move(t));
      }
      server_->start();
    });
  }
  ~ServerThread() { shutdown(); }
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  // Stops the server (back ends flushed, transports closed), then the io thread. Idempotent.
  void shutdown() {
    if (!thread_.joinable()) return;
    if (server_) {
      std::promise<void> stopped;
      boost::asio::post(io_, [&] { server_->stop([&] { stopped.set_value(); }); });
      stopped.get_future().wait_for(std::chrono::seconds(30));
    }
    run_on_io([&] { server_.reset(); });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  // Runs `f` on the server's io thread and waits for it.
  template <class F>
  void run_on_io(F&& f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  server::ServerStats stats() {
    server::ServerStats s;
    run_on_io([&] {
      if (server_) s = server_->stats();
    });
    return s;
  }
  proto::TransportStats transport_stats() {
    proto::TransportStats s;
    run_on_io([&] {
      if (server_) s = server_->transport_stats();
    });
    return s;
  }

  const std::string& error() const { return error_; }
  std::uint16_t udp_port() const { return udp_port_; }
  std::uint16_t tcp_port() const { return tcp_port_; }
  std::uint16_t port(proto::TransportKind k) const {
    return k == proto::TransportKind::kUdp ? udp_port_ : tcp_port_;
  }
  std::uint32_t epoch() const { return server_ ? server_->boot_epoch() : 0; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  std::unique_ptr<server::StorageServer> server_;
  std::string error_;
  std::uint16_t udp_port_ = 0, tcp_port_ = 0;
};

}  // namespace ipsan::testing
