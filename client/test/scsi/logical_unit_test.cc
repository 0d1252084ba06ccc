#include "ipsan/client/scsi/logical_unit.h"

#include <gtest/gtest.h>

#include "lu_fixture.h"

namespace ipsan::client::scsi::testing {
namespace {

using proto::Op;

TEST_F(LuTest, AttachIdentifiesOnceAndRaisesPowerOnUnitAttention) {
  MemoryTarget t;
  t.add_device(1, MemoryTarget::default_identity(100));
  LogicalUnit lu(t, 1);
  Errc e = Errc::kInternal;
  lu.attach([&](Errc r) { e = r; });
  ASSERT_EQ(e, Errc::kOk);
  ASSERT_EQ(t.log().size(), 1u);
  EXPECT_EQ(t.log()[0].op, Op::kIdentify);
  auto exec = [&](const std::string& cdb) {
    ScsiResult out;
    ScsiCommand c;
    c.cdb = hex(cdb);
    lu.execute(c, [&](ScsiResult r) { out = std::move(r); });
    return out;
  };
  // INQUIRY and REPORT LUNS do not report (or clear) the unit attention.
  EXPECT_EQ(exec("120000006000").status, kStatusGood);
  EXPECT_EQ(exec("a0000000000000000010 0000").status, kStatusGood);
  expect_check(exec("000000000000"), kUnitAttention, 0x29, 0x00);
  EXPECT_EQ(exec("000000000000").status, kStatusGood);
}

TEST_F(LuTest, InquiryAndReportLunsAreAnsweredLocally) {
  auto r = run("120000006000");
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_EQ(r.data_in.size(), 96u);
  EXPECT_EQ(r.data_in[0], 0x00);
  EXPECT_EQ(r.data_in[2], 0x06);  // SPC-4
  EXPECT_EQ(r.data_in[4], 91);
  EXPECT_EQ(std::string(r.data_in.begin() + 8, r.data_in.begin() + 16), "IPSAN   ");
  EXPECT_EQ(std::string(r.data_in.begin() + 16, r.data_in.begin() + 32), "memory disk     ");
  for (const char* page : {"00", "80", "83", "8f", "b0", "b1", "b2"}) {
    EXPECT_EQ(run(std::string("1201") + page + "00ff00").status, kStatusGood) << page;
  }
  EXPECT_EQ(run("a0000000000000000100 0000").status, kStatusGood);
  EXPECT_TRUE(target_->log().empty()) << "INQUIRY / REPORT LUNS must not issue requests";
}

TEST_F(LuTest, InquiryVpdContents) {
  auto sup = run("120100010000");
  EXPECT_EQ(to_hex(sup.data_in),
            "0000000700"
            "80"
            "838fb0b1b2");
  auto serial = run("120180010000");
  EXPECT_EQ(std::string(serial.data_in.begin() + 4, serial.data_in.end()), "MEM0001");
  auto ids = run("120183010000");
  ASSERT_GE(ids.data_in.size(), 16u);
  EXPECT_EQ(ids.data_in[4], 0x01);  // binary code set
  EXPECT_EQ(ids.data_in[5], 0x03);  // LU, NAA
  EXPECT_EQ(ids.data_in[7], 8);
  EXPECT_EQ(ids.data_in[8] >> 4, 0x3);  // NAA 3: locally assigned
  EXPECT_EQ(ids.data_in[8] & 0x0F, (0xA0 ^ 0xA8) & 0x0F);
  EXPECT_EQ(ids.data_in[12 + 4], 0x02);  // T10 vendor id, ASCII
  EXPECT_EQ(ids.data_in[12 + 5], 0x01);
  auto limits = run("1201b0010000");
  ASSERT_EQ(limits.data_in.size(), 64u);
  EXPECT_EQ(load_be16(&limits.data_in[2]), 0x3C);
  EXPECT_EQ(limits.data_in[4] & 1, 0);                         // WSNZ=0
  EXPECT_EQ(load_be32(&limits.data_in[8]), (8u << 20) / 512);  // max transfer (client limit)
  EXPECT_EQ(load_be32(&limits.data_in[12]), 8u);  // optimal = server's max_transfer_blocks
  auto lbp = run("1201b2010000");
  EXPECT_EQ(lbp.data_in[5], 0xE4);
  auto bdc = run("1201b1010000");
  EXPECT_EQ(load_be16(&bdc.data_in[4]), 1);  // non-rotating
}

TEST_F(LuTest, InquiryInvalidFieldsHaveExactFieldPointers) {
  expect_check(run("120080006000"), kIllegalRequest, 0x24, 0x00, "c00002");  // page w/o EVPD
  expect_check(run("120200006000"), kIllegalRequest, 0x24, 0x00, "c90001");  // CMDDT bit 1
  expect_check(run("120177006000"), kIllegalRequest, 0x24, 0x00, "c00002");  // unknown VPD
  expect_check(run("120000006004"), kIllegalRequest, 0x24, 0x00, "ca0005");  // NACA
}

TEST_F(LuTest, AllocationLengthAndResiduals) {
  auto r = run("120000000500");
  EXPECT_EQ(r.data_in.size(), 5u);
  auto under = run("120000002400", {}, 100);
  EXPECT_EQ(under.data_in.size(), 36u);
  EXPECT_EQ(under.residual, 64u);
  EXPECT_FALSE(under.overflow);
  auto over = run("120000006000", {}, 10);
  EXPECT_EQ(over.data_in.size(), 10u);
  EXPECT_EQ(over.residual, 86u);
  EXPECT_TRUE(over.overflow);
  EXPECT_EQ(run("120000000000").data_in.size(), 0u);
}

TEST_F(LuTest, WriteAndReadAreSplitAtMaxTransferBlocks) {
  const Bytes data = filled(20 * 512, 3);
  auto w = run("2a0000000010000014 00", data);
  ASSERT_EQ(w.status, kStatusGood);
  auto log = target_->log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].op, Op::kWrite);
  EXPECT_EQ(log[0].lba, 0x10u);
  EXPECT_EQ(log[0].blocks, 8u);
  EXPECT_EQ(log[1].lba, 0x18u);
  EXPECT_EQ(log[2].blocks, 4u);
  EXPECT_EQ(log[0].device_id, kDevice);
  target_->clear_log();
  auto r = run("88000000000000000010 00000014 0000");
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(r.data_in, data);
  EXPECT_EQ(target_->log().size(), 3u);
  auto r12 = run("a800 00000010 00000014 0000");
  EXPECT_EQ(r12.data_in, data);
  auto r6 = run("080000100100");
  EXPECT_EQ(r6.data_in, Bytes(data.begin(), data.begin() + 512));
}

