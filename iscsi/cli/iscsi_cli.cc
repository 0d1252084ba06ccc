// iscsi_cli.cc: `ipsan iscsi-portal`: logs in to an ipsan server as a client (client::Runtime:
// a SanClient on its own io thread), maps LUNs to server devices on a scsi::Bus, and serves them to iSCSI
// initiators (Portal on the main thread). Optionally the Runtime's in-process netem proxy impairs
// the client <-> server link (--netem PROFILE), for conformance runs over a lossy network.
#include "iscsi_cli.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "client_metrics.h"
#include "connect_flags.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/key.h"
#include "ipsan/base/units.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/runtime.h"
#include "ipsan/client/scsi/bus.h"
#include "ipsan/iscsi/portal.h"
#include "ipsan/metrics/encode.h"
#include "ipsan/metrics/http.h"

namespace ipsan::iscsi {
namespace {

namespace asio = boost::asio;

struct Args : client::ConnectArgs {
  std::string listen = "127.0.0.1:3260";
  std::string port_file;
  std::vector<std::string> luns;
  std::string target_name = "disk";
  std::string netem;
  std::uint64_t netem_seed = 1;
  std::string background_rate = "0";
  // Access control (docs/ISCSI.md, docs/SECURITY.md).
  std::string chap_file;
  std::vector<std::string> allow_initiators;
  std::string login_timeout = "15s";
  std::string idle_timeout = "120s";
  std::size_t max_connections = 256;
  std::string sanitize_min = "10s";
  std::string metrics;
};

constexpr int kExitRuntime = 1;  // could not log in, attach or listen
constexpr int kExitUsage = 2;    // bad arguments

[[noreturn]] void die(const std::string& msg, int code = kExitUsage) {
  std::fprintf(stderr, "ipsan iscsi-portal: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

// "[T:]L=DEVICE[,ro][,removable][,pbs=BYTES]" -> mapping on server "server".
client::scsi::LunMapping parse_lun(const std::string& full) {
  std::string text = full;
  std::vector<std::string> opts;
  if (auto comma = full.find(','); comma != std::string::npos) {
    text = full.substr(0, comma);
    for (std::size_t at = comma + 1; at <= full.size();) {
      const auto next = std::min(full.find(',', at), full.size());
      opts.push_back(full.substr(at, next - at));
      at = next + 1;
    }
  }
  const auto eq = text.find('=');
  if (eq == std::string::npos) die("--lun wants [T:]L=DEVICE[,OPTION...], got '" + full + "'");
  auto number = [&](std::string_view s, std::uint32_t max) {
    std::uint32_t v = 0;
    if (s.empty() || s.size() > 10) die("bad number in --lun '" + text + "'");
    for (char ch : s) {
      if (ch < '0' || ch > '9') die("bad number in --lun '" + text + "'");
      const std::uint64_t next = std::uint64_t{v} * 10 + static_cast<std::uint32_t>(ch - '0');
      if (next > max) die("number out of range in --lun '" + text + "'");
      v = static_cast<std::uint32_t>(next);
    }
    return v;
  };
  client::scsi::LunMapping m;
  m.server = "server";
  std::string_view lhs(text.data(), eq);
  if (auto colon = lhs.find(':'); colon != std::string_view::npos) {
    m.target = number(lhs.substr(0, colon), 255);
    lhs = lhs.substr(colon + 1);
  }
  m.lun = number(lhs, 16383);
  m.device_id = number(std::string_view(text).substr(eq + 1), 0xFFFFFFFFu);
  for (const auto& o : opts) {
    if (o == "ro") {
      m.read_only = true;
    } else if (o == "removable") {
      m.removable = true;
    } else if (o.rfind("pbs=", 0) == 0) {
      auto v = parse_size(o.substr(4));
      if (!v || *v < 512 || *v > (1u << 20) || (*v & (*v - 1)) != 0) {
        die("--lun '" + full + "': pbs wants a power of two from 512 to 1M");
      }
      m.physical_block_size = static_cast<std::uint32_t>(*v);
    } else {
      die("--lun '" + full + "': unknown option '" + o + "' (ro, removable, pbs=BYTES)");
    }
  }
  return m;
}

// The portal's access options: CHAP secrets from a private file, allow-lists, timeouts, cap.
void apply_access(const Args& a, std::vector<PortalTarget>& targets, PortalOptions& po) {
  if (!a.chap_file.empty()) {
    if (auto m = check_key_file_mode(a.chap_file); !m) die("--chap-file: " + m.error().message);
    std::ifstream f(a.chap_file, std::ios::binary);
    if (!f) die("--chap-file: cannot read " + a.chap_file);
    std::ostringstream text;
    text << f.rdbuf();
    auto s = parse_chap_secrets(text.str(), a.chap_file);
    if (!s) die("--chap-file: " + s.error().message);
    po.security = std::move(*s);
    std::fprintf(stderr, "ipsan iscsi-portal: CHAP required (%zu initiator secret(s)%s; MD5 and SHA-256)\n",
                 po.security.chap_initiators.size(),
                 po.security.chap_target_name.empty() ? "" : ", mutual CHAP available");
  }
  // [T=]IQN: target T (default: every target) admits only the listed initiators.
  for (const auto& text : a.allow_initiators) {
    std::optional<std::uint32_t> only;
    std::string iqn = text;
    if (auto eq = text.find('='); eq != std::string::npos && eq > 0 &&
        text.find_first_not_of("0123456789") == eq) {
      if (eq > 3) die("--allow-initiator: bad target number in '" + text + "'");
      only = static_cast<std::uint32_t>(std::stoul(text.substr(0, eq)));
      iqn = text.substr(eq + 1);
    }
    if (iqn.empty() || iqn.size() > 223) die("--allow-initiator wants [T=]IQN, got '" + text + "'");
    bool any = false;
    for (auto& t : targets) {
      if (!only || t.bus_target == *only) {
        t.allowed_initiators.push_back(iqn);
        any = true;
      }
    }
    if (!any) die("--allow-initiator: no target " + std::to_string(*only) + " in '" + text + "'");
  }
  auto ms = [](const std::string& flag, const std::string& v) {
    auto d = parse_duration(v);
    if (!d || *d < Duration::zero()) die(flag + ": " + (d ? std::string("negative") : d.error().message));
    return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  };
  po.login_timeout = ms("--login-timeout", a.login_timeout);
  po.idle_timeout = ms("--idle-timeout", a.idle_timeout);
  if (a.max_connections == 0 || a.max_connections > 65536) {
    die("--max-connections must be 1..65536");
  }
  po.max_connections = a.max_connections;
}

void run(const Args& a) {
  auto options = client::runtime_options(a);
  if (!options) die(options.error().message);
  options->netem = a.netem;
  options->netem_seed = a.netem_seed;
  const client::ClientOptions co = options->client;
  auto lp = parse_host_port(a.listen, "127.0.0.1", 3260);
  if (!lp) die("--listen: " + lp.error().message);
  std::vector<client::scsi::LunMapping> maps;
  for (const auto& l : a.luns) maps.push_back(parse_lun(l));
  if (maps.empty()) maps.push_back(parse_lun("0=0"));

  // The SAN/IP driver (client::Runtime): logged in on its own io thread, which also paces the
  // background work below. Requests from the portal's thread are posted to it.
  auto started = client::Runtime::start(std::move(*options));
  if (!started) {
    die(started.error().message,
        started.error().code == Errc::kInvalidArgument ? kExitUsage : kExitRuntime);
  }
  std::unique_ptr<client::Runtime> rt = std::move(*started);
  asio::io_context& client_io = rt->io();
  auto finish_client = [&] { rt->stop(); };

  // What libiscsi's conformance tests exercise: 64Ki-block transfers (MAXIMUM TRANSFER LENGTH)
  // and at most 1Mi blocks per UNMAP / WRITE SAME.
  client::scsi::LogicalUnitOptions lu_options;
  lu_options.max_command_bytes = 32u << 20;
  lu_options.max_write_same_blocks = 1u << 20;
  // Physical block = logical block unless a LUN says otherwise (pbs=): as tgt and LIO's ramdisk
  // and file back ends report.
  // SANITIZE OVERWRITE and EXTENDED COPY: 1 MiB requests, paced on the SAN/IP driver's thread.
  auto rate = parse_size(a.background_rate);
  if (!rate) die("--background-rate: " + rate.error().message);
  lu_options.background_bytes_per_second = *rate;
  auto min_sanitize = parse_duration(a.sanitize_min);
  if (!min_sanitize) die("--sanitize-min-duration: " + min_sanitize.error().message);
  lu_options.sanitize_min_duration =
      std::chrono::duration_cast<std::chrono::nanoseconds>(*min_sanitize);
  lu_options.schedule = [&client_io](std::chrono::nanoseconds delay, std::function<void()> fn) {
    asio::post(client_io, [&client_io, delay, fn = std::move(fn)]() mutable {
      auto timer = std::make_shared<asio::steady_timer>(client_io, delay);
      timer->async_wait([timer, fn = std::move(fn)](boost::system::error_code ec) {
        if (!ec) fn();
      });
    });
  };
  client::scsi::Bus bus(lu_options);
  bus.add_server("server", *rt);
  std::map<std::uint32_t, bool> target_ids;
  for (const auto& m : maps) {
    if (auto r = bus.map(m); !r) {
      finish_client();
      die(r.error().message);
    }
    target_ids[m.target] = true;
  }
  if (Errc e = bus.attach_all_and_wait(static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(co.request_timeout).count()));
      e != Errc::kOk) {
    finish_client();
    die("cannot attach the LUNs: " + std::string(to_string(e)), kExitRuntime);
  }
  std::vector<PortalTarget> targets;
  for (const auto& [id, unused] : target_ids) {
    (void)unused;
    targets.push_back(
        {default_iqn(id == 0 ? a.target_name : a.target_name + "." + std::to_string(id)), id});
  }

  asio::io_context io;
  PortalOptions po;
  po.address = lp->host;
  po.port = lp->port;
  apply_access(a, targets, po);
  Portal portal(io, bus, targets, po);
  if (auto r = portal.start(); !r) {
    finish_client();
    die(r.error().message, kExitRuntime);
  }
  // Live metrics (docs/METRICS.md): the portal's counters (this thread) and the client driver's
  // (copied from its thread), served on this thread.
  metrics::Registry registry;
  registry.add_collector([&portal](metrics::Collect& c) {
    const PortalStats s = portal.stats();
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
      c.counter(name, help, {}, static_cast<double>(v));
    };
    counter("ipsan_iscsi_connections_total", "iSCSI connections accepted", s.connections);
    counter("ipsan_iscsi_logins_total", "iSCSI logins completed", s.logins);
    counter("ipsan_iscsi_login_failures_total", "iSCSI logins refused", s.login_failures);
    counter("ipsan_iscsi_commands_total", "SCSI commands received", s.commands);
    counter("ipsan_iscsi_rejects_total", "Reject PDUs sent", s.rejects);
    counter("ipsan_iscsi_resets_total", "Connections closed after a protocol violation",
            s.resets);
  });
  std::unique_ptr<metrics::ClientMetrics> client_metrics;
  std::unique_ptr<metrics::HttpExposer> exposer;
  if (!a.metrics.empty()) {
    auto hp = parse_host_port(a.metrics, "127.0.0.1", 0);
    if (!hp) {
      portal.stop();
      finish_client();
      die("--metrics: " + hp.error().message);
    }
    client_metrics = std::make_unique<metrics::ClientMetrics>(registry, client_io, rt->client());
    auto e = metrics::HttpExposer::start(
        io, hp->host, hp->port, [&registry] { return metrics::encode_text(registry.snapshot()); });
    if (!e) {
      client_metrics.reset();
      portal.stop();
      finish_client();
      die(e.error().message, kExitRuntime);
    }
    exposer = std::move(*e);
  }
  std::printf("ipsan iscsi-portal: listening on %s:%u", lp->host.c_str(), portal.port());
  for (const auto& tg : targets) std::printf(" %s", tg.name.c_str());
  std::printf("\n");
  if (exposer)
    std::printf("ipsan iscsi-portal: metrics on http://%s:%u/metrics\n",
                parse_host_port(a.metrics, "127.0.0.1", 0)->host.c_str(), exposer->port());
  std::fflush(stdout);
  if (!a.port_file.empty()) {
    std::ofstream pf(a.port_file + ".tmp");
    pf << portal.port() << "\n";
    pf.close();
    std::rename((a.port_file + ".tmp").c_str(), a.port_file.c_str());
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) {
    portal.stop();
    io.stop();
  });
  io.run();
  exposer.reset();
  client_metrics.reset();
  portal.stop();
  finish_client();
}

}  // namespace

