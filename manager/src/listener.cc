#include "ipsan/manager/listener.h"

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "ipsan/auth/signed_call.h"

namespace ipsan::manager {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

struct Conn : std::enable_shared_from_this<Conn> {
  Conn(asio::io_context& io, tcp::socket s) : sock(std::move(s)), timer(io), buf(auth::kMaxLineBytes) {}
  tcp::socket sock;
  asio::steady_timer timer;
  asio::streambuf buf;
  std::string out;
};

class TcpListener final : public Listener {
 public:
  TcpListener(Manager& m, unsigned workers) : m_(m), acceptor_(io_), pool_(workers) {}
  ~TcpListener() override { stop(); }

  Result<void, Error> bind(const std::string& host, std::uint16_t port) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) return fail("bad listen address '" + host + "'");
    tcp::endpoint ep(addr, port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
    return {};
  }
  std::uint16_t port() const override { return port_; }
  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    pool_.join();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) serve(std::make_shared<Conn>(io_, std::move(s)));
      accept();
    });
  }
  void serve(std::shared_ptr<Conn> c) {
    c->timer.expires_after(std::chrono::seconds(10));
    c->timer.async_wait([c](boost::system::error_code ec) {
      if (!ec) {
        boost::system::error_code e2;
        c->sock.close(e2);
      }
    });
    asio::async_read_until(c->sock, c->buf, '\n', [this, c](boost::system::error_code ec, std::size_t) {
      c->timer.cancel();
      if (ec) return;
      std::string line((std::istreambuf_iterator<char>(&c->buf)), std::istreambuf_iterator<char>());
      asio::post(pool_, [this, c, line = std::move(line)] {
        json req = json::parse(line, nullptr, false);
        c->out = m_.handle(req).dump() + "\n";
        asio::post(io_, [c] {
          asio::async_write(c->sock, asio::buffer(c->out), [c](boost::system::error_code, std::size_t) {
            boost::system::error_code e;
            c->sock.shutdown(tcp::socket::shutdown_both, e);
            c->sock.close(e);
          });
        });
      });
    });
  }

  Manager& m_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::thread_pool pool_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Listener>, Error> Listener::start(Manager& m, const std::string& host,
                                                         std::uint16_t port, unsigned workers) {
  auto l = std::make_unique<TcpListener>(m, workers);
  if (auto r = l->bind(host, port); !r) return make_unexpected(r.error());
  return std::unique_ptr<Listener>(std::move(l));
}

}  // namespace ipsan::manager