TEST_F(LuTest, Read6ZeroLengthMeans256Blocks) {
  auto r = run("080000000000");
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(r.data_in.size(), 256u * 512);
  auto r10 = run("28000000000000000000");
  EXPECT_EQ(r10.status, kStatusGood);
  EXPECT_TRUE(r10.data_in.empty());
}

TEST_F(LuTest, FuaAndWriteCacheDisableSetTheFuaFlag) {
  run("2a0800000001000001 00", filled(512, 1));
  run("2a0000000002000001 00", filled(512, 1));
  auto log = target_->log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].flags, proto::kFlagFua);
  EXPECT_EQ(log[1].flags, 0u);
  // MODE SELECT(6) caching page with WCE=0.
  Bytes page =
      hex("00000000"
          "0812"
          "00000000000000000000000000000000 0000");
  auto ms = run("151000001800", page);
  ASSERT_EQ(ms.status, kStatusGood);
  EXPECT_FALSE(lu_->mode_parameters().wce);
  target_->clear_log();
  run("2a0000000002000001 00", filled(512, 1));
  EXPECT_EQ(target_->log().at(0).flags, proto::kFlagFua);
}

TEST_F(LuTest, LbaOutOfRangeIssuesNoRequest) {
  expect_check(run("28000000 03e7 00 0002 00"), kIllegalRequest, 0x21, 0x00);
  expect_check(run("2a000000 03e8 00 0001 00", filled(512, 0)), kIllegalRequest, 0x21, 0x00);
  expect_check(run("88 00 ffffffffffffffff 00000001 0000"), kIllegalRequest, 0x21, 0x00);
  EXPECT_EQ(run("28000000 03e7 00 0001 00").status, kStatusGood);
  EXPECT_EQ(target_->log().size(), 1u);
}

TEST_F(LuTest, BadCdbsGetExactSense) {
  expect_check(run("ff0000000000"), kIllegalRequest, 0x20, 0x00);
  expect_check(run("c00000000000"), kIllegalRequest, 0x20, 0x00);
  expect_check(run("28010000000000000100"), kIllegalRequest, 0x24, 0x00, "c80001");  // reserved
  expect_check(run("28200000000000000100"), kIllegalRequest, 0x24, 0x00, "cf0001");  // RDPROTECT
  expect_check(run("8800 0000000000000000 00005000 0000"), kIllegalRequest, 0x24, 0x00,
               "c0000a");  // beyond MAXIMUM TRANSFER LENGTH
  expect_check(run("9e1f0000000000000000000000200000"), kIllegalRequest, 0x24, 0x00, "cc0001");
  expect_check(run("28000000000000000101"), kIllegalRequest, 0x24, 0x00, "c80009");  // LINK
  expect_check(run("2800000000"), kIllegalRequest, 0x24, 0x00, "c00000");            // short CDB
  ScsiCommand empty;
  std::optional<ScsiResult> out;
  lu_->execute(empty, [&](ScsiResult r) { out = r; });
  ASSERT_TRUE(out);
  expect_check(*out, kIllegalRequest, 0x20, 0x00);
  EXPECT_TRUE(target_->log().empty());
}

TEST_F(LuTest, ShortDataOutWritesWholeBlocksWithOverflowResidual) {
  auto r = run("2a000000000000000200", filled(512, 0x62));
  EXPECT_EQ(r.status, kStatusGood);
  EXPECT_TRUE(r.overflow);
  EXPECT_EQ(r.residual, 512u);
  EXPECT_EQ(target_->peek(kDevice, 0, 1), filled(512, 0x62));
  auto none = run("2a000000000000000100", {});
  EXPECT_EQ(none.status, kStatusGood);
  EXPECT_TRUE(none.overflow);
  EXPECT_EQ(none.residual, 512u);
  // Other data-out commands still refuse a short buffer.
  expect_check(run("41000000000000000100", {}), kIllegalRequest, 0x0E, 0x03);
  auto extra = run("2a000000000000000100", filled(600, 0));
  EXPECT_EQ(extra.status, kStatusGood);
  EXPECT_EQ(extra.residual, 88u);
}

