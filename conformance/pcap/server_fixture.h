// server_fixture.h: an in-process ipsan server (UDP + TCP on 127.0.0.1, port 0) on its own io
// thread with chosen device ids and back-end specs, and optional transport taps that record every
// reliable-UDP datagram and every TCP connection (as segments) to a pcap file (what `ipsan server
// --capture` does), for the replay tests.
#pragma once

#include <utility>

#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/backends/spec.h"
#include "ipsan/base/crypto.h"
#include "ipsan/netem/pcap.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/server.h"
#include "ipsan/testing/server_thread.h"

namespace ipsan::replay::testing {

inline Key256 fixture_key() {
  Key256 k;
  parse_key("replay-fixture-secret", k);
  return k;
}

template <class Endpoint>
netem::NetAddr to_net_addr(const Endpoint& e) {
  netem::NetAddr a;
  if (e.address().is_v4()) {
    a = netem::NetAddr::ipv4(e.address().to_v4().to_uint(), e.port());
  } else {
    a.v6 = true;
    const auto b = e.address().to_v6().to_bytes();
    std::copy(b.begin(), b.end(), a.bytes.begin());
    a.port = e.port();
  }
  return a;
}

inline std::chrono::nanoseconds capture_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
}

class ServerFixture {
 public:
  struct Device {
    std::uint32_t id;
    std::string spec;
  };
  // `capture`: non-empty = record the server's UDP datagrams (needs UdpOptions::tap) and TCP
  // connections there.
  explicit ServerFixture(const std::vector<Device>& devices, const std::string& capture = "") {
    ipsan::testing::ServerThreadOptions o;
    o.server.boot_epoch = 7;
    o.clients = {{"alice", fixture_key()}};
    if (!capture.empty()) {
      auto w = netem::PcapWriter::open(capture);
      if (!w) {
        error_ = w.error().message;
        return;
      }
      writer_ = std::move(*w);
      recorder_ = std::make_unique<netem::TcpStreamRecorder>(*writer_);
      netem::PcapWriter* writer = writer_.get();
#ifdef IPSAN_HAVE_UDP_TAP
      o.udp_options.tap = [writer](bool outbound, const boost::asio::ip::udp::endpoint& local,
                                   const boost::asio::ip::udp::endpoint& remote,
                                   ByteSpan datagram) {
        const auto l = to_net_addr(local), r = to_net_addr(remote);
        writer->write(capture_now(), outbound ? l : r, outbound ? r : l, datagram);
      };
#else
      (void)writer;
      error_ = "this build has no UdpOptions::tap";
      return;
#endif
      o.tcp_config.tap = [rec = recorder_.get()](const proto::TcpTapEvent& e) {
        using Kind = proto::TcpTapEvent::Kind;
        switch (e.kind) {
          case Kind::kOpened:
            rec->open(e.connection, capture_now(), to_net_addr(e.remote), to_net_addr(e.local));
            break;
          case Kind::kReceived: rec->data(e.connection, capture_now(), true, e.data); break;
          case Kind::kSent: rec->data(e.connection, capture_now(), false, e.data); break;
          case Kind::kClosed: rec->close(e.connection, capture_now(), e.by_peer); break;
        }
      };
    }
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

  // Stops the server, then closes the capture (nothing taps it any more).
  void shutdown() {
    if (server_) server_->shutdown();
    if (writer_) writer_->close();
  }

  const std::string& error() const { return error_; }
  std::uint16_t udp_port() const { return server_ ? server_->udp_port() : 0; }
  std::uint16_t tcp_port() const { return server_ ? server_->tcp_port() : 0; }

 private:
  std::unique_ptr<netem::PcapWriter> writer_;
  std::unique_ptr<netem::TcpStreamRecorder> recorder_;
  std::unique_ptr<ipsan::testing::ServerThread> server_;  // stopped before the writer closes
  std::string error_;
};

}  // namespace ipsan::replay::testing
