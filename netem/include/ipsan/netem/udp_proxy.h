// ipsan/netem/udp_proxy.h: a UDP proxy that impairs traffic between real processes.
//
// Clients send to the listen address; for each client address the proxy opens one upstream socket
// connected to the forward address, so the server's replies come back on that socket and are
// relayed to the right client. Client->server traffic ("up") and server->client traffic ("down")
// each pass one Impairment engine (shared by all clients, like one emulated link), with seeds
// derived from options.seed. Clients idle for options.idle_timeout are forgotten.
//
// Threading: runs entirely on the given io_context; call every member from the thread(s) running
// it, or before it runs / after it stops. Handlers keep the internals alive, so destroying the
// UdpProxy while the io_context still holds its handlers is safe (they become no-ops).
#pragma once

#include <utility>  // before Asio (Boost 1.74 awaitable header needs it)

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"
#include "ipsan/netem/impairment.h"

namespace ipsan::netem {

struct UdpProxyOptions {
  boost::asio::ip::udp::endpoint listen;   // port 0 picks a free port (see local_endpoint())
  boost::asio::ip::udp::endpoint forward;  // the real server
  ImpairmentConfig up;                     // client -> server
  ImpairmentConfig down;                   // server -> client
  std::uint64_t seed = 0;
  std::string capture_path;  // empty = no capture (see pcap.h for the files)
  Duration idle_timeout = std::chrono::seconds(60);
  std::size_t max_clients = 1024;
  // SO_RCVBUF / SO_SNDBUF of every proxy socket; 0 keeps the kernel default (~208 KiB). Datagrams
  // the kernel drops because the proxy fell behind are not impairments the user asked for: they
  // are counted (socket_drops()). A larger buffer avoids them but turns a CPU-bound proxy into a
  // deep queue (tens of ms of standing delay on loopback), which is a different path again.
  // FORCE variants when permitted, otherwise capped at rmem_max / wmem_max.
  int socket_buffer_bytes = 0;
};

// "127.0.0.1:5000", "[::1]:5000" or "localhost:5000" (numeric addresses only, besides localhost).
Result<boost::asio::ip::udp::endpoint, Error> parse_endpoint(std::string_view text);

class UdpProxy {
 public:
  // Binds the listen socket and opens the capture; errors (address in use, bad path) are returned.
  static Result<std::unique_ptr<UdpProxy>, Error> create(boost::asio::io_context& io,
                                                         const UdpProxyOptions& options);
  ~UdpProxy();
  UdpProxy(const UdpProxy&) = delete;
  UdpProxy& operator=(const UdpProxy&) = delete;

  boost::asio::ip::udp::endpoint local_endpoint() const;
  // Closes all sockets and timers and the capture files; datagrams still held are discarded.
  void stop();

  // Replaces both directions' settings for datagrams entering from now on (held ones keep their
  // schedule; Impairment::set_config): a harness worsens or heals the link mid-run.
  void set_impairment(const ImpairmentConfig& up, const ImpairmentConfig& down);

  Counters up_counters() const;
  Counters down_counters() const;
  std::size_t clients() const;
  // Datagrams the kernel dropped on the proxy's own sockets (receive queue full: the proxy fell
  // behind), from SO_MEMINFO; sockets closed since count too. Not part of up/down counters.
  std::uint64_t socket_drops() const;

  struct Impl;

 private:
  explicit UdpProxy(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace ipsan::netem