TEST_F(LuTest, ErrcFromTheServerMapsThroughTheTable) {
  target_->inject({Op::kRead, std::nullopt, 5, 1, Errc::kMediumError, 1});
  expect_check(run("28000000000000000800"), kMediumError, 0x11, 0x00);
  target_->inject({Op::kWrite, std::nullopt, 0, ~0ull, Errc::kMediumError, 1});
  expect_check(run("2a000000000000000100", filled(512, 0)), kMediumError, 0x0C, 0x00);
  target_->inject({Op::kReady, std::nullopt, 0, ~0ull, Errc::kTimeout, 1});
  expect_check(run("000000000000"), kAbortedCommand, 0x08, 0x01);
  target_->inject({Op::kReady, std::nullopt, 0, ~0ull, Errc::kNotReady, 1});
  expect_check(run("000000000000"), kNotReady, 0x04, 0x00);
  target_->inject({Op::kReady, std::nullopt, 0, ~0ull, Errc::kBusy, 1});
  auto busy = run("000000000000");
  EXPECT_EQ(busy.status, kStatusBusy);
  EXPECT_TRUE(busy.sense.empty());
  target_->inject({Op::kWrite, std::nullopt, 0, ~0ull, Errc::kNoSpace, 1});
  expect_check(run("2a000000000000000100", filled(512, 0)), kDataProtect, 0x27, 0x07);
  EXPECT_EQ(run("000000000000").status, kStatusGood);
}

TEST_F(LuTest, CapacityChangeRaisesUnitAttentionAndIsLearned) {
  target_->resize(kDevice, 2000);
  expect_check(run("28000000000000000100"), kUnitAttention, 0x2A, 0x09);
  auto rc = run("25000000000000000000");
  ASSERT_EQ(rc.status, kStatusGood);
  EXPECT_EQ(load_be32(&rc.data_in[0]), 1999u);
  EXPECT_EQ(load_be32(&rc.data_in[4]), 512u);
  EXPECT_EQ(run("2800000007c000000100").status, kStatusGood);  // LBA 1984: now in range
  // A READY reply with a new size is a capacity change too.
  target_->resize(kDevice, 3000);
  target_->clear_log();
  (void)target_->log();
  auto tur = run("000000000000");
  expect_check(tur, kUnitAttention, 0x2A, 0x09);
  EXPECT_EQ(lu_->identity().block_count, 3000u);
}

TEST_F(LuTest, ReadCapacity16AndField) {
  auto r = run("9e10 0000000000000000 00000020 0000");
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_EQ(r.data_in.size(), 32u);
  EXPECT_EQ(load_be64(&r.data_in[0]), kBlocks - 1);
  EXPECT_EQ(load_be32(&r.data_in[8]), 512u);
  EXPECT_EQ(r.data_in[14], 0xC0);  // LBPME, LBPRZ
  EXPECT_EQ(run("9e10 0000000000000000 00000008 0000").data_in.size(), 8u);
  expect_check(run("25000000000100000000"), kIllegalRequest, 0x24, 0x00, "c00002");
  EXPECT_EQ(target_->log().back().op, Op::kCapacity);
}

TEST_F(LuTest, HugeDeviceReportsFfffffffInReadCapacity10) {
  make(MemoryTarget::default_identity(std::uint64_t{1} << 33, 512, 8));
  auto r = run("25000000000000000000");
  EXPECT_EQ(load_be32(&r.data_in[0]), 0xFFFFFFFFu);
  auto w = run("8a00 00000001ffffffff 00000001 0000", filled(512, 9));
  ASSERT_EQ(w.status, kStatusGood);
  auto rd = run("8800 00000001ffffffff 00000001 0000");
  EXPECT_EQ(rd.data_in, filled(512, 9));
}

TEST_F(LuTest, StartStopUnitAndPreventAllow) {
  EXPECT_EQ(run("1b0000000000").status, kStatusGood);  // stop (flushes first)
  EXPECT_EQ(target_->log().back().op, Op::kFlush);
  expect_check(run("000000000000"), kNotReady, 0x04, 0x02);
  expect_check(run("28000000000000000100"), kNotReady, 0x04, 0x02);
  EXPECT_EQ(run("120000002400").status, kStatusGood);
  auto rs = run("030000001200");
  EXPECT_EQ(decode_sense(rs.data_in).value_or(Sense{}).asc, 0x04);
  EXPECT_EQ(run("1b0000000100").status, kStatusGood);  // start
  EXPECT_EQ(run("000000000000").status, kStatusGood);
  EXPECT_EQ(run("1e0000000100").status, kStatusGood);                        // prevent
  expect_check(run("1b0000000200"), kIllegalRequest, 0x24, 0x00, "c90004");  // LOEJ, RMB=0
  EXPECT_EQ(run("120000002400").data_in[1], 0x00);                           // RMB=0
  expect_check(run("1e0000000200"), kIllegalRequest, 0x24, 0x00, "c90004");
  expect_check(run("1b0000001100"), kIllegalRequest, 0x24, 0x00, "cf0004");
  EXPECT_EQ(run("1e0000000000").status, kStatusGood);
}

ScsiResult run_as(LogicalUnit& lu, const std::string& nexus, const std::string& cdb) {
  ScsiCommand c;
  c.cdb = hex(cdb);
  c.nexus = nexus;
  std::optional<ScsiResult> out;
  lu.execute(c, [&](ScsiResult r) { out = std::move(r); });
  EXPECT_TRUE(out.has_value());
  return out.value_or(ScsiResult{});
}

