// nas_cli.cc: `ipsan nas mkfs|serve`. The disk is a local back end (--disk SPEC, e.g.
// file:/srv/nas.img,size=1G: in-process, flock-claimed) or a device of an ipsan server reached
// through the SAN/IP driver (--device N with the usual connection flags).
#include "nas_cli.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "connect_flags.h"
#include "ipsan/backends/spec.h"
#include "ipsan/base/units.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/runtime.h"
#include "ipsan/nas/block_device.h"
#include "ipsan/nas/nas.h"
#include "ipsan/nas/server.h"

namespace ipsan::nas {
namespace {

namespace asio = boost::asio;

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

[[noreturn]] void die(const std::string& msg, int code = kExitUsage) {
  std::fprintf(stderr, "ipsan nas: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

struct DiskArgs : client::ConnectArgs {
  std::string disk;
  std::int64_t device = -1;
  bool unclaimed = false;
};

// Owns whatever reaches the disk: a local back end, or a logged-in client::Runtime.
struct Disk {
  std::unique_ptr<client::Runtime> rt;
  std::unique_ptr<BlockDevice> dev;

  ~Disk() {
    dev.reset();
    if (rt) rt->stop();
  }
};

std::unique_ptr<Disk> open_disk(const DiskArgs& a) {
  auto d = std::make_unique<Disk>();
  if (!a.disk.empty() == (a.device >= 0)) die("give exactly one of --disk SPEC or --device N");
  if (!a.disk.empty()) {
    auto b = backends::open_backend(a.disk);
    if (!b) die(b.error().message, kExitRuntime);
    d->dev = make_backend_device(*b);
    return d;
  }
  if (a.device > 0xFFFFFFFFll) die("--device out of range");
  if (!a.unclaimed) {
    die("--device: the ipsan server has no exclusive-claim request yet, so block clients could "
        "write the disk while the NAS uses it; refusing. Pass --unclaimed to serve it anyway "
        "(you guarantee nobody else writes it), or serve a local --disk (flock-claimed)",
        kExitRuntime);
  }
  auto options = client::runtime_options(a);
  if (!options) die(options.error().message);
  auto started = client::Runtime::start(std::move(*options));
  if (!started) die(started.error().message, kExitRuntime);
  d->rt = std::move(*started);
  auto r = make_remote_device(d->rt->io(), d->rt->client(), static_cast<std::uint32_t>(a.device));
  if (!r) die(r.error().message, kExitRuntime);
  d->dev = std::move(*r);
  return d;
}

void add_disk_flags(CLI::App* cmd, DiskArgs& a) {
  cmd->add_option("-d,--disk", a.disk,
                  "Local back-end spec holding the file system, e.g. file:/srv/nas.img,size=1G");
  cmd->add_option("--device", a.device, "Or: device N of an ipsan server (see -s/-t/-n/-k)");
  cmd->add_flag("--unclaimed", a.unclaimed,
                "With --device: serve although the server cannot reserve the disk for the NAS");
  client::add_connect_flags(cmd, a, false);
}

Result<std::pair<std::uint32_t, std::uint32_t>, Error> parse_owner(const std::string& s) {
  auto colon = s.find(':');
  if (colon == std::string::npos) return fail("--root-owner wants UID:GID");
  try {
    std::size_t p1 = 0, p2 = 0;
    const std::string u = s.substr(0, colon), g = s.substr(colon + 1);
    const unsigned long uid = std::stoul(u, &p1), gid = std::stoul(g, &p2);
    if (p1 != u.size() || p2 != g.size() || uid > 0xFFFFFFFFul || gid > 0xFFFFFFFFul) throw 0;
    return std::make_pair(static_cast<std::uint32_t>(uid), static_cast<std::uint32_t>(gid));
  } catch (...) {
    return fail("--root-owner wants UID:GID, got '" + s + "'");
  }
}

struct MkfsArgs : DiskArgs {
  std::uint32_t block_size = 4096;
  std::uint32_t inode_ratio = 16384;
  std::string root_owner;
  std::string label;
};

void run_mkfs(const MkfsArgs& a) {
  MkfsOptions o;
  o.block_size = a.block_size;
  o.inode_ratio = a.inode_ratio;
  o.label = a.label;
  o.root_uid = static_cast<std::uint32_t>(getuid());
  o.root_gid = static_cast<std::uint32_t>(getgid());
  if (!a.root_owner.empty()) {
    auto p = parse_owner(a.root_owner);
    if (!p) die(p.error().message);
    o.root_uid = p->first;
    o.root_gid = p->second;
  }
  auto disk = open_disk(a);
  if (auto r = mkfs(*disk->dev, o); !r) die(r.error().message, kExitRuntime);
  std::printf("ipsan nas: formatted %s (%llu bytes, ext4, %u-byte blocks)\n",
              disk->dev->describe().c_str(),
              static_cast<unsigned long long>(disk->dev->size_bytes()), a.block_size);
}

struct ServeArgs : DiskArgs {
  std::string listen = "127.0.0.1:2049";
  bool no_udp = false;
  std::uint16_t portmap_port = 0;
  std::string exports;
  std::string port_file;
};

void run_serve(const ServeArgs& a) {
  auto lp = parse_host_port(a.listen, "127.0.0.1", 2049);
  if (!lp) die("--listen: " + lp.error().message);
  NasOptions no;
  if (!a.exports.empty()) {
    std::ifstream f(a.exports);
    if (!f) die("cannot read --exports " + a.exports);
    std::stringstream ss;
    ss << f.rdbuf();
    auto ex = parse_exports(ss.str());
    if (!ex) die(ex.error().message);
    no.exports = std::move(*ex);
  }
  auto disk = open_disk(a);
  auto nas = Nas::open(*disk->dev, no);
  if (!nas) die(nas.error().message, kExitRuntime);

  asio::io_context net;
  asio::io_context fs_io;
  auto fs_work = asio::make_work_guard(fs_io);
  std::thread fs_thread([&] { fs_io.run(); });
  ServerOptions so;
  so.host = lp->host;
  so.port = lp->port;
  so.udp = !a.no_udp;
  so.portmap_port = a.portmap_port;
  NasServer server(net, fs_io, **nas, so);
  auto finish = [&] {
    server.stop();
    std::promise<Result<void, Error>> closed;
    asio::post(fs_io, [&] { closed.set_value((*nas)->close()); });
    auto r = closed.get_future().get();
    fs_work.reset();
    fs_io.stop();
    fs_thread.join();
    return r;
  };
  if (auto r = server.start(); !r) {
    (void)finish();
    die(r.error().message, kExitRuntime);
  }
  std::printf("ipsan nas: serving %s on %s tcp %u udp %u (nfs://%s/%s?nfsport=%u&mountport=%u)\n",
              disk->dev->describe().c_str(), lp->host.c_str(), server.tcp_port(),
              server.udp_port(), lp->host.c_str(),
              no.exports[0].path == "/" ? "" : no.exports[0].path.c_str() + 1, server.tcp_port(),
              server.tcp_port());
  std::fflush(stdout);
  if (!a.port_file.empty()) {
    std::ofstream pf(a.port_file + ".tmp");
    pf << server.tcp_port() << "\n";
    pf.close();
    std::rename((a.port_file + ".tmp").c_str(), a.port_file.c_str());
  }
  asio::signal_set signals(net, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) {
    server.stop();
    net.stop();
  });
  net.run();
  if (auto r = finish(); !r) die(r.error().message, kExitRuntime);
}

}  // namespace

void add_cli(CLI::App& app) {
  auto* nas = app.add_subcommand("nas", "NFSv3 file server (NAS) over an ipsan disk (ext4)");
  nas->require_subcommand(1);
  auto m = std::make_shared<MkfsArgs>();
  auto* mk = nas->add_subcommand("mkfs", "Format a disk with ext4 (erases it)");
  add_disk_flags(mk, *m);
  mk->add_option("--block-size", m->block_size, "1024, 2048 or 4096")->capture_default_str();
  mk->add_option("--inode-ratio", m->inode_ratio, "Bytes per inode")->capture_default_str();
  mk->add_option("--root-owner", m->root_owner, "UID:GID of / (default: the caller's)");
  mk->add_option("--label", m->label, "Volume label (<= 16 bytes)");
  mk->callback([m] { run_mkfs(*m); });
  auto s = std::make_shared<ServeArgs>();
  auto* sv = nas->add_subcommand("serve", "Serve the disk's file system over NFSv3 + MOUNT v3");
  add_disk_flags(sv, *s);
  sv->add_option("-l,--listen", s->listen, "HOST:PORT for NFS, MOUNT and portmap (TCP and UDP)")
      ->capture_default_str();
  sv->add_flag("--no-udp", s->no_udp, "TCP only");
  sv->add_option("--portmap-port", s->portmap_port,
                 "Also answer on this port (e.g. 111) for clients that ask a portmapper");
  sv->add_option("--exports", s->exports,
                 "Exports file (TOML [[export]] tables; default: / for 127.0.0.0/8, root squash)");
  sv->add_option("--port-file", s->port_file, "Write the TCP port to this file once listening");
  sv->callback([s] { run_serve(*s); });
}

}  // namespace ipsan::nas
