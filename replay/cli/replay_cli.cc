// `ipsan replay` and `ipsan trace import` (replay_cli.h): CLI11 -> options -> library calls.
#include "replay_cli.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "connect_flags.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/base/progress.h"
#include "ipsan/base/units.h"
#include "ipsan/client/connect.h"
#include "ipsan/client/runtime.h"
#include "ipsan/client/trace/runner.h"
#include "ipsan/client/trace/trace.h"
#include "ipsan/replay/capture.h"
#include "ipsan/replay/expected_differences.h"
#include "ipsan/replay/ipsan_capture.h"
#include "ipsan/replay/iscsi.h"
#include "ipsan/replay/iscsi_replay.h"
#include "ipsan/replay/trace_replay.h"

namespace ipsan::replay {
namespace {

struct Args : client::ConnectArgs {
  std::vector<std::string> traces;
  std::string map;
  std::string netem;
  std::uint64_t netem_seed = 1;
  std::string netem_capture;
  std::string record;
  bool verbose = false;
  // captures
  std::string pcap;
  bool iscsi = false;
  int port = 0;
  std::string timing = "fast";
  bool exact = false;
  // output
  std::string expected_differences;
  bool json = false;
  bool progress = false;
};

struct ImportArgs {
  std::string pcap;
  std::string out;
  int port = 0;
  bool exact = false;
  bool json = false;
};

const char* outcome_word(client::trace::Outcome o) {
  switch (o) {
    case client::trace::Outcome::kMatch: return "match";
    case client::trace::Outcome::kMismatch: return "mismatch";
    case client::trace::Outcome::kError: return "error";
    case client::trace::Outcome::kSkipped: return "skipped";
  }
  return "?";
}

// Text: one line per mismatch, error and expected difference (every line when verbose), stale
// entries of the expected-differences list, and the summary line.
void print_traces_text(const ReconciledReport& r, const std::string& expected_path, bool verbose) {
  using client::trace::Outcome;
  for (const ReportLine& l : r.lines) {
    const auto& res = l.result;
    const bool quiet = res.outcome == Outcome::kMatch || res.outcome == Outcome::kSkipped;
    if (!verbose && quiet && l.reason.empty()) continue;
    std::cout << res.trace << ":" << res.line << ": ";
    if (!l.reason.empty()) {
      std::cout << "EXPECTED DIFFERENCE (" << l.reason << "): " << res.detail << "\n";
      continue;
    }
    std::cout << client::trace::outcome_name(res.outcome);
    if (!res.detail.empty()) std::cout << ": " << res.detail;
    std::cout << "\n";
  }
  for (const auto& s : r.stale) {
    std::cout << expected_path << ": STALE ENTRY: " << s << "; remove it\n";
  }
  std::cout << r.report.matched << " matched, " << r.report.mismatched << " mismatched, "
            << r.report.errors << " errors, " << r.report.skipped << " skipped";
  if (!expected_path.empty()) {
    std::cout << ", " << r.expected << " expected differences (by design: " << expected_path
              << ")";
    if (!r.stale.empty()) std::cout << ", " << r.stale.size() << " stale entries";
  }
  std::cout << "\n";
}

// --json: one object; `lines` holds every line that did not simply match (all with -v).
void print_traces_json(const Args& a, const ReconciledReport& r, const std::string& client_stats) {
  using client::trace::Outcome;
  nlohmann::json lines = nlohmann::json::array();
  for (const ReportLine& l : r.lines) {
    const auto& res = l.result;
    if (!a.verbose && res.outcome == Outcome::kMatch) continue;
    nlohmann::json j = {{"trace", res.trace},
                        {"line", res.line},
                        {"outcome", l.reason.empty() ? outcome_word(res.outcome)
                                                     : "expected_difference"},
                        {"detail", res.detail}};
    if (!l.reason.empty()) j["reason"] = l.reason;
    lines.push_back(std::move(j));
  }
  nlohmann::json j = {{"command", "replay"},
                      {"mode", "traces"},
                      {"server", a.server},
                      {"transport", a.transport},
                      {"traces", a.traces},
                      {"ok", r.ok()},
                      {"matched", r.report.matched},
                      {"mismatched", r.report.mismatched},
                      {"errors", r.report.errors},
                      {"skipped", r.report.skipped},
                      {"expected_differences", r.expected},
                      {"expected_differences_file", a.expected_differences},
                      {"stale_entries", r.stale},
                      {"client", client_stats},
                      {"lines", std::move(lines)}};
  std::cout << j.dump() << "\n";
}

// The command whose callback runs (errors name it: `ipsan trace import` shares these helpers).
const char* g_command = "ipsan replay";

[[noreturn]] void die(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "%s: %s\n", g_command, msg.c_str());
  throw CLI::RuntimeError(code);
}

// The client runtime (logged in, optionally through --netem), or a clear error and exit 2.
std::unique_ptr<client::Runtime> connect_or_die(const Args& a) {
  auto o = client::runtime_options(a);
  if (!o) die(o.error().message);
  o->netem = a.netem;
  o->netem_seed = a.netem_seed;
  o->netem_capture = a.netem_capture;
  auto t = client::Runtime::start(std::move(*o));
  if (!t) die(t.error().message);
  return std::move(*t);
}

int timeout_ms(const Args& a) {
  auto t = parse_duration(a.timeout);
  if (!t) die(t.error().message);
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(*t).count());
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) die("cannot write " + path);
  f << text;
  if (!f) die("cannot write " + path);
}