TEST_F(LuTest, RemovableMediumLoadEjectAndPrevention) {
  LogicalUnitOptions o;
  o.removable = true;
  make(MemoryTarget::default_identity(kBlocks, 512, 8), o);
  EXPECT_EQ(run("120000002400").data_in[1], 0x80);  // RMB=1
  // As tgt: STOP without LOEJ leaves it ready (cache flushed); power conditions are ignored.
  EXPECT_EQ(run("1b0000000000").status, kStatusGood);
  EXPECT_EQ(target_->log().back().op, Op::kFlush);
  EXPECT_EQ(run("000000000000").status, kStatusGood);
  EXPECT_EQ(run("1b0100003200").status, kStatusGood);  // IMMED, POWER CONDITION 3, LOEJ
  EXPECT_EQ(run("000000000000").status, kStatusGood);
  // Eject: medium access commands then end NOT READY, MEDIUM NOT PRESENT; others still work.
  EXPECT_EQ(run("1b0000000200").status, kStatusGood);
  expect_check(run("000000000000"), kNotReady, 0x3A, 0x00);
  expect_check(run("28000000000000000100"), kNotReady, 0x3A, 0x00);
  expect_check(run("25000000000000000000"), kNotReady, 0x3A, 0x00);
  EXPECT_EQ(run("120000002400").status, kStatusGood);
  EXPECT_EQ(decode_sense(run("030000001200").data_in).value_or(Sense{}).asc, 0x3A);
  // Prevention (allowed without a medium) refuses a load as well as an eject.
  EXPECT_EQ(run("1e0000000100").status, kStatusGood);
  expect_check(run("1b0000000300"), kIllegalRequest, 0x53, 0x02);
  EXPECT_EQ(run("1e0000000000").status, kStatusGood);
  EXPECT_EQ(run("1b0000000300").status, kStatusGood);  // load (and start)
  EXPECT_EQ(run("000000000000").status, kStatusGood);
  // Prevention is per I_T nexus: removal stays prevented while any nexus prevents it, and a
  // nexus's prevention ends with the nexus.
  EXPECT_EQ(run_as(*lu_, "a", "1e0000000100").status, kStatusGood);
  EXPECT_EQ(run_as(*lu_, "b", "1e0000000100").status, kStatusGood);
  EXPECT_EQ(run_as(*lu_, "a", "1e0000000000").status, kStatusGood);
  expect_check(run_as(*lu_, "a", "1b0000000200"), kIllegalRequest, 0x53, 0x02);
  lu_->nexus_lost("b");
  EXPECT_EQ(run_as(*lu_, "a", "1b0000000200").status, kStatusGood);  // ejected
  expect_check(run_as(*lu_, "a", "000000000000"), kNotReady, 0x3A, 0x00);
  EXPECT_EQ(run_as(*lu_, "a", "1b0000000300").status, kStatusGood);
  // A logical unit reset ends every prevention (and leaves the medium where it is).
  EXPECT_EQ(run_as(*lu_, "a", "1e0000000100").status, kStatusGood);
  lu_->reset();
  expect_check(run_as(*lu_, "a", "000000000000"), kUnitAttention, 0x29, 0x00);
  EXPECT_EQ(run_as(*lu_, "a", "1b0000000200").status, kStatusGood);
}

TEST_F(LuTest, WriteAtomicIsOneAtomicRequestOnlyWhenTheServerOffersIt) {
  // Without kCapAtomicWrite: no WRITE ATOMIC(16) (INVALID COMMAND OPERATION CODE, not listed,
  // MAXIMUM ATOMIC TRANSFER LENGTH 0).
  const Bytes data = filled(4 * 512, 9);
  expect_check(run("9c00 0000000000000010 0000 0004 0000", data), kIllegalRequest, 0x20, 0x00);
  EXPECT_EQ(load_be32(&run("1201b0004000").data_in[44]), 0u);
  EXPECT_EQ(run("a3 0c 01 9c 0000 00000200 0000").data_in[1] & 0x07, 0x01);  // not supported
  // With it: one generic WRITE with kFlagAtomic, never split; limit = max_transfer_blocks (8).
  auto id = MemoryTarget::default_identity(kBlocks, 512, 8);
  id.capabilities |= proto::kCapAtomicWrite;
  make(id);
  auto vpd = run("1201b0004000");
  EXPECT_EQ(load_be32(&vpd.data_in[44]), 8u);  // MAXIMUM ATOMIC TRANSFER LENGTH
  EXPECT_EQ(load_be32(&vpd.data_in[48]), 0u);  // ATOMIC ALIGNMENT
  EXPECT_EQ(load_be32(&vpd.data_in[52]), 0u);  // ATOMIC TRANSFER LENGTH GRANULARITY
  EXPECT_EQ(run("a3 0c 01 9c 0000 00000200 0000").data_in[1] & 0x07, 0x03);
  ASSERT_EQ(run("9c08 0000000000000010 0000 0004 0000", data).status, kStatusGood);  // FUA
  ASSERT_EQ(target_->log().size(), 1u);
  EXPECT_EQ(target_->log()[0].op, Op::kWrite);
  EXPECT_EQ(target_->log()[0].blocks, 4u);
  EXPECT_EQ(target_->log()[0].flags, proto::kFlagAtomic | proto::kFlagFua);
  EXPECT_EQ(run("28000000001000000400").data_in, data);
  // Above the limit, an atomic boundary, WRPROTECT, past the end: refused, nothing written.
  target_->clear_log();
  expect_check(run("9c00 0000000000000010 0000 0009 0000", Bytes(9 * 512)), kIllegalRequest,
               0x24, 0x00, "c0000c");
  expect_check(run("9c00 0000000000000010 0001 0001 0000", Bytes(512)), kIllegalRequest, 0x24,
               0x00);
  expect_check(run("9c20 0000000000000010 0000 0001 0000", Bytes(512)), kIllegalRequest, 0x24,
               0x00);
  expect_check(run("9c00 00000000000003e8 0000 0001 0000", Bytes(512)), kIllegalRequest, 0x21,
               0x00);
  EXPECT_EQ(run("9c00 0000000000000000 0000 0000 0000").status, kStatusGood);  // 0 blocks
  EXPECT_TRUE(target_->log().empty());
}

