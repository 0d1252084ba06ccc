// ipsan: the command-line program. Thin: each subcommand lives in its own folder's cli/ target.
#include <CLI/CLI.hpp>
#include <cstdio>

#include <malloc.h>

#include "client_cli.h"
#include "disk_cli.h"
#include "replicate_cli.h"
#include "ipsan/base/log.h"
#include "server_cli.h"
#include "stats_cli.h"
#include "key_cli.h"
#include "manager_cli.h"
#ifdef HAVE_IPSAN_NETEM_CLI
#include "netem_cli.h"
#endif
#ifdef HAVE_IPSAN_BACKENDS_CLI
#include "backends/cli/backends_cli.h"
#endif
#ifdef HAVE_IPSAN_REPLAY_CLI
#include "replay_cli.h"
#endif
#ifdef HAVE_IPSAN_BENCH_CLI
#include "bench_cli.h"
#endif
#ifdef HAVE_IPSAN_ISCSI_CLI
#include "iscsi_cli.h"
#endif
#ifdef HAVE_IPSAN_NBD_CLI
#include "nbd_cli.h"
#endif
#ifdef HAVE_IPSAN_NAS_CLI
#include "nas_cli.h"
#endif
#ifdef HAVE_IPSAN_REMOTE
#include "ipsan/remote/remote_backend.h"
#endif
#ifdef HAVE_IPSAN_HA_CLI
#include "chaos_cli.h"
#endif

namespace {
constexpr int kExitUsage = 2;  // bad arguments, as every subcommand's own checks return
}  // namespace

int main(int argc, char** argv) {
  // 1 MiB request, reply and reassembly buffers: with glibc's defaults each is handed back to
  // the kernel when freed (mmap, or a heap trim) and faulted in again by the next request.
  // Keeping them in the heap cut client CPU per 1 MiB read by ~18 % and raised `ipsan bench
  // --server-embedded --rw read --bs 1M --qd 8` by ~10 % (bench/RESULTS.md); 4 KiB and write
  // figures unchanged. The cost: up to 128 MiB of freed memory kept for reuse.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum on 64-bit
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  CLI::App app{"ipsan: block storage over IP (ONC-RPC over reliable UDP or TCP)", "ipsan"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ipsan 0.1.0");
  std::string level = "warn";
  app.add_option("--log-level", level, "debug, info, warn, error or off")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.parse_complete_callback([&] {
    ipsan::LogLevel l;
    if (ipsan::parse_log_level(level, l)) ipsan::set_log_level(l);
  });
#ifdef HAVE_IPSAN_REMOTE
  // ipsan://HOST:PORT/DEVICE back ends (a device of another server) in -d and layout files.
  ipsan::remote::register_remote_backend();
#endif
  ipsan::server::add_cli(app);
  ipsan::client::add_cli(app);
  ipsan::server::add_disk_cli(app);
  ipsan::server::add_stats_cli(app);
  ipsan::auth::add_key_cli(app);
  ipsan::manager::add_cli(app);
  ipsan::server::add_replicate_cli(app);
  ipsan::server::add_job_cli(app);
#ifdef HAVE_IPSAN_NETEM_CLI
  ipsan::netem::add_cli(app);
#endif
#ifdef HAVE_IPSAN_BACKENDS_CLI
  ipsan::backends::add_cli(app);
#endif
#ifdef HAVE_IPSAN_REPLAY_CLI
  ipsan::replay::add_cli(app);
#endif
#ifdef HAVE_IPSAN_BENCH_CLI
  ipsan::bench::add_cli(app);
#endif
#ifdef HAVE_IPSAN_ISCSI_CLI
  ipsan::iscsi::add_cli(app);
#endif
#ifdef HAVE_IPSAN_NBD_CLI
  ipsan::nbd::add_cli(app);
#endif
#ifdef HAVE_IPSAN_NAS_CLI
  ipsan::nas::add_cli(app);
#endif
#ifdef HAVE_IPSAN_HA_CLI
  ipsan::ha::add_cli(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help and --version exit 0; a subcommand's own failure (CLI::RuntimeError) keeps its code
    // (1 run-time, 2 usage, ...); every other parse error (unknown flag, missing or invalid
    // value) is a usage error: 2, as the subcommands' own argument checks return.
    const int code = app.exit(e);
    if (code == 0 || dynamic_cast<const CLI::RuntimeError*>(&e) != nullptr) return code;
    return kExitUsage;
  }
  return 0;
}
