// In-process ramdisk server (see embedded_server.h).
#include "ipsan/bench/embedded_server.h"

#include <pthread.h>
#include <time.h>

#include <utility>  // before Asio

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "ipsan/backends/ram.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/proto/tcp_transport.h"
#include "ipsan/server/server.h"

namespace ipsan::bench {

namespace asio = boost::asio;

struct EmbeddedServer::Impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{asio::make_work_guard(io)};
  std::thread thread;
  std::unique_ptr<server::StorageServer> server;
  std::uint16_t udp_port = 0, tcp_port = 0;
  Key256 key{};
  std::string name;

  template <class F>
  void run_on_io(F&& f) {
    std::promise<void> done;
    asio::post(io, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  ~Impl() {
    if (!thread.joinable()) return;
    if (server) {
      std::promise<void> stopped;
      asio::post(io, [&] { server->stop([&] { stopped.set_value(); }); });
      stopped.get_future().wait_for(std::chrono::seconds(10));
      run_on_io([&] { server.reset(); });
    }
    work.reset();
    io.stop();
    thread.join();
  }
};

Result<std::unique_ptr<EmbeddedServer>, Error> EmbeddedServer::start(const EmbeddedOptions& o) {
  if (!crypto_init()) return fail("cannot initialise libsodium");
  backends::RamOptions ro;
  ro.block_size = o.block_size;
  auto ram = backends::RamBackend::create(o.size_bytes, ro);
  if (!ram) return fail("embedded ramdisk: " + ram.error().message);
  auto impl = std::make_unique<Impl>();
  impl->name = o.client_name;
  random_bytes(impl->key);
  impl->thread = std::thread([p = impl.get()] { p->io.run(); });
  std::string error;
  impl->run_on_io([&] {
    try {
      server::KeyRing keys;
      auto added = keys.add(impl->name, impl->key);
      if (!added) {
        error = added.error().message;
        return;
      }
      std::vector<server::Export> exports(1);
      exports[0].device_id = 0;
      exports[0].name = "ram0";
      exports[0].backend = std::move(*ram);
      server::ServerOptions so;
      so.slot_count = o.slots;
      so.transport_security = 0;  // accept any offer: the client's --transport-security decides
      impl->server = std::make_unique<server::StorageServer>(impl->io, so, std::move(keys),
                                                             std::move(exports));
      auto lo = asio::ip::make_address("127.0.0.1");
      proto::rudp::Config rc;
      if (o.max_datagram != 0) rc.max_datagram = o.max_datagram;
      auto u = proto::rudp::make_udp_server(impl->io, asio::ip::udp::endpoint(lo, 0),
                                            impl->server->boot_epoch(), rc);
      impl->udp_port = u->local_port();
      impl->server->attach(std::move(u));
      auto t = proto::make_tcp_server(impl->io, asio::ip::tcp::endpoint(lo, 0));
      impl->tcp_port = t->local_port();
      impl->server->attach(std::move(t));
      impl->server->start();
    } catch (const std::exception& e) {
      error = e.what();
      impl->server.reset();
    }
  });
  if (!error.empty()) return fail("embedded server: " + error);
  return std::unique_ptr<EmbeddedServer>(new EmbeddedServer(std::move(impl)));
}

EmbeddedServer::EmbeddedServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EmbeddedServer::~EmbeddedServer() = default;

std::uint16_t EmbeddedServer::udp_port() const { return impl_->udp_port; }
std::uint16_t EmbeddedServer::tcp_port() const { return impl_->tcp_port; }
const Key256& EmbeddedServer::key() const { return impl_->key; }
const std::string& EmbeddedServer::client_name() const { return impl_->name; }

double EmbeddedServer::cpu_seconds() const {
  clockid_t cid;
  if (pthread_getcpuclockid(impl_->thread.native_handle(), &cid) != 0) return 0;
  timespec ts{};
  if (clock_gettime(cid, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::uint64_t EmbeddedServer::executed() const {
  std::uint64_t n = 0;
  impl_->run_on_io([&] { n = impl_->server->stats().executed; });
  return n;
}

}  // namespace ipsan::bench
