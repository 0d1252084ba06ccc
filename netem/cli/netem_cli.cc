// The `ipsan netem` subcommand: flags -> UdpProxyOptions -> UdpProxy on an io_context.
#include "netem_cli.h"

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <charconv>
#include <csignal>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/netem/config.h"
#include "ipsan/netem/udp_proxy.h"

namespace ipsan::netem {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitRuntime = 1;

struct Args {
  std::string listen;
  std::string forward;
  std::string profile;
  std::string seed;
  std::string capture;
  std::string duration;
  bool list_profiles = false;
  int socket_buffer = 0;
  std::map<std::string, std::string> both;
  std::map<std::string, std::string> up;
  std::map<std::string, std::string> down;
};

[[noreturn]] void die(int code, const std::string& message) {
  std::cerr << "ipsan netem: " << message << std::endl;
  throw CLI::RuntimeError(code);
}

std::uint64_t parse_seed(const std::string& text) {
  std::uint64_t v = 0;
  const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  const char* begin = text.data() + (hex ? 2 : 0);
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, v, hex ? 16 : 10);
  if (begin == end || ec != std::errc{} || ptr != end) {
    die(kExitUsage, "bad --seed '" + text + "': expected an unsigned 64-bit number");
  }
  return v;
}

void print_counters(std::string_view name, const Counters& c) {
  std::cout << name << ": entered=" << c.entered << " delivered=" << c.delivered
            << " dropped_random=" << c.dropped_random << " dropped_burst=" << c.dropped_burst
            << " dropped_queue=" << c.dropped_queue << " dropped_partition=" << c.dropped_partition
            << " dropped_mtu=" << c.dropped_mtu << " duplicated=" << c.duplicated
            << " corrupted=" << c.corrupted << " reordered=" << c.reordered
            << " truncated=" << c.truncated << "\n";
}

void run(const Args& a) {
  if (a.list_profiles) {
    for (const auto& p : profiles()) {
      std::cout << p.name << "\n    " << p.description << "\n    " << p.spec << "\n";
    }
    std::cout.flush();
    return;
  }
  if (a.listen.empty()) die(kExitUsage, "--listen ADDR:PORT is required");
  if (a.forward.empty()) die(kExitUsage, "--forward ADDR:PORT is required");
  UdpProxyOptions opt;
  auto listen = parse_endpoint(a.listen);
  if (!listen) die(kExitUsage, "--listen: " + listen.error().message);
  auto forward = parse_endpoint(a.forward);
  if (!forward) die(kExitUsage, "--forward: " + forward.error().message);
  if (forward->port() == 0) die(kExitUsage, "--forward needs a non-zero port");
  opt.listen = *listen;
  opt.forward = *forward;

  ImpairmentConfig base;
  if (!a.profile.empty()) {
    auto p = profile_by_name(a.profile);
    if (!p) die(kExitUsage, "--profile: " + p.error().message);
    base = *p;
  }
  opt.up = base;
  opt.down = base;
  for (const auto name : option_names()) {
    const std::string key(name);
    // apply_option() names the flag in its message; it wants the bare option name.
    auto apply_bare = [&](ImpairmentConfig& c, const std::map<std::string, std::string>& values,
                          std::string_view prefix) {
      const auto it = values.find(key);
      if (it == values.end() || it->second.empty()) return;
      if (auto r = apply_option(c, key, it->second); !r) {
        std::string message = r.error().message;
        if (!prefix.empty()) message.replace(0, 2 + key.size(), prefix);  // "--loss" -> "--up-loss"
        die(kExitUsage, message);
      }
    };
    apply_bare(opt.up, a.both, "");
    apply_bare(opt.down, a.both, "");
    apply_bare(opt.up, a.up, "--up-" + key);
    apply_bare(opt.down, a.down, "--down-" + key);
  }
  if (auto why = validate(opt.up); !why.empty()) die(kExitUsage, "up direction: " + why);
  if (auto why = validate(opt.down); !why.empty()) die(kExitUsage, "down direction: " + why);

  Duration duration{};
  if (!a.duration.empty()) {
    auto d = parse_duration(a.duration);
    if (!d) die(kExitUsage, "--duration: " + d.error().message);
    duration = *d;
  }
  if (!a.seed.empty()) {
    opt.seed = parse_seed(a.seed);
  } else {
    crypto_init();
    opt.seed = random_u64();
  }
  opt.capture_path = a.capture;
  opt.socket_buffer_bytes = a.socket_buffer;

  boost::asio::io_context io;
  auto proxy = UdpProxy::create(io, opt);
  if (!proxy) die(kExitRuntime, proxy.error().message);
  std::cout << "seed " << opt.seed << "\n"
            << "up: " << describe(opt.up) << "\n"
            << "down: " << describe(opt.down) << "\n"
            << "forwarding to " << opt.forward << "\n"
            << "listening on " << (*proxy)->local_endpoint() << std::endl;

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&io](const boost::system::error_code&, int) { io.stop(); });
  boost::asio::steady_timer timer(io);
  if (duration > Duration::zero()) {
    timer.expires_after(duration);
    timer.async_wait([&io](const boost::system::error_code& ec) {
      if (!ec) io.stop();
    });
  }
  io.run();
  (*proxy)->stop();
  print_counters("up", (*proxy)->up_counters());
  print_counters("down", (*proxy)->down_counters());
  // Not impairments: datagrams the kernel dropped because the proxy fell behind.
  std::cout << "proxy: socket_drops=" << (*proxy)->socket_drops() << "\n";
  std::cout.flush();
}

}  // namespace

