// ipsan/bench/embedded_server.h: an in-process ramdisk server for `ipsan bench --server-embedded`
// and the load generator's tests: a StorageServer with one RamBackend, UDP and TCP on 127.0.0.1
// (port 0), running on its own thread, with one client name and a random key.
//
// Threading: construct and destroy on any one thread; the server runs on its own io thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"

namespace ipsan::bench {

struct EmbeddedOptions {
  std::uint64_t size_bytes = std::uint64_t{1} << 30;
  std::uint32_t block_size = 512;
  std::uint32_t slots = 256;
  std::string client_name = "bench";
  std::size_t max_datagram = 0;  // rudp; 0: default
};

class EmbeddedServer {
 public:
  static Result<std::unique_ptr<EmbeddedServer>, Error> start(const EmbeddedOptions& options);
  ~EmbeddedServer();
  EmbeddedServer(const EmbeddedServer&) = delete;
  EmbeddedServer& operator=(const EmbeddedServer&) = delete;

  std::uint16_t udp_port() const;
  std::uint16_t tcp_port() const;
  const Key256& key() const;
  const std::string& client_name() const;
  // CPU seconds used by the server's io thread so far.
  double cpu_seconds() const;
  // Calls executed so far (read on the server thread).
  std::uint64_t executed() const;

  struct Impl;

 private:
  explicit EmbeddedServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsan::bench
