// conformance/rudp/loadgen.cc: a small load generator on SanClient for the reliable-udp figures
// (bench/RESULTS.md): keeps --qd requests of --bs bytes in flight (random reads or sequential
// writes) for --runtime against a server, usually through `ipsan netem`, and prints goodput,
// latency percentiles and the rudp counters that explain them (retransmissions, srtt, losses,
// spurious losses, probe timeouts, congestion and random-loss events, cwnd).
// Not a test; `ipsan bench` is the general tool.
//
//   rudp_loadgen --server 127.0.0.1:6000 --name bench --key-file bench.key
//                --pattern randread --bs 4096 --qd 32 --runtime 10 [--region 256M] [--label x]
//
// Threading: one thread runs the client's io_context.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ipsan/base/crypto.h"
#include "ipsan/base/key.h"
#include "ipsan/base/pattern.h"
#include "ipsan/base/rng.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/san_client.h"

namespace ipsan {
namespace {

using namespace std::chrono_literals;

struct Args {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string name = "bench";
  std::string key_file;
  std::string pattern = "randread";
  std::uint32_t bs = 4096;
  std::uint32_t qd = 32;
  double runtime = 10;
  double warmup = 1;
  std::uint64_t region = 256ull << 20;
  std::uint64_t seed = 1;
  std::string label = "-";
};

std::uint64_t parse_size(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  switch (end && *end ? *end : ' ') {
    case 'K':
    case 'k': v *= 1024; break;
    case 'M':
    case 'm': v *= 1024 * 1024; break;
    case 'G':
    case 'g': v *= 1024.0 * 1024 * 1024; break;
    default: break;
  }
  return static_cast<std::uint64_t>(v);
}

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--server") {
      const auto colon = v.rfind(':');
      if (colon == std::string::npos) return false;
      a.host = v.substr(0, colon);
      a.port = static_cast<std::uint16_t>(std::atoi(v.c_str() + colon + 1));
    } else if (k == "--name")
      a.name = v;
    else if (k == "--key-file")
      a.key_file = v;
    else if (k == "--pattern")
      a.pattern = v;
    else if (k == "--bs")
      a.bs = static_cast<std::uint32_t>(parse_size(v));
    else if (k == "--qd")
      a.qd = static_cast<std::uint32_t>(std::atoi(v.c_str()));
    else if (k == "--runtime")
      a.runtime = std::atof(v.c_str());
    else if (k == "--warmup")
      a.warmup = std::atof(v.c_str());
    else if (k == "--region")
      a.region = parse_size(v);
    else if (k == "--seed")
      a.seed = std::strtoull(v.c_str(), nullptr, 0);
    else if (k == "--label")
      a.label = v;
    else
      return false;
  }
  return a.port != 0 && !a.key_file.empty() && a.bs > 0 && a.qd > 0 &&
         (a.pattern == "randread" || a.pattern == "write");
}

double pct(std::vector<std::uint64_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * v.size()));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return static_cast<double>(v[i]) / 1000.0;
}

