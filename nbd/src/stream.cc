// stream.cc: plain and TLS byte streams for the NBD server (GnuTLS, X.509 or PSK).
#include "stream.h"

#include <gnutls/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ipsan::nbd {

bool PlainStream::read_exact(std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd_, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool PlainStream::write_all(const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

namespace {

class TlsStream final : public Stream {
 public:
  explicit TlsStream(gnutls_session_t s) : s_(s) {}
  ~TlsStream() override { gnutls_deinit(s_); }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;
  bool read_exact(std::uint8_t* p, std::size_t n) override {
    while (n > 0) {
      const ssize_t r = gnutls_record_recv(s_, p, n);
      if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) continue;
      if (r <= 0) return false;
      p += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  }
  bool write_all(const std::uint8_t* p, std::size_t n) override {
    while (n > 0) {
      const ssize_t r = gnutls_record_send(s_, p, n);
      if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) continue;
      if (r <= 0) return false;
      p += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  }
  bool is_tls() const override { return true; }

 private:
  gnutls_session_t s_;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int psk_lookup(gnutls_session_t session, const char* username, gnutls_datum_t* key) {
  auto* ctx = static_cast<const TlsContext*>(gnutls_session_get_ptr(session));
  if (ctx == nullptr || username == nullptr) return -1;
  for (const auto& e : ctx->psk()) {
    if (e.user != username) continue;
    key->data = static_cast<unsigned char*>(gnutls_malloc(e.key.size()));
    if (key->data == nullptr) return -1;
    std::memcpy(key->data, e.key.data(), e.key.size());
    key->size = static_cast<unsigned>(e.key.size());
    return 0;
  }
  return -1;  // unknown user: the handshake fails
}

bool readable(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

TlsContext::~TlsContext() {
  if (priority_ != nullptr) gnutls_priority_deinit(priority_);
  if (cert_ != nullptr) gnutls_certificate_free_credentials(cert_);
  if (psk_cred_ != nullptr) gnutls_psk_free_server_credentials(psk_cred_);
}

Result<std::unique_ptr<TlsContext>, Error> TlsContext::create(const TlsConfig& cfg) {
  if (cfg.certificates_dir.empty() == cfg.psk_file.empty()) {
    return fail("--tls needs exactly one of --tls-certificates DIR and --tls-psk FILE");
  }
  if (gnutls_check_version("3.3.0") == nullptr) return fail("GnuTLS 3.3 or newer is needed");
  std::unique_ptr<TlsContext> ctx(new TlsContext());
  ctx->verify_peer_ = cfg.verify_peer;
  const char* prio = "NORMAL";
  if (!cfg.psk_file.empty()) {
    std::ifstream f(cfg.psk_file);
    if (!f) return fail("cannot read PSK file " + cfg.psk_file);
    std::string line;
    int lineno = 0;
    while (std::getline(f, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      const auto colon = line.find(':');
      const std::string where = cfg.psk_file + ":" + std::to_string(lineno);
      if (colon == std::string::npos || colon == 0) return fail(where + ": want username:hexkey");
      PskEntry e;
      e.user = line.substr(0, colon);
      const std::string hex = line.substr(colon + 1);
      if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 1024)
        return fail(where + ": the key must be an even number of hex digits");
      for (std::size_t i = 0; i < hex.size(); i += 2) {
        const int hi = hex_value(hex[i]);
        const int lo = hex_value(hex[i + 1]);
        if (hi < 0 || lo < 0) return fail(where + ": the key must be hex digits");
        e.key.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
      }
      ctx->psk_.push_back(std::move(e));
    }
    if (ctx->psk_.empty()) return fail("PSK file " + cfg.psk_file + " has no keys");
    if (gnutls_psk_allocate_server_credentials(&ctx->psk_cred_) != GNUTLS_E_SUCCESS)
      return fail("gnutls_psk_allocate_server_credentials failed");
    gnutls_psk_set_server_credentials_function(ctx->psk_cred_, psk_lookup);
    prio = "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK";
  } else {
    const std::string dir = cfg.certificates_dir;
    const std::string cert = dir + "/server-cert.pem";
    const std::string key = dir + "/server-key.pem";
    const std::string ca = dir + "/ca-cert.pem";
    if (!readable(cert) || !readable(key))
      return fail("--tls-certificates " + dir + ": needs server-cert.pem and server-key.pem");
    if (gnutls_certificate_allocate_credentials(&ctx->cert_) != GNUTLS_E_SUCCESS)
      return fail("gnutls_certificate_allocate_credentials failed");
    int rc = gnutls_certificate_set_x509_key_file(ctx->cert_, cert.c_str(), key.c_str(),
                                                  GNUTLS_X509_FMT_PEM);
    if (rc < 0) return fail("cannot load " + cert + " / " + key + ": " + gnutls_strerror(rc));
    if (readable(ca)) {
      rc = gnutls_certificate_set_x509_trust_file(ctx->cert_, ca.c_str(), GNUTLS_X509_FMT_PEM);
      if (rc < 0) return fail("cannot load " + ca + ": " + gnutls_strerror(rc));
    } else if (cfg.verify_peer) {
      return fail("--tls-verify-peer needs " + ca);
    }
  }
  const char* err = nullptr;
  if (gnutls_priority_init(&ctx->priority_, prio, &err) != GNUTLS_E_SUCCESS)
    return fail(std::string("bad GnuTLS priority string near ") + (err ? err : "?"));
  return ctx;
}

std::unique_ptr<Stream> TlsContext::handshake(int fd, int timeout_ms, std::string& why) {
  gnutls_session_t s = nullptr;
  if (gnutls_init(&s, GNUTLS_SERVER) != GNUTLS_E_SUCCESS) {
    why = "gnutls_init failed";
    return nullptr;
  }
  auto fail_with = [&](const std::string& w) -> std::unique_ptr<Stream> {
    why = w;
    gnutls_deinit(s);
    return nullptr;
  };
  gnutls_session_set_ptr(s, this);
  if (gnutls_priority_set(s, priority_) != GNUTLS_E_SUCCESS) return fail_with("priority");
  if (psk_cred_ != nullptr) {
    if (gnutls_credentials_set(s, GNUTLS_CRD_PSK, psk_cred_) != GNUTLS_E_SUCCESS)
      return fail_with("PSK credentials");
  } else {
    if (gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cert_) != GNUTLS_E_SUCCESS)
      return fail_with("certificate credentials");
    gnutls_certificate_server_set_request(s, verify_peer_ ? GNUTLS_CERT_REQUIRE
                                                          : GNUTLS_CERT_IGNORE);
  }
  gnutls_transport_set_int(s, fd);
  gnutls_handshake_set_timeout(s, static_cast<unsigned>(timeout_ms));
  int rc;
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
  if (rc < 0) return fail_with(std::string("TLS handshake: ") + gnutls_strerror(rc));
  if (verify_peer_ && cert_ != nullptr) {
    unsigned status = 0;
    rc = gnutls_certificate_verify_peers2(s, &status);
    if (rc < 0 || status != 0) return fail_with("client certificate not trusted");
  }
  return std::make_unique<TlsStream>(s);
}

}  // namespace ipsan::nbd
