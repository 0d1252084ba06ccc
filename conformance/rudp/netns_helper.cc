// conformance/rudp/netns_helper.cc: one reliable-udp conformance cell under real kernel packet
// loss. Meant to run as `unshare -n rudp_netns_helper --loss N --seed S` (a private network
// namespace, so the nftables rule never touches the host): brings `lo` up, starts a StorageServer
// on 127.0.0.1 (port 0), installs `udp dport|sport PORT numgen random mod 100 < N counter drop`,
// runs the seeded workload (workload.h) from a SanClient straight to the server, reads the whole
// device back and prints the counters. Exit 0 and "RESULT ok" when every check passed, 1 on a
// failure, 77 when the namespace or nftables cannot be set up (the test then skips).
//
// Threading: main thread runs the client's io_context; the server has its own thread.
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "harness.h"
#include "workload.h"

namespace ipsan::conformance {
namespace {

using namespace std::chrono_literals;

bool bring_lo_up() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  if (ok && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ::ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  }
  ::close(fd);
  return ok;
}

std::string run(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    *rc = -1;
    return out;
  }
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  *rc = ::pclose(p);
  return out;
}

int main_impl(int argc, char** argv) {
  int loss = 1;
  std::uint64_t seed = 1;
  std::uint64_t write_bytes = 4ull << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--loss")
      loss = std::atoi(argv[i + 1]);
    else if (a == "--seed")
      seed = std::strtoull(argv[i + 1], nullptr, 0);
    else if (a == "--write-bytes")
      write_bytes = std::strtoull(argv[i + 1], nullptr, 0);
    else {
      std::fprintf(stderr, "usage: rudp_netns_helper --loss PCT --seed S --write-bytes N\n");
      return 2;
    }
  }
  if (!bring_lo_up()) {
    std::printf("cannot bring lo up (not in a private network namespace with CAP_NET_ADMIN?)\n");
    return 77;
  }
  WorkloadOptions wo;
  wo.seed = seed;
  wo.write_bytes = write_bytes;
  wo.device_blocks = std::max<std::uint64_t>(write_bytes / 2 / wo.block_size, 2048);
  const auto ops = make_workload(wo);
  std::printf("kernel loss %d%% (nftables, both directions) seed=0x%llx workload %s\n", loss,
              static_cast<unsigned long long>(seed), describe(ops, wo.block_size, 4).c_str());
  ServerThread server(wo.device_blocks * wo.block_size, wo.block_size);
  const unsigned port = server.port();
  const std::string rules =
      "table inet ipsan_conf {\n"
      "  chain input {\n"
      "    type filter hook input priority 0; policy accept;\n"
      "    udp dport " +
      std::to_string(port) + " numgen random mod 100 < " + std::to_string(loss) +
      " counter drop\n"
      "    udp sport " +
      std::to_string(port) + " numgen random mod 100 < " + std::to_string(loss) +
      " counter drop\n"
      "  }\n"
      "}\n";
  {
    FILE* nft = ::popen("nft -f - 2>&1", "w");
    if (!nft) return 77;
    std::fputs(rules.c_str(), nft);
    const int rc = ::pclose(nft);
    if (rc != 0) {
      std::printf("nft -f failed (rc %d)\n", rc);
      return 77;
    }
  }

  boost::asio::io_context io;
  client::ClientOptions co;
  co.client_name = kClientName;
  co.key = conf_key();
  co.request_timeout = 60s;
  const boost::asio::ip::udp::endpoint srv(boost::asio::ip::make_address("127.0.0.1"),
                                           server.port());
  client::SanClient c(
      io, [&]() { return proto::rudp::make_udp_client(io, srv, proto::rudp::Config{}); }, co);
  Model model(wo.seed, wo.block_size, wo.device_blocks);
  RunOptions ro;
  ro.queue_depth = 16;
  std::optional<RunReport> rep;
  auto runner = Runner::start(c, ops, model, ro, [&](RunReport r) { rep = std::move(r); });
  if (!run_until(
          io, [&] { return rep.has_value(); }, 150s)) {
    std::printf("RESULT FAIL: workload stuck (%zu/%zu issued)\n", runner->issued(), ops.size());
    return 1;
  }
  std::optional<RunReport> ver;
  verify_all(c, model, 0, 256, 8, [&](RunReport r) { ver = std::move(r); });
  if (!run_until(
          io, [&] { return ver.has_value(); }, 60s)) {
    std::printf("RESULT FAIL: verify stuck\n");
    return 1;
  }
  const auto ts = c.transport_stats();
  const auto ss = server.stats();
  int rc = 0;
  const std::string counters = run("nft list table inet ipsan_conf 2>&1 | grep counter", &rc);
  std::printf(
      "%zu ops in %.2f s; client retransmissions=%llu srtt=%.0fus datagrams_sent=%llu; "
      "server bytes_written=%llu misordered=%llu auth_failures=%llu\nnft drops:\n%s",
      rep->ops_done, to_seconds(rep->elapsed), static_cast<unsigned long long>(ts.retransmissions),
      ts.srtt_us, static_cast<unsigned long long>(ts.datagrams_sent),
      static_cast<unsigned long long>(ss.bytes_written),
      static_cast<unsigned long long>(ss.misordered),
      static_cast<unsigned long long>(ss.auth_failures), counters.c_str());
  c.close();
  io.poll();
  bool ok = true;
  for (const auto& f : rep->failures) std::printf("FAIL %s\n", f.c_str()), ok = false;
  for (const auto& f : ver->failures) std::printf("FAIL %s\n", f.c_str()), ok = false;
  if (!rep->ok() || !ver->ok()) ok = false;
  if (ss.bytes_written != rep->bytes_written) {
    std::printf("FAIL server wrote %llu bytes, client saw %llu acknowledged\n",
                static_cast<unsigned long long>(ss.bytes_written),
                static_cast<unsigned long long>(rep->bytes_written));
    ok = false;
  }
  if (loss > 0 && ts.retransmissions == 0) {
    std::printf("FAIL no retransmissions: the drop rule did not bite\n");
    ok = false;
  }
  std::printf("RESULT %s\n", ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace ipsan::conformance

int main(int argc, char** argv) { return ipsan::conformance::main_impl(argc, argv); }
