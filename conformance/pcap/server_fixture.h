// server_fixture.h: an in-process ipsan server (UDP + TCP on 127.0.0.1, port 0) on its own io
// thread with chosen device ids and back-end specs, optionally recording every reliable-UDP
// datagram and every TCP connection (as segments) to a pcap file (server::serve()'s capture, what
// `ipsan server --capture` does), for the replay tests.
#pragma once

#include <utility>

#include <memory>
#include <string>
#include <vector>

#include "ipsan/backends/spec.h"
#include "ipsan/base/crypto.h"
#include "ipsan/server/server.h"
#include "ipsan/testing/server_thread.h"

namespace ipsan::replay::testing {

inline Key256 fixture_key() {
  Key256 k;
  parse_key("replay-fixture-secret", k);
  return k;
}

class ServerFixture {
 public:
  struct Device {
    std::uint32_t id;
    std::string spec;
  };
  // `capture`: non-empty = record the server's UDP datagrams and TCP connections there.
  explicit ServerFixture(const std::vector<Device>& devices, const std::string& capture = "") {
    ipsan::testing::ServerThreadOptions o;
    o.server.boot_epoch = 7;
    o.clients = {{"alice", fixture_key()}};
    o.capture = capture;  // server::serve() records both transports, as `ipsan server --capture`
    server_ = std::make_unique<ipsan::testing::ServerThread>(
        std::move(o), [&devices](std::vector<server::Export>& exports) {
          for (const Device& d : devices) {
            auto b = backends::open_backend(d.spec);
            if (!b) return b.error().message;
            server::Export e;
            e.device_id = d.id;
            e.name = "disk" + std::to_string(d.id);
            e.backend = std::move(*b);
            exports.push_back(std::move(e));
          }
          return std::string();
        });
    if (error_.empty()) error_ = server_->error();
  }
  ~ServerFixture() { shutdown(); }

  // Stops the server and closes the capture (complete once this returns).
  void shutdown() {
    if (server_) server_->shutdown();
  }

  const std::string& error() const { return error_; }
  std::uint16_t udp_port() const { return server_ ? server_->udp_port() : 0; }
  std::uint16_t tcp_port() const { return server_ ? server_->tcp_port() : 0; }

 private:
  std::unique_ptr<ipsan::testing::ServerThread> server_;
  std::string error_;
};

}  // namespace ipsan::replay::testing
