// In-process ramdisk server (see embedded_server.h).
#include "ipsan/bench/embedded_server.h"

#include <pthread.h>
#include <time.h>

#include <utility>  // before Asio

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "ipsan/backends/ram.h"
#include "ipsan/server/serve.h"

namespace ipsan::bench {

namespace asio = boost::asio;

struct EmbeddedServer::Impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{asio::make_work_guard(io)};
  std::thread thread;
  std::unique_ptr<server::RunningServer> server;
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
      asio::post(io, [&] { server->stop([&] { stopped.set_value(); }); });  // flushed, closed
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
      server::ServeOptions so;
      so.server.slot_count = o.slots;
      // Accept any offer: the client's --transport-security decides.
      so.server.transport_security = 0;
      if (o.max_datagram != 0) so.rudp.max_datagram = o.max_datagram;
      auto running = server::serve(impl->io, std::move(so), std::move(keys), std::move(exports));
      if (!running) {
        error = running.error().message;
        return;
      }
      impl->server = std::move(*running);
      impl->udp_port = impl->server->udp_port();
      impl->tcp_port = impl->server->tcp_port();
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
  impl_->run_on_io([&] { n = impl_->server->server().stats().executed; });
  return n;
}

}  // namespace ipsan::bench
