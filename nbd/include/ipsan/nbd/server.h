// ipsan/nbd/server.h: an NBD server (fixed newstyle, doc/proto.md of NetworkBlockDevice/nbd) in
// front of the client driver: NBD client -> TCP or Unix socket (optionally TLS) -> this server ->
// GenericTarget (SanClient) -> ipsan server. Each export names one ipsan device.
//
// Handshake: NBD_OPT_EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO (with NBD_INFO_BLOCK_SIZE:
// minimum = the device's block size, preferred 4 KiB or more, maximum = max_request_bytes),
// STRUCTURED_REPLY, LIST/SET_META_CONTEXT (base:allocation). Transmission: READ (any alignment),
// WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (NO_HOLE, FAST_ZERO), CACHE, BLOCK_STATUS, DISC.
// Requests larger than the device's transfer limit are split; every piece is sent at once.
//
// Consistency: every connection of every export goes through the one GenericTarget (one ipsan
// session), and a reply is sent only after the ipsan server acknowledged the request, so a FLUSH
// on any connection covers every write whose reply was sent on any connection before it:
// NBD_FLAG_CAN_MULTI_CONN is set.
//
// Threading: one accept thread; per connection a reader thread (handshake, requests) and a writer
// thread (replies). target.execute() is called from reader threads and must be thread-safe (wrap
// a client::Runtime); completions may run on any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/nbd/wire.h"
#include "ipsan/proto/generic.h"

namespace ipsan::nbd {

struct ExportConfig {
  std::string name;
  std::string description;
  std::uint32_t device_id = 0;
  proto::Identity identity;  // from IDENTIFY: block size and count, capabilities, transfer limit
  bool read_only = false;    // also when identity has kCapReadOnly
};

struct TlsConfig {
  TlsMode mode = TlsMode::kOff;
  std::string certificates_dir;  // server-cert.pem, server-key.pem (+ ca-cert.pem: verify peers)
  std::string psk_file;          // "username:hexkey" lines (psktool's format)
  bool verify_peer = false;      // require a client certificate signed by ca-cert.pem
};

struct ServerOptions {
  std::string tcp_address = "127.0.0.1";
  std::uint16_t tcp_port = 10809;  // 0: any free port (see port())
  bool tcp = true;
  std::string unix_path;           // also listen on this Unix socket when set
  TlsConfig tls;
  std::size_t max_connections = 128;
  std::uint32_t max_request_bytes = 32u << 20;  // NBD_INFO_BLOCK_SIZE maximum (EOVERFLOW above)
  std::uint32_t max_in_flight = 64;             // requests per connection before reading pauses
  bool multi_conn = true;
  int handshake_timeout_ms = 30000;  // a client that does not finish the handshake is closed
  // stop(): for this long, requests get ESHUTDOWN (options NBD_REP_ERR_SHUTDOWN) so clients can
  // disconnect cleanly; connections still open then are closed.
  int shutdown_grace_ms = 1000;
};

struct ServerStats {
  std::uint64_t connections = 0;
  std::uint64_t handshakes = 0;         // connections that entered transmission
  std::uint64_t handshake_failures = 0; // closed during the handshake (garbage, unknown export, TLS)
  std::uint64_t tls_handshakes = 0;
  std::uint64_t requests = 0;
  std::uint64_t request_errors = 0;     // replies with a nonzero NBD error
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t protocol_errors = 0;    // connections closed for a bad request magic
};

// Builds the client-visible description of an export (flags, size, block-size constraints).
ExportInfo export_info(const ExportConfig& e, const ServerOptions& o);

class Server {
 public:
  Server(client::GenericTarget& target, std::vector<ExportConfig> exports, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads TLS credentials, binds and listens; an error names what failed.
  Result<void, Error> start();
  std::uint16_t port() const;  // the TCP port (0 without TCP)
  // Stops accepting; for shutdown_grace_ms new requests get ESHUTDOWN (requests in flight
  // complete and are answered), then every connection still open is closed. Blocks until all
  // threads have ended.
  void stop();
  ServerStats stats() const;

  // Where live metrics will hook in (`--metrics`, another helper's work): a snapshot per call.
  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Loads the TLS credentials once to check them (files readable, keys well-formed): what
// Server::start() would report, for a command line to reject before it logs in anywhere.
Result<void, Error> check_tls_config(const TlsConfig& tls);

// NBD error for an ipsan status (EIO for anything without a closer match).
std::uint32_t nbd_error(Errc e, bool is_write);

}  // namespace ipsan::nbd
