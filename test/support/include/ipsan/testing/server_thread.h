// ipsan/testing/server_thread.h: a StorageServer on its own io thread, for the tests that run
// their clients on the test's thread (integration, reliable-udp conformance, replay). One place
// for the start-up and the orderly stop (flush back ends, close transports) every such fixture
// needs; the fixtures add only what is theirs (back ends, taps, keys). The server itself is
// assembled by server::serve(), as `ipsan server` does.
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
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/base/crypto.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/serve.h"
#include "ipsan/server/server.h"

namespace ipsan::testing {

struct ServerThreadOptions {
  server::ServerOptions server;
  std::vector<std::pair<std::string, Key256>> clients;  // name and key of each client
  // Reliable UDP and TCP listeners; port 0 picks a free port (see udp_port() / tcp_port()).
  // Both listen on udp_bind's address (tcp_bind's when there is no UDP listener).
  bool udp = true;
  boost::asio::ip::udp::endpoint udp_bind{boost::asio::ip::make_address("127.0.0.1"), 0};
  proto::rudp::Config rudp;
  proto::rudp::UdpOptions udp_options;
  bool tcp = true;
  boost::asio::ip::tcp::endpoint tcp_bind{boost::asio::ip::make_address("127.0.0.1"), 0};
  proto::TcpConfig tcp_config;
  // Record the server's traffic to this pcap file ("" none); complete after shutdown().
  std::string capture;
};

class ServerThread {
 public:
  // Fills the exports on the io thread; returns "" or why it could not (then nothing starts and
  // error() says why; so does a failure to start the server, e.g. a port in use).
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
      server::ServeOptions so;
      so.server = options.server;
      so.address = options.udp ? options.udp_bind.address() : options.tcp_bind.address();
      so.udp = options.udp;
      so.udp_port = options.udp_bind.port();
      so.rudp = options.rudp;
      so.udp_options = options.udp_options;
      so.tcp = options.tcp;
      so.tcp_port = options.tcp_bind.port();
      so.tcp_config = options.tcp_config;
      so.capture = options.capture;
      auto running = server::serve(io_, std::move(so), std::move(keys), std::move(exports));
      if (!running) {
        error_ = running.error().message;
        std::fprintf(stderr, "ServerThread: the server did not start: %s\n", error_.c_str());
        return;
      }
      running_ = std::move(*running);
      server_ = &running_->server();
      udp_port_ = running_->udp_port();
      tcp_port_ = running_->tcp_port();
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
      boost::asio::post(io_, [&] { running_->stop([&] { stopped.set_value(); }); });
      stopped.get_future().wait_for(std::chrono::seconds(30));
    }
    run_on_io([&] {
      server_ = nullptr;
      running_.reset();
    });
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
  std::unique_ptr<server::RunningServer> running_;
  server::StorageServer* server_ = nullptr;  // running_'s
  std::string error_;
  std::uint16_t udp_port_ = 0, tcp_port_ = 0;
};

}  // namespace ipsan::testing