TEST_F(LuTest, ReadOnlyExportReportsWriteProtectAndRefusesWrites) {
  LogicalUnitOptions o;
  o.read_only = true;
  make(MemoryTarget::default_identity(kBlocks, 512, 8), o);
  EXPECT_EQ(run("1a003f00ff00").data_in[2] & 0x80, 0x80);  // MODE SENSE(6): WP
  const Bytes block = filled(512, 3);
  expect_check(run("2a000000000000000100", block), kDataProtect, 0x27, 0x00);
  expect_check(run("41000000000000000100", block), kDataProtect, 0x27, 0x00);
  expect_check(run("9308 0000000000000000 00000001 0000", Bytes(512, 0)), kDataProtect, 0x27,
               0x00);
  EXPECT_EQ(run("28000000000000000100").status, kStatusGood);
  for (const auto& req : target_->log()) EXPECT_NE(req.op, Op::kWrite);
}

TEST_F(LuTest, RequestSenseReportsAndClearsUnitAttention) {
  lu_->reset();
  auto r = run("030100 00ff00");  // descriptor format
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_GE(r.data_in.size(), 8u);
  EXPECT_EQ(r.data_in[0], 0x72);
  EXPECT_EQ(r.data_in[1], kUnitAttention);
  EXPECT_EQ(r.data_in[2], 0x29);
  EXPECT_EQ(run("000000000000").status, kStatusGood);
  auto none = run("030000001200");
  EXPECT_EQ(none.data_in.size(), 18u);
  EXPECT_EQ(none.data_in[2], kNoSense);
}

TEST_F(LuTest, DescriptorSenseAfterModeSelectDSense) {
  Bytes control =
      hex("00000000"
          "0a0a 04100000 00000000 0000");
  ASSERT_EQ(run("151000001000", control).status, kStatusGood);
  EXPECT_TRUE(lu_->mode_parameters().d_sense);
  auto r = run("28200000000000000100");
  ASSERT_EQ(r.status, kStatusCheckCondition);
  ASSERT_EQ(r.sense[0], 0x72);
  EXPECT_EQ(r.sense[1], kIllegalRequest);
  EXPECT_EQ(r.sense[2], 0x24);
  const Sense s = sense(r);
  ASSERT_TRUE(s.sks);
  EXPECT_EQ(to_hex(ByteSpan(s.sks->data(), 3)), "cf0001");
}

TEST_F(LuTest, ModeSensePagesAndPageControl) {
  auto all = run("1a003f00ff00");
  ASSERT_EQ(all.status, kStatusGood);
  // header 4 + block descriptor 8 + pages 12 + 20 + 12
  ASSERT_EQ(all.data_in.size(), 4u + 8 + 12 + 20 + 12);
  EXPECT_EQ(all.data_in[0], all.data_in.size() - 1);
  EXPECT_EQ(all.data_in[2], 0x10);  // DPOFUA
  EXPECT_EQ(all.data_in[3], 8);
  EXPECT_EQ(load_be32(&all.data_in[4]), kBlocks);
  EXPECT_EQ(all.data_in[12], 0x81);
  EXPECT_EQ(all.data_in[24], 0x88);
  EXPECT_EQ(all.data_in[26] & 0x04, 0x04);  // WCE
  EXPECT_EQ(all.data_in[44], 0x8A);
  auto changeable = run("1a084800ff00");  // DBD, PC=1, caching
  ASSERT_EQ(changeable.data_in.size(), 4u + 20);
  EXPECT_EQ(changeable.data_in[6], 0x05);
  auto ten = run("5a103f00000000ffff00");  // LLBAA
  EXPECT_EQ(ten.data_in[4] & 1, 1);
  EXPECT_EQ(load_be16(&ten.data_in[6]), 16);
  EXPECT_EQ(load_be64(&ten.data_in[8]), kBlocks);
  EXPECT_EQ(run("1a00c800ff00").status, kStatusGood);  // saved values
  expect_check(run("1a000500ff00"), kIllegalRequest, 0x24, 0x00, "cd0002");
  expect_check(run("1a000801ffc0"), kIllegalRequest, 0x24, 0x00, "c00003");  // vendor bits ok
  expect_check(run("1a000800ff04"), kIllegalRequest, 0x24, 0x00, "ca0005");  // NACA
}

