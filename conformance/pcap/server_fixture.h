// server_fixture.h: an in-process ipsan server (UDP + TCP on 127.0.0.1, port 0) on its own io
// thread with chosen device ids and back-end specs, and optional transport taps that record every
// reliable-UDP datagram and every TCP connection (as segments) to a pcap file (what `ipsan server
// --capture` does), for the replay tests.
#pragma once

#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/backends/spec.h"
#include "ipsan/base/crypto.h"
#include "ipsan/netem/pcap.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/server.h"

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
  explicit ServerFixture(const std::vector<Device>& devices, const std::string& capture = "")
      : work_(boost::asio::make_work_guard(io_)) {
    thread_ = std::thread([this] { io_.run(); });
    run_on_io([&] {
      server::KeyRing keys;
      (void)keys.add("alice", fixture_key());
      std::vector<server::Export> exports;
      for (const Device& d : devices) {
        auto b = backends::open_backend(d.spec);
        if (!b) {
          error_ = b.error().message;
          return;
        }
        server::Export e;
        e.device_id = d.id;
        e.name = "disk" + std::to_string(d.id);
        e.backend = std::move(*b);
        exports.push_back(std::move(e));
      }
      server::ServerOptions so;
      so.boot_epoch = 7;
      server_ =
          std::make_unique<server::StorageServer>(io_, so, std::move(keys), std::move(exports));
      auto lo = boost::asio::ip::make_address("127.0.0.1");
      proto::rudp::UdpOptions uo;
      proto::TcpConfig tc;
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
        uo.tap = [writer](bool outbound, const boost::asio::ip::udp::endpoint& local,
                          const boost::asio::ip::udp::endpoint& remote, ByteSpan datagram) {
          const auto l = to_net_addr(local), r = to_net_addr(remote);
          writer->write(capture_now(), outbound ? l : r, outbound ? r : l, datagram);
        };
#else
        (void)writer;
        error_ = "this build has no UdpOptions::tap";
#endif
        tc.tap = [rec = recorder_.get()](const proto::TcpTapEvent& e) {
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
      auto u = proto::rudp::make_udp_server(io_, boost::asio::ip::udp::endpoint(lo, 0),
                                            server_->boot_epoch(), proto::rudp::Config{}, uo);
      udp_port_ = u->local_port();
      server_->attach(std::move(u));
      auto t = proto::make_tcp_server(io_, boost::asio::ip::tcp::endpoint(lo, 0), tc);
      tcp_port_ = t->local_port();
      server_->attach(std::move(t));
      server_->start();
    });
  }
  ~ServerFixture() { shutdown(); }

  void shutdown() {
    if (!thread_.joinable()) return;
    if (server_) {
      std::promise<void> stopped;
      boost::asio::post(io_, [&] { server_->stop([&] { stopped.set_value(); }); });
      stopped.get_future().wait_for(std::chrono::seconds(30));
    }
    run_on_io([&] {
      server_.reset();
      if (writer_) writer_->close();
    });
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

  const std::string& error() const { return error_; }
  std::uint16_t udp_port() const { return udp_port_; }
  std::uint16_t tcp_port() const { return tcp_port_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  std::unique_ptr<server::StorageServer> server_;
  std::unique_ptr<netem::PcapWriter> writer_;
  std::unique_ptr<netem::TcpStreamRecorder> recorder_;
  std::string error_;
  std::uint16_t udp_port_ = 0, tcp_port_ = 0;
};

}  // namespace ipsan::replay::testing