int run_traces_cmd(const Args& a) {
  std::vector<client::trace::Trace> traces;
  std::size_t total_lines = 0;
  for (const auto& path : a.traces) {
    auto t = client::trace::load_trace(path);
    if (!t) die(t.error().message);
    total_lines += t->commands.size();
    traces.push_back(std::move(*t));
  }
  ExpectedDifferences expected;
  if (!a.expected_differences.empty()) {
    auto e = load_expected_differences(a.expected_differences);
    if (!e) die("--expected-differences: " + e.error().message);
    expected = std::move(*e);
  }
  auto map = parse_device_map(a.map.empty() ? std::string(kReferenceMap) : a.map);
  if (!map) die("--map: " + map.error().message);
  auto target = connect_or_die(a);
  auto bus = make_bus(*target, *map, timeout_ms(a));
  if (!bus) die(bus.error().message);
  client::trace::ReplayOptions ro;
  ro.record = !a.record.empty();
  ro.timeout_ms = timeout_ms(a);
  // One trace at a time (the same as all at once: each trace starts with a reset) so that the
  // progress line can follow.
  ProgressLine progress = ProgressLine::for_stderr(a.progress);
  client::trace::ReplayReport all;
  std::size_t done = 0;
  for (std::size_t i = 0; i < traces.size(); ++i) {
    auto r = client::trace::run_traces({traces[i]}, **bus, ro);
    all.matched += r.matched;
    all.mismatched += r.mismatched;
    all.errors += r.errors;
    all.skipped += r.skipped;
    done += traces[i].commands.size();
    for (auto& l : r.lines) all.lines.push_back(std::move(l));
    for (auto& t : r.recorded) all.recorded.push_back(std::move(t));
    progress.update(steady_now(),
                    str_cat("ipsan replay: ", i + 1, "/", traces.size(), " traces, ", done, "/",
                            total_lines, " lines, ", all.mismatched, " mismatched, ", all.errors,
                            " errors"),
                    i + 1 == traces.size());
  }
  progress.finish();
  std::vector<client::trace::Trace> recorded = std::move(all.recorded);
  const ReconciledReport rep = reconcile(std::move(all), expected, a.traces);
  if (a.json) {
    print_traces_json(a, rep, target->stats_line());
  } else {
    print_traces_text(rep, a.expected_differences, a.verbose);
    if (a.verbose) std::cout << "client: " << target->stats_line() << "\n";
  }
  if (!a.record.empty()) {
    client::trace::Trace one;
    one.name = a.record;
    for (const auto& t : recorded) {
      one.commands.insert(one.commands.end(), t.commands.begin(), t.commands.end());
    }
    write_file(a.record, client::trace::format_trace(one));
  }
  return rep.ok() ? 0 : 1;
}