TEST_F(LuTest, ModeSelectValidation) {
  // Changing a non-changeable bit (AWRE in page 01h) -> INVALID FIELD IN PARAMETER LIST.
  Bytes rw =
      hex("00000000"
          "010a 40000000 00000000 0000");
  expect_check(run("151000001000", rw), kIllegalRequest, 0x26, 0x00, "8f0006");
  expect_check(run("151000000200", hex("0000")), kIllegalRequest, 0x1A, 0x00);
  expect_check(run("150000001000", rw), kIllegalRequest, 0x24, 0x00, "cc0001");  // PF=0
  Bytes bad_len =
      hex("00000000"
          "0811");
  bad_len.resize(4 + 2 + 17);
  expect_check(run("151000001700", bad_len), kIllegalRequest, 0x26, 0x00, "800005");
  Bytes unknown =
      hex("00000000"
          "1c0a 00000000 00000000 0000");
  expect_check(run("151000001000", unknown), kIllegalRequest, 0x26, 0x00, "8d0004");
  Bytes bad_block =
      hex("00000008"
          "00000000 00000400");
  expect_check(run("151000000c00", bad_block), kIllegalRequest, 0x26, 0x00, "800009");
  // SP=1 saves: after a reset the saved value (WCE=0) comes back.
  Bytes caching =
      hex("00000000"
          "0812"
          "00000000000000000000000000000000 0000");
  ASSERT_EQ(run("151100001800", caching).status, kStatusGood);
  lu_->reset();
  EXPECT_FALSE(lu_->mode_parameters().wce);
  expect_check(run("55100000000000001400", Bytes(20, 0)), kUnitAttention, 0x29, 0x00);
  // MODE SELECT(10) with the software write protect bit.
  Bytes swp =
      hex("0000000000000000"
          "0a0a 00100800 00000000 0000");
  ASSERT_EQ(run("55100000000000001400", swp).status, kStatusGood);
  EXPECT_TRUE(lu_->mode_parameters().swp);
}

TEST_F(LuTest, SoftwareAndHardwareWriteProtect) {
  Bytes swp =
      hex("00000000"
          "0a0a 00100800 00000000 0000");
  ASSERT_EQ(run("151000001000", swp).status, kStatusGood);
  expect_check(run("2a000000000000000100", filled(512, 0)), kDataProtect, 0x27, 0x02);
  auto ms = run("1a003f00ff00");
  EXPECT_EQ(ms.data_in[2] & 0x80, 0x80);  // WP
  auto id = MemoryTarget::default_identity(kBlocks);
  id.capabilities |= proto::kCapReadOnly;
  make(id);
  expect_check(run("2a000000000000000100", filled(512, 0)), kDataProtect, 0x27, 0x00);
  expect_check(run("4100000000000000 0100", filled(512, 0)), kDataProtect, 0x27, 0x00);
  EXPECT_TRUE(target_->log().empty());
}

TEST_F(LuTest, UnmapTrimsDescriptorsAndValidatesTheList) {
  run("2a000000000000000400", filled(4 * 512, 5));
  target_->clear_log();
  Bytes list =
      hex("0026 0020 00000000"
          "0000000000000001 00000002 00000000"
          "0000000000000010 00000000 00000000");
  list.resize(8 + 32);
  ASSERT_EQ(run("42000000000000002800", list).status, kStatusGood);
  auto log = target_->log();
  ASSERT_EQ(log.size(), 1u);  // the zero-count descriptor is skipped
  EXPECT_EQ(log[0].op, Op::kTrim);
  EXPECT_EQ(log[0].lba, 1u);
  EXPECT_EQ(log[0].blocks, 2u);
  auto r = run("28000000000000000400");
  EXPECT_EQ(Bytes(r.data_in.begin() + 512, r.data_in.begin() + 1536), Bytes(1024, 0));
  expect_check(run("42000000000000000400", hex("00000000")), kIllegalRequest, 0x1A, 0x00);
  Bytes far =
      hex("0016 0010 00000000"
          "00000000000003e7 00000002 00000000");
  expect_check(run("42000000000000001800", far), kIllegalRequest, 0x21, 0x00);
  expect_check(run("42010000000000001800", far), kIllegalRequest, 0x24, 0x00, "c80001");
  Bytes trunc =
      hex("0016 0020 00000000"
          "0000000000000001 00000002 00000000");
  expect_check(run("42000000000000001800", trunc), kIllegalRequest, 0x1A, 0x00);
  EXPECT_EQ(run("42000000000000000000").status, kStatusGood);
}

TEST_F(LuTest, WriteSameVariants) {
  // Non-zero data: writes of the repeated block, split at max_transfer_blocks.
  const Bytes block = filled(512, 42);
  ASSERT_EQ(run("41000000000a00000c00", block).status, kStatusGood);
  auto log = target_->log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].op, Op::kWrite);
  EXPECT_EQ(log[0].blocks, 8u);
  EXPECT_EQ(log[1].blocks, 4u);
  auto r = run("280000000011 0000 0100");
  EXPECT_EQ(r.data_in, block);
  target_->clear_log();
  // Zero data with UNMAP: WRITE_ZEROES that may trim.
  ASSERT_EQ(run("9308 000000000000000a 0000000c 0000", Bytes(512, 0)).status, kStatusGood);
  ASSERT_EQ(target_->log().size(), 1u);
  EXPECT_EQ(target_->log()[0].op, Op::kWriteZeroes);
  EXPECT_EQ(target_->log()[0].flags, proto::kFlagMayTrim);
  EXPECT_EQ(target_->log()[0].blocks, 12u);
  EXPECT_EQ(run("280000000011 0000 0100").data_in, Bytes(512, 0));
  // NDOB: no data-out buffer at all.
  target_->clear_log();
  ASSERT_EQ(run("9301 0000000000000000 00000004 0000").status, kStatusGood);
  EXPECT_EQ(target_->log().at(0).op, Op::kWriteZeroes);
  EXPECT_EQ(target_->log().at(0).flags, 0u);
  // NUMBER OF LOGICAL BLOCKS 0 (WSNZ=0): from the LBA to the end of the medium.
  target_->clear_log();
  ASSERT_EQ(run("4100 000003de 00 0000 00", block).status, kStatusGood);  // LBA 990
  std::uint64_t written = 0;
  for (const auto& req : target_->log()) {
    EXPECT_EQ(req.op, Op::kWrite);
    written += req.blocks;
  }
  EXPECT_EQ(written, 10u);
  EXPECT_EQ(run("2800000003e7 00 0001 00").data_in, block);  // LBA 999, the last one
  // 0 blocks at the end (nothing to write), past the end (out of range).
  EXPECT_EQ(run("4100 000003e8 00 0000 00", block).status, kStatusGood);
  expect_check(run("4100 000003e9 00 0000 00", block), kIllegalRequest, 0x21, 0x00);
  // ... and more than MAXIMUM WRITE SAME LENGTH that way is refused.
  LogicalUnitOptions small;
  small.max_write_same_blocks = 100;
  make(MemoryTarget::default_identity(kBlocks, 512, 8), small);
  expect_check(run("41000000000000000000", block), kIllegalRequest, 0x24, 0x00, "c00007");
  EXPECT_EQ(run("4100 00000384 00 0000 00", block).status, kStatusGood);  // LBA 900: 100 blocks
  expect_check(run("41100000000000000100", block), kIllegalRequest, 0x24, 0x00, "cc0001");
  expect_check(run("41040000000000000100", block), kIllegalRequest, 0x24, 0x00, "ca0001");
}

