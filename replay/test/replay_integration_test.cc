// `ipsan replay` and `ipsan trace import` driven through CLI11 in-process against an in-process
// server (127.0.0.1, port 0): traces with --record and the recorded trace replayed, iSCSI pcap
// replay, trace import, and bad arguments / hostile files giving errors (exit codes), not crashes.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>

#include "ipsan/client/trace/trace.h"
#include "replay_cli.h"
#include "server_fixture.h"

namespace ipsan::replay {
namespace {

namespace fs = std::filesystem;
using testing::ServerFixture;


// Runs `ipsan ARGS...`; returns the exit code a CLI::RuntimeError carried (0 = none), or -1
// for a CLI11 parse error.
int run_cli(std::vector<std::string> args) {
  CLI::App app{"test", "ipsan"};
  app.require_subcommand(1);
  add_cli(app);
  std::vector<const char*> argv{"ipsan"};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError&) {
    return -1;
  }
  return 0;
}

class ReplayCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ipsan_replay_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // The fixture's key as 64 hex digits in a private file (keys never go in argv).
    const Key256 k = testing::fixture_key();
    std::ofstream(path("fixture.key")) << to_hex({k.data(), k.size()}) << "\n";
    fs::permissions(path("fixture.key"), fs::perms::owner_read | fs::perms::owner_write);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(ReplayCli, TracesRecordAndReplayTheRecording) {
  ServerFixture server({{1, "ram:2M"}, {2, "ram:512K,ro"}, {3, "ram:4M,bs=4096"}});
  ASSERT_EQ(server.error(), "");
  const std::string srv = "127.0.0.1:" + std::to_string(server.udp_port());
  const std::string trace = std::string(IPSAN_TRACE_DIR) + "/read_write.trace";
  const int rc = run_cli(
      {"replay", "-s", srv, "-n", "alice", "--key-file", path("fixture.key"), "--record", path("rec.trace"), trace});
  EXPECT_TRUE(rc == 0 || rc == 1) << rc;
  auto rec = client::trace::load_trace(path("rec.trace"));
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_GT(rec->commands.size(), 10u);
  // What the server answered, replayed against a fresh server, matches everywhere.
  ServerFixture fresh({{1, "ram:2M"}, {2, "ram:512K,ro"}, {3, "ram:4M,bs=4096"}});
  EXPECT_EQ(run_cli({"replay", "-s", "127.0.0.1:" + std::to_string(fresh.tcp_port()), "-t", "tcp",
                     "-n", "alice", "--key-file", path("fixture.key"), path("rec.trace")}),
            0);
}

TEST_F(ReplayCli, IscsiCaptureReplayAndTraceImport) {
  const std::string pcap = std::string(IPSAN_PCAP_DIR) + "/tgt_small.pcap";
  ServerFixture server({{0, "ram:4M"}});
  ASSERT_EQ(server.error(), "");
  const std::string srv = "127.0.0.1:" + std::to_string(server.udp_port());
  EXPECT_EQ(run_cli({"replay", "--pcap", pcap, "--iscsi", "-s", srv, "-n", "alice", "--key-file", path("fixture.key"),
                     "--netem", "lan"}),
            0);
  EXPECT_EQ(run_cli({"trace", "import", pcap, "-o", path("tgt.trace")}), 0);
  auto t = client::trace::load_trace(path("tgt.trace"));
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->commands.size(), 19u);
}

TEST_F(ReplayCli, BadInputsAreErrorsNotCrashes) {
  ServerFixture server({{1, "ram:1M"}});
  const std::string srv = "127.0.0.1:" + std::to_string(server.udp_port());
  const std::string trace = std::string(IPSAN_TRACE_DIR) + "/basics.trace";
  {
    std::ofstream(path("garbage.pcap")) << "definitely not a capture";
    std::ofstream(path("bad.trace")) << "# ipsan-trace v1\nscsi lun=zz cdb=12\n";
    std::ofstream(path("key")) << "";
  }
  EXPECT_EQ(run_cli({"replay"}), 2);  // nothing to replay
  EXPECT_EQ(run_cli({"replay", "-s", srv, "--key-file", path("fixture.key"), "-n", "alice", "--map", "x=1", trace}), 2);
  EXPECT_EQ(run_cli({"replay", "-s", srv, "--key-file", path("fixture.key"), "-n", "alice", "--map", "0=9", trace}), 2);
  EXPECT_EQ(run_cli({"replay", "-s", srv, "-n", "alice", "--key-file", path("key"), trace}), 2);
  EXPECT_EQ(run_cli({"replay", "-s", srv, "-n", "alice", "--key", "wrong", trace}), 2);
  // A key on the command line is refused even when it is the right one.
  const Key256 k = testing::fixture_key();
  EXPECT_EQ(run_cli({"replay", "-s", srv, "-n", "alice", "--key", to_hex({k.data(), k.size()}),
                     trace}),
            2);
  EXPECT_EQ(run_cli({"replay", "-s", srv, "-n", "alice", "--key-file", path("fixture.key"), path("nope.trace")}), 2);
  EXPECT_EQ(run_cli({"replay", "-s", srv, "-n", "alice", "--key-file", path("fixture.key"), path("bad.trace")}), 2);
  EXPECT_EQ(
      run_cli({"replay", "-s", srv, "-n", "alice", "--key-file", path("fixture.key"), "--pcap", path("garbage.pcap")}),
      2);
  EXPECT_EQ(run_cli({"replay", "-s", "nohost:x", "-n", "alice", "--key-file", path("fixture.key"), trace}), 2);
  EXPECT_EQ(run_cli({"replay", "-s", srv, "--key-file", path("fixture.key"), "--netem", "no-such", trace}), 2);
  EXPECT_EQ(run_cli({"replay", "--timing", "slow", "--pcap", "x"}), -1);
  EXPECT_EQ(run_cli({"trace", "import", path("garbage.pcap")}), 2);
  EXPECT_EQ(run_cli({"trace", "import", path("nope.pcap")}), 2);
}

}  // namespace
}  // namespace ipsan::replay