CaptureFile read_or_die(const std::string& path) {
  auto c = read_capture(path);
  if (!c) die(c.error().message);
  return std::move(*c);
}

nlohmann::json skip_json(const SkipCounts& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [reason, n] : s.reasons) j[reason] = n;
  return j;
}

// --json of the capture modes: counts, skip reasons and `lines` (every line that did not simply
// match; all with -v).
template <class Report>
nlohmann::json capture_json(const Args& a, const char* mode, const Report& r,
                            nlohmann::json lines) {
  return {{"command", "replay"}, {"mode", mode}, {"server", a.server}, {"transport", a.transport},
          {"capture", a.pcap}, {"ok", r.ok()}, {"matched", r.matched},
          {"mismatched", r.mismatched}, {"errors", r.errors}, {"skipped", r.skipped},
          {"skip_reasons", skip_json(r.skip_reasons)}, {"lines", std::move(lines)}};
}

int run_ipsan_pcap(const Args& a) {
  const CaptureFile cap = read_or_die(a.pcap);
  ExtractOptions eo;
  if (a.port != 0) eo.port = static_cast<std::uint16_t>(a.port);
  const IpsanCapture calls = extract_ipsan(cap, eo);
  PcapReplayOptions po;
  po.timing = a.timing == "original" ? Timing::kOriginal : Timing::kFast;
  auto t = parse_duration(a.timeout);
  if (!t) die(t.error().message);
  po.timeout = *t;
  if (!a.map.empty()) {
    auto map = parse_device_map(a.map);
    if (!map) die("--map: " + map.error().message);
    for (const auto& m : *map) po.device_map[m.lun] = m.device_id;
  }
  auto target = connect_or_die(a);
  const auto report = replay_ipsan(calls, *target, po);
  if (a.json) {
    static const char* const kOutcome[] = {"match", "mismatch", "error", "skipped"};
    nlohmann::json lines = nlohmann::json::array();
    for (const auto& m : report.results) {
      if (!a.verbose && m.outcome == MessageOutcome::kMatch) continue;
      lines.push_back({{"index", m.index},
                       {"xid", m.xid},
                       {"op", proto::op_name(m.op)},
                       {"outcome", kOutcome[static_cast<int>(m.outcome)]},
                       {"detail", m.detail}});
    }
    auto j = capture_json(a, "ipsan", report, std::move(lines));
    j["packets"] = cap.packets.size();
    j["datagrams"] = calls.datagrams;
    j["messages"] = calls.messages;
    j["calls"] = calls.calls.size();
    std::cout << j.dump() << "\n";
    return report.ok() ? 0 : 1;
  }
  std::cout << a.pcap << ": " << cap.packets.size() << " packets, " << calls.datagrams
            << " reliable-UDP datagrams, " << calls.messages << " RPC messages, "
            << calls.calls.size() << " calls\n";
  print_pcap_report(std::cout, report, a.verbose);
  return report.ok() ? 0 : 1;
}

iscsi::IscsiCapture import_or_die(const std::string& path, int port) {
  const CaptureFile cap = read_or_die(path);
  iscsi::ImportOptions io;
  io.port = static_cast<std::uint16_t>(port);
  return iscsi::import_iscsi(cap, io);
}

// Without --map: every LUN that answered READ CAPACITY goes to devices 0, 1, ... in LUN order.
std::vector<DeviceMapping> default_iscsi_map(const iscsi::IscsiCapture& cap) {
  std::set<std::uint32_t> luns;
  for (const auto& c : cap.commands) {
    if (c.skip.empty() && !c.cdb.empty() && c.status == 0 &&
        (c.cdb[0] == 0x25 || (c.cdb[0] == 0x9E && c.cdb.size() > 1 && (c.cdb[1] & 0x1F) == 0x10)))
      luns.insert(c.lun);
  }
  std::vector<DeviceMapping> out;
  std::uint32_t dev = 0;
  for (std::uint32_t l : luns) out.push_back({0, l, dev++});
  return out;
}

