// ipsan/client/runtime.h: the one client runtime every front end uses.
//
// A Runtime is "a SanClient logged in to one ipsan server, on its own io thread, optionally
// through an in-process netem UdpProxy": what `ipsan client`, `ipsan iscsi-portal`,
// `ipsan nbd-export`, `ipsan nas`, `ipsan replay` and the remote back end (remote/) need. It is a
// GenericTarget that may be called from any thread.
//
// Start-up says plainly what went wrong: a TCP server that is not there is reported at once
// ("connection refused"); over reliable UDP, nothing answering within connect_timeout is
// reported as "no server answered"; a refused login names the reason (auth-failed, ...).
// After start-up the SanClient's own recovery applies (reconnect, re-login after a server
// restart, fencing of timed-out requests; san_client.h).
//
// Threading: start(), stop(), the destructor and the blocking helpers (call, run_on_io, stats)
// from any thread except the io thread. execute() from any thread, including from inside a
// completion. Completions run on the io thread. client() and io() are for code that runs on the
// io thread (run_on_io, completions) or that only keeps the reference (metrics collectors).
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/client/san_client.h"
#include "ipsan/proto/generic.h"

namespace ipsan::netem {
class UdpProxy;
}

namespace ipsan::client {

struct RuntimeOptions {
  TransportOptions transport;  // udp | tcp, host, port, transport configs
  ClientOptions client;        // name, key, slots, timeouts, transport security, clock
  // start() gives up when no login completed within this.
  Duration connect_timeout = std::chrono::seconds(5);
  // Non-empty: reliable UDP goes through an in-process netem proxy with this impairment: a
  // profile name (e.g. lossy-1pct) or a spec (e.g. "loss=1%,delay=20ms"); udp only.
  std::string netem;
  std::uint64_t netem_seed = 1;
  std::string netem_capture;  // the proxy's capture files (netem/pcap.h); empty: none
};

// The options the shared connection flags give (resolve_connect_args: -s, -t, -n, --key-file /
// IPSAN_KEY, --timeout, --connect-timeout, --slots, --transport-security); netem left empty.
Result<RuntimeOptions, Error> runtime_options(const ConnectArgs& args, bool key_required = true);

class Runtime final : public GenericTarget {
 public:
  // Starts the io thread (and the proxy), connects and logs in. The Error's message names the
  // server and what failed; its code is kTimeout (nobody answered), kConnectionLost (refused),
  // kAuthFailed (wrong key), kNotSupported (transport security refused), or kInvalidArgument
  // (bad netem spec).
  static Result<std::unique_ptr<Runtime>, Error> start(RuntimeOptions options);
  ~Runtime() override;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Logs out (best effort), fails what is still queued with kShutdown, stops the proxy and the
  // io thread. Idempotent; execute() after it completes with kShutdown.
  void stop();

  // GenericTarget: hands the request to the io thread.
  void execute(proto::Request request, std::function<void(proto::Reply)> done) override;
  // Blocking: the reply. The SanClient answers every request (kTimeout after the request timeout
  // at worst, once the server confirmed it cannot run any more; kShutdown at stop()).
  proto::Reply call(proto::Request request);
  // Blocking: the reply, or kTimeout when none came within `wait` (the request may still run).
  proto::Reply call_for(proto::Request request, Duration wait);

  // Runs `f` on the io thread and waits for it.
  template <class F>
  void run_on_io(F&& f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  boost::asio::io_context& io() { return io_; }
  SanClient& client() { return *client_; }
  const RuntimeOptions& options() const { return options_; }
  // "udp 127.0.0.1:5260 as 'alice'" (the real server, also when a proxy is in between).
  std::string describe() const;

  ClientStats stats();
  proto::TransportStats transport_stats();
  // "requests=... completed=... retransmissions=..." (+ netem drops), for --verbose lines.
  std::string stats_line();

 private:
  explicit Runtime(RuntimeOptions options);

  RuntimeOptions options_;
  boost::asio::io_context io_;
  std::unique_ptr<std::thread> thread_;
  std::unique_ptr<SanClient> client_;
  std::unique_ptr<netem::UdpProxy> proxy_;
  bool stopped_ = false;  // io thread only
};

}  // namespace ipsan::client
