// `ipsan chaos run SCHEDULE [--seed N]` and `ipsan chaos gen --seed N`: flags -> ha/chaos.h.
#include "chaos_cli.h"

#include <charconv>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "ipsan/ha/chaos.h"
#include "ipsan/ha/schedule.h"

namespace ipsan::ha {
namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

[[noreturn]] void die(int code, const std::string& message) {
  std::cerr << "ipsan chaos: " << message << std::endl;
  throw CLI::RuntimeError(code);
}

std::uint64_t parse_seed(const std::string& text) {
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() ||
      v > (UINT64_MAX >> 1))
    die(kExitUsage, "bad --seed '" + text + "': expected an unsigned number below 2^63");
  return v;
}

struct RunArgs {
  std::string file;
  std::string seed;
  std::string dir;
  std::string ipsan;
  bool keep = false;
};

void run(const RunArgs& a) {
  std::ifstream f(a.file);
  if (!f) die(kExitUsage, "cannot read " + a.file);
  std::stringstream text;
  text << f.rdbuf();
  auto s = parse_schedule(text.str());
  if (!s) die(kExitUsage, a.file + ": " + s.error().message);
  ChaosOptions o;
  o.seed = a.seed.empty() ? s->seed : parse_seed(a.seed);
  o.run_dir = a.dir;
  o.keep_dir = a.keep;
  o.ipsan_binary = a.ipsan;
  std::cout << "ipsan chaos: " << a.file << " seed " << o.seed << " (rerun: ipsan chaos run "
            << a.file << " --seed " << o.seed << ")" << std::endl;
  auto r = run_chaos(*s, o, std::cout);
  std::cout.flush();
  if (!r) die(kExitRuntime, "harness failure (the run proved nothing): " + r.error().message);
  if (!r->verdict.ok()) {
    Schedule copy = *s;
    copy.seed = o.seed;
    std::cerr << "ipsan chaos: FAILED: " << r->verdict.lost << " blocks lost or re-applied, "
              << r->verdict.corrupt << " corrupt; run directory kept: " << r->run_dir
              << "\nschedule (save and rerun with `ipsan chaos run FILE`):\n"
              << format_schedule(copy) << std::flush;
    throw CLI::RuntimeError(kExitRuntime);
  }
  std::cout << "ipsan chaos: PASS" << std::endl;
}

}  // namespace

void add_cli(CLI::App& app) {
  auto* chaos = app.add_subcommand(
      "chaos", "Fault schedules: run one against real ipsan processes and check every write");
  chaos->require_subcommand(1);

  auto ra = std::make_shared<RunArgs>();
  auto* run_cmd = chaos->add_subcommand(
      "run",
      "Start the schedule's parties, apply its faults at their times with a write workload, then "
      "check: no acknowledged write lost, none applied twice (exit 0 pass, 1 fail, 2 usage)");
  run_cmd->add_option("schedule", ra->file, "Schedule file (TOML, docs/HA.md)")->required();
  run_cmd->add_option("--seed", ra->seed, "Seed (default: the schedule's); same seed, same run");
  run_cmd->add_option("--dir", ra->dir,
                      "Run directory (kept; default a temporary one, kept on failure)");
  run_cmd->add_flag("--keep", ra->keep, "Keep the temporary run directory");
  run_cmd->add_option("--ipsan", ra->ipsan,
                      "The ipsan program for the parties (default: this one)");
  run_cmd->callback([ra] { run(*ra); });

  auto seed = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* gen = chaos->add_subcommand("gen", "Print a random schedule from a seed");
  gen->add_option("--seed", *seed, "Seed")->required();
  gen->add_option("-o,--output", *out, "Write to this file instead of stdout");
  gen->callback([seed, out] {
    const std::string text = format_schedule(generate_schedule(parse_seed(*seed)));
    if (out->empty()) {
      std::cout << text << std::flush;
      return;
    }
    std::ofstream f(*out);
    f << text;
    if (!f.flush()) die(kExitRuntime, "cannot write " + *out);
  });
}

}  // namespace ipsan::ha