int run_iscsi_pcap(const Args& a) {
  const auto cap = import_or_die(a.pcap, a.port);
  std::vector<DeviceMapping> map;
  if (!a.map.empty()) {
    auto m = parse_device_map(a.map);
    if (!m) die("--map: " + m.error().message);
    map = *m;
  } else {
    map = default_iscsi_map(cap);
    if (map.empty()) die("no LUN in the capture answered READ CAPACITY: pass --map LUN=DEVICE_ID");
  }
  auto target = connect_or_die(a);
  auto bus = make_bus(*target, map, timeout_ms(a));
  if (!bus) die(bus.error().message);
  iscsi::IscsiReplayOptions ro;
  ro.exact = a.exact;
  ro.timeout_ms = timeout_ms(a);
  const auto report = iscsi::replay_iscsi(cap, **bus, ro);
  if (a.json) {
    static const char* const kOutcome[] = {"match", "mismatch", "error", "skipped"};
    nlohmann::json lines = nlohmann::json::array();
    for (const auto& l : report.lines) {
      if (!a.verbose && l.outcome == iscsi::IscsiLineResult::Outcome::kMatch) continue;
      lines.push_back({{"order", l.order},
                       {"command", l.what},
                       {"outcome", kOutcome[static_cast<int>(l.outcome)]},
                       {"detail", l.detail}});
    }
    auto j = capture_json(a, "iscsi", report, std::move(lines));
    j["connections"] = cap.connections;
    j["pdus"] = cap.pdus;
    j["commands"] = cap.commands.size();
    std::cout << j.dump() << "\n";
  } else {
    std::cout << a.pcap << ": " << cap.connections << " iSCSI connections, " << cap.pdus
              << " PDUs, " << cap.commands.size() << " SCSI commands\n";
    iscsi::print_iscsi_report(std::cout, report, a.verbose);
  }
  if (!a.record.empty()) {
    write_file(a.record, client::trace::format_trace(iscsi::to_trace(cap, a.record, a.exact)));
  }
  return report.ok() ? 0 : 1;
}

}  // namespace

