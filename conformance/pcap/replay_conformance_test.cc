// Replay against a real in-process server (docs/CAPTURE.md):
//  - every conformance/traces/*.trace through the client driver over UDP (and all of them once
//    through a lossy netem proxy, and once over TCP): the server must answer every line exactly
//    as the in-memory reference target does when given the same device identities, and every
//    line that depends on neither fault injection nor the reference target's identity strings
//    must match the trace;
//  - ipsan captures: a recorded run (server-side tap and netem proxy capture) replayed against a
//    fresh server built the same way: every reply matches;
//  - iSCSI: the committed tgt capture (and a live one made with tgtd + libiscsi + tcpdump when
//    they can run) imported and replayed through ipsan: agreement with tgt's answers apart from
//    the documented intended differences.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "ipsan/testing/skip.h"
#include "ipsan/base/pattern.h"
#include "ipsan/client/memory_target.h"
#include "ipsan/client/trace/runner.h"
#include "ipsan/client/trace/trace.h"
#include "ipsan/replay/capture.h"
#include "ipsan/replay/ipsan_capture.h"
#include "ipsan/replay/iscsi.h"
#include "ipsan/replay/iscsi_replay.h"
#include "ipsan/client/runtime.h"
#include "ipsan/replay/trace_replay.h"
#include "server_fixture.h"