TEST_F(LuTest, CompareAndWrite) {
  const Bytes old_data = filled(1024, 1);
  run("2a000000002000000200", old_data);
  const Bytes new_data = filled(1024, 2);
  Bytes buf = old_data;
  buf.insert(buf.end(), new_data.begin(), new_data.end());
  ASSERT_EQ(run("8900 0000000000000020 000000 02 0000", buf).status, kStatusGood);
  EXPECT_EQ(run("28000000002000000200").data_in, new_data);
  // Now the verify half no longer matches: MISCOMPARE with the offset of the first difference.
  Bytes wrong = new_data;
  wrong[700] ^= 0xFF;
  wrong.insert(wrong.end(), old_data.begin(), old_data.end());
  auto r = run("8900 0000000000000020 000000 02 0000", wrong);
  expect_check(r, kMiscompare, 0x1D, 0x00);
  EXPECT_EQ(sense(r).information, 700u);
  EXPECT_EQ(run("28000000002000000200").data_in, new_data);
  // MAXIMUM COMPARE AND WRITE LENGTH follows max_command_bytes: 16 KiB / (2 * 512) = 16.
  LogicalUnitOptions small;
  small.max_command_bytes = 16384;
  make(MemoryTarget::default_identity(kBlocks, 512, 8), small);
  EXPECT_EQ(run("1201b0004000").data_in[5], 16);
  expect_check(run("8900 0000000000000020 000000 11 0000", Bytes(34 * 512)), kIllegalRequest, 0x24,
               0x00, "c0000d");
}

TEST_F(LuTest, VerifyAndWriteAndVerify) {
  const Bytes data = filled(3 * 512, 8);
  ASSERT_EQ(run("2e000000003000000300", data).status, kStatusGood);
  EXPECT_EQ(target_->log()[0].flags, proto::kFlagFua);
  EXPECT_EQ(target_->log().back().op, Op::kRead);
  EXPECT_EQ(run("2f000000003000000300").status, kStatusGood);        // BYTCHK 0
  EXPECT_EQ(run("2f020000003000000300", data).status, kStatusGood);  // BYTCHK 1
  Bytes bad = data;
  bad[1000] ^= 1;
  auto r = run("8f02 0000000000000030 00000003 0000", bad);
  expect_check(r, kMiscompare, 0x1D, 0x00);
  EXPECT_EQ(sense(r).information, 1000u);
  expect_check(run("2f040000003000000300", data), kIllegalRequest, 0x24, 0x00, "ca0001");
  // BYTCHK 3: one block compared with every block.
  run("41000000004000000400", filled(512, 4));
  EXPECT_EQ(run("2f060000004000000400", filled(512, 4)).status, kStatusGood);
  target_->inject({Op::kRead, std::nullopt, 0, ~0ull, Errc::kMediumError, 1});
  expect_check(run("2f000000003000000300"), kMediumError, 0x11, 0x00);
}

TEST_F(LuTest, SynchronizeCacheFlushes) {
  ASSERT_EQ(run("35000000000000000000").status, kStatusGood);
  EXPECT_EQ(target_->log().at(0).op, Op::kFlush);
  ASSERT_EQ(run("9102 0000000000000000 00000000 0000").status, kStatusGood);
  expect_check(run("350000000fa000000100"), kIllegalRequest, 0x21, 0x00);
  target_->inject({Op::kFlush, std::nullopt, 0, ~0ull, Errc::kConnectionLost, 1});
  expect_check(run("35000000000000000000"), kAbortedCommand, 0x08, 0x00);
}

