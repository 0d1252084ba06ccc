#include "ipsan/metrics/http.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <thread>

namespace ipsan::metrics {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// The exposer on its own io thread; the test is a blocking client.
class HttpTest : public ::testing::Test {
 protected:
  void start(HttpOptions o) {
    auto e = HttpExposer::start(io_, "127.0.0.1", 0, [this] { return body_; }, o);
    ASSERT_TRUE(e) << e.error().message;
    exposer_ = std::move(*e);
    port_ = exposer_->port();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] { exposer_->stop(); });
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  HttpStats stats() {
    std::promise<HttpStats> p;
    asio::post(io_, [&] { p.set_value(exposer_->stats()); });
    return p.get_future().get();
  }
  tcp::socket connect() {
    tcp::socket s(client_io_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    return s;
  }
  // Sends `req` and reads until the server closes.
  std::string exchange(const std::string& req) {
    tcp::socket s = connect();
    boost::system::error_code ec;
    asio::write(s, asio::buffer(req), ec);
    return read_all(s);
  }
  static std::string read_all(tcp::socket& s) {
    std::string out;
    boost::system::error_code ec;
    char buf[4096];
    for (;;) {
      std::size_t n = s.read_some(asio::buffer(buf), ec);
      out.append(buf, n);
      if (ec) break;
    }
    return out;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  asio::io_context client_io_;
  std::unique_ptr<HttpExposer> exposer_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  std::string body_ = "# HELP up Up\n# TYPE up gauge\nup 1\n";
};

TEST_F(HttpTest, ServesMetrics) {
  start({});
  std::string r = exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n");
  EXPECT_EQ(r.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(r.find("Content-Length: " + std::to_string(body_.size()) + "\r\n"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - body_.size()), body_);
  // Query strings are ignored, bare LF line ends accepted, HTTP/1.0 too.
  r = exchange("GET /metrics?x=1 HTTP/1.0\n\n");
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK");
  // HEAD: the head only.
  r = exchange("HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_EQ(r.substr(r.size() - 4), "\r\n\r\n");
  EXPECT_EQ(stats().scrapes, 3u);
}

TEST_F(HttpTest, RefusesEverythingElse) {
  start({});
  EXPECT_EQ(exchange("GET / HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 404");
  EXPECT_EQ(exchange("GET /metricsx HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 404");
  std::string r = exchange("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 405");
  EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos);
  const std::string tls("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n", 13);
  for (const std::string& bad : {tls, std::string("GET\r\n\r\n"),
                                  std::string("GET /metrics\r\n\r\n"),
                                  std::string("GET /metrics HTTP/2.0\r\n\r\n"),
                                  std::string("get /metrics HTTP/1.1\r\n\r\n"),
                                  std::string("GET metrics HTTP/1.1\r\n\r\n"),
                                  std::string("GET  /metrics HTTP/1.1\r\n\r\n"),
                                  std::string("\r\n\r\n")}) {
    EXPECT_EQ(exchange(bad).substr(0, 12), "HTTP/1.1 400") << bad;
  }
  EXPECT_EQ(stats().scrapes, 0u);
  EXPECT_EQ(stats().bad_requests, 11u);
}

TEST_F(HttpTest, HugeHeadIsRefused) {
  HttpOptions o;
  o.max_request_bytes = 1024;
  start(o);
  std::string req = "GET /metrics HTTP/1.1\r\nX-Junk: " + std::string(4096, 'a') + "\r\n\r\n";
  EXPECT_EQ(exchange(req).substr(0, 12), "HTTP/1.1 431");
  // A request under the limit still works.
  EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 200");
}

TEST_F(HttpTest, SlowAndIdleClientsAreDropped) {
  HttpOptions o;
  o.request_timeout = std::chrono::milliseconds(300);
  start(o);
  // Idle: connects, sends nothing. Slowloris: sends a partial head and then trickles nothing.
  tcp::socket idle = connect();
  tcp::socket slow = connect();
  asio::write(slow, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nX-A: b\r\n")));
  EXPECT_EQ(read_all(idle), "");  // closed by the server without an answer
  EXPECT_EQ(read_all(slow), "");
  EXPECT_EQ(stats().timeouts, 2u);
  EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 200");
}

TEST_F(HttpTest, ConnectionCap) {
  HttpOptions o;
  o.max_connections = 2;
  o.request_timeout = std::chrono::seconds(30);
  start(o);
  tcp::socket a = connect();
  tcp::socket b = connect();
  // Both are open on the server once a third is refused; retry until the accepts have run.
  std::string r;
  for (int i = 0; i < 200 && r.substr(0, 12) != "HTTP/1.1 503"; ++i)
    r = exchange("GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 503");
  a.close();
  b.close();
  // Once they are gone the endpoint serves again.
  for (int i = 0; i < 200 && r.substr(0, 12) != "HTTP/1.1 200"; ++i)
    r = exchange("GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 200");
  EXPECT_GE(stats().refused, 1u);
}

TEST(Http, BadAddress) {
  asio::io_context io;
  auto e = HttpExposer::start(io, "not-an-ip", 0, [] { return std::string(); });
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("not-an-ip"), std::string::npos);
}

}  // namespace
}  // namespace ipsan::metrics