void add_cli(CLI::App& app) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "netem", "UDP proxy that emulates loss, delay, reordering, ... between real processes");
  cmd->add_option("--listen", args->listen, "ADDR:PORT clients send to (port 0: any free port)");
  cmd->add_option("--forward", args->forward, "ADDR:PORT of the real server");
  cmd->add_option("--profile", args->profile, "named profile (see --list-profiles)");
  cmd->add_option("--seed", args->seed, "random seed (default: random, printed at start)");
  cmd->add_option("--capture", args->capture,
                  "FILE.pcap: delivered traffic; also FILE.in.pcap and FILE.fates.csv");
  cmd->add_option("--duration", args->duration, "stop after this long (e.g. 10s)");
  cmd->add_option("--socket-buffer", args->socket_buffer,
                  "SO_RCVBUF/SO_SNDBUF bytes of the proxy's sockets (default: kernel default); "
                  "kernel drops are printed as socket_drops on exit")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--list-profiles", args->list_profiles, "print the named profiles and exit");
  static const std::map<std::string_view, std::string_view> kHelp = {
      {"loss", "random loss probability, e.g. 1%"},
      {"burst", "Gilbert-Elliott loss p,r[,h,k] in %, e.g. 1%,25%"},
      {"delay", "fixed one-way delay, e.g. 10ms"},
      {"jitter", "jitter[,uniform|normal][,reorder], e.g. 2ms,normal"},
      {"reorder", "probability a datagram skips the delay, e.g. 10%"},
      {"duplicate", "duplication probability, e.g. 1%"},
      {"corrupt", "corruption probability[,max bits], e.g. 0.1%,2"},
      {"rate", "rate limit, e.g. 100mbit"},
      {"queue", "rate-limiter queue length in datagrams (tail drop)"},
      {"mtu", "largest datagram N[,truncate] (default drop)"},
      {"partition", "outage START+LENGTH[/PERIOD], e.g. 2s+500ms/10s"},
  };
  for (const auto name : option_names()) {
    const std::string key(name);
    const std::string help(kHelp.at(name));
    cmd->add_option("--" + key, args->both[key], help + " (both directions)");
    cmd->add_option("--up-" + key, args->up[key], "client->server only")->group("Per direction");
    cmd->add_option("--down-" + key, args->down[key], "server->client only")
        ->group("Per direction");
  }
  cmd->callback([args] { run(*args); });
}

}  // namespace ipsan::netem