TEST_F(LuTest, GetLbaStatus) {
  auto r = run("9e12 0000000000000010 00000018 0000");
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_EQ(r.data_in.size(), 24u);
  EXPECT_EQ(load_be32(&r.data_in[0]), 20u);
  EXPECT_EQ(load_be64(&r.data_in[8]), 16u);
  EXPECT_EQ(load_be32(&r.data_in[16]), kBlocks - 16);
  EXPECT_EQ(r.data_in[20], 1);  // never written: deallocated (reads as zeroes, LBPRZ)
  run("2a000000001400000200", filled(1024, 3));
  auto three = run("9e12 0000000000000010 00000048 0000");
  ASSERT_EQ(three.data_in.size(), 8u + 3 * 16);
  EXPECT_EQ(load_be32(&three.data_in[0]), 4u + 3 * 16);
  EXPECT_EQ(load_be32(&three.data_in[8 + 8]), 4u);
  EXPECT_EQ(three.data_in[8 + 12], 1);
  EXPECT_EQ(load_be64(&three.data_in[24]), 20u);
  EXPECT_EQ(load_be32(&three.data_in[24 + 8]), 2u);
  EXPECT_EQ(three.data_in[24 + 12], 0);  // mapped
  EXPECT_EQ(load_be32(&three.data_in[40 + 8]), kBlocks - 22);
  EXPECT_EQ(three.data_in[40 + 12], 1);
  // Room for one descriptor only: the first run.
  auto one = run("9e12 0000000000000010 00000018 0000");
  EXPECT_EQ(load_be32(&one.data_in[16]), 4u);
  expect_check(run("9e12 00000000000003e8 00000018 0000"), kIllegalRequest, 0x21, 0x00);
  target_->inject({Op::kRead, std::nullopt, 0, ~0ull, Errc::kTimeout, 1});
  expect_check(run("9e12 0000000000000010 00000018 0000"), kAbortedCommand, 0x08, 0x01);
}

TEST_F(LuTest, ReportSupportedOperationCodes) {
  auto all = run("a30c0000000000001000 0000");
  ASSERT_EQ(all.status, kStatusGood);
  const std::uint32_t n = load_be32(&all.data_in[0]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_GE(n / 8, 30u);
  auto one = run("a30c0128000000000100 0000");
  ASSERT_EQ(one.status, kStatusGood);
  EXPECT_EQ(one.data_in[1], 0x03);
  EXPECT_EQ(load_be16(&one.data_in[2]), 10);
  EXPECT_EQ(to_hex(Bytes(one.data_in.begin() + 4, one.data_in.end())), "28feffffffff1fffff00");
  auto sa = run("a30c029e001000000100 0000");
  ASSERT_EQ(sa.status, kStatusGood);
  EXPECT_EQ(sa.data_in[5], 0x10);  // service action in the usage map
  auto unsupported = run("a30c01c0000000000100 0000");
  EXPECT_EQ(unsupported.data_in[1], 0x01);
  expect_check(run("a30c019e000000000100 0000"), kIllegalRequest, 0x24, 0x00, "ca0002");
  expect_check(run("a30c0528000000000100 0000"), kIllegalRequest, 0x24, 0x00, "ca0002");
  auto timeouts = run("a30c8128000000000100 0000");
  EXPECT_EQ(timeouts.data_in.size(), 4u + 10 + 12);
  EXPECT_EQ(timeouts.data_in[1], 0x83);
}

TEST_F(LuTest, AsynchronousCompletionAndFlatStack) {
  run("2a000000000000001000", filled(16 * 512, 6));
  target_->set_deferred(true);
  std::optional<ScsiResult> out;
  ScsiCommand c;
  c.cdb = hex("28000000000000001000");
  lu_->execute(c, [&](ScsiResult r) { out = std::move(r); });
  EXPECT_FALSE(out.has_value());
  EXPECT_EQ(target_->run_pending(), 2u);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->data_in, filled(16 * 512, 6));
  target_->set_deferred(false);
  // One-block requests for an 8 MiB read: 16384 inline completions must not recurse.
  make(MemoryTarget::default_identity(1u << 15, 512, 1));
  target_->set_log_data(false);
  auto big = run("a8000000000000004000 0000");
  ASSERT_EQ(big.status, kStatusGood);
  EXPECT_EQ(big.data_in.size(), 8u << 20);
  EXPECT_EQ(target_->log().size(), 16384u);
}

TEST_F(LuTest, NotAttachedIsNotReady) {
  MemoryTarget t;
  t.add_device(1, MemoryTarget::default_identity(10));
  t.inject({Op::kIdentify, std::nullopt, 0, ~0ull, Errc::kConnectionLost, 1});
  LogicalUnit lu(t, 1);
  Errc e = Errc::kOk;
  lu.attach([&](Errc r) { e = r; });
  EXPECT_EQ(e, Errc::kConnectionLost);
  ScsiResult out;
  ScsiCommand c;
  c.cdb = hex("000000000000");
  lu.execute(c, [&](ScsiResult r) { out = r; });
  expect_check(out, kNotReady, 0x04, 0x01);
  c.cdb = hex("120000002400");
  lu.execute(c, [&](ScsiResult r) { out = r; });
  EXPECT_EQ(out.status, kStatusGood);
  EXPECT_EQ(out.data_in[0], 0x20);  // peripheral qualifier 001b
}

TEST_F(LuTest, BadIdentityFromServerIsRefused) {
  MemoryTarget t;
  auto id = MemoryTarget::default_identity(10, 512);
  id.block_size = 0;
  t.add_device(1, id);
  LogicalUnit lu(t, 1);
  Errc e = Errc::kOk;
  lu.attach([&](Errc r) { e = r; });
  EXPECT_EQ(e, Errc::kBadMessage);
  EXPECT_FALSE(lu.attached());
}

TEST_F(LuTest, PhysicalBlockSizeIsReportedAsAnExponent) {
  LogicalUnitOptions o;
  o.physical_block_size = 4096;
  make(MemoryTarget::default_identity(kBlocks, 512, 8), o);
  auto r = run("9e10 0000000000000000 00000020 0000");
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(r.data_in[13] & 0x0F, 3);  // 8 logical blocks per physical block
  // WRITE SAME with more than one block of data-out contradicts its CDB.
  expect_check(run("41080000000000000100", filled(1024, 3)), kIllegalRequest, 0x24, 0x00);
}

}  // namespace
}  // namespace ipsan::client::scsi::testing
