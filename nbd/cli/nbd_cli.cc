// nbd_cli.cc: `ipsan nbd-export`: logs in to an ipsan server as a client (client::Runtime: a
// SanClient on its own io thread), asks each exported device for its identity, and serves the devices to NBD
// clients (nbd::Server) over TCP and/or a Unix socket, optionally with TLS. Like `ipsan
// iscsi-portal`, an in-process netem::UdpProxy can impair the client <-> server link (--netem).
#include "nbd_cli.h"

#include <boost/asio/io_context.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "client_metrics.h"
#include "connect_flags.h"
#include "ipsan/base/units.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/runtime.h"
#include "ipsan/metrics/encode.h"
#include "ipsan/metrics/http.h"
#include "ipsan/nbd/server.h"

namespace ipsan::nbd {
namespace {

namespace asio = boost::asio;

struct Args : client::ConnectArgs {
  std::string listen = "127.0.0.1:10809";
  bool listen_given = false;
  std::string unix_path;
  std::string port_file;
  std::vector<std::string> exports;
  bool read_only = false;
  std::string tls = "off";
  std::string tls_certificates;
  std::string tls_psk;
  bool tls_verify_peer = false;
  std::string max_request = "32M";
  std::size_t max_connections = 128;
  bool no_multi_conn = false;
  std::string netem;
  std::uint64_t netem_seed = 1;
  std::string metrics;  // --metrics HOST:PORT (docs/METRICS.md)
};

constexpr int kExitRuntime = 1;  // could not log in, identify or listen
constexpr int kExitUsage = 2;    // bad arguments

[[noreturn]] void die(const std::string& msg, int code = kExitUsage) {
  std::fprintf(stderr, "ipsan nbd-export: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

// "NAME=DEVICE[,ro]"
ExportConfig parse_export(const std::string& text) {
  ExportConfig e;
  const auto eq = text.rfind('=');
  if (eq == std::string::npos) die("--export wants NAME=DEVICE[,ro], got '" + text + "'");
  e.name = text.substr(0, eq);
  std::string dev = text.substr(eq + 1);
  if (const auto comma = dev.find(','); comma != std::string::npos) {
    if (dev.substr(comma + 1) != "ro") die("--export: unknown option in '" + text + "'");
    e.read_only = true;
    dev.resize(comma);
  }
  if (dev.empty() || dev.size() > 10 || dev.find_first_not_of("0123456789") != std::string::npos)
    die("--export: bad device id in '" + text + "'");
  const std::uint64_t id = std::stoull(dev);
  if (id > 0xFFFFFFFFu) die("--export: device id out of range in '" + text + "'");
  e.device_id = static_cast<std::uint32_t>(id);
  if (e.name.size() > 4096 || e.name.find('\0') != std::string::npos)
    die("--export: bad export name");
  return e;
}

void run(const Args& a) {
  auto options = client::runtime_options(a);
  if (!options) die(options.error().message);
  options->netem = a.netem;
  options->netem_seed = a.netem_seed;

  ServerOptions so;
  if (a.tls == "off") so.tls.mode = TlsMode::kOff;
  else if (a.tls == "on") so.tls.mode = TlsMode::kOn;
  else if (a.tls == "require") so.tls.mode = TlsMode::kRequire;
  else die("--tls must be off, on or require");
  so.tls.certificates_dir = a.tls_certificates;
  so.tls.psk_file = a.tls_psk;
  so.tls.verify_peer = a.tls_verify_peer;
  if (so.tls.mode == TlsMode::kOff && (!a.tls_certificates.empty() || !a.tls_psk.empty()))
    die("--tls-certificates / --tls-psk need --tls on or --tls require");
  if (auto r = check_tls_config(so.tls); !r) die(r.error().message);
  so.unix_path = a.unix_path;
  // --unix alone: no TCP listener (as nbdkit -U); --listen as well: both.
  so.tcp = a.listen != "none" && (a.unix_path.empty() || a.listen_given);
  if (so.tcp) {
    auto lp = parse_host_port(a.listen, "127.0.0.1", 10809);
    if (!lp) die("--listen: " + lp.error().message);
    so.tcp_address = lp->host;
    so.tcp_port = lp->port;
  }
  auto mr = parse_size(a.max_request);
  if (!mr || *mr < 4096 || *mr > (256u << 20)) die("--max-request must be 4K..256M");
  so.max_request_bytes = static_cast<std::uint32_t>(*mr);
  if (a.max_connections == 0) die("--max-connections must be at least 1");
  so.max_connections = a.max_connections;
  so.multi_conn = !a.no_multi_conn;
  std::vector<ExportConfig> exports;
  for (const auto& t : a.exports) exports.push_back(parse_export(t));
  if (exports.empty()) exports.push_back(parse_export("disk=0"));
  for (auto& e : exports) e.read_only = e.read_only || a.read_only;

  // SIGINT/SIGTERM: blocked before any thread starts (threads inherit the mask), awaited with
  // sigwait once serving; one that arrives during the login is handled right after it.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  // The SAN/IP driver (client::Runtime): logged in on its own io thread.
  auto started = client::Runtime::start(std::move(*options));
  if (!started) {
    die(started.error().message,
        started.error().code == Errc::kInvalidArgument ? kExitUsage : kExitRuntime);
  }
  std::unique_ptr<client::Runtime> rt = std::move(*started);
  auto finish_client = [&] { rt->stop(); };

  for (auto& e : exports) {
    proto::Request q;
    q.op = proto::Op::kIdentify;
    q.device_id = e.device_id;
    const proto::Reply r = rt->call(std::move(q));  // answered (kTimeout at worst)
    if (r.status != Errc::kOk) {
      finish_client();
      die("export '" + e.name + "': device " + std::to_string(e.device_id) + ": " +
              std::string(to_string(r.status)),
          kExitRuntime);
    }
    e.identity = r.identity;
  }

  Server server(*rt, exports, so);
  if (auto r = server.start(); !r) {
    finish_client();
    die(r.error().message, kExitRuntime);
  }
  // Live metrics (docs/METRICS.md): the NBD server's counters (atomics, any thread) and the
  // client driver's (copied from its thread), served on a thread of their own.
  metrics::Registry registry;
  registry.add_collector([&server](metrics::Collect& c) {
    const ServerStats s = server.stats();
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
      c.counter(name, help, {}, static_cast<double>(v));
    };
    counter("ipsan_nbd_connections_total", "NBD connections accepted", s.connections);
    counter("ipsan_nbd_handshakes_total", "Connections that entered transmission", s.handshakes);
    counter("ipsan_nbd_handshake_failures_total", "Connections closed during the handshake",
            s.handshake_failures);
    counter("ipsan_nbd_tls_handshakes_total", "TLS handshakes completed", s.tls_handshakes);
    counter("ipsan_nbd_requests_total", "NBD requests", s.requests);
    counter("ipsan_nbd_request_errors_total", "Replies with a nonzero NBD error", s.request_errors);
    counter("ipsan_nbd_read_bytes_total", "Bytes read by NBD clients", s.bytes_read);
    counter("ipsan_nbd_written_bytes_total", "Bytes written by NBD clients", s.bytes_written);
    counter("ipsan_nbd_protocol_errors_total", "Connections closed for a bad request magic",
            s.protocol_errors);
  });
  asio::io_context metrics_io;
  std::unique_ptr<metrics::ClientMetrics> client_metrics;
  std::unique_ptr<metrics::HttpExposer> exposer;
  std::thread metrics_thread;
  if (!a.metrics.empty()) {
    auto hp = parse_host_port(a.metrics, "127.0.0.1", 0);
    auto e = hp ? metrics::HttpExposer::start(
                      metrics_io, hp->host, hp->port,
                      [&registry] { return metrics::encode_text(registry.snapshot()); })
                : Result<std::unique_ptr<metrics::HttpExposer>, Error>(
                      make_unexpected(hp.error()));
    if (!e) {
      server.stop();
      finish_client();
      die("--metrics: " + e.error().message, hp ? kExitRuntime : kExitUsage);
    }
    exposer = std::move(*e);
    client_metrics = std::make_unique<metrics::ClientMetrics>(registry, rt->io(), rt->client());
    metrics_thread = std::thread([&metrics_io] { metrics_io.run(); });
  }
  std::printf("ipsan nbd-export: listening on");
  if (so.tcp) std::printf(" %s:%u", so.tcp_address.c_str(), server.port());
  if (!so.unix_path.empty()) std::printf(" unix:%s", so.unix_path.c_str());
  for (const auto& e : exports) {
    std::printf(" '%s'=%u(%s%s)", e.name.c_str(), e.device_id,
                format_bytes(std::uint64_t{e.identity.block_size} * e.identity.block_count).c_str(),
                e.read_only ? ",ro" : "");
  }
  std::printf("\n");
  if (exposer)
    std::printf("ipsan nbd-export: metrics on http://%s:%u/metrics\n",
                parse_host_port(a.metrics, "127.0.0.1", 0)->host.c_str(), exposer->port());
  std::fflush(stdout);
  if (!a.port_file.empty()) {
    std::ofstream pf(a.port_file + ".tmp");
    pf << server.port() << "\n";
    pf.close();
    std::rename((a.port_file + ".tmp").c_str(), a.port_file.c_str());
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  if (metrics_thread.joinable()) {
    metrics_io.stop();
    metrics_thread.join();
  }
  exposer.reset();
  client_metrics.reset();
  server.stop();
  finish_client();
  pthread_sigmask(SIG_UNBLOCK, &sigs, nullptr);
}

}  // namespace

void add_cli(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "nbd-export",
      "Serve ipsan devices to NBD clients (NBD server -> SAN/IP driver -> ipsan server)");
  client::add_connect_flags(cmd, *a);
  auto* listen = cmd->add_option("-l,--listen", a->listen,
                                 "NBD address HOST:PORT (port 0: any; 'none': no TCP; not "
                                 "listened on with --unix unless given)")
                     ->capture_default_str();
  cmd->add_option("-U,--unix", a->unix_path, "Also listen on this Unix socket");
  cmd->add_option("--port-file", a->port_file, "Write the TCP port to this file");
  cmd->add_option("-e,--export", a->exports,
                  "NAME=DEVICE[,ro]: export NAME is server device DEVICE (repeatable; default "
                  "disk=0; the empty name selects the first export)");
  cmd->add_flag("-r,--read-only", a->read_only, "Every export read-only");
  cmd->add_option("--tls", a->tls, "off, on (STARTTLS allowed) or require")->capture_default_str();
  cmd->add_option("--tls-certificates", a->tls_certificates,
                  "Directory with server-cert.pem, server-key.pem (and ca-cert.pem)");
  cmd->add_option("--tls-psk", a->tls_psk, "Pre-shared keys file, 'username:hexkey' lines (psktool)");
  cmd->add_flag("--tls-verify-peer", a->tls_verify_peer,
                "Require client certificates signed by ca-cert.pem");
  cmd->add_option("--max-request", a->max_request,
                  "Largest READ/WRITE (NBD_INFO_BLOCK_SIZE maximum; larger: EOVERFLOW)")
      ->capture_default_str();
  cmd->add_option("--max-connections", a->max_connections, "Connections served at once")
      ->capture_default_str();
  cmd->add_flag("--no-multi-conn", a->no_multi_conn, "Do not advertise NBD_FLAG_CAN_MULTI_CONN");
  cmd->add_option("--netem", a->netem,
                  "Impair the client<->server link in process (a netem profile, e.g. lossy-1pct, "
                  "or a spec, e.g. 'loss=1%'; udp only)");
  cmd->add_option("--netem-seed", a->netem_seed, "Seed of the impairment")->capture_default_str();
  cmd->add_option("--metrics", a->metrics,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (docs/METRICS.md)");
  cmd->callback([a, listen] {
    a->listen_given = listen->count() > 0;
    run(*a);
  });
}

}  // namespace ipsan::nbd
