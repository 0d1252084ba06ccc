// stream.h (private): a blocking byte stream over a socket, plain or TLS (GnuTLS).
//
// One thread may read while another writes (GnuTLS allows one sender and one receiver at once).
#pragma once

#include <gnutls/gnutls.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/nbd/server.h"

namespace ipsan::nbd {

class Stream {
 public:
  virtual ~Stream() = default;
  // false on EOF or error.
  virtual bool read_exact(std::uint8_t* p, std::size_t n) = 0;
  virtual bool write_all(const std::uint8_t* p, std::size_t n) = 0;
  virtual bool is_tls() const { return false; }
};

class PlainStream final : public Stream {
 public:
  explicit PlainStream(int fd) : fd_(fd) {}
  bool read_exact(std::uint8_t* p, std::size_t n) override;
  bool write_all(const std::uint8_t* p, std::size_t n) override;

 private:
  int fd_;
};

// Server credentials, loaded once and shared by every TLS session.
class TlsContext {
 public:
  static Result<std::unique_ptr<TlsContext>, Error> create(const TlsConfig& cfg);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  // Runs the server side of the TLS handshake on fd (bounded by timeout_ms); nullptr and a reason
  // on failure.
  std::unique_ptr<Stream> handshake(int fd, int timeout_ms, std::string& why);

  struct PskEntry {
    std::string user;
    std::vector<std::uint8_t> key;
  };
  const std::vector<PskEntry>& psk() const { return psk_; }

 private:
  TlsContext() = default;
  gnutls_certificate_credentials_t cert_ = nullptr;
  gnutls_psk_server_credentials_t psk_cred_ = nullptr;
  gnutls_priority_t priority_ = nullptr;
  std::vector<PskEntry> psk_;
  bool verify_peer_ = false;
};

}  // namespace ipsan::nbd
