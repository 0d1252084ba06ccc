// ipsan/metrics/http.h: the Prometheus scrape endpoint, a deliberately small HTTP/1.x server.
//
// It answers GET (and HEAD) /metrics with the text format and nothing else: other paths get 404,
// other methods 405, anything unparsable 400, a request head over max_request_bytes 431; every
// answer closes the connection. Robust against bad clients: bounded request size, a deadline for
// the whole request head (slow or idle clients are dropped), a cap on open connections (503 when
// full). The render function runs on the io_context's thread, once per scrape.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ipsan/base/result.h"

namespace ipsan::metrics {

struct HttpOptions {
  std::size_t max_request_bytes = 8192;
  std::chrono::milliseconds request_timeout{5000};  // whole request head, and writing the answer
  std::size_t max_connections = 32;
};

struct HttpStats {
  std::uint64_t scrapes = 0;
  std::uint64_t bad_requests = 0;  // 400, 404, 405, 431
  std::uint64_t timeouts = 0;
  std::uint64_t refused = 0;       // 503: over the connection cap
};

class HttpExposer {
 public:
  using Render = std::function<std::string()>;
  // Binds and listens; the error names the address.
  static Result<std::unique_ptr<HttpExposer>, Error> start(boost::asio::io_context& io,
                                                           const std::string& host,
                                                           std::uint16_t port, Render render,
                                                           HttpOptions options = {});
  ~HttpExposer();
  HttpExposer(const HttpExposer&) = delete;
  HttpExposer& operator=(const HttpExposer&) = delete;

  std::uint16_t port() const;
  HttpStats stats() const;
  void stop();

  struct Impl;

 private:
  explicit HttpExposer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace ipsan::metrics
