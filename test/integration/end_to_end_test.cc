// End-to-end tests: real server (UDP + TCP on 127.0.0.1, port 0) and real clients.
#include <gtest/gtest.h>

#include "ipsan/base/pattern.h"
#include "ipsan/client/verify.h"
#include "ipsan/proto/codec.h"
#include "test_server.h"

namespace ipsan::testing {
namespace {

using proto::Op;
using proto::TransportKind;

class EndToEnd : public ::testing::TestWithParam<TransportKind> {
 protected:
  static backends::BackendPtr ram(std::uint64_t bytes, std::uint32_t bs = 512) {
    backends::RamOptions o;
    o.block_size = bs;
    return *backends::RamBackend::create(bytes, o);
  }
  client::ClientOptions alice() {
    client::ClientOptions o;
    o.client_name = "alice";
    o.key = test_key();
    o.request_timeout = std::chrono::seconds(30);
    return o;
  }
  proto::Reply call(boost::asio::io_context& io, client::SanClient& c, proto::Request req) {
    std::optional<proto::Reply> out;
    c.execute(std::move(req), [&](proto::Reply r) { out = std::move(r); });
    EXPECT_TRUE(run_until(io, [&] { return out.has_value(); }));
    return out.value_or(proto::Reply{Errc::kTimeout, {}, {}, {}});
  }
};

// Several clients, each on its own range, together 256 MiB of seeded data, fully verified.
TEST_P(EndToEnd, SeveralClientsWriteAndVerify256MiB) {
  const std::uint64_t kTotal = 256ull << 20;
  const int kClients = 4;
  TestServer server({ram(kTotal)});
  boost::asio::io_context io;
  std::vector<std::unique_ptr<client::SanClient>> clients;
  std::vector<std::optional<client::VerifyResult>> results(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<client::SanClient>(
        io, factory(io, GetParam(), server.port(GetParam())), alice()));
    client::VerifyOptions vo;
    vo.block_size = 512;
    vo.blocks = kTotal / 512 / kClients;
    vo.lba = vo.blocks * i;
    vo.io_blocks = 2048;  // 1 MiB
    vo.queue_depth = 4;
    vo.seed = 1000 + i;
    std::printf("client %d seed %llu\n", i, static_cast<unsigned long long>(vo.seed));
    client::run_verify(*clients[i], vo, [&results, i](client::VerifyResult r) { results[i] = r; });
  }
  ASSERT_TRUE(run_until(io, [&] {
    for (auto& r : results)
      if (!r) return false;
    return true;
  }, std::chrono::seconds(240)));
  std::uint64_t total = 0;
  for (int i = 0; i < kClients; ++i) {
    EXPECT_TRUE(results[i]->ok()) << "client " << i << ": " << results[i]->summary();
    total += results[i]->bytes_read;
  }
  EXPECT_EQ(total, kTotal);
  // Cross-check: each client reads another client's range with the other's seed.
  client::VerifyOptions vo;
  vo.block_size = 512;
  vo.blocks = kTotal / 512 / kClients;
  vo.lba = 0;
  vo.seed = 1000;
  vo.write = false;
  std::optional<client::VerifyResult> cross;
  client::run_verify(*clients[3], vo, [&](client::VerifyResult r) { cross = r; });
  ASSERT_TRUE(run_until(io, [&] { return cross.has_value(); }));
  EXPECT_TRUE(cross->ok()) << cross->summary();
  auto st = server.stats();
  EXPECT_EQ(st.logins, static_cast<std::uint64_t>(kClients));
  EXPECT_EQ(st.misordered, 0u);
  EXPECT_EQ(st.auth_failures, 0u);
}

TEST_P(EndToEnd, StatusRequestsAndErrors) {
  TestServer server({ram(1 << 20, 4096)});
  boost::asio::io_context io;
  client::SanClient c(io, factory(io, GetParam(), server.port(GetParam())), alice());
  proto::Request r;
  r.op = Op::kIdentify;
  auto id = call(io, c, r);
  ASSERT_EQ(id.status, Errc::kOk);
  EXPECT_EQ(id.identity.block_size, 4096u);
  EXPECT_EQ(id.identity.block_count, 256u);
  EXPECT_EQ(id.identity.vendor, "IPSAN");
  r.op = Op::kCapacity;
  auto cap = call(io, c, r);
  EXPECT_EQ(cap.capacity.block_count, 256u);
  r.op = Op::kReady;
  EXPECT_EQ(call(io, c, r).status, Errc::kOk);
  // Unknown device, LBA past the end, partial overlap with the end, wrong payload size.
  r.op = Op::kRead;
  r.device_id = 9;
  r.blocks = 1;
  EXPECT_EQ(call(io, c, r).status, Errc::kUnknownDevice);
  r.device_id = 0;
  r.lba = 256;
  EXPECT_EQ(call(io, c, r).status, Errc::kLbaOutOfRange);
  r.lba = 255;
  r.blocks = 2;
  EXPECT_EQ(call(io, c, r).status, Errc::kLbaOutOfRange);
  r.lba = 255;
  r.blocks = 1;
  EXPECT_EQ(call(io, c, r).status, Errc::kOk);
  proto::Request w;
  w.op = Op::kWrite;
  w.lba = 0;
  w.blocks = 2;
  w.data.assign(4096, 1);  // one block of data for two blocks
  EXPECT_EQ(call(io, c, w).status, Errc::kInvalidArgument);
  // Too large for one request (server max 8 MiB).
  r.lba = 0;
  r.blocks = 255;
  EXPECT_EQ(call(io, c, r).status, Errc::kOk);
  // Trim, write-zeroes, flush, FUA write round trip.
  w.blocks = 1;
  w.flags = proto::kFlagFua;
  w.data.assign(4096, 0xAB);
  EXPECT_EQ(call(io, c, w).status, Errc::kOk);
  r.lba = 0;
  r.blocks = 1;
  auto back = call(io, c, r);
  ASSERT_EQ(back.status, Errc::kOk);
  EXPECT_EQ(back.data, w.data);
  proto::Request t;
  t.op = Op::kTrim;
  t.lba = 0;
  t.blocks = 1;
  EXPECT_EQ(call(io, c, t).status, Errc::kOk);
  back = call(io, c, r);
  EXPECT_EQ(back.data, Bytes(4096, 0));
  t.op = Op::kFlush;
  EXPECT_EQ(call(io, c, t).status, Errc::kOk);
  t.op = Op::kWriteZeroes;
  t.blocks = 10;
  EXPECT_EQ(call(io, c, t).status, Errc::kOk);
}

TEST_P(EndToEnd, WrongKeyAndUnknownClientAreRefused) {
  TestServer server({ram(1 << 20)});
  boost::asio::io_context io;
  auto opts = alice();
  opts.key = test_key("not-the-key");
  client::SanClient c(io, factory(io, GetParam(), server.port(GetParam())), opts);
  std::optional<Errc> result;
  c.connect([&](Errc e) { result = e; });
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, Errc::kAuthFailed);
  proto::Request r;
  r.op = Op::kRead;
  r.blocks = 1;
  EXPECT_EQ(call(io, c, r).status, Errc::kAuthFailed);

  auto opts2 = alice();
  opts2.client_name = "mallory";
  client::SanClient c2(io, factory(io, GetParam(), server.port(GetParam())), opts2);
  result.reset();
  c2.connect([&](Errc e) { result = e; });
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, Errc::kAuthFailed);
  EXPECT_GE(server.stats().auth_failures, 2u);
  EXPECT_EQ(server.stats().executed, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, EndToEnd,
                         ::testing::Values(TransportKind::kUdp, TransportKind::kTcp),
                         [](const auto& param_info) {
                           return param_info.param == TransportKind::kUdp ? std::string("udp")
                                                                    : std::string("tcp");
                         });

}  // namespace
}  // namespace ipsan::testing
