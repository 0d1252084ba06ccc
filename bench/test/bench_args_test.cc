// Unit tests of `ipsan bench` argument parsing and validation (no load is run).
#include "bench_args.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "bench_cli.h"

namespace ipsan::bench {
namespace {

constexpr const char* kHexKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// Parses argv (after the program name) with CLI11, then validates.
Result<LoadOptions, Error> parse(std::vector<std::string> args, bool key_optional = false) {
  CLI::App app;
  BenchArgs a;
  add_bench_options(app, a);
  std::vector<const char*> argv{"bench"};
  for (const auto& s : args) argv.push_back(s.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return make_load_options(a, key_optional);
}

TEST(BenchArgs, Defaults) {
  ::setenv("IPSAN_KEY", kHexKey, 1);  // keys never in argv: -k is refused
  auto o = parse({});
  ::unsetenv("IPSAN_KEY");
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->pattern, Pattern::kRandRead);
  EXPECT_EQ(o->block_bytes, 4096u);
  EXPECT_EQ(o->queue_depth, 1u);
  EXPECT_EQ(o->sessions, 1u);
  EXPECT_EQ(o->runtime, std::chrono::seconds(10));
  EXPECT_EQ(o->bytes, 0u);
  EXPECT_EQ(o->transport.kind, proto::TransportKind::kUdp);
  EXPECT_EQ(o->transport.host, "127.0.0.1");
  EXPECT_EQ(o->transport.port, 5260);
  EXPECT_FALSE(o->server_pid.has_value());
}

TEST(BenchArgs, EveryOption) {
  ::setenv("IPSAN_KEY", kHexKey, 1);
  auto o = parse({"-s",           "127.0.0.1:7000",
                  "-t",           "tcp",
                  "-n",           "alice",
                  "-d",           "3",
                  "--rw",         "randrw",
                  "--mix",        "30",
                  "--bs",         "1M",
                  "--qd",         "8",
                  "--sessions",   "4",
                  "--bytes",      "2G",
                  "--offset",     "1M",
                  "--size",       "512M",
                  "--seed",       "9",
                  "--timeout",    "5s",
                  "--server-pid", "1234",
                  "--json",       "--progress",
                  "--label",      "x",
                  "--datagram",   "9000"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->transport.port, 7000);
  EXPECT_EQ(o->transport.kind, proto::TransportKind::kTcp);
  EXPECT_EQ(o->client_name, "alice");
  EXPECT_EQ(o->device_id, 3u);
  EXPECT_EQ(o->pattern, Pattern::kRandReadWrite);
  EXPECT_EQ(o->read_percent, 30u);
  EXPECT_EQ(o->block_bytes, 1u << 20);
  EXPECT_EQ(o->queue_depth, 8u);
  EXPECT_EQ(o->sessions, 4u);
  EXPECT_EQ(o->bytes, 2ull << 30);
  EXPECT_EQ(o->runtime.count(), 0);  // --bytes alone: no time limit
  EXPECT_EQ(o->offset_bytes, 1u << 20);
  EXPECT_EQ(o->size_bytes, 512u << 20);
  EXPECT_EQ(o->seed, 9u);
  EXPECT_EQ(o->request_timeout, std::chrono::seconds(5));
  ASSERT_TRUE(o->server_pid.has_value());
  EXPECT_EQ(*o->server_pid, 1234);
  EXPECT_EQ(o->transport.rudp.max_datagram, 9000u);
}

TEST(BenchArgs, PatternNames) {
  for (const char* name : {"read", "write", "rw", "randread", "randwrite", "randrw"}) {
    Pattern p;
    ASSERT_TRUE(parse_pattern(name, p)) << name;
    EXPECT_STREQ(pattern_name(p), name);
  }
  Pattern p;
  EXPECT_FALSE(parse_pattern("random", p));
  EXPECT_FALSE(parse_pattern("", p));
}

TEST(BenchArgs, BadValuesGiveMessages) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"--rw", "sideways"}, "--rw"},
      {{"--bs", "0"}, "--bs"},
      {{"--bs", "16M"}, "--bs"},
      {{"--bs", "lots"}, "--bs"},
      {{"--qd", "0"}, "--qd"},
      {{"--qd", "5000"}, "--qd"},
      {{"--sessions", "0"}, "--sessions"},
      {{"--mix", "101"}, "--mix"},
      {{"--runtime", "soon"}, "--runtime"},
      {{"--runtime", "0s"}, "--runtime"},
      {{"--bytes", "0"}, "--bytes"},
      {{"--server", "127.0.0.1:99999"}, "--server"},
      {{"-t", "sctp"}, "--transport"},
      {{"--timeout", "-1s"}, "--timeout"},
      {{"--server-pid", "-3"}, "--server-pid"},
      {{"-n", ""}, "--name"},
      {{"--key-file", "/nonexistent/key"}, "key file"},
      {{"--datagram", "100"}, "--datagram"},
      {{"--datagram", "70000"}, "--datagram"},
  };
  ::setenv("IPSAN_KEY", kHexKey, 1);
  for (const auto& c : cases) {
    auto o = parse(c.args);
    ASSERT_FALSE(o) << c.args.back();
    EXPECT_NE(o.error().message.find(c.needle), std::string::npos)
        << o.error().message << " (wanted " << c.needle << ")";
  }
}

TEST(BenchArgs, KeyOnTheCommandLineIsRefused) {
  ::setenv("IPSAN_KEY", kHexKey, 1);
  auto o = parse({"-k", kHexKey});
  ::unsetenv("IPSAN_KEY");
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("-k/--key"), std::string::npos) << o.error().message;
}

TEST(BenchArgs, KeyRequiredUnlessEmbedded) {
  unsetenv("IPSAN_KEY");
  auto o = parse({});
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().message.find("no key"), std::string::npos);
  EXPECT_TRUE(parse({"--server-embedded"}, true));
}

TEST(BenchArgs, SubcommandRejectsUnknownOptions) {
  CLI::App app;
  add_cli(app);
  const char* argv[] = {"ipsan", "bench", "--no-such-option"};
  EXPECT_THROW(app.parse(3, argv), CLI::ParseError);
}

TEST(BenchArgs, SubcommandFailsCleanlyOnBadInput) {
  CLI::App app;
  add_cli(app);
  const char* argv[] = {"ipsan", "bench", "--rw", "nonsense", "--server-embedded"};
  EXPECT_THROW(app.parse(5, argv), CLI::RuntimeError);
}

}  // namespace
}  // namespace ipsan::bench