namespace ipsan::replay {
namespace {

namespace fs = std::filesystem;
using testing::ServerFixture;

// The reference layout of conformance/traces (conformance_traces_test.cc), as server back ends.
const std::vector<ServerFixture::Device> kTraceDevices = {
    {1, "ram:2M"}, {2, "ram:512K,ro"}, {3, "ram:4M,bs=4096"}};

std::vector<std::string> trace_files() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(IPSAN_TRACE_DIR)) {
    if (e.path().extension() == ".trace") out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

client::RuntimeOptions remote(std::uint16_t port,
                              proto::TransportKind kind = proto::TransportKind::kUdp) {
  client::RuntimeOptions o;
  o.transport.port = port;
  o.transport.kind = kind;
  o.client.client_name = "alice";
  o.client.key = testing::fixture_key();
  o.client.request_timeout = std::chrono::seconds(20);
  o.connect_timeout = std::chrono::seconds(30);
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("ipsan_replay_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::set<int> mismatched_lines(const client::trace::ReplayReport& r) {
  std::set<int> out;
  for (const auto& l : r.lines) {
    if (l.outcome == client::trace::Outcome::kMismatch ||
        l.outcome == client::trace::Outcome::kError) {
      out.insert(l.line);
    }
  }
  return out;
}

// Runs `trace` on the server behind `target` and on a MemoryTarget with the server's identities
// (no fault injection on either), both in record mode, and checks that they agree line by line.
void check_trace_against_server(client::GenericTarget& target, const client::trace::Trace& trace,
                                std::size_t& matched_total) {
  auto map = parse_device_map(kReferenceMap);
  ASSERT_TRUE(map) << map.error().message;
  auto bus = make_bus(target, *map, 20000);
  ASSERT_TRUE(bus) << bus.error().message;

  client::MemoryTarget mem;
  mem.set_log_data(false);
  for (const auto& m : *map) {
    proto::Request req;
    req.op = proto::Op::kIdentify;
    req.device_id = m.device_id;
    auto* rt = dynamic_cast<client::Runtime*>(&target);
    ASSERT_NE(rt, nullptr);
    const proto::Reply id = rt->call_for(req, std::chrono::seconds(20));
    ASSERT_EQ(id.status, Errc::kOk);
    mem.add_device(m.device_id, id.identity);
  }
  client::scsi::Bus ref;
  ref.add_server("remote", mem);
  for (const auto& m : *map) ASSERT_TRUE(ref.map({m.target, m.lun, "remote", m.device_id}));
  ASSERT_EQ(ref.attach_all_and_wait(5000), Errc::kOk);

  client::trace::ReplayOptions ro;
  ro.record = true;
  ro.timeout_ms = 30000;
  const auto server_report = client::trace::run_traces({trace}, **bus, ro);
  const auto ref_report = client::trace::run_traces({trace}, ref, ro);
  std::ostringstream os;
  client::trace::print_report(os, server_report, false);
  EXPECT_EQ(server_report.errors, 0u) << os.str();
  ASSERT_EQ(server_report.recorded.size(), 1u);
  ASSERT_EQ(ref_report.recorded.size(), 1u);
  // Line by line: what the server answered == what the reference answered.
  const auto& a = server_report.recorded[0].commands;
  const auto& b = ref_report.recorded[0].commands;
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(client::trace::format_command(a[i]), client::trace::format_command(b[i]))
        << trace.name << ":" << a[i].line;
  }
  // Lines that differ from the trace are exactly those the reference, without its fault hook and
  // with the server's identities, also misses (fault-dependent or identity-dependent lines).
  EXPECT_EQ(mismatched_lines(server_report), mismatched_lines(ref_report)) << os.str();
  matched_total += server_report.matched;
}

class ServerTrace : public ::testing::TestWithParam<std::string> {};

TEST_P(ServerTrace, AnswersLikeTheReferenceTarget) {
  auto trace = client::trace::load_trace(std::string(IPSAN_TRACE_DIR) + "/" + GetParam());
  ASSERT_TRUE(trace) << trace.error().message;
  ServerFixture server(kTraceDevices);
  ASSERT_EQ(server.error(), "");
  auto target = client::Runtime::start(remote(server.udp_port()));
  ASSERT_TRUE(target) << target.error().message;
  std::size_t matched = 0;
  check_trace_against_server(**target, *trace, matched);
  EXPECT_GT(matched, 0u);
  RecordProperty("matched", static_cast<int>(matched));
}

INSTANTIATE_TEST_SUITE_P(Traces, ServerTrace, ::testing::ValuesIn(trace_files()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name = param.param.substr(0, param.param.size() - 6);
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// Each trace on a fresh server (traces assume fresh devices), through the given transport.
void run_all_traces(proto::TransportKind kind, const std::string& netem_profile) {
  std::size_t matched = 0;
  for (const auto& f : trace_files()) {
    SCOPED_TRACE(f);
    auto trace = client::trace::load_trace(std::string(IPSAN_TRACE_DIR) + "/" + f);
    ASSERT_TRUE(trace) << trace.error().message;
    ServerFixture server(kTraceDevices);
    ASSERT_EQ(server.error(), "");
    client::RuntimeOptions o =
        remote(kind == proto::TransportKind::kUdp ? server.udp_port() : server.tcp_port(), kind);
    o.netem = netem_profile;
    o.netem_seed = 42;
    auto target = client::Runtime::start(o);
    ASSERT_TRUE(target) << target.error().message;
    check_trace_against_server(**target, *trace, matched);
  }
  EXPECT_GT(matched, 100u);
}

TEST(ServerTraces, AllThroughLossyNetemProfile) {
  run_all_traces(proto::TransportKind::kUdp, "lossy-1pct");
}

TEST(ServerTraces, AllOverTcp) { run_all_traces(proto::TransportKind::kTcp, ""); }

// ---- ipsan captures ----

// A deterministic workload: writes of seeded patterns, reads back, flush, trim, identify.
void run_workload(client::Runtime& t) {
  const auto timeout = std::chrono::seconds(20);
  for (std::uint32_t dev : {1u, 3u}) {
    proto::Request id;
    id.op = proto::Op::kIdentify;
    id.device_id = dev;
    const auto ident = t.call_for(id, timeout);
    ASSERT_EQ(ident.status, Errc::kOk);
    const std::uint32_t bs = ident.identity.block_size;
    for (std::uint64_t lba = 0; lba < 64; lba += 8) {
      proto::Request w;
      w.op = proto::Op::kWrite;
      w.device_id = dev;
      w.lba = lba;
      w.blocks = 4;
      w.data.resize(std::size_t{4} * bs);
      fill_pattern_blocks(w.data, bs, 99, lba, 0);
      ASSERT_EQ(t.call_for(w, timeout).status, Errc::kOk);
    }
    for (std::uint64_t lba = 0; lba < 64; lba += 16) {
      proto::Request r;
      r.op = proto::Op::kRead;
      r.device_id = dev;
      r.lba = lba;
      r.blocks = 16;  // 128 KiB for the 4K device: fragmented over many datagrams
      ASSERT_EQ(t.call_for(r, timeout).status, Errc::kOk);
    }
    proto::Request f;
    f.op = proto::Op::kFlush;
    f.device_id = dev;
    ASSERT_EQ(t.call_for(f, timeout).status, Errc::kOk);
    proto::Request c;
    c.op = proto::Op::kCapacity;
    c.device_id = dev;
    ASSERT_EQ(t.call_for(c, timeout).status, Errc::kOk);
  }
  // A failing request is captured and replayed too.
  proto::Request bad;
  bad.op = proto::Op::kRead;
  bad.device_id = 1;
  bad.lba = 1u << 30;
  bad.blocks = 1;
  EXPECT_EQ(t.call_for(bad, timeout).status, Errc::kLbaOutOfRange);
  proto::Request ro;
  ro.op = proto::Op::kWrite;
  ro.device_id = 2;
  ro.blocks = 1;
  ro.data.resize(512, 0xAB);
  EXPECT_EQ(t.call_for(ro, timeout).status, Errc::kWriteProtected);
}

void replay_capture_and_check(const std::string& pcap, std::size_t min_calls,
                              ExtractOptions eo = {},
                              proto::TransportKind kind = proto::TransportKind::kUdp) {
  auto cap = read_capture(pcap);
  ASSERT_TRUE(cap) << cap.error().message;
  const IpsanCapture calls = extract_ipsan(*cap, eo);
  ServerFixture fresh(kTraceDevices);
  ASSERT_EQ(fresh.error(), "");
  auto target = client::Runtime::start(
      remote(kind == proto::TransportKind::kUdp ? fresh.udp_port() : fresh.tcp_port(), kind));
  ASSERT_TRUE(target) << target.error().message;
  const auto report = replay_ipsan(calls, **target, PcapReplayOptions{});
  std::ostringstream os;
  print_pcap_report(os, report, false);
  EXPECT_TRUE(report.ok()) << os.str();
  EXPECT_GE(report.matched, min_calls) << os.str();
  for (const auto& r : report.results) {
    if (r.outcome == MessageOutcome::kSkipped) {
      EXPECT_TRUE(r.detail.find("login") != std::string::npos ||
                  r.detail.find("re-sent") != std::string::npos ||
                  (eo.port && r.detail.find("no reply captured") != std::string::npos))
          << r.detail;
    }
  }
  std::cout << os.str();
}

TEST(IpsanCapture, NetemProxyCaptureReplaysOnFreshServer) {
  const fs::path dir = temp_dir("netem");
  const std::string pcap = (dir / "run.pcap").string();
  {
    ServerFixture server(kTraceDevices);
    ASSERT_EQ(server.error(), "");
    client::RuntimeOptions o = remote(server.udp_port());
    o.netem = "lan";
    o.netem_capture = pcap;
    auto target = client::Runtime::start(o);
    ASSERT_TRUE(target) << target.error().message;
    run_workload(**target);
  }
  replay_capture_and_check(pcap, 30);
  fs::remove_all(dir);
}

#ifdef IPSAN_HAVE_UDP_TAP
TEST(IpsanCapture, ServerTapCaptureReplaysOnFreshServer) {
  const fs::path dir = temp_dir("tap");
  const std::string pcap = (dir / "server.pcap").string();
  {
    ServerFixture server(kTraceDevices, pcap);
    ASSERT_EQ(server.error(), "");
    auto target = client::Runtime::start(remote(server.udp_port()));
    ASSERT_TRUE(target) << target.error().message;
    run_workload(**target);
  }
  replay_capture_and_check(pcap, 30);
  // Timing "original" paces by the capture's timestamps: same answers.
  auto cap = read_capture(pcap);
  ASSERT_TRUE(cap);
  ServerFixture fresh(kTraceDevices);
  auto target = client::Runtime::start(remote(fresh.udp_port()));
  ASSERT_TRUE(target);
  PcapReplayOptions po;
  po.timing = Timing::kOriginal;
  EXPECT_TRUE(replay_ipsan(extract_ipsan(*cap, ExtractOptions{}), **target, po).ok());
  fs::remove_all(dir);
}
#endif

// The server's TCP transport tapped (`ipsan server --capture` over TCP): the connections written
// as TCP segments, reassembled by the reader, found without --port (the streams begin with ipsan
// calls), and replayed over either transport: every reply matches.
TEST(IpsanCapture, ServerTcpTapCaptureReplaysOnFreshServer) {
  const fs::path dir = temp_dir("tcptap");
  const std::string pcap = (dir / "server.pcap").string();
  {
    ServerFixture server(kTraceDevices, pcap);
    ASSERT_EQ(server.error(), "");
    auto target = client::Runtime::start(remote(server.tcp_port(), proto::TransportKind::kTcp));
    ASSERT_TRUE(target) << target.error().message;
    run_workload(**target);
  }
  auto cap = read_capture(pcap);
  ASSERT_TRUE(cap) << cap.error().message;
  EXPECT_EQ(cap->skipped.to_string(), "");
  std::size_t tcp = 0;
  for (const auto& p : cap->packets) {
    tcp += p.protocol == kProtoTcp ? 1 : 0;
    EXPECT_LE(p.payload.size(), netem::kMaxTcpSegment);
  }
  EXPECT_GT(tcp, 30u);
  const IpsanCapture calls = extract_ipsan(*cap, ExtractOptions{});
  EXPECT_EQ(calls.skipped.to_string(), "");  // no hole, no retransmission, nothing left over
  EXPECT_GE(calls.calls.size(), 30u);
  replay_capture_and_check(pcap, 30);
  replay_capture_and_check(pcap, 30, ExtractOptions{}, proto::TransportKind::kTcp);
  // Original timing over TCP: the same answers.
  ServerFixture fresh(kTraceDevices);
  auto target = client::Runtime::start(remote(fresh.tcp_port(), proto::TransportKind::kTcp));
  ASSERT_TRUE(target);
  PcapReplayOptions po;
  po.timing = Timing::kOriginal;
  const auto report = replay_ipsan(calls, **target, po);
  EXPECT_TRUE(report.ok());
  EXPECT_GE(report.matched, 30u);
  fs::remove_all(dir);
}

// tcpdump and tshark (when installed) read a server capture holding both transports without
// complaint: every record decoded, checksums correct, RPC over TCP dissected.
TEST(IpsanCapture, ServerCaptureIsReadableByTcpdumpAndTshark) {
  const bool have_tcpdump = std::system("command -v tcpdump >/dev/null 2>&1") == 0;
  const bool have_tshark = std::system("command -v tshark >/dev/null 2>&1") == 0;
  if (!have_tcpdump && !have_tshark) IPSAN_SKIP_OR_FAIL() << "neither tcpdump nor tshark is installed";
  const fs::path dir = temp_dir("tools");
  const std::string pcap = (dir / "server.pcap").string();
  std::uint16_t tcp_port = 0, udp_port = 0;
  {
    ServerFixture server(kTraceDevices, pcap);
    ASSERT_EQ(server.error(), "");
    tcp_port = server.tcp_port();
    udp_port = server.udp_port();
    for (auto kind : {proto::TransportKind::kUdp, proto::TransportKind::kTcp}) {
      auto target = client::Runtime::start(
          remote(kind == proto::TransportKind::kUdp ? udp_port : tcp_port, kind));
      ASSERT_TRUE(target) << target.error().message;
      run_workload(**target);
    }
  }
  auto cap = read_capture(pcap);
  ASSERT_TRUE(cap) << cap.error().message;
  std::size_t udp = 0, tcp = 0;
  for (const auto& p : cap->packets) (p.protocol == kProtoTcp ? tcp : udp)++;
  EXPECT_GT(udp, 0u);
  EXPECT_GT(tcp, 0u);
  auto read_text = [](const fs::path& path) {
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  auto count_lines = [](const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    std::istringstream is(text);
    for (std::string line; std::getline(is, line);) n += line.find(needle) != std::string::npos;
    return n;
  };
  if (have_tcpdump) {
    const std::string cmd = "tcpdump -nn -vv -r " + pcap + " >" + (dir / "td.out").string() +
                            " 2>" + (dir / "td.err").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_text(dir / "td.err");
    const std::string out = read_text(dir / "td.out");
    // -vv prints one header line per IP packet with its checksum verdicts.
    EXPECT_EQ(count_lines(out, ", proto "), cap->packets.size());
    EXPECT_EQ(count_lines(out, "incorrect"), 0u) << out.substr(0, 4000);
    // Headers cut short would show as [|ip], [|tcp], [|udp]. (Payloads are not checked:
    // tcpdump may guess a protocol from a random port.)
    for (const char* cut : {"[|ip", "[|tcp", "[|udp", "bad hdr length", "bad-len"}) {
      EXPECT_EQ(count_lines(out, cut), 0u) << cut;
    }
    EXPECT_GE(count_lines(out, "Flags [S]"), 1u);
    EXPECT_GE(count_lines(out, "Flags [F."), 2u);
  }
  if (have_tshark) {
    // ipsan's program number is not one tshark knows: dissect unknown RPC programs. Reliable UDP
    // has no dissector: its port is plain data (else heuristic dissectors such as e100 guess at
    // the datagrams and report them malformed).
    const std::string common = "tshark -n -r " + pcap +
                               " -d tcp.port==" + std::to_string(tcp_port) +
                               ",rpc -d udp.port==" + std::to_string(udp_port) +
                               ",data -o rpc.dissect_unknown_programs:TRUE ";
    std::string cmd = common + ">" + (dir / "ts.out").string() + " 2>" + (dir / "ts.err").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_text(dir / "ts.err");
    const std::string out = read_text(dir / "ts.out");
    std::istringstream lines(out);
    std::size_t records = 0;
    for (std::string line; std::getline(lines, line);) ++records;
    EXPECT_EQ(records, cap->packets.size());
    EXPECT_EQ(count_lines(out, "Malformed"), 0u);
    EXPECT_GE(count_lines(out, " Call"), 10u);             // RPC calls over TCP dissected
    EXPECT_GE(count_lines(out, " Reply (Call In "), 10u);  // and paired with their replies
    // Expert info down to notes, with checksum validation: no errors, no warnings (missing or
    // unseen segments, bad checksums), and of the notes only the connection's closing (no
    // retransmission, out-of-order, duplicate ACK or window notes).
    cmd = common +
          "-o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE -o ip.check_checksum:TRUE "
          "-q -z expert,note >" +
          (dir / "ts.expert").string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_text(dir / "ts.expert");
    const std::string expert = read_text(dir / "ts.expert");
    EXPECT_EQ(expert.find("Warns ("), std::string::npos) << expert;
    EXPECT_EQ(expert.find("Errors ("), std::string::npos) << expert;
    std::string lower = expert;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* note : {"retransmission", "out-of-order", "dup ack", "duplicate ack",
                             "captured", "unseen", "spurious", "zero window", "window full"}) {
      EXPECT_EQ(lower.find(note), std::string::npos) << note << "\n" << expert;
    }
  }
  if (HasFailure()) {
    std::cout << "capture and tool output kept in " << dir.string() << "\n";
    return;
  }
  fs::remove_all(dir);
}

// ipsan over TCP, captured by tcpdump on lo (record marking, TCP reassembly). tcpdump captures
// everything (some kernels attach no working BPF filter to lo); the extraction picks the port.
TEST(IpsanCapture, TcpRunCapturedByTcpdumpReplays) {
  if (::geteuid() != 0 || std::system("command -v tcpdump >/dev/null 2>&1") != 0) {
    IPSAN_SKIP_OR_FAIL() << "needs root and tcpdump to capture on lo";
  }
  const fs::path dir = temp_dir("tcp");
  const std::string pcap = (dir / "all.pcap").string();
  const std::string log = (dir / "tcpdump.log").string();
  const std::string pidfile = (dir / "pid").string();
  const std::string start =
      "tcpdump -i lo -U -s 0 -w " + pcap + " >" + log + " 2>&1 & echo $! >" + pidfile;
  ASSERT_EQ(std::system(start.c_str()), 0);
  auto read_text = [](const std::string& path) {
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  const int pid = std::atoi(read_text(pidfile).c_str());
  ASSERT_GT(pid, 0);
  // Bounded wait for tcpdump to report that it is capturing (its only readiness signal).
  bool listening = false;
  for (int i = 0; i < 500 && !listening; ++i) {
    listening = read_text(log).find("listening on") != std::string::npos;
    if (!listening) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!listening) {
    ::kill(pid, SIGKILL);
    fs::remove_all(dir);
    IPSAN_SKIP_OR_FAIL() << "tcpdump cannot capture on lo: " << read_text(log);
  }
  std::uint16_t port = 0;
  {
    ServerFixture server(kTraceDevices);
    ASSERT_EQ(server.error(), "");
    port = server.tcp_port();
    auto target = client::Runtime::start(remote(port, proto::TransportKind::kTcp));
    ASSERT_TRUE(target) << target.error().message;
    run_workload(**target);
  }
  ::kill(pid, SIGINT);
  for (int i = 0; i < 500 && ::kill(pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ExtractOptions eo;
  eo.port = port;
  // tcpdump may miss the last segments when stopped: those calls are skipped ("no reply
  // captured"), never mismatched.
  replay_capture_and_check(pcap, 10, eo);
  if (std::getenv("IPSAN_KEEP_CAPTURE") == nullptr) fs::remove_all(dir);
}

// ---- iSCSI ----

void replay_iscsi_capture(const std::string& pcap, std::size_t min_matched) {
  auto cap = read_capture(pcap);
  ASSERT_TRUE(cap) << cap.error().message;
  const auto imported = iscsi::import_iscsi(*cap, iscsi::ImportOptions{});
  ASSERT_GT(imported.commands.size(), 0u) << imported.skipped.to_string();
  // tgt's LUN 1 is a 4 MiB file of 512-byte blocks: ipsan's device 0 is the same size.
  ServerFixture server({{0, "ram:4M"}});
  ASSERT_EQ(server.error(), "");
  auto target = client::Runtime::start(remote(server.udp_port()));
  ASSERT_TRUE(target) << target.error().message;
  auto map = parse_device_map("1=0");
  ASSERT_TRUE(map);
  auto bus = make_bus(**target, *map, 20000);
  ASSERT_TRUE(bus) << bus.error().message;
  const auto report = iscsi::replay_iscsi(imported, **bus, iscsi::IscsiReplayOptions{});
  std::ostringstream os;
  iscsi::print_iscsi_report(os, report, false);
  std::cout << pcap << ": " << os.str();
  EXPECT_TRUE(report.ok()) << os.str();
  EXPECT_GE(report.matched, min_matched) << os.str();
  ::testing::Test::RecordProperty("agreement", static_cast<int>(report.matched));
}

TEST(IscsiCapture, CommittedTgtCaptureAgreesWithIpsan) {
  replay_iscsi_capture(std::string(IPSAN_PCAP_DIR) + "/tgt_small.pcap", 10);
}

TEST(IscsiCapture, LiveTgtCaptureAgreesWithIpsan) {
  const fs::path dir = temp_dir("tgt");
  const std::string pcap = (dir / "tgt.pcap").string();
  const std::string cmd = std::string(IPSAN_PCAP_DIR) + "/make_iscsi_capture.sh " + pcap +
                          " full > " + (dir / "log").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
    std::ifstream f(dir / "log");
    std::string why((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    fs::remove_all(dir);
    IPSAN_SKIP_OR_FAIL() << "cannot make a live iSCSI capture here: " << why;
  }
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "make_iscsi_capture.sh failed";
  replay_iscsi_capture(pcap, 100);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ipsan::replay