void add_cli(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "replay",
      "Replay SCSI traces, ipsan captures (--pcap) or iSCSI captures (--pcap --iscsi) against a "
      "server and compare every answer");
  cmd->add_option("traces", a->traces, "SCSI trace files (docs/TRACES.md)");
  client::add_connect_flags(cmd, *a);
  cmd->add_option("--map", a->map,
                  "LUN=DEVICE_ID,... (traces default: " + std::string(kReferenceMap) +
                      "; --pcap: captured device id -> device id)");
  cmd->add_option("--netem", a->netem, "Send UDP through an in-process netem proxy (profile)");
  cmd->add_option("--netem-seed", a->netem_seed, "Seed of the netem proxy")->capture_default_str();
  cmd->add_option("--netem-capture", a->netem_capture, "Capture the proxied traffic (FILE.pcap)");
  cmd->add_option("--record", a->record, "Write the observed outcomes as a new trace");
  cmd->add_flag("-v,--verbose", a->verbose, "Print every command, not only differences");
  cmd->add_option("--pcap", a->pcap, "Replay a capture (pcap or pcapng) instead of traces");
  cmd->add_flag("--iscsi", a->iscsi,
                "The capture is iSCSI traffic (connections that begin with an iSCSI login, or "
                "--port)");
  cmd->add_option("--port", a->port,
                  "Capture port (default ipsan: UDP any port, TCP 5260 and connections that begin "
                  "with an ipsan call; iSCSI: any port with an iSCSI login)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--timing", a->timing, "original (captured spacing) or fast")
      ->check(CLI::IsMember({"original", "fast"}))
      ->capture_default_str();
  cmd->add_flag("--exact", a->exact, "iSCSI: compare every byte (no intended differences)");
  cmd->add_option("--expected-differences", a->expected_differences,
                  "Traces: FILE of TRACE:LINE REASON entries where the server differs from the "
                  "traces' reference by design (reported, not failing; a listed line that "
                  "matches is a stale entry and fails), e.g. "
                  "conformance/traces/server.differences");
  cmd->add_flag("--json", a->json, "Print the result as one JSON object on stdout");
  cmd->add_flag("--progress", a->progress,
                "Traces: progress line every second on stderr even without a tty");
  cmd->callback([a] {
    int rc = 0;
    if (!a->pcap.empty()) {
      if (!a->traces.empty()) die("pass trace files or --pcap, not both");
      if (!a->expected_differences.empty()) die("--expected-differences applies to trace files");
      rc = a->iscsi ? run_iscsi_pcap(*a) : run_ipsan_pcap(*a);
    } else {
      if (a->traces.empty()) die("nothing to replay: pass TRACE files or --pcap FILE");
      if (a->iscsi) die("--iscsi needs --pcap");
      rc = run_traces_cmd(*a);
    }
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  // `ipsan trace import`: reuse an existing `trace` subcommand if another part added one.
  CLI::App* trace = nullptr;
  try {
    trace = app.get_subcommand("trace");
  } catch (const CLI::OptionNotFound&) {
    trace = app.add_subcommand("trace", "SCSI trace tools");
    trace->require_subcommand(1);
  }
  auto ia = std::make_shared<ImportArgs>();
  auto* imp = trace->add_subcommand("import",
                                    "Turn an iSCSI capture (pcap/pcapng) into an ipsan SCSI trace");
  imp->add_option("capture", ia->pcap, "Capture file")->required();
  imp->add_option("-o,--output", ia->out, "Trace file to write (default: stdout)");
  imp->add_option("--port", ia->port, "iSCSI TCP port (0: find iSCSI logins on any port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  imp->add_flag("--exact", ia->exact,
                "Check every data-in byte (also target-specific INQUIRY fields)");
  imp->add_flag("--json", ia->json,
                "Print the import summary as one JSON object on stdout (needs -o: stdout then "
                "carries the JSON, not the trace)");
  imp->callback([ia] {
    g_command = "ipsan trace import";
    if (ia->json && ia->out.empty()) die("--json needs -o FILE (stdout carries the JSON)");
    const auto cap = import_or_die(ia->pcap, ia->port);
    const std::string text = client::trace::format_trace(
        iscsi::to_trace(cap, ia->out.empty() ? "-" : ia->out, ia->exact));
    if (ia->out.empty()) {
      std::cout << text;
    } else {
      write_file(ia->out, text);
    }
    std::size_t used = 0;
    for (const auto& c : cap.commands) used += c.skip.empty() ? 1 : 0;
    SkipCounts sk = cap.skipped;
    for (const auto& c : cap.commands) {
      if (!c.skip.empty()) sk.add(c.skip);
    }
    if (ia->json) {
      nlohmann::json j = {{"command", "trace import"},
                          {"capture", ia->pcap},
                          {"output", ia->out},
                          {"connections", cap.connections},
                          {"pdus", cap.pdus},
                          {"commands", cap.commands.size()},
                          {"imported", used},
                          {"skipped", cap.commands.size() - used},
                          {"skip_reasons", skip_json(sk)}};
      std::cout << j.dump() << "\n";
      return;
    }
    std::fprintf(
        stderr,
        "trace import: %zu connections, %zu PDUs, %zu commands imported, %zu skipped%s%s%s\n",
        cap.connections, cap.pdus, used, cap.commands.size() - used, sk.reasons.empty() ? "" : " (",
        sk.to_string().c_str(), sk.reasons.empty() ? "" : ")");
  });
}

}  // namespace ipsan::replay
