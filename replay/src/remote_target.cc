// RemoteTarget (ipsan/replay/remote_target.h): SanClient on a background io thread.
#include <utility>  // before Asio

#include "ipsan/replay/remote_target.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>

#include "ipsan/base/log.h"
#include "ipsan/client/connect.h"
#include "ipsan/netem/config.h"
#include "ipsan/netem/udp_proxy.h"

namespace ipsan::replay {
namespace {

namespace asio = boost::asio;

using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;

}  // namespace

RemoteTarget::RemoteTarget() = default;

template <class F>
void RemoteTarget::run_on_io(F&& f) {
  std::promise<void> done;
  asio::post(io_, [&] {
    f();
    done.set_value();
  });
  done.get_future().wait();
}

Result<std::unique_ptr<RemoteTarget>, Error> RemoteTarget::connect(const RemoteOptions& options) {
  std::unique_ptr<RemoteTarget> t(new RemoteTarget());
  auto guard = std::make_shared<WorkGuard>(asio::make_work_guard(t->io_));
  t->thread_ = std::make_unique<std::thread>([io = &t->io_, guard]() mutable {
    io->run();
    (void)guard;
  });
  // From here on `t`'s destructor stops the thread; the guard lives until the io_context stops.
  Result<void, Error> setup;
  // Shared: on a timeout the client may still complete after this function returned.
  auto connected = std::make_shared<std::promise<Errc>>();
  auto connected_future = connected->get_future();
  t->run_on_io([&] {
    client::TransportOptions to;
    to.kind = options.kind;
    to.host = options.host;
    to.port = options.port;
    if (!options.netem_profile.empty()) {
      if (options.kind != proto::TransportKind::kUdp) {
        setup = fail("--netem needs the udp transport");
        return;
      }
      auto impair = netem::profile_by_name(options.netem_profile);
      if (!impair) {
        setup = make_unexpected(impair.error());
        return;
      }
      auto server = netem::parse_endpoint(options.host + ":" + std::to_string(options.port));
      if (!server) {
        setup = make_unexpected(server.error());
        return;
      }
      netem::UdpProxyOptions po;
      po.listen = asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0);
      if (server->address().is_v6())
        po.listen = asio::ip::udp::endpoint(asio::ip::address_v6::loopback(), 0);
      po.forward = *server;
      po.up = *impair;
      po.down = *impair;
      po.seed = options.netem_seed;
      po.capture_path = options.netem_capture;
      auto proxy = netem::UdpProxy::create(t->io_, po);
      if (!proxy) {
        setup = make_unexpected(proxy.error());
        return;
      }
      t->proxy_ = std::move(*proxy);
      to.host = t->proxy_->local_endpoint().address().to_string();
      to.port = t->proxy_->local_endpoint().port();
    }
    auto factory = client::make_transport_factory(t->io_, to);
    if (!factory) {
      setup = make_unexpected(factory.error());
      return;
    }
    client::ClientOptions co;
    co.client_name = options.client_name;
    co.key = options.key;
    co.request_timeout = options.request_timeout;
    co.max_slots = options.max_slots;
    t->client_ = std::make_unique<client::SanClient>(t->io_, std::move(*factory), co);
    t->client_->connect([connected, once = std::make_shared<bool>(false)](Errc e) {
      if (*once) return;
      *once = true;
      connected->set_value(e);
    });
  });
  if (!setup) return make_unexpected(setup.error());
  const auto limit = options.request_timeout + std::chrono::seconds(15);
  if (connected_future.wait_for(limit) != std::future_status::ready) {
    return fail(Errc::kTimeout, str_cat("no login answer from ", options.host, ":", options.port));
  }
  const Errc e = connected_future.get();
  if (e != Errc::kOk) {
    return fail(e, str_cat("cannot log in to ", options.host, ":", options.port, " as '",
                           options.client_name, "': ", to_string(e)));
  }
  return t;
}

RemoteTarget::~RemoteTarget() { stop(); }

void RemoteTarget::stop() {
  if (!thread_) return;
  run_on_io([&] {
    if (client_) client_->close();
  });
  run_on_io([&] {
    client_.reset();
    if (proxy_) proxy_->stop();
    proxy_.reset();
  });
  io_.stop();
  thread_->join();
  thread_.reset();
}

void RemoteTarget::execute(proto::Request request, std::function<void(proto::Reply)> done) {
  asio::post(io_, [this, r = std::move(request), d = std::move(done)]() mutable {
    if (!client_) {
      proto::Reply reply;
      reply.status = Errc::kShutdown;
      d(std::move(reply));
      return;
    }
    client_->execute(std::move(r), std::move(d));
  });
}

proto::Reply RemoteTarget::execute_and_wait(proto::Request request, Duration timeout) {
  auto p = std::make_shared<std::promise<proto::Reply>>();
  auto f = p->get_future();
  execute(std::move(request), [p](proto::Reply r) { p->set_value(std::move(r)); });
  if (f.wait_for(timeout) != std::future_status::ready) {
    proto::Reply r;
    r.status = Errc::kTimeout;
    return r;
  }
  return f.get();
}

client::ClientStats RemoteTarget::stats() {
  client::ClientStats s;
  run_on_io([&] {
    if (client_) s = client_->stats();
  });
  return s;
}

std::string RemoteTarget::stats_line() {
  std::string out;
  run_on_io([&] {
    if (!client_) return;
    const auto& s = client_->stats();
    const auto t = client_->transport_stats();
    out = str_cat("requests=", s.requests, " completed=", s.completed, " failed=", s.failed,
                  " resent=", s.resent, " logins=", s.logins, " datagrams_sent=", t.datagrams_sent,
                  " retransmissions=", t.retransmissions);
    if (proxy_) {
      const auto up = proxy_->up_counters();
      const auto down = proxy_->down_counters();
      out += str_cat(" netem_up_dropped=", up.dropped(), " netem_down_dropped=", down.dropped());
    }
  });
  return out;
}

}  // namespace ipsan::replay
