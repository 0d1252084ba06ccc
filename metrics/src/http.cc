#include "ipsan/metrics/http.h"

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <string_view>

#include "ipsan/metrics/encode.h"

namespace ipsan::metrics {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpExposer::Impl : std::enable_shared_from_this<HttpExposer::Impl> {
  Impl(asio::io_context& i, Render r, HttpOptions o)
      : io(i), acceptor(i), render(std::move(r)), opt(o) {}
  asio::io_context& io;
  tcp::acceptor acceptor;
  Render render;
  HttpOptions opt;
  HttpStats stats;
  std::size_t open = 0;
  bool stopped = false;

  void accept();
};

namespace {

// The end of a request head: an empty line (CRLF CRLF, or bare LF LF from lenient clients).
using HeadIterator = asio::buffers_iterator<asio::streambuf::const_buffers_type>;
std::pair<HeadIterator, bool> head_end(HeadIterator begin, HeadIterator end) {
  for (HeadIterator i = begin; i != end; ++i) {
    if (*i != '\n') continue;
    HeadIterator j = i;
    ++j;
    if (j != end && *j == '\r') ++j;
    if (j != end && *j == '\n') return {++j, true};
  }
  return {end, false};
}

std::string response(int code, std::string_view reason, std::string_view content_type,
                     const std::string& body, bool head_only, std::string_view extra = {}) {
  std::string r = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
  r += "Content-Type: ";
  r += content_type;
  r += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  r += extra;
  r += "Connection: close\r\n\r\n";
  if (!head_only) r += body;
  return r;
}

std::string error_response(int code, std::string_view reason, std::string_view extra = {}) {
  return response(code, reason, "text/plain; charset=utf-8", std::string(reason) + "\n", false,
                  extra);
}

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(tcp::socket s, std::shared_ptr<HttpExposer::Impl> owner)
      : socket_(std::move(s)),
        owner_(std::move(owner)),
        buf_(owner_->opt.max_request_bytes),
        timer_(owner_->io) {
    owner_->open++;
  }
  ~HttpConnection() { owner_->open--; }

  void start() {
    auto self = shared_from_this();
    timer_.expires_after(owner_->opt.request_timeout);
    timer_.async_wait([this, self](boost::system::error_code ec) {
      if (ec) return;
      if (!answered_) owner_->stats.timeouts++;
      boost::system::error_code ign;
      socket_.close(ign);  // slow, idle or stuck client: the pending operation ends
    });
    asio::async_read_until(socket_, buf_, &head_end,
                           [this, self](boost::system::error_code ec, std::size_t n) {
                             on_head(ec, n);
                           });
  }

 private:
  void on_head(boost::system::error_code ec, std::size_t n) {
    if (ec == asio::error::not_found) {  // the head outgrew max_request_bytes
      owner_->stats.bad_requests++;
      return reply(error_response(431, "Request Header Fields Too Large"));
    }
    if (ec) {  // closed, reset or timed out
      boost::system::error_code ign;
      socket_.close(ign);
      timer_.cancel();  // releases this connection now, not at the deadline
      return;
    }
    std::string_view head(static_cast<const char*>(buf_.data().data()), n);
    std::string_view first = head.substr(0, head.find('\n'));
    if (!first.empty() && first.back() == '\r') first.remove_suffix(1);
    // request-line = method SP request-target SP HTTP-version
    const auto s1 = first.find(' ');
    const auto s2 = s1 == std::string_view::npos ? s1 : first.find(' ', s1 + 1);
    if (s1 == std::string_view::npos || s2 == std::string_view::npos ||
        first.find(' ', s2 + 1) != std::string_view::npos || s1 == 0) {
      owner_->stats.bad_requests++;
      return reply(error_response(400, "Bad Request"));
    }
    const std::string_view method = first.substr(0, s1);
    const std::string_view target = first.substr(s1 + 1, s2 - s1 - 1);
    const std::string_view version = first.substr(s2 + 1);
    bool token = true;
    for (char c : method) token = token && c >= 'A' && c <= 'Z';
    if (!token || version.substr(0, 7) != "HTTP/1." || version.size() != 8 || target.empty() ||
        target[0] != '/') {
      owner_->stats.bad_requests++;
      return reply(error_response(400, "Bad Request"));
    }
    const bool head_only = method == "HEAD";
    if (method != "GET" && !head_only) {
      owner_->stats.bad_requests++;
      return reply(error_response(405, "Method Not Allowed", "Allow: GET, HEAD\r\n"));
    }
    if (target.substr(0, target.find('?')) != "/metrics") {
      owner_->stats.bad_requests++;
      return reply(error_response(404, "Not Found"));
    }
    owner_->stats.scrapes++;
    std::string body;
    try {
      body = owner_->render();
    } catch (const std::exception& e) {
      return reply(error_response(500, "Internal Server Error"));
    }
    reply(response(200, "OK", kTextContentType, body, head_only));
  }

  void reply(std::string text) {
    answered_ = true;
    out_ = std::move(text);
    auto self = shared_from_this();
    // The timer still bounds the write: a client that does not read is dropped.
    asio::async_write(socket_, asio::buffer(out_), [this, self](boost::system::error_code ec,
                                                                std::size_t) {
      boost::system::error_code ign;
      if (!ec) socket_.shutdown(tcp::socket::shutdown_both, ign);
      socket_.close(ign);
      timer_.cancel();
    });
  }

  tcp::socket socket_;
  std::shared_ptr<HttpExposer::Impl> owner_;
  asio::streambuf buf_;
  asio::steady_timer timer_;
  std::string out_;
  bool answered_ = false;
};

}  // namespace

void HttpExposer::Impl::accept() {
  auto self = shared_from_this();
  acceptor.async_accept([this, self](boost::system::error_code ec, tcp::socket s) {
    if (stopped) return;
    if (!ec) {
      if (open >= opt.max_connections) {
        stats.refused++;
        static const std::string busy = error_response(503, "Service Unavailable");
        boost::system::error_code ign;
        s.non_blocking(true, ign);
        s.write_some(asio::buffer(busy), ign);  // best effort, never blocks
        s.close(ign);
      } else {
        std::make_shared<HttpConnection>(std::move(s), self)->start();
      }
    } else if (ec == asio::error::operation_aborted) {
      return;
    }
    accept();  // transient errors (EMFILE, aborted handshakes) do not stop the endpoint
  });
}

Result<std::unique_ptr<HttpExposer>, Error> HttpExposer::start(asio::io_context& io,
                                                               const std::string& host,
                                                               std::uint16_t port, Render render,
                                                               HttpOptions options) {
  const std::string where = host + ":" + std::to_string(port);
  if (options.max_request_bytes < 64 || options.max_connections == 0)
    return fail("metrics endpoint: bad options");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return fail("metrics endpoint: bad address '" + host + "' (an IP address is needed)");
  auto impl = std::make_shared<Impl>(io, std::move(render), options);
  tcp::endpoint ep(addr, port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("metrics endpoint: cannot listen on " + where + ": " + ec.message());
  impl->accept();
  return std::unique_ptr<HttpExposer>(new HttpExposer(std::move(impl)));
}

HttpExposer::~HttpExposer() { stop(); }

std::uint16_t HttpExposer::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

HttpStats HttpExposer::stats() const { return impl_->stats; }

void HttpExposer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace ipsan::metrics
