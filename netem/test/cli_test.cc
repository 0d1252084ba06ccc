// `ipsan netem` command line: bad arguments give a clear error and an exit code.
#include "netem_cli.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

namespace ipsan::netem {
namespace {

struct Outcome {
  int code = 0;  // 0 = callback returned normally
  std::string out;
  std::string err;
};

Outcome run_cli(const std::string& args) {
  CLI::App app("ipsan");
  add_cli(app);
  Outcome o;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  try {
    app.parse(args, false);
  } catch (const CLI::ParseError& e) {
    o.code = e.get_exit_code();
    if (o.code == 0) o.code = -1;
  }
  o.out = testing::internal::GetCapturedStdout();
  o.err = testing::internal::GetCapturedStderr();
  return o;
}

constexpr const char* kAddrs = "netem --listen 127.0.0.1:0 --forward 127.0.0.1:9 --duration 1ms ";

TEST(NetemCli, BadImpairmentValuesNameTheFlag) {
  const std::pair<std::string, std::string> cases[] = {
      {"--loss lots", "--loss lots"},
      {"--up-delay soon", "--up-delay soon"},
      {"--down-jitter 2ms,wobbly", "--down-jitter"},
      {"--rate 10furlongs", "--rate"},
      {"--mtu 1500,chop", "--mtu"},
      {"--partition 2s", "--partition"},
      {"--burst 150%,10%", "--burst"},
      {"--seed banana", "--seed"},
      {"--profile moon", "wan-20ms"},
  };
  for (const auto& [flags, expect] : cases) {
    const Outcome o = run_cli(kAddrs + flags);
    EXPECT_EQ(o.code, 2) << flags;
    EXPECT_NE(o.err.find(expect), std::string::npos) << flags << " -> " << o.err;
    EXPECT_EQ(o.err.rfind("ipsan netem: ", 0), 0u) << o.err;
  }
}

TEST(NetemCli, BadDuration) {
  const Outcome o = run_cli("netem --listen 127.0.0.1:0 --forward 127.0.0.1:9 --duration forever");
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--duration"), std::string::npos) << o.err;
}

TEST(NetemCli, MissingOrBadAddresses) {
  EXPECT_NE(run_cli("netem --forward 127.0.0.1:9").err.find("--listen"), std::string::npos);
  EXPECT_NE(run_cli("netem --listen 127.0.0.1:0").err.find("--forward"), std::string::npos);
  const Outcome bad = run_cli("netem --listen 127.0.0.1 --forward 127.0.0.1:9");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("no port"), std::string::npos) << bad.err;
  EXPECT_EQ(run_cli("netem --listen 127.0.0.1:0 --forward example.com:9").code, 2);
  EXPECT_EQ(run_cli("netem --listen 127.0.0.1:0 --forward 127.0.0.1:0").code, 2);
  EXPECT_EQ(run_cli("netem --listen 127.0.0.1:99999 --forward 127.0.0.1:9").code, 2);
}

TEST(NetemCli, ListProfiles) {
  const Outcome o = run_cli("netem --list-profiles");
  EXPECT_EQ(o.code, 0);
  for (const char* name :
       {"lan", "wan-20ms", "wan-50ms", "lossy-0.1pct", "lossy-1pct", "lossy-5pct", "bursty",
        "reorder", "duplicate", "corrupt", "nasty", "partition"}) {
    EXPECT_NE(o.out.find(std::string(name) + "\n"), std::string::npos) << name;
  }
}

TEST(NetemCli, RunsForDurationAndReportsAddressSeedAndCounters) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("ipsan_netem_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cap = (dir / "c.pcap").string();
  const Outcome o = run_cli(std::string("netem --listen 127.0.0.1:0 --forward 127.0.0.1:9 "
                                        "--duration 20ms --seed 77 --profile wan-20ms "
                                        "--up-loss 1% --capture ") +
                            cap);
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.out.find("seed 77\n"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("listening on 127.0.0.1:"), std::string::npos) << o.out;
  EXPECT_EQ(o.out.find("listening on 127.0.0.1:0\n"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("up: loss=1% delay=10ms"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("down: delay=10ms"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("up: entered=0 delivered=0"), std::string::npos) << o.out;
  EXPECT_TRUE(std::filesystem::exists(cap));
  EXPECT_TRUE(std::filesystem::exists(dir / "c.in.pcap"));
  EXPECT_TRUE(std::filesystem::exists(dir / "c.fates.csv"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ipsan::netem
