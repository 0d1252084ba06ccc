#include "ipsan/client/scsi/bus.h"

#include <gtest/gtest.h>

#include "ipsan/client/memory_target.h"
#include "lu_fixture.h"

namespace ipsan::client::scsi::testing {
namespace {

TEST(BusTest, ParsesMappings) {
  auto m = parse_lun_mappings("0:0=alpha/1, 0:3=alpha/2,5=beta/7");
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[1].lun, 3u);
  EXPECT_EQ((*m)[1].device_id, 2u);
  EXPECT_EQ((*m)[2].target, 0u);
  EXPECT_EQ((*m)[2].lun, 5u);
  EXPECT_EQ((*m)[2].server, "beta");
  for (const char* bad : {"0:0", "0:0=alpha", "x=alpha/1", "0:0=/1", "0:99999=a/1", "0:0=a/x"}) {
    EXPECT_FALSE(parse_lun_mappings(bad)) << bad;
  }
}

TEST(BusTest, PerLunExportOptions) {
  // One device exported three ways: plain, removable + write protected, 4 KiB physical blocks.
  MemoryTarget alpha;
  alpha.add_device(1, MemoryTarget::default_identity(100));
  Bus bus;
  bus.add_server("alpha", alpha);
  LunMapping plain{0, 0, "alpha", 1};
  LunMapping rm_ro{0, 1, "alpha", 1};
  rm_ro.removable = true;
  rm_ro.read_only = true;
  LunMapping pbs{0, 2, "alpha", 1};
  pbs.physical_block_size = 4096;
  ASSERT_TRUE(bus.map(plain));
  ASSERT_TRUE(bus.map(rm_ro));
  ASSERT_TRUE(bus.map(pbs));
  ASSERT_EQ(bus.attach_all_and_wait(1000), Errc::kOk);
  auto exec = [&](std::uint32_t l, const std::string& cdb, Bytes out = {}) {
    ScsiResult res;
    ScsiCommand c;
    c.cdb = hex(cdb);
    c.data_out = std::move(out);
    bus.execute(0, l, c, [&](ScsiResult r) { res = std::move(r); });
    return res;
  };
  for (std::uint32_t l : {0u, 1u, 2u}) exec(l, "000000000000");  // power-on unit attentions
  EXPECT_EQ(exec(0, "120000002400").data_in.at(1), 0x00);
  EXPECT_EQ(exec(1, "120000002400").data_in.at(1), 0x80);          // RMB
  EXPECT_EQ(exec(0, "1a003f00ff00").data_in.at(2) & 0x80, 0x00);
  EXPECT_EQ(exec(1, "1a003f00ff00").data_in.at(2) & 0x80, 0x80);   // WP
  LuTest::expect_check(exec(1, "2a000000000000000100", Bytes(512)), kDataProtect, 0x27, 0x00);
  EXPECT_EQ(exec(0, "2a000000000000000100", Bytes(512)).status, kStatusGood);
  EXPECT_EQ(exec(0, "9e10000000000000000000000020 0000").data_in.at(13), 0);  // LBPPB 1
  EXPECT_EQ(exec(2, "9e10000000000000000000000020 0000").data_in.at(13), 3);  // LBPPB 8
}

TEST(BusTest, RoutesLunsToServersAndAnswersReportLunsLocally) {
  MemoryTarget alpha, beta;
  alpha.add_device(1, MemoryTarget::default_identity(100));
  beta.add_device(9, MemoryTarget::default_identity(200));
  Bus bus;
  bus.add_server("alpha", alpha);
  bus.add_server("beta", beta);
  ASSERT_TRUE(bus.map({0, 0, "alpha", 1}));
  ASSERT_TRUE(bus.map({0, 300, "beta", 9}));
  EXPECT_FALSE(bus.map({0, 0, "alpha", 1}));  // twice
  EXPECT_FALSE(bus.map({0, 1, "gamma", 1}));  // unknown server
  ASSERT_EQ(bus.attach_all_and_wait(1000), Errc::kOk);
  alpha.clear_log();
  beta.clear_log();
  auto exec = [&](std::uint32_t t, std::uint32_t l, const std::string& cdb) {
    ScsiResult out;
    ScsiCommand c;
    c.cdb = hex(cdb);
    bus.execute(t, l, c, [&](ScsiResult r) { out = std::move(r); });
    return out;
  };
  auto luns = exec(0, 7, "a0000000000000000100 0000");  // from an unmapped LUN too
  ASSERT_EQ(luns.status, kStatusGood);
  ASSERT_EQ(luns.data_in.size(), 8u + 16);
  EXPECT_EQ(load_be32(&luns.data_in[0]), 16u);
  EXPECT_EQ(luns.data_in[9], 0);
  EXPECT_EQ(luns.data_in[16], 0x41);  // flat space addressing for LUN 300
  EXPECT_EQ(luns.data_in[17], 300 - 256);
  LuTest::expect_check(exec(0, 0, "a0000000000000000008 0000"), kIllegalRequest, 0x24, 0, "c00006");
  EXPECT_TRUE(alpha.log().empty());
  // Unmapped LUN: INQUIRY answers with qualifier 011b, other commands LOGICAL UNIT NOT SUPPORTED.
  auto inq = exec(0, 7, "120000002400");
  EXPECT_EQ(inq.data_in.at(0), 0x7F);
  LuTest::expect_check(exec(0, 7, "000000000000"), kIllegalRequest, 0x25, 0x00);
  LuTest::expect_check(exec(3, 0, "28000000000000000100"), kIllegalRequest, 0x25, 0x00);
  // Mapped LUNs reach their own server.
  exec(0, 300, "000000000000");  // unit attention
  EXPECT_EQ(exec(0, 300, "000000000000").status, kStatusGood);
  EXPECT_EQ(beta.log().size(), 1u);
  EXPECT_EQ(beta.log()[0].device_id, 9u);
  EXPECT_TRUE(alpha.log().empty());
  auto cap = exec(0, 300, "25000000000000000000");
  EXPECT_EQ(load_be32(&cap.data_in[0]), 199u);
  bus.reset_all();
  LuTest::expect_check(exec(0, 300, "000000000000"), kUnitAttention, 0x29, 0x00);
}

}  // namespace
}  // namespace ipsan::client::scsi::testing
