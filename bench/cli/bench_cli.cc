// `ipsan bench`: runs the load generator and prints IOPS, MB/s, latency percentiles and CPU per
// I/O, as text or one JSON object (--json).
#include "bench_cli.h"

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench_args.h"
#include "ipsan/base/progress.h"
#include "ipsan/base/units.h"
#include "ipsan/bench/embedded_server.h"
#include "ipsan/bench/loadgen.h"

namespace ipsan::bench {
namespace {

[[noreturn]] void die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "ipsan bench: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

constexpr double kPercentiles[] = {50, 90, 99, 99.9};

nlohmann::json histogram_json(const Histogram& h) {
  nlohmann::json j;
  j["count"] = h.count();
  j["min_us"] = static_cast<double>(h.min()) / 1e3;
  j["mean_us"] = h.mean() / 1e3;
  j["max_us"] = static_cast<double>(h.max()) / 1e3;
  j["p50_us"] = static_cast<double>(h.percentile(50)) / 1e3;
  j["p90_us"] = static_cast<double>(h.percentile(90)) / 1e3;
  j["p99_us"] = static_cast<double>(h.percentile(99)) / 1e3;
  j["p99.9_us"] = static_cast<double>(h.percentile(99.9)) / 1e3;
  return j;
}

double per_io_us(double cpu_s, std::uint64_t ops) {
  return ops ? cpu_s * 1e6 / static_cast<double>(ops) : 0;
}

void print_text(const BenchArgs& a, const LoadOptions& o, const LoadResult& r) {
  std::printf("ipsan bench%s%s: %s bs=%s qd=%u sessions=%u over %s %s:%u, %.2f s\n",
              a.label.empty() ? "" : " ", a.label.c_str(), pattern_name(o.pattern),
              format_bytes(o.block_bytes).c_str(), o.queue_depth, o.sessions,
              o.transport.kind == proto::TransportKind::kUdp ? "udp" : "tcp",
              o.transport.host.c_str(), o.transport.port, r.seconds);
  std::printf("  ops=%llu (read %llu, write %llu) errors=%llu retransmissions=%llu\n",
              static_cast<unsigned long long>(r.ops()), static_cast<unsigned long long>(r.reads),
              static_cast<unsigned long long>(r.writes), static_cast<unsigned long long>(r.errors),
              static_cast<unsigned long long>(r.retransmissions));
  std::printf("  IOPS %.0f  MB/s %.1f\n", r.iops(), r.mb_per_s());
  const auto& h = r.latency;
  std::printf("  latency us: min %.1f", static_cast<double>(h.min()) / 1e3);
  for (double p : kPercentiles)
    std::printf(" p%g %.1f", p, static_cast<double>(h.percentile(p)) / 1e3);
  std::printf(" max %.1f mean %.1f\n", static_cast<double>(h.max()) / 1e3, h.mean() / 1e3);
  std::printf("  cpu per I/O: client %.2f us", per_io_us(r.client_cpu_s, r.ops()));
  if (r.server_cpu_s >= 0) std::printf(", server %.2f us", per_io_us(r.server_cpu_s, r.ops()));
  std::printf("\n");
  if (r.errors) std::printf("  first error: %s\n", r.first_error.c_str());
}

void print_json(const BenchArgs& a, const LoadOptions& o, const LoadResult& r) {
  nlohmann::json j;
  j["tool"] = "ipsan";
  if (!a.label.empty()) j["label"] = a.label;
  j["rw"] = pattern_name(o.pattern);
  j["bs"] = o.block_bytes;
  j["qd"] = o.queue_depth;
  j["sessions"] = o.sessions;
  j["transport"] = o.transport.kind == proto::TransportKind::kUdp ? "udp" : "tcp";
  j["server"] = o.transport.host + ":" + std::to_string(o.transport.port);
  j["seconds"] = r.seconds;
  j["ops"] = r.ops();
  j["reads"] = r.reads;
  j["writes"] = r.writes;
  j["bytes_read"] = r.bytes_read;
  j["bytes_written"] = r.bytes_written;
  j["errors"] = r.errors;
  if (r.errors) j["first_error"] = r.first_error;
  j["retransmissions"] = r.retransmissions;
  j["iops"] = r.iops();
  j["mb_per_s"] = r.mb_per_s();
  j["latency"] = histogram_json(r.latency);
  if (r.read_latency.count()) j["read_latency"] = histogram_json(r.read_latency);
  if (r.write_latency.count()) j["write_latency"] = histogram_json(r.write_latency);
  j["client_cpu_s"] = r.client_cpu_s;
  j["client_cpu_us_per_io"] = per_io_us(r.client_cpu_s, r.ops());
  if (r.server_cpu_s >= 0) {
    j["server_cpu_s"] = r.server_cpu_s;
    j["server_cpu_us_per_io"] = per_io_us(r.server_cpu_s, r.ops());
  }
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void add_cli(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand(
      "bench", "Load generator: IOPS, MB/s, latency percentiles and CPU per I/O against a server");
  add_bench_options(*cmd, *a);
  cmd->callback([a] {
    auto opts = make_load_options(*a, a->server_embedded);
    if (!opts) die(opts.error().message);
    std::unique_ptr<EmbeddedServer> embedded;
    if (a->server_embedded) {
      auto size = parse_size(a->embedded_size);
      if (!size || *size == 0) die("--embedded-size must be a size such as 1G");
      EmbeddedOptions eo;
      eo.size_bytes = *size;
      eo.slots = std::max<std::uint32_t>(64, opts->queue_depth);
      eo.max_datagram = a->datagram;
      auto s = EmbeddedServer::start(eo);
      if (!s) die(s.error().message);
      embedded = std::move(*s);
      opts->transport.host = "127.0.0.1";
      opts->transport.port = opts->transport.kind == proto::TransportKind::kUdp
                                 ? embedded->udp_port()
                                 : embedded->tcp_port();
      opts->client_name = embedded->client_name();
      opts->key = embedded->key();
      opts->server_pid.reset();
    }
    // The shared progress line (ipsan/base/progress.h): --progress or a terminal; the load
    // generator's timer decides when (every second).
    ProgressLine line = ProgressLine::for_stderr(a->progress);
    std::function<void(const Progress&)> progress;
    if (line.enabled()) {
      opts->progress_interval = std::chrono::seconds(1);
      progress = [&line](const Progress& p) {
        char text[128];
        std::snprintf(text, sizeof text, "%6.1f s  %10.0f IOPS  %9.1f MB/s  %llu ops", p.seconds,
                      p.iops_now, p.mb_per_s_now, static_cast<unsigned long long>(p.ops));
        line.update(steady_now(), text, true);
      };
    }
    const double server_cpu0 = embedded ? embedded->cpu_seconds() : 0;
    auto r = run_load(*opts, progress);
    line.finish();
    if (!r) die(r.error().message);
    if (embedded) r->server_cpu_s = embedded->cpu_seconds() - server_cpu0;
    if (a->json)
      print_json(*a, *opts, *r);
    else
      print_text(*a, *opts, *r);
    std::fflush(stdout);
    if (r->errors) {
      std::fprintf(stderr, "ipsan bench: %llu requests failed (first: %s)\n",
                   static_cast<unsigned long long>(r->errors), r->first_error.c_str());
      throw CLI::RuntimeError(2);
    }
  });
}

}  // namespace ipsan::bench
