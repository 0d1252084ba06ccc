// Integration tests of the load generator against an in-process ramdisk server (127.0.0.1, port
// 0). Counts must add up; timing is never asserted.
#include "ipsan/bench/loadgen.h"

#include <gtest/gtest.h>

#include "ipsan/bench/embedded_server.h"

namespace ipsan::bench {
namespace {

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EmbeddedOptions eo;
    eo.size_bytes = 64u << 20;
    auto s = EmbeddedServer::start(eo);
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }

  LoadOptions options(proto::TransportKind kind) const {
    LoadOptions o;
    o.transport.kind = kind;
    o.transport.port =
        kind == proto::TransportKind::kUdp ? server_->udp_port() : server_->tcp_port();
    o.client_name = server_->client_name();
    o.key = server_->key();
    o.request_timeout = std::chrono::seconds(20);
    return o;
  }

  static void expect_consistent(const LoadResult& r, std::uint32_t bs) {
    EXPECT_EQ(r.errors, 0u) << r.first_error;
    EXPECT_EQ(r.reads + r.writes, r.issued);
    EXPECT_EQ(r.latency.count(), r.ops());
    EXPECT_EQ(r.read_latency.count(), r.reads);
    EXPECT_EQ(r.write_latency.count(), r.writes);
    EXPECT_EQ(r.bytes_read, r.reads * bs);
    EXPECT_EQ(r.bytes_written, r.writes * bs);
    EXPECT_GT(r.seconds, 0);
    EXPECT_GE(r.client_cpu_s, 0);
    EXPECT_EQ(r.device_blocks * r.device_block_size, 64u << 20);
  }

  std::unique_ptr<EmbeddedServer> server_;
};

TEST_F(LoadgenTest, RandomMixOverUdpForOneSecond) {
  auto o = options(proto::TransportKind::kUdp);
  o.pattern = Pattern::kRandReadWrite;
  o.read_percent = 70;
  o.queue_depth = 8;
  o.sessions = 2;
  o.runtime = std::chrono::seconds(1);
  int progress_calls = 0;
  o.progress_interval = std::chrono::milliseconds(200);
  const std::uint64_t before = server_->executed();
  auto r = run_load(o, [&](const Progress& p) {
    ++progress_calls;
    EXPECT_LE(p.ops, 100'000'000u);
  });
  ASSERT_TRUE(r) << r.error().message;
  expect_consistent(*r, 4096);
  EXPECT_GT(r->reads, 0u);
  EXPECT_GT(r->writes, 0u);
  // The server executed every request plus one IDENTIFY (retransmitted calls execute once).
  EXPECT_EQ(server_->executed() - before, r->ops() + 1);
  EXPECT_GE(progress_calls, 1);
}

TEST_F(LoadgenTest, SequentialWriteOverTcpByBytes) {
  auto o = options(proto::TransportKind::kTcp);
  o.pattern = Pattern::kWrite;
  o.block_bytes = 1u << 20;
  o.queue_depth = 4;
  o.runtime = Duration{};
  o.bytes = 24u << 20;
  auto r = run_load(o);
  ASSERT_TRUE(r) << r.error().message;
  expect_consistent(*r, 1u << 20);
  EXPECT_EQ(r->writes, 24u);
  EXPECT_EQ(r->reads, 0u);
}

TEST_F(LoadgenTest, SequentialReadSessionsStayInTheirSlices) {
  auto o = options(proto::TransportKind::kUdp);
  o.pattern = Pattern::kRead;
  o.block_bytes = 64u << 10;
  o.sessions = 3;
  o.queue_depth = 2;
  o.size_bytes = 1u << 20;  // 16 requests: wraps around several times
  o.runtime = Duration{};
  o.bytes = 8u << 20;
  auto r = run_load(o);
  ASSERT_TRUE(r) << r.error().message;
  expect_consistent(*r, 64u << 10);
  EXPECT_EQ(r->reads, 128u);
}

TEST_F(LoadgenTest, WrongKeyIsAnError) {
  auto o = options(proto::TransportKind::kUdp);
  o.key[0] ^= 1;
  o.runtime = std::chrono::milliseconds(100);
  auto r = run_load(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("log in"), std::string::npos) << r.error().message;
}

TEST_F(LoadgenTest, RequestSizeMustFitTheDevice) {
  auto o = options(proto::TransportKind::kUdp);
  o.block_bytes = 1000;  // not a multiple of 512
  auto r = run_load(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("--bs"), std::string::npos);
  o.block_bytes = 4096;
  o.offset_bytes = 64u << 20;
  r = run_load(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("--offset"), std::string::npos);
}

TEST(ProcStat, ParsesTicksAndRejectsGarbage) {
  const std::string line =
      "4242 (ipsan (a) b) S 1 4242 4242 0 -1 4194304 500 0 0 0 1234 567 0 0 20 0 3 0 100 0 0";
  auto t = parse_proc_stat_ticks(line);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 1234u + 567u);
  EXPECT_FALSE(parse_proc_stat_ticks(""));
  EXPECT_FALSE(parse_proc_stat_ticks("12 (x) S 1 2"));
  EXPECT_FALSE(parse_proc_stat_ticks("12 (x) S 1 2 3 4 5 6 7 8 9 10 -5 6"));
  EXPECT_TRUE(process_cpu_seconds(static_cast<int>(getpid())).has_value());
  EXPECT_FALSE(process_cpu_seconds(-1).has_value());
}

}  // namespace
}  // namespace ipsan::bench
