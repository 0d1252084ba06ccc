// test_server.h: a StorageServer (UDP + TCP on 127.0.0.1, port 0) on its own io thread for
// integration tests (ipsan/testing/server_thread.h), and helpers to run a SanClient on the test's
// thread.
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "ipsan/backends/ram.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/san_client.h"
#include "ipsan/testing/server_thread.h"

namespace ipsan::testing {

inline Key256 test_key(std::string_view pass = "integration-secret") {
  Key256 k;
  parse_key(pass, k);
  return k;
}

// Exports `backends` as device ids 0..n-1 over reliable UDP and TCP on 127.0.0.1; clients
// "alice" (test_key()) and "bob" (test_key("bobs-key")).
class TestServer : public ServerThread {
 public:
  explicit TestServer(std::vector<backends::BackendPtr> backends, std::uint32_t epoch = 0,
                      std::uint16_t udp_port = 0, std::uint16_t tcp_port = 0)
      : ServerThread(options(epoch, udp_port, tcp_port),
                     [&backends](std::vector<server::Export>& exports) {
                       for (std::size_t i = 0; i < backends.size(); ++i) {
                         server::Export e;
                         e.device_id = static_cast<std::uint32_t>(i);
                         e.name = "disk" + std::to_string(i);
                         e.backend = backends[i];
                         exports.push_back(std::move(e));
                       }
                       return std::string();
                     }) {}

 private:
  static ServerThreadOptions options(std::uint32_t epoch, std::uint16_t udp_port,
                                     std::uint16_t tcp_port) {
    ServerThreadOptions o;
    o.server.boot_epoch = epoch;
    o.clients = {{"alice", test_key()}, {"bob", test_key("bobs-key")}};
    o.udp_bind.port(udp_port);
    o.tcp_bind.port(tcp_port);
    return o;
  }
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
