#include "server_cli.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <memory>
#include <optional>

#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"
#include "ipsan/proto/login.h"
#include "ipsan/proto/rudp/udp_transport.h"
#include "ipsan/server/admin.h"
#include "ipsan/server/serve.h"
#include "ipsan/server/server.h"
#include "ipsan/server/server_metrics.h"
#include "manager_agent.h"

namespace ipsan::server {
namespace {

namespace asio = boost::asio;

struct Args {
  std::string listen = "127.0.0.1";
  int port = kDefaultPort;
  std::string transport = "both";
  std::vector<std::string> devices;
  std::vector<std::string> client_keys;
  std::string key_file;
  std::uint32_t slots = 64;
  std::string max_io = "8M";
  std::string port_file;
  std::string duration;
  std::uint32_t epoch = 0;
  std::string transport_security = "integrity";
  std::string config;
  std::string admin_socket;
  bool trace_io = false;
  std::string capture;
  std::string metrics;
  std::string identity;
  std::string manager_key;
  std::string manager;
  std::string managed_dir;
  std::string managed_capacity;
  std::string manager_sync = "1s";
};

// Exit 2 for what the user typed (options, keys, device specs, the layout file), 1 for what
// failed at run time (a port in use, a socket that cannot be bound).
[[noreturn]] void die(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "ipsan server: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

// "[ID=]SPEC" -> (id, spec). Without an id the next free one is used.
std::vector<Export> open_exports(const std::vector<std::string>& specs) {
  std::vector<Export> out;
  std::uint32_t next_id = 0;
  for (const auto& raw : specs) {
    std::string spec = raw;
    std::optional<std::uint32_t> id;
    auto eq = raw.find('=');
    auto colon = raw.find(':');
    if (eq != std::string::npos && (colon == std::string::npos || eq < colon)) {
      std::string num = raw.substr(0, eq);
      if (num.empty() || num.size() > 9 || num.find_first_not_of("0123456789") != std::string::npos)
        die("bad device id in --device '" + raw + "' (expected ID=SPEC)");
      id = static_cast<std::uint32_t>(std::stoul(num));
      spec = raw.substr(eq + 1);
    }
    auto b = backends::open_backend(spec);
    if (!b) die("--device '" + raw + "': " + b.error().message);
    Export e;
    e.device_id = id ? *id : next_id;
    for (const auto& o : out)
      if (o.device_id == e.device_id)
        die("device id " + std::to_string(e.device_id) + " used twice");
    next_id = std::max(next_id, e.device_id + 1);
    e.name = "disk" + std::to_string(e.device_id);
    e.backend = std::move(*b);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

void add_cli(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "server", "Run a storage server (reliable UDP and TCP) until SIGINT/SIGTERM");
  cmd->add_option("-l,--listen", a->listen, "Address to bind")->capture_default_str();
  cmd->add_option("-p,--port", a->port, "Port for UDP and TCP (0: pick free ports)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("-t,--transport", a->transport, "udp, tcp or both")
      ->check(CLI::IsMember({"udp", "tcp", "both"}))
      ->capture_default_str();
  cmd->add_option("-d,--device", a->devices,
                  "Export a back end: [ID=]SPEC, e.g. ram:256M, 1=file:/tmp/d.img,size=1G,bs=4096 "
                  "(default: one ram:256M)");
  cmd->add_option("--client-key", a->client_keys,
                  "Accept client NAME with the key in a file or environment variable: "
                  "NAME=file:PATH or NAME=env:VAR (repeatable; a key itself on the command line "
                  "is refused)");
  cmd->add_option("--key-file", a->key_file,
                  "File of 'NAME KEY' lines, mode 0600 or stricter (KEY: 64 hex digits or a "
                  "passphrase of 12+ characters)");
  cmd->add_option("--slots", a->slots, "Slots per session (client queue depth)")
      ->capture_default_str();
  cmd->add_option("--max-io", a->max_io, "Largest READ/WRITE payload")->capture_default_str();
  cmd->add_option("--port-file", a->port_file, "Write 'udp=PORT tcp=PORT' here once listening");
  cmd->add_option("--duration", a->duration, "Stop after this long (e.g. 60s)");
  cmd->add_option("--epoch", a->epoch, "Boot epoch (default random; for tests)");
  cmd->add_option("--transport-security", a->transport_security,
                  "Weakest packet protection accepted at login: off, integrity (every "
                  "reliable-UDP packet MAC'd) or encrypted (AEAD on UDP packets and TCP records)")
      ->capture_default_str();
  cmd->add_option("--capture", a->capture,
                  "Record the server's traffic to this pcap file: reliable-UDP datagrams and TCP "
                  "connections as segments (docs/CAPTURE.md)");
  cmd->add_option("-c,--config", a->config,
                  "TOML layout of back ends, virtual disks and exports (docs/CONFIG.md)");
  cmd->add_option("--admin-socket", a->admin_socket,
                  "Unix socket for `ipsan stats` and online changes (`ipsan disk ...`, which "
                  "need --config)");
  cmd->add_option("--metrics", a->metrics,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (docs/METRICS.md; "
                  "port 0: any)");
  cmd->add_option("--identity", a->identity,
                  "This server's Ed25519 private key file (`ipsan key gen`), for manager grants");
  cmd->add_option("--manager-key", a->manager_key,
                  "Accept logins with grants signed by this manager public key (64 hex digits or "
                  "a file; needs --identity). Grants are checked offline: the manager may be down");
  cmd->add_option("--manager", a->manager,
                  "Register with the storage manager at HOST:PORT: report devices and space, take "
                  "its allocations and revocations (needs --identity, --manager-key, --config, "
                  "--managed-dir; docs/MANAGER.md)");
  cmd->add_option("--managed-dir", a->managed_dir,
                  "Directory for the images of disks the manager allocates here");
  cmd->add_option("--managed-capacity", a->managed_capacity,
                  "Space offered to the manager (e.g. 100G; default: the free space of "
                  "--managed-dir)");
  cmd->add_option("--manager-sync", a->manager_sync,
                  "How often to sync with the manager (revocations take effect within this)")
      ->capture_default_str();
  cmd->add_flag("--trace-io", a->trace_io,
                "Print every back-end command of the virtual disks (disk, back end, op, physical "
                "LBA, blocks)");
  cmd->callback([a] {
    KeyRing keys;
    for (const auto& k : a->client_keys) {
      auto r = keys.add_spec(k);
      if (!r) die("--client-key: " + r.error().message);
    }
    if (!a->key_file.empty()) {
      auto r = keys.load_file(a->key_file);
      if (!r) die(r.error().message);
    }
    std::shared_ptr<auth::GrantVerifier> verifier;
    std::optional<auth::Identity> identity;
    if (!a->identity.empty()) {
      auto id = auth::read_identity_file(a->identity);
      if (!id) die("--identity: " + id.error().message);
      identity = *id;
    }
    if (!a->manager_key.empty()) {
      if (!identity) die("--manager-key needs --identity (this server's private key)");
      auto pk = auth::load_public_key(a->manager_key);
      if (!pk) die("--manager-key: " + pk.error().message);
      verifier = std::make_shared<auth::GrantVerifier>(*pk, *identity);
      std::fprintf(stderr, "ipsan server: accepting manager grants; server key %s\n",
                   auth::public_key_hex(identity->public_key).c_str());
    }
    if (!a->manager.empty() && (!verifier || a->config.empty() || a->managed_dir.empty()))
      die("--manager needs --identity, --manager-key, --config and --managed-dir");
    if (keys.empty() && !verifier)
      die("no client keys: pass --key-file FILE or --client-key NAME=file:PATH (or "
          "--manager-key for manager grants)");
    for (const auto& [name, form] : keys.forms()) {
      std::fprintf(stderr, "ipsan server: key of client '%s' read as %s\n", name.c_str(),
                   key_form_name(form));
    }
    std::unique_ptr<LayoutManager> layout;
    std::vector<Export> exports;
    if (!a->config.empty()) {
      auto m = LayoutManager::load(a->config);
      if (!m) die(m.error().message);
      layout = std::move(*m);
      if (a->trace_io) {
        layout->set_trace([](const virt::TraceEvent& t) {
          std::fprintf(stderr, "io disk=%.*s backend=%.*s op=%s lba=%llu blocks=%llu fua=%d\n",
                       static_cast<int>(t.disk.size()), t.disk.data(),
                       static_cast<int>(t.backend.size()), t.backend.data(),
                       std::string(backends::to_string(t.op)).c_str(),
                       static_cast<unsigned long long>(t.lba),
                       static_cast<unsigned long long>(t.blocks), t.fua ? 1 : 0);
        });
      }
      exports = layout->exports();
    }
    if (a->devices.empty() && a->config.empty()) a->devices.push_back("ram:256M");
    for (auto& e : open_exports(a->devices)) {
      for (const auto& x : exports)
        if (x.device_id == e.device_id)
          die("--device id " + std::to_string(e.device_id) + " is already exported by --config");
      exports.push_back(std::move(e));
    }
    auto max_io = parse_size(a->max_io);
    if (!max_io || *max_io == 0 || *max_io > (8u << 20)) die("--max-io must be 1..8M");
    if (a->slots == 0 || a->slots > proto::kMaxSlots)
      die("--slots must be 1.." + std::to_string(proto::kMaxSlots));
    proto::rudp::Protection protection{};
    if (!proto::rudp::parse_protection(a->transport_security, protection)) {
      die("--transport-security must be off, integrity or encrypted, not '" +
          a->transport_security + "'");
    }
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(a->listen, ec);
    if (ec) die("bad --listen address '" + a->listen + "'");
    if (!a->metrics.empty()) {
      if (auto hp = parse_host_port(a->metrics, "127.0.0.1", 0); !hp)
        die("--metrics: " + hp.error().message);
    }
    std::optional<Duration> duration;
    if (!a->duration.empty()) {
      auto d = parse_duration(a->duration);
      if (!d) die("--duration: " + d.error().message);
      duration = *d;
    }

    ServeOptions so;
    so.server.slot_count = a->slots;
    so.server.max_io_bytes = static_cast<std::uint32_t>(*max_io);
    so.server.boot_epoch = a->epoch;
    so.server.transport_security = static_cast<std::uint32_t>(protection);
    so.address = addr;
    so.udp = a->transport != "tcp";
    so.tcp = a->transport != "udp";
    so.udp_port = static_cast<std::uint16_t>(a->port);
    so.tcp_port = static_cast<std::uint16_t>(a->port);
    // Reset tokens and cookies survive a restart with the same keys (docs/RUDP.md).
    so.udp_secret_from_keys = true;
    // With an identity the secret also depends on its private key (a key ring may be empty).
    if (identity) {
      Key256 k;
      std::copy(identity->secret_key.begin(), identity->secret_key.begin() + 32, k.begin());
      so.udp_secret_identity = k;
    }
    std::unique_ptr<ManagerAgent> agent;
    so.server.grants.verifier = verifier;
    so.server.grants.on_refused = [&agent](const GrantRefusal& r) {
      if (agent) agent->refused(r);
    };
    so.capture = a->capture;
    so.live_metrics = true;  // `ipsan stats` and the HTTP endpoint read the same registry
    so.metrics = a->metrics;
    so.admin_socket = a->admin_socket;
    so.layout = layout.get();

    asio::io_context io;
    auto running = serve(io, std::move(so), std::move(keys), std::move(exports));
    if (!running) die(running.error().message, 1);  // could not bind or open: not a usage error
    RunningServer& rs = **running;
    StorageServer& server = rs.server();
    if (!a->manager.empty()) {
      AgentOptions ao;
      ao.manager = a->manager;
      ao.manager_key = verifier->manager_key();
      ao.identity = *identity;
      ao.udp_port = rs.udp_port();
      ao.tcp_port = rs.tcp_port();
      ao.address = a->listen + ":" + std::to_string(rs.udp_port() != 0 ? rs.udp_port() : rs.tcp_port());
      ao.managed_dir = std::filesystem::absolute(a->managed_dir).string();
      std::error_code ec2;
      std::filesystem::create_directories(ao.managed_dir, ec2);
      if (!a->managed_capacity.empty()) {
        auto c = parse_size(a->managed_capacity);
        if (!c || *c == 0) die("--managed-capacity: expected a size like 100G");
        ao.capacity = *c;
      } else {
        auto sp = std::filesystem::space(ao.managed_dir, ec2);
        if (ec2) die("--managed-dir " + ao.managed_dir + ": " + ec2.message());
        ao.capacity = sp.available;
      }
      auto d = parse_duration(a->manager_sync);
      if (!d || *d <= Duration::zero()) die("--manager-sync: expected a duration like 1s");
      ao.interval = *d;
      agent = std::make_unique<ManagerAgent>(io, std::move(ao), server, layout.get(), verifier);
      agent->start();
    }
    std::printf("ipsan server: listening on %s udp=%u tcp=%u epoch=%u\n", a->listen.c_str(),
                rs.udp_port(), rs.tcp_port(), server.boot_epoch());
    if (rs.metrics_port() != 0)
      std::printf("ipsan server: metrics on http://%s:%u/metrics port=%u\n",
                  rs.metrics_host().c_str(), rs.metrics_port(), rs.metrics_port());
    for (const auto& e : server.exports())
      std::printf("  export %u %s (%s)\n", e.device_id, e.name.c_str(),
                  e.backend->describe().c_str());
    std::fflush(stdout);
    if (!a->port_file.empty()) {
      if (auto w = rs.write_port_file(a->port_file); !w) die(w.error().message, 1);
    }
    bool stopped = false;
    auto stop = [&] {
      if (stopped) return;
      stopped = true;
      if (agent) agent->request_stop();
      rs.stop([&] { io.stop(); });
    };
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code e, int) {
      if (!e) stop();
    });
    asio::steady_timer timer(io);
    if (duration) {
      timer.expires_after(*duration);
      timer.async_wait([&](boost::system::error_code e) {
        if (!e) stop();
      });
    }
    io.run();
    agent.reset();  // joins its thread (a pending call to the io thread times out)
    const std::string line = server.stats_line();
    running->reset();  // closes the capture file
    std::printf("ipsan server: stopped; %s\n", line.c_str());
    std::fflush(stdout);
  });
}

}  // namespace ipsan::server