int run(const Args& a) {
  client::ClientOptions co;
  co.client_name = a.name;
  auto key = read_client_key_file(a.key_file, a.name);
  if (!key) {
    std::fprintf(stderr, "%s\n", key.error().message.c_str());
    return 2;
  }
  co.key = key->key;
  co.max_slots = std::max<std::uint32_t>(a.qd, 1);
  co.request_timeout = 30s;
  boost::asio::io_context io;
  client::TransportOptions to;
  to.host = a.host;
  to.port = a.port;
  auto factory = client::make_transport_factory(io, to);
  if (!factory) {
    std::fprintf(stderr, "%s\n", factory.error().message.c_str());
    return 2;
  }
  client::SanClient c(io, *factory, co);
  std::optional<proto::Reply> cap;
  proto::Request cr;
  cr.op = proto::Op::kCapacity;
  c.execute(cr, [&](proto::Reply r) { cap = std::move(r); });
  while (!cap) io.run_one_for(100ms);
  if (cap->status != Errc::kOk) {
    std::fprintf(stderr, "capacity: %s\n", std::string(to_string(cap->status)).c_str());
    return 1;
  }
  const std::uint32_t block = cap->capacity.block_size;
  const std::uint64_t region_blocks =
      std::min(a.region / block, cap->capacity.block_count) / (a.bs / block) * (a.bs / block);
  const std::uint32_t io_blocks = a.bs / block;
  const bool reads = a.pattern == "randread";
  Bytes data(a.bs);
  fill_pattern_blocks(data, block, a.seed, 0, 1);

  Rng rng(a.seed);
  std::uint64_t seq_lba = 0;
  const TimePoint start = steady_now();
  const TimePoint measure_from =
      start + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(a.warmup));
  const TimePoint stop =
      measure_from + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(a.runtime));
  std::vector<std::uint64_t> lat;
  lat.reserve(1 << 20);
  std::uint64_t bytes = 0, errors = 0, in_flight = 0;
  std::string first_error;
  proto::TransportStats t0{};
  bool t0_taken = false;
  std::function<void()> issue = [&] {
    proto::Request r;
    r.op = reads ? proto::Op::kRead : proto::Op::kWrite;
    r.blocks = io_blocks;
    if (reads) {
      r.lba = rng.below(region_blocks / io_blocks) * io_blocks;
    } else {
      r.lba = seq_lba;
      seq_lba = (seq_lba + io_blocks) % region_blocks;
      r.data = data;
    }
    ++in_flight;
    const TimePoint t = steady_now();
    c.execute(std::move(r), [&, t](proto::Reply rep) {
      --in_flight;
      const TimePoint now = steady_now();
      if (rep.status != Errc::kOk) {
        ++errors;
        if (first_error.empty()) first_error = std::string(to_string(rep.status));
      } else if (t >= measure_from && now <= stop) {
        bytes += a.bs;
        lat.push_back(static_cast<std::uint64_t>((now - t).count()));
      }
      if (now < stop) issue();
    });
  };
  for (std::uint32_t i = 0; i < a.qd; ++i) issue();
  while (in_flight > 0) {
    io.run_one_for(50ms);
    if (!t0_taken && steady_now() >= measure_from) {
      t0 = c.transport_stats();
      t0_taken = true;
    }
  }
  const auto ts = c.transport_stats();
  const double secs = a.runtime;
  const double mbps = static_cast<double>(bytes) / secs / 1e6;
  std::printf(
      "RESULT label=%s pattern=%s bs=%u qd=%u MB/s=%.1f IOPS=%.0f p50_us=%.0f p99_us=%.0f "
      "p99.9_us=%.0f max_us=%.0f ops=%zu errors=%llu retrans=%llu datagrams_sent=%llu "
      "srtt_us=%.0f lost=%llu spurious=%llu pto=%llu congestion=%llu random_loss=%llu "
      "cwnd=%llu%s%s\n",
      a.label.c_str(), a.pattern.c_str(), a.bs, a.qd, mbps, lat.size() / secs, pct(lat, 50),
      pct(lat, 99), pct(lat, 99.9), pct(lat, 100), lat.size(),
      static_cast<unsigned long long>(errors),
      static_cast<unsigned long long>(ts.retransmissions - t0.retransmissions),
      static_cast<unsigned long long>(ts.datagrams_sent - t0.datagrams_sent), ts.srtt_us,
      static_cast<unsigned long long>(ts.packets_lost - t0.packets_lost),
      static_cast<unsigned long long>(ts.spurious_losses - t0.spurious_losses),
      static_cast<unsigned long long>(ts.pto_fired - t0.pto_fired),
      static_cast<unsigned long long>(ts.congestion_events - t0.congestion_events),
      static_cast<unsigned long long>(ts.random_loss_events - t0.random_loss_events),
      static_cast<unsigned long long>(ts.cwnd_bytes),
      first_error.empty() ? "" : " first_error=", first_error.c_str());
  c.close();
  io.poll();
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ipsan

int main(int argc, char** argv) {
  ipsan::Args a;
  if (!ipsan::parse_args(argc, argv, a)) {
    std::fprintf(stderr,
                 "usage: rudp_loadgen --server HOST:PORT --key-file F [--name N] "
                 "[--pattern randread|write] [--bs 4K] [--qd 32] [--runtime 10] [--warmup 1] "
                 "[--region 256M] [--seed 1] [--label TEXT]\n");
    return 2;
  }
  return ipsan::run(a);
}
