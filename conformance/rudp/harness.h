// conformance/rudp/harness.h: the pieces a reliable-udp conformance cell is made of: a real
// StorageServer (RamBackend, reliable UDP on 127.0.0.1 port 0) on its own io thread, a tapping
// ClientTransport that records WRITE calls and can inject late duplicates of them, and small
// helpers (event-driven waits with deadlines, a per-test temp dir for pcap captures).
//
// Threading: ServerThread (ipsan/testing/server_thread.h) owns its io thread; every other piece
// runs on the test's thread, which runs the client's io_context (the SanClient, its transport and
// the netem proxy).
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ipsan/backends/ram.h"
#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"
#include "ipsan/client/san_client.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/server/server.h"
#include "ipsan/testing/server_thread.h"
#include "ipsan/testing/tap_transport.h"
#include "ipsan/testing/temp_dir.h"

namespace ipsan::conformance {

inline Key256 conf_key() {
  Key256 k;
  parse_key("reliable-udp-conformance", k);
  return k;
}
inline constexpr const char* kClientName = "conf";

// A StorageServer exporting one RamBackend as device 0 over reliable UDP on `bind` (port 0 by
// default), running on its own thread; client kClientName with conf_key().
class ServerThread : public testing::ServerThread {
 public:
  ServerThread(std::uint64_t device_bytes, std::uint32_t block_size,
               boost::asio::ip::udp::endpoint bind = {boost::asio::ip::make_address("127.0.0.1"),
                                                      0})
      : testing::ServerThread(options(bind),
                              [device_bytes, block_size](std::vector<server::Export>& exports) {
                                backends::RamOptions ro;
                                ro.block_size = block_size;
                                auto disk = backends::RamBackend::create(device_bytes, ro);
                                if (!disk) return disk.error().message;
                                server::Export e;
                                e.device_id = 0;
                                e.name = "ram0";
                                e.backend = *disk;
                                exports.push_back(std::move(e));
                                return std::string();
                              }) {}
  std::uint16_t port() const { return udp_port(); }

 private:
  static testing::ServerThreadOptions options(const boost::asio::ip::udp::endpoint& bind) {
    testing::ServerThreadOptions o;
    o.clients = {{kClientName, conf_key()}};
    o.udp_bind = bind;
    o.tcp = false;
    return o;
  }
};

using ::ipsan::testing::TapState;
using ::ipsan::testing::TapTransport;

// The WRITE calls a client sent, by the generation found in the first block's pattern header
// (workload.h), so a test can later send an old WRITE again as a brand-new transport message
// (TapTransport::inject): only the session layer (slot sequence numbers) stands between such a
// late duplicate and the disk.
using WriteLog = std::map<std::uint64_t, Bytes>;

// A TapState whose on_send records every WRITE call into `log` (shared: it outlives reconnects).
inline std::shared_ptr<TapState> recording_writes(std::shared_ptr<WriteLog> log) {
  auto st = std::make_shared<TapState>();
  st->on_send = [log](const Bytes& m) {
    // ONC-RPC call: proc at offset 20; AUTH_IPSAN arguments at 76: device(4) lba(8) blocks(4)
    // flags(4) data length(4), then the data, whose first 32 bytes are the pattern header.
    constexpr std::size_t kData = 76 + 24;
    if (m.size() >= kData + 32 && load_be32(m.data() + 4) == 0 && load_be32(m.data() + 20) == 21) {
      (*log)[load_be64(m.data() + kData + 24)] = m;
    }
  };
  return st;
}

// Runs `io` until `pred` holds or `limit` passes (event-driven: run_one_for wakes on every
// handler); returns pred().
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred pred, Duration limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(std::chrono::milliseconds(20));
    if (io.stopped()) io.restart();
  }
  return pred();
}

using ::ipsan::testing::TempDir;  // ipsan/testing/temp_dir.h

// Environment knobs of the suite (docs/CONFORMANCE.md): IPSAN_CONFORMANCE_SCALE multiplies the
// bytes per cell, IPSAN_CONFORMANCE_SEEDS sets the number of seeds, IPSAN_CONFORMANCE_SEED pins
// the first seed (to reproduce a failure).
inline double conformance_scale() {
  const char* s = std::getenv("IPSAN_CONFORMANCE_SCALE");
  const double v = s ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

}  // namespace ipsan::conformance
