// ipsan/nas/server.h: the NAS network front end: ONC-RPC over TCP (record marking) and UDP for a
// Nas core that runs on its own file-system thread.
//
// Every call is handed to the file-system thread (libext2fs is single-threaded) and its reply
// sent back from the network thread, so many clients are served while one operation runs. A TCP
// connection has at most 32 calls in the file-system queue; beyond that it is not read until
// replies drain (bounded memory). An optional second port answers the same programs for clients
// that insist on asking a portmapper (e.g. on port 111).
//
// Threading: construct, start() and stop() on the thread that runs `net`.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "ipsan/base/result.h"
#include "ipsan/nas/nas.h"

namespace ipsan::nas {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 2049;  // 0: any free port (TCP and UDP then share the TCP port number)
  bool udp = true;
  std::uint16_t portmap_port = 0;  // 0: no extra port
};

class NasServer {
 public:
  // `fs_io` is the file-system thread's io_context; `nas` is used only from it.
  NasServer(boost::asio::io_context& net, boost::asio::io_context& fs_io, Nas& nas,
            ServerOptions options);
  ~NasServer();
  Result<void, Error> start();
  void stop();
  std::uint16_t tcp_port() const;
  std::uint16_t udp_port() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ipsan::nas