void add_cli(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "iscsi-portal",
      "Serve ipsan devices to iSCSI initiators (iSCSI target -> SCSI driver -> ipsan server)");
  client::add_connect_flags(cmd, *a);
  cmd->add_option("-l,--listen", a->listen, "iSCSI portal address HOST:PORT (port 0: any)")
      ->capture_default_str();
  cmd->add_option("--port-file", a->port_file, "Write the portal's TCP port to this file");
  cmd->add_option("--lun", a->luns,
                  "[T:]L=DEVICE[,ro][,removable][,pbs=BYTES]: LUN L of target T (default 0) "
                  "is server device DEVICE (repeatable; default 0=0); ro: write protected, "
                  "removable: removable medium (load/eject), pbs: physical block size");
  cmd->add_option("--target-name", a->target_name,
                  "Target 0 is iqn.2026-11.org.ipsan:NAME, target T is ...:NAME.T")
      ->capture_default_str();
  cmd->add_option("--netem", a->netem,
                  "Impair the client<->server link in process (a netem "
                  "profile, e.g. lossy-1pct, or a spec, e.g. 'loss=1%'; "
                  "udp only)");
  cmd->add_option("--netem-seed", a->netem_seed, "Seed of the impairment")->capture_default_str();
  cmd->add_option("--chap-file", a->chap_file,
                  "CHAP secrets (mode 0600): lines 'initiator NAME SECRET' (required of every "
                  "initiator) and 'target NAME SECRET' (mutual CHAP); MD5 and SHA-256");
  cmd->add_option("--allow-initiator", a->allow_initiators,
                  "[T=]IQN: only these initiators may log in to target T (default every target); "
                  "repeatable");
  cmd->add_option("--login-timeout", a->login_timeout,
                  "Close a connection whose login is not complete after this (0: never)")
      ->capture_default_str();
  cmd->add_option("--idle-timeout", a->idle_timeout,
                  "Ping a silent session after this, close it if still silent (0: never)")
      ->capture_default_str();
  cmd->add_option("--max-connections", a->max_connections,
                  "Connections at once; when full, the oldest unfinished login makes room")
      ->capture_default_str();
  cmd->add_option("--background-rate", a->background_rate,
                  "Bytes per second of SANITIZE OVERWRITE / EXTENDED COPY (e.g. 16M; 0: no limit)")
      ->capture_default_str();
  cmd->add_option("--sanitize-min-duration", a->sanitize_min,
                  "A SANITIZE OVERWRITE lasts at least this long (paced; 0: no minimum), so "
                  "that initiators can see it in progress on fast back ends")
      ->capture_default_str();
  cmd->add_option("--metrics", a->metrics,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (docs/METRICS.md)");
  cmd->callback([a] { run(*a); });
}

}  // namespace ipsan::iscsi
