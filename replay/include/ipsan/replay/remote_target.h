// ipsan/replay/remote_target.h: a GenericTarget for blocking callers (trace runner, pcap replay)
// over a SanClient logged in to a real server, optionally through an in-process netem UdpProxy.
//
// SanClient must only be touched on its io_context thread, while trace::run_traces() blocks its
// own thread and calls GenericTarget::execute from it. RemoteTarget owns an io_context run by a
// background thread; execute() posts each request onto that thread and the SanClient's completion
// (which runs there) is handed to the caller's callback as is.
//
// Threading: connect() and the destructor from one thread (not the io thread); execute() from any
// thread, including from inside a completion. Completions run on the io thread.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "ipsan/base/clock.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/client/san_client.h"
#include "ipsan/proto/transport.h"

namespace ipsan::netem {
class UdpProxy;
}

namespace ipsan::replay {

struct RemoteOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5260;
  proto::TransportKind kind = proto::TransportKind::kUdp;
  std::string client_name = "default";
  Key256 key{};
  Duration request_timeout = std::chrono::seconds(30);
  std::uint32_t max_slots = 64;
  // Non-empty: run the UDP traffic through an in-process netem proxy with this named profile
  // (netem/config.h profiles()); UDP only.
  std::string netem_profile;
  std::uint64_t netem_seed = 1;
  std::string netem_capture;  // the proxy's capture files (netem/pcap.h), empty = none
};

class RemoteTarget final : public client::GenericTarget {
 public:
  // Starts the io thread (and the proxy), connects and logs in; an Error names what failed.
  static Result<std::unique_ptr<RemoteTarget>, Error> connect(const RemoteOptions& options);
  ~RemoteTarget() override;
  RemoteTarget(const RemoteTarget&) = delete;
  RemoteTarget& operator=(const RemoteTarget&) = delete;

  void execute(proto::Request request, std::function<void(proto::Reply)> done) override;
  // Blocking convenience: the reply, or kTimeout after `timeout` (the request may still run).
  proto::Reply execute_and_wait(proto::Request request, Duration timeout);

  client::ClientStats stats();
  // "messages sent/received, retransmissions" of the client transport, for --verbose.
  std::string stats_line();

 private:
  RemoteTarget();
  template <class F>
  void run_on_io(F&& f);
  void stop();

  boost::asio::io_context io_;
  std::unique_ptr<std::thread> thread_;
  std::unique_ptr<client::SanClient> client_;
  std::unique_ptr<netem::UdpProxy> proxy_;
};

}  // namespace ipsan::replay
