// Runtime (ipsan/client/runtime.h): SanClient + login + optional netem proxy on an io thread.
#include <utility>  // before Asio

#include "ipsan/client/runtime.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>

#include "ipsan/base/log.h"
#include "ipsan/netem/config.h"
#include "ipsan/netem/udp_proxy.h"

namespace ipsan::client {
namespace {

namespace asio = boost::asio;
using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;

// "2s", "1500ms": as a user types it on the command line.
std::string short_duration(Duration d) {
  using namespace std::chrono;
  if (d % seconds(1) == Duration::zero()) return std::to_string(duration_cast<seconds>(d).count()) + "s";
  return std::to_string(duration_cast<milliseconds>(d).count()) + "ms";
}

const char* kind_name(proto::TransportKind k) {
  return k == proto::TransportKind::kTcp ? "tcp" : "udp";
}

Result<netem::ImpairmentConfig, Error> impairment(const std::string& text) {
  // A profile name, or an impairment spec such as "loss=1%" (netem::parse_spec).
  auto cfg = netem::profile_by_name(text);
  if (!cfg && text.find('=') != std::string::npos) cfg = netem::parse_spec(text);
  if (!cfg) return fail(Errc::kInvalidArgument, "--netem: " + cfg.error().message);
  return *cfg;
}

}  // namespace

Result<RuntimeOptions, Error> runtime_options(const ConnectArgs& args, bool key_required) {
  auto s = resolve_connect_args(args, key_required);
  if (!s) return fail(Errc::kInvalidArgument, s.error().message);
  RuntimeOptions o;
  o.transport = s->transport;
  o.client = s->client;
  o.connect_timeout = s->connect_timeout;
  return o;
}

Runtime::Runtime(RuntimeOptions options) : options_(std::move(options)) {}

std::string Runtime::describe() const {
  return str_cat(kind_name(options_.transport.kind), " ", options_.transport.host, ":",
                 options_.transport.port, " as '", options_.client.client_name, "'");
}

Result<std::unique_ptr<Runtime>, Error> Runtime::start(RuntimeOptions options) {
  std::unique_ptr<Runtime> rt(new Runtime(std::move(options)));
  const RuntimeOptions& o = rt->options_;
  const std::string where = str_cat(o.transport.host, ":", o.transport.port, " over ",
                                    kind_name(o.transport.kind));
  if (!o.netem.empty() && o.transport.kind != proto::TransportKind::kUdp) {
    return fail(Errc::kInvalidArgument, "--netem needs --transport udp");
  }
  auto guard = std::make_shared<WorkGuard>(asio::make_work_guard(rt->io_));
  rt->thread_ = std::make_unique<std::thread>([io = &rt->io_, guard]() mutable {
    io->run();
    (void)guard;
  });
  // From here on the destructor stops the thread; the guard lives until the io_context stops.
  Result<void, Error> setup;
  // Shared: after a timeout here the client may still call back before stop().
  auto connected = std::make_shared<std::promise<Errc>>();
  auto connected_future = connected->get_future();
  rt->run_on_io([&] {
    TransportOptions to = o.transport;
    if (!o.netem.empty()) {
      auto impair = impairment(o.netem);
      if (!impair) {
        setup = make_unexpected(impair.error());
        return;
      }
      auto server = netem::parse_endpoint(str_cat(o.transport.host, ":", o.transport.port));
      if (!server) {
        setup = fail(Errc::kInvalidArgument, "--netem: " + server.error().message);
        return;
      }
      netem::UdpProxyOptions po;
      po.listen = asio::ip::udp::endpoint(server->address().is_v6()
                                              ? asio::ip::address(asio::ip::address_v6::loopback())
                                              : asio::ip::address(asio::ip::address_v4::loopback()),
                                          0);
      po.forward = *server;
      po.up = *impair;
      po.down = *impair;
      po.seed = o.netem_seed;
      po.capture_path = o.netem_capture;
      auto proxy = netem::UdpProxy::create(rt->io_, po);
      if (!proxy) {
        setup = fail(Errc::kIoError, "--netem: " + proxy.error().message);
        return;
      }
      rt->proxy_ = std::move(*proxy);
      to.host = rt->proxy_->local_endpoint().address().to_string();
      to.port = rt->proxy_->local_endpoint().port();
    }
    auto factory = make_transport_factory(rt->io_, to);
    if (!factory) {
      setup = fail(Errc::kInvalidArgument, factory.error().message);
      return;
    }
    rt->client_ = std::make_unique<SanClient>(rt->io_, std::move(*factory), o.client);
    rt->client_->connect([connected, once = std::make_shared<bool>(false)](Errc e) {
      if (*once) return;
      *once = true;
      connected->set_value(e);
    });
  });
  if (!setup) return make_unexpected(setup.error());
  if (connected_future.wait_for(o.connect_timeout) != std::future_status::ready) {
    return fail(Errc::kTimeout, str_cat("no server answered at ", where, " within ",
                                        short_duration(o.connect_timeout),
                                        " (is `ipsan server` running there? --connect-timeout)"));
  }
  const Errc e = connected_future.get();
  if (e == Errc::kOk) return rt;
  std::string detail;
  rt->run_on_io([&] { detail = rt->client_->last_failure(); });
  if (e == Errc::kConnectionLost && !detail.empty()) {
    return fail(e, str_cat("cannot connect to ", where, ": ", detail,
                           " (is `ipsan server` running there?)"));
  }
  std::string hint;
  if (e == Errc::kAuthFailed) hint = " (wrong key for this client name, or an unknown name?)";
  if (e == Errc::kNotSupported) hint = " (the server requires a stronger --transport-security)";
  return fail(e, str_cat("cannot log in to ", where, " as '", o.client.client_name, "': ",
                         to_string(e), hint));
}

Runtime::~Runtime() { stop(); }

void Runtime::stop() {
  if (!thread_) return;
  run_on_io([&] {
    stopped_ = true;
    if (client_) client_->close();
  });
  // A second turn: the LOGOUT and the completions queued by close() run first.
  run_on_io([&] {
    client_.reset();
    if (proxy_) proxy_->stop();
    proxy_.reset();
  });
  io_.stop();
  thread_->join();
  thread_.reset();
}

void Runtime::execute(proto::Request request, std::function<void(proto::Reply)> done) {
  if (!thread_) {
    proto::Reply reply;
    reply.status = Errc::kShutdown;
    done(std::move(reply));
    return;
  }
  asio::post(io_, [this, r = std::move(request), d = std::move(done)]() mutable {
    if (stopped_ || !client_) {
      proto::Reply reply;
      reply.status = Errc::kShutdown;
      d(std::move(reply));
      return;
    }
    client_->execute(std::move(r), std::move(d));
  });
}

proto::Reply Runtime::call(proto::Request request) {
  auto p = std::make_shared<std::promise<proto::Reply>>();
  auto f = p->get_future();
  execute(std::move(request), [p](proto::Reply r) { p->set_value(std::move(r)); });
  return f.get();
}

proto::Reply Runtime::call_for(proto::Request request, Duration wait) {
  auto p = std::make_shared<std::promise<proto::Reply>>();
  auto f = p->get_future();
  execute(std::move(request), [p](proto::Reply r) { p->set_value(std::move(r)); });
  if (f.wait_for(wait) != std::future_status::ready) {
    proto::Reply r;
    r.status = Errc::kTimeout;
    return r;
  }
  return f.get();
}

ClientStats Runtime::stats() {
  ClientStats s;
  if (!thread_) return s;
  run_on_io([&] {
    if (client_) s = client_->stats();
  });
  return s;
}

proto::TransportStats Runtime::transport_stats() {
  proto::TransportStats t;
  if (!thread_) return t;
  run_on_io([&] {
    if (client_) t = client_->transport_stats();
  });
  return t;
}

std::string Runtime::stats_line() {
  std::string out;
  if (!thread_) return out;
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

}  // namespace ipsan::client
