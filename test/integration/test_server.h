// test_server.h: runs a StorageServer (UDP + TCP on 127.0.0.1, port 0) on its own io thread for
// integration tests, and helpers to run a SanClient on the test's thread.
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <thread>

#include "ipsan/backends/ram.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/san_client.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/server.h"

namespace ipsan::testing {

inline Key256 test_key(std::string_view pass = "integration-secret") {
  Key256 k;
  parse_key(pass, k);
  return k;
}

class TestServer {
 public:
  // Exports `backends` as device ids 0..n-1; client "alice" with test_key().
  explicit TestServer(std::vector<backends::BackendPtr> backends, std::uint32_t epoch = 0,
                      std::uint16_t udp_port = 0, std::uint16_t tcp_port = 0)
      : work_(boost::asio::make_work_guard(io_)) {
    thread_ = std::thread([this] { io_.run(); });
    run_on_io([&] {
      server::KeyRing keys;
      (void)keys.add("alice", test_key());
      (void)keys.add("bob", test_key("bobs-key"));
      std::vector<server::Export> exports;
      for (std::size_t i = 0; i < backends.size(); ++i) {
        server::Export e;
        e.device_id = static_cast<std::uint32_t>(i);
        e.name = "disk" + std::to_string(i);
        e.backend = backends[i];
        exports.push_back(std::move(e));
      }
      server::ServerOptions so;
      so.boot_epoch = epoch;
      server_ = std::make_unique<server::StorageServer>(io_, so, std::move(keys), std::move(exports));
      auto lo = boost::asio::ip::make_address("127.0.0.1");
      auto u = proto::rudp::make_udp_server(io_, boost::asio::ip::udp::endpoint(lo, udp_port),
                                            server_->boot_epoch(), proto::rudp::Config{});
      udp_port_ = u->local_port();
      server_->attach(std::move(u));
      auto t = proto::make_tcp_server(io_, boost::asio::ip::tcp::endpoint(lo, tcp_port));
      tcp_port_ = t->local_port();
      server_->attach(std::move(t));
      server_->start();
    });
  }
  ~TestServer() { shutdown(); }

  void shutdown() {
    if (!thread_.joinable()) return;
    std::promise<void> stopped;
    boost::asio::post(io_, [&] { server_->stop([&] { stopped.set_value(); }); });
    stopped.get_future().wait_for(std::chrono::seconds(30));
    run_on_io([&] { server_.reset(); });
    work_.reset();
    io_.stop();
    thread_.join();
  }

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
    run_on_io([&] { s = server_->stats(); });
    return s;
  }

  std::uint16_t udp_port() const { return udp_port_; }
  std::uint16_t tcp_port() const { return tcp_port_; }
  std::uint16_t port(proto::TransportKind k) const {
    return k == proto::TransportKind::kUdp ? udp_port_ : tcp_port_;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  std::unique_ptr<server::StorageServer> server_;
  std::uint16_t udp_port_ = 0, tcp_port_ = 0;
};

inline client::TransportFactory factory(boost::asio::io_context& io, proto::TransportKind kind,
                                        std::uint16_t port) {
  client::TransportOptions to;
  to.kind = kind;
  to.port = port;
  return *client::make_transport_factory(io, to);
}

// Runs `io` until `pred` holds or `limit` passes; returns pred().
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred pred,
               std::chrono::seconds limit = std::chrono::seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(20));
    if (io.stopped()) io.restart();
  }
  return pred();
}

}  // namespace ipsan::testing
