// SANITIZE (SBC-4), EXTENDED COPY(LID1) and RECEIVE COPY RESULTS (SPC-4) of the logical unit:
// CDB and parameter-list decoding, sense for every refused field, the requests they produce, and
// the state they leave (sanitize in progress / failure mode, held copy status).
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <vector>

#include "ipsan/client/scsi/logical_unit.h"
#include "lu_fixture.h"

namespace ipsan::client::scsi::testing {
namespace {

using proto::Op;

Bytes sanitize_cdb(std::uint8_t byte1, std::uint16_t param_len) {
  Bytes c(10, 0);
  c[0] = 0x48;
  c[1] = byte1;
  store_be16(&c[7], param_len);
  return c;
}

// OVERWRITE parameter list: OVERWRITE COUNT (+ INVERT), pattern.
Bytes overwrite_params(std::uint8_t byte0, const Bytes& pattern) {
  Bytes p(4, 0);
  p[0] = byte0;
  store_be16(&p[2], static_cast<std::uint16_t>(pattern.size()));
  p.insert(p.end(), pattern.begin(), pattern.end());
  return p;
}

class SanitizeCopyTest : public LuTest {
 public:
  ScsiResult exec(const Bytes& cdb, Bytes data_out = {}, const std::string& nexus = "") {
    ScsiCommand c;
    c.cdb = cdb;
    c.data_out = std::move(data_out);
    c.nexus = nexus;
    std::optional<ScsiResult> out;
    lu_->execute(c, [&](ScsiResult r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out.value_or(ScsiResult{});
  }

  void write_pattern(std::uint64_t lba, std::uint32_t blocks, std::uint8_t seed) {
    Bytes cdb(16, 0);
    cdb[0] = 0x8A;
    store_be64(&cdb[2], lba);
    store_be32(&cdb[10], blocks);
    ASSERT_EQ(exec(cdb, filled(blocks * 512u, seed)).status, kStatusGood);
  }

  // The LUN's own NAA designator (VPD 83h), for CSCD descriptors.
  Bytes naa() {
    auto r = run("120183010000");
    EXPECT_GE(r.data_in.size(), 16u);
    return Bytes(r.data_in.begin() + 4, r.data_in.begin() + 16);  // header + 8 bytes
  }

  Bytes cscd(const Bytes& designator, std::uint8_t type = 0xE4) {
    Bytes d(32, 0);
    d[0] = type;
    std::copy(designator.begin(), designator.end(), d.begin() + 4);
    d[30] = 0x02;  // DISK BLOCK LENGTH 512
    return d;
  }

  static Bytes b2b(std::uint16_t src, std::uint16_t dst, std::uint16_t blocks,
                   std::uint64_t src_lba, std::uint64_t dst_lba, std::uint8_t type = 0x02) {
    Bytes d(28, 0);
    d[0] = type;
    store_be16(&d[2], 0x18);
    store_be16(&d[4], src);
    store_be16(&d[6], dst);
    store_be16(&d[10], blocks);
    store_be64(&d[12], src_lba);
    store_be64(&d[20], dst_lba);
    return d;
  }

  static Bytes xcopy_params(std::uint8_t list_id, std::uint8_t usage,
                            const std::vector<Bytes>& cscds, const std::vector<Bytes>& segs) {
    Bytes p(16, 0);
    p[0] = list_id;
    p[1] = static_cast<std::uint8_t>(usage << 3);
    std::size_t cl = 0, sl = 0;
    for (const auto& c : cscds) cl += c.size();
    for (const auto& s : segs) sl += s.size();
    store_be16(&p[2], static_cast<std::uint16_t>(cl));
    store_be32(&p[8], static_cast<std::uint32_t>(sl));
    for (const auto& c : cscds) p.insert(p.end(), c.begin(), c.end());
    for (const auto& s : segs) p.insert(p.end(), s.begin(), s.end());
    return p;
  }

  static Bytes xcopy_cdb(std::uint32_t len) {
    Bytes c(16, 0);
    c[0] = 0x83;
    store_be32(&c[10], len);
    return c;
  }

  static Bytes rcr_cdb(std::uint8_t sa, std::uint8_t list_id, std::uint32_t alloc = 1024) {
    Bytes c(16, 0);
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id;
    store_be32(&c[10], alloc);
    return c;
  }

  ScsiResult xcopy(const Bytes& params, const std::string& nexus = "") {
    return exec(xcopy_cdb(static_cast<std::uint32_t>(params.size())), params, nexus);
  }
};

// --- SANITIZE ---------------------------------------------------------------------------------

TEST_F(SanitizeCopyTest, OverwriteWritesThePatternOverTheWholeMedium) {
  write_pattern(0, 8, 1);
  write_pattern(kBlocks - 8, 8, 2);
  target_->clear_log();
  const Bytes pat = {0x11, 0x22, 0x33, 0x44};
  auto r = exec(sanitize_cdb(0x01, 8), overwrite_params(0x01, pat));
  ASSERT_EQ(r.status, kStatusGood);
  for (std::uint64_t lba : {std::uint64_t{0}, kBlocks / 2, kBlocks - 1}) {
    const Bytes b = target_->peek(kDevice, lba, 1);
    for (std::size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], pat[i % 4]) << lba << " " << i;
  }
  // Bounded WRITE requests (max_transfer_blocks 8), all FUA, then FLUSH.
  const auto log = target_->log();
  ASSERT_FALSE(log.empty());
  std::uint64_t written = 0;
  for (std::size_t i = 0; i + 1 < log.size(); ++i) {
    ASSERT_EQ(log[i].op, Op::kWrite);
    EXPECT_LE(log[i].blocks, 8u);
    EXPECT_TRUE(log[i].flags & proto::kFlagFua);
    written += log[i].blocks;
  }
  EXPECT_EQ(written, kBlocks);
  EXPECT_EQ(log.back().op, Op::kFlush);
}

TEST_F(SanitizeCopyTest, OverwriteInvertsBetweenPasses) {
  // Two passes with INVERT: the second (last) pass writes the inverted pattern.
  auto r = exec(sanitize_cdb(0x01, 5), overwrite_params(0x80 | 0x02, {0x0F}));
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, 3, 1), Bytes(512, 0xF0));
}

TEST_F(SanitizeCopyTest, OverwriteParameterChecks) {
  Bytes full = overwrite_params(0x01, Bytes(512, 0xAA));
  // PARAMETER LIST LENGTH below 5 or above block size + 4: INVALID FIELD IN CDB at byte 7.
  for (std::uint16_t len : {0, 1, 2, 3, 4}) {
    expect_check(exec(sanitize_cdb(0x01, len), Bytes(full.begin(), full.begin() + len)),
                 kIllegalRequest, 0x24, 0x00, "c00007");
  }
  Bytes big = full;
  big.resize(520, 0);
  expect_check(exec(sanitize_cdb(0x01, 517), big), kIllegalRequest, 0x24, 0x00, "c00007");
  // OVERWRITE COUNT 0, TEST != 0, pattern length 0 or above the block size.
  Bytes p = full;
  p[0] = 0x00;
  expect_check(exec(sanitize_cdb(0x01, 516), p), kIllegalRequest, 0x26, 0x00);
  p[0] = 0x21;
  expect_check(exec(sanitize_cdb(0x01, 516), p), kIllegalRequest, 0x26, 0x00);
  p = full;
  store_be16(&p[2], 0);
  expect_check(exec(sanitize_cdb(0x01, 516), p), kIllegalRequest, 0x26, 0x00, "800002");
  store_be16(&p[2], 516);
  expect_check(exec(sanitize_cdb(0x01, 516), p), kIllegalRequest, 0x26, 0x00, "800002");
  // Pattern longer than the parameter list: PARAMETER LIST LENGTH ERROR.
  p = full;
  expect_check(exec(sanitize_cdb(0x01, 100), p), kIllegalRequest, 0x1A, 0x00);
  // Less data-out than PARAMETER LIST LENGTH.
  expect_check(exec(sanitize_cdb(0x01, 516), Bytes(full.begin(), full.begin() + 10)),
               kIllegalRequest, 0x0E, 0x03);
  EXPECT_TRUE(target_->log().empty()) << "a refused SANITIZE must not touch the medium";
}

TEST_F(SanitizeCopyTest, BlockAndCryptoEraseDeallocateEverything) {
  for (std::uint8_t sa : {0x02, 0x03}) {
    write_pattern(0, 8, 3);
    write_pattern(kBlocks - 8, 8, 4);
    target_->clear_log();
    ASSERT_EQ(exec(sanitize_cdb(sa, 0)).status, kStatusGood);
    EXPECT_EQ(target_->peek(kDevice, 0, 8), Bytes(8 * 512, 0));
    EXPECT_EQ(target_->peek(kDevice, kBlocks - 8, 8), Bytes(8 * 512, 0));
    const auto log = target_->log();
    ASSERT_GE(log.size(), 1u);
    EXPECT_EQ(log[0].op, Op::kTrim);
    // No parameter list for the erases.
    expect_check(exec(sanitize_cdb(sa, 8), Bytes(8, 0)), kIllegalRequest, 0x24, 0x00, "c00007");
  }
}

TEST_F(SanitizeCopyTest, GetLbaStatusReportsTheWholeErasedMediumUntilAWrite) {
  make(MemoryTarget::default_identity(100000, 512, 8));
  ASSERT_EQ(exec(sanitize_cdb(0x02, 0)).status, kStatusGood);
  auto r = run("9e12 0000000000000000 00000100 0000");
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_EQ(r.data_in.size(), 24u);
  EXPECT_EQ(load_be64(&r.data_in[8]), 0u);
  EXPECT_EQ(load_be32(&r.data_in[16]), 100000u);  // beyond the 2048 blocks read
  EXPECT_EQ(r.data_in[20], 1);                    // deallocated
  write_pattern(50000, 1, 9);
  r = run("9e12 0000000000000000 00000100 0000");
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(load_be32(&r.data_in[16]), 2048u);  // only what it read
}

TEST_F(SanitizeCopyTest, ServiceActionsAndReservedFields) {
  for (int sa = 0; sa <= 0x1F; ++sa) {
    if (sa == 1 || sa == 2 || sa == 3 || sa == 0x1F) continue;
    expect_check(exec(sanitize_cdb(static_cast<std::uint8_t>(sa), 0)), kIllegalRequest, 0x24, 0x00,
                 "cc0001");
  }
  expect_check(exec(sanitize_cdb(0x42, 0)), kIllegalRequest, 0x24, 0x00, "ce0001");
  for (int byte = 2; byte <= 6; ++byte) {
    Bytes c = sanitize_cdb(0x02, 0);
    c[static_cast<std::size_t>(byte)] = 1;
    expect_check(exec(c), kIllegalRequest, 0x24, 0x00);
  }
  // EXIT FAILURE MODE takes no parameter list.
  expect_check(exec(sanitize_cdb(0x1F, 8), Bytes(8, 0)), kIllegalRequest, 0x24, 0x00, "c00007");
  EXPECT_EQ(exec(sanitize_cdb(0x1F, 0)).status, kStatusGood);
  EXPECT_TRUE(target_->log().empty());
}

TEST_F(SanitizeCopyTest, ReportedInSupportedOpcodesAndBlockDeviceCharacteristics) {
  for (const char* sa : {"0001", "0002", "0003", "001f"}) {
    auto r = run(std::string("a30c0248") + sa + "00000100 0000");
    ASSERT_EQ(r.status, kStatusGood);
    EXPECT_EQ(r.data_in[1] & 0x07, 0x03) << sa;
  }
  auto bdc = run("1201b1004000");
  ASSERT_GE(bdc.data_in.size(), 8u);
  EXPECT_EQ(bdc.data_in[7] & 0xF0, 0x50);  // WABEREQ = WACEREQ = 01b
}

TEST_F(SanitizeCopyTest, WriteProtectedUnitRefuses) {
  make([] {
    auto id = MemoryTarget::default_identity(kBlocks, 512, 8);
    id.capabilities |= proto::kCapReadOnly;
    return id;
  }());
  expect_check(exec(sanitize_cdb(0x02, 0)), kDataProtect, 0x27, 0x00);
  expect_check(exec(sanitize_cdb(0x01, 5), overwrite_params(1, {0})), kDataProtect, 0x27, 0x00);
}

TEST_F(SanitizeCopyTest, InProgressBlocksMediumCommandsAndSurvivesReset) {
  target_->set_deferred(true);
  std::optional<ScsiResult> done;
  ScsiCommand c;
  c.cdb = sanitize_cdb(0x01, 5);
  c.data_out = overwrite_params(1, {0x5A});
  lu_->execute(c, [&](ScsiResult r) { done = std::move(r); });
  ASSERT_FALSE(done);
  // TEST UNIT READY, READ, another SANITIZE: NOT READY, SANITIZE IN PROGRESS.
  expect_check(run("000000000000"), kNotReady, 0x04, 0x1B);
  expect_check(run("880000000000000000000000000100 00"), kNotReady, 0x04, 0x1B);
  expect_check(exec(sanitize_cdb(0x02, 0)), kNotReady, 0x04, 0x1B);
  // INQUIRY, REPORT LUNS, REQUEST SENSE still work; REQUEST SENSE tells the progress.
  EXPECT_EQ(run("120000006000").status, kStatusGood);
  EXPECT_EQ(run("a0000000000000000100 0000").status, kStatusGood);
  auto rs = run("030000001200");
  ASSERT_EQ(rs.status, kStatusGood);
  const Sense s = sense(ScsiResult{kStatusCheckCondition, rs.data_in, {}, 0, false});
  EXPECT_EQ(s.key, kNotReady);
  EXPECT_EQ(s.asc, 0x04);
  EXPECT_EQ(s.ascq, 0x1B);
  ASSERT_TRUE(s.sks.has_value());
  // A logical unit reset does not stop it.
  lu_->reset();
  lu_->nexus_lost("");
  while (target_->run_pending() != 0) {
  }
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, kBlocks - 1, 1), Bytes(512, 0x5A));
  target_->set_deferred(false);
  expect_check(run("000000000000"), kUnitAttention, 0x29, 0x07);  // nexus loss reported
  EXPECT_EQ(run("000000000000").status, kStatusGood);
}

TEST_F(SanitizeCopyTest, BackgroundRateDefersRequestsThroughSchedule) {
  // 1000 blocks of 512 bytes in 8-block requests at 64 KiB/s: every request after the first
  // waits for the bytes before it; `schedule` runs them (here at once, recording the delays).
  std::vector<std::chrono::nanoseconds> delays;
  LogicalUnitOptions o;
  o.background_bytes_per_second = 64 << 10;
  o.sanitize_min_duration = std::chrono::nanoseconds{0};
  o.schedule = [&](std::chrono::nanoseconds d, std::function<void()> fn) {
    delays.push_back(d);
    fn();
  };
  make(MemoryTarget::default_identity(kBlocks, 512, 8), o);
  auto r = exec(sanitize_cdb(0x01, 5), overwrite_params(1, {0x77}));
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, kBlocks - 1, 1), Bytes(512, 0x77));
  ASSERT_GE(delays.size(), 120u);  // 125 requests; the first ones may already be due
  EXPECT_GT(delays.back(), std::chrono::milliseconds(7000));  // ~500 KB at 64 KiB/s
  EXPECT_LT(delays.back(), std::chrono::milliseconds(8000));
  // Erases move no data: not paced.
  delays.clear();
  ASSERT_EQ(exec(sanitize_cdb(0x02, 0)).status, kStatusGood);
  EXPECT_TRUE(delays.empty());
}

TEST_F(SanitizeCopyTest, OverwriteLastsAtLeastTheMinimumDuration) {
  // No rate limit, a 2 s minimum: 500 KB are paced at 250 KB/s and the end (FLUSH, status)
  // waits for the 2 s. `schedule` runs at once, recording the delays (no real time passes).
  std::vector<std::chrono::nanoseconds> delays;
  LogicalUnitOptions o;
  o.sanitize_min_duration = std::chrono::seconds(2);
  o.schedule = [&](std::chrono::nanoseconds d, std::function<void()> fn) {
    delays.push_back(d);
    fn();
  };
  make(MemoryTarget::default_identity(kBlocks, 512, 8), o);
  auto r = exec(sanitize_cdb(0x01, 5), overwrite_params(1, {0x66}));
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, kBlocks - 1, 1), Bytes(512, 0x66));
  ASSERT_GE(delays.size(), 120u);
  EXPECT_GT(delays[delays.size() - 2], std::chrono::milliseconds(1900));  // the last WRITE
  EXPECT_GT(delays.back(), std::chrono::milliseconds(1900));              // the end
  EXPECT_LE(delays.back(), std::chrono::seconds(2));
  EXPECT_EQ(target_->log().back().op, Op::kFlush);
  // Erases move no data and are not held back.
  delays.clear();
  ASSERT_EQ(exec(sanitize_cdb(0x02, 0)).status, kStatusGood);
  EXPECT_TRUE(delays.empty());
}

TEST_F(SanitizeCopyTest, ImmediateAnswersFirstAndFailureModeFollowsAFailure) {
  target_->inject({Op::kTrim, std::nullopt, 0, ~std::uint64_t{0}, Errc::kIoError, 1});
  auto r = exec(sanitize_cdb(0x80 | 0x02, 0));
  EXPECT_EQ(r.status, kStatusGood);  // IMMED: answered once the CDB was checked
  // The erase failed: medium commands now get MEDIUM ERROR, SANITIZE COMMAND FAILED.
  expect_check(run("000000000000"), kMediumError, 0x31, 0x03);
  auto rs = run("030000001200");
  EXPECT_EQ(rs.data_in[12], 0x31);
  EXPECT_EQ(exec(sanitize_cdb(0x1F, 0)).status, kStatusGood);  // EXIT FAILURE MODE
  EXPECT_EQ(run("000000000000").status, kStatusGood);
}

// --- EXTENDED COPY / RECEIVE COPY RESULTS ------------------------------------------------------

TEST_F(SanitizeCopyTest, ExtendedCopyCopiesBlocksAndReportsStatus) {
  write_pattern(0, 40, 7);
  const Bytes src = target_->peek(kDevice, 0, 40);
  const Bytes id = naa();
  auto r = xcopy(xcopy_params(5, 0, {cscd(id)}, {b2b(0, 0, 40, 0, 900)}));
  ASSERT_EQ(r.status, kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, 900, 40), src);
  // Requests bounded by max_transfer_blocks (8): READ, WRITE, READ, WRITE, ...
  for (const auto& req : target_->log()) EXPECT_LE(req.blocks, 8u);
  // COPY STATUS: completed, 1 segment, 40 blocks; then discarded.
  auto st = exec(rcr_cdb(0x00, 5));
  ASSERT_EQ(st.status, kStatusGood);
  ASSERT_EQ(st.data_in.size(), 12u);
  EXPECT_EQ(load_be32(&st.data_in[0]), 8u);
  EXPECT_EQ(st.data_in[4], 0x01);
  EXPECT_EQ(load_be16(&st.data_in[5]), 1u);
  EXPECT_EQ(load_be32(&st.data_in[8]), 40u * 512);
  expect_check(exec(rcr_cdb(0x00, 5)), kIllegalRequest, 0x24, 0x00, "c00002");
}

TEST_F(SanitizeCopyTest, ExtendedCopyOverlappingRangesCopyLikeMemmove) {
  write_pattern(100, 40, 8);
  const Bytes src = target_->peek(kDevice, 100, 40);
  ASSERT_EQ(xcopy(xcopy_params(1, 2, {cscd(naa())}, {b2b(0, 0, 40, 100, 110)})).status,
            kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, 110, 40), src);
  write_pattern(300, 40, 9);
  const Bytes src2 = target_->peek(kDevice, 300, 40);
  ASSERT_EQ(xcopy(xcopy_params(1, 2, {cscd(naa())}, {b2b(0, 0, 40, 300, 290)})).status,
            kStatusGood);
  EXPECT_EQ(target_->peek(kDevice, 290, 40), src2);
  // LIST ID USAGE 10b: nothing held.
  expect_check(exec(rcr_cdb(0x00, 1)), kIllegalRequest, 0x24, 0x00);
}

TEST_F(SanitizeCopyTest, ExtendedCopyParameterListChecks) {
  const Bytes id = naa();
  const Bytes good = xcopy_params(1, 0, {cscd(id)}, {b2b(0, 0, 8, 0, 500)});
  // PARAMETER LIST LENGTH 0: nothing to do.
  EXPECT_EQ(exec(xcopy_cdb(0)).status, kStatusGood);
  // Truncated header, CSCD or segment descriptor: PARAMETER LIST LENGTH ERROR.
  for (std::size_t len : {std::size_t{1}, std::size_t{15}, std::size_t{47}, good.size() - 1}) {
    expect_check(exec(xcopy_cdb(static_cast<std::uint32_t>(len)),
                      Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len))),
                 kIllegalRequest, 0x1A, 0x00);
  }
  // Too many CSCDs / segments; descriptor lists above the maximum length.
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id), cscd(id), cscd(id)}, {b2b(0, 0, 1, 0, 9)})),
               kIllegalRequest, 0x26, 0x06);
  std::vector<Bytes> segs(17, b2b(0, 0, 1, 0, 9));
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id)}, segs)), kIllegalRequest, 0x26, 0x08);
  std::vector<Bytes> many(40, b2b(0, 0, 1, 0, 9));
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id)}, many)), kIllegalRequest, 0x1A, 0x00);
  // Unsupported descriptor types.
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id, 0xE0)}, {b2b(0, 0, 1, 0, 9)})), kIllegalRequest,
               0x26, 0x07);
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id)}, {b2b(0, 0, 1, 0, 9, 0x03)})), kIllegalRequest,
               0x26, 0x09);
  // An index beyond the CSCD list; a CSCD naming another unit; a range beyond the capacity.
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id)}, {b2b(0, 1, 1, 0, 9)})), kCopyAborted, 0x08,
               0x04);
  Bytes other = id;
  other[5] ^= 0xFF;
  expect_check(xcopy(xcopy_params(1, 0, {cscd(other)}, {b2b(0, 0, 1, 0, 9)})), kCopyAborted, 0x0D,
               0x02);
  expect_check(xcopy(xcopy_params(1, 0, {cscd(id)}, {b2b(0, 0, 8, 0, kBlocks - 1)})), kCopyAborted,
               0x0D, 0x02);
  // Inline data, streams, LIST ID USAGE 01b: not offered.
  Bytes p = good;
  store_be32(&p[12], 4);
  p.resize(p.size() + 4, 0);
  expect_check(xcopy(p), kIllegalRequest, 0x26, 0x00);
  p = good;
  p[1] = 0x20;
  expect_check(xcopy(p), kIllegalRequest, 0x26, 0x00);
  p[1] = 0x08;
  expect_check(xcopy(p), kIllegalRequest, 0x26, 0x00);
  // Less data-out than the CDB says.
  expect_check(exec(xcopy_cdb(static_cast<std::uint32_t>(good.size())),
                    Bytes(good.begin(), good.begin() + 20)),
               kIllegalRequest, 0x0E, 0x03);
  EXPECT_TRUE(target_->log().empty()) << "a refused EXTENDED COPY must not touch the medium";
  // The LU ID TYPE field is ignored (SPC-4).
  Bytes lu_id = cscd(id);
  lu_id[1] = 0x80;
  EXPECT_EQ(xcopy(xcopy_params(1, 0, {lu_id}, {b2b(0, 0, 1, 0, 9)})).status, kStatusGood);
}

TEST_F(SanitizeCopyTest, ExtendedCopyNeverCrashesOnTruncatedOrGarbledLists) {
  const Bytes good =
      xcopy_params(3, 0, {cscd(naa()), cscd(naa())}, {b2b(0, 1, 2, 0, 10), b2b(1, 0, 2, 20, 30)});
  for (std::size_t len = 0; len <= good.size(); ++len) {
    Bytes p(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    (void)exec(xcopy_cdb(static_cast<std::uint32_t>(len)), p);
    (void)exec(xcopy_cdb(static_cast<std::uint32_t>(good.size())), p);
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    Bytes p = good;
    p[i] = 0xFF;
    (void)exec(xcopy_cdb(static_cast<std::uint32_t>(p.size())), p);
    p[i] = 0x00;
    (void)exec(xcopy_cdb(static_cast<std::uint32_t>(p.size())), p);
  }
  SUCCEED();
}

TEST_F(SanitizeCopyTest, ReceiveCopyResultsOperatingParametersAndNexus) {
  auto r = exec(rcr_cdb(0x03, 0));
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_EQ(r.data_in.size(), 46u);
  EXPECT_EQ(load_be32(&r.data_in[0]), 42u);
  EXPECT_EQ(load_be16(&r.data_in[8]), 2u);    // CSCD descriptors
  EXPECT_EQ(load_be16(&r.data_in[10]), 16u);  // segment descriptors
  EXPECT_EQ(load_be32(&r.data_in[12]), 1024u);
  EXPECT_EQ(r.data_in[43], 2);
  EXPECT_EQ(r.data_in[44], 0x02);
  EXPECT_EQ(r.data_in[45], 0xE4);
  EXPECT_EQ(exec(rcr_cdb(0x03, 0, 8)).data_in.size(), 8u);  // allocation length
  // Unsupported service action; no copy for this list identifier.
  expect_check(exec(rcr_cdb(0x04, 0)), kIllegalRequest, 0x24, 0x00, "cc0001");
  expect_check(exec(rcr_cdb(0x00, 9)), kIllegalRequest, 0x24, 0x00);
  // Status is per I_T nexus and ends with it.
  ASSERT_EQ(xcopy(xcopy_params(9, 0, {cscd(naa())}, {b2b(0, 0, 1, 0, 9)}), "a").status,
            kStatusGood);
  expect_check(exec(rcr_cdb(0x00, 9), {}, "b"), kIllegalRequest, 0x24, 0x00);
  lu_->nexus_lost("a");
  expect_check(exec(rcr_cdb(0x00, 9), {}, "a"), kUnitAttention, 0x29, 0x07);
  expect_check(exec(rcr_cdb(0x00, 9), {}, "a"), kIllegalRequest, 0x24, 0x00);
}

TEST_F(SanitizeCopyTest, ThirdPartyCopyVpdPage) {
  auto sup = run("120100010000");
  EXPECT_EQ(to_hex(sup.data_in), "000000070080838fb0b1b2");
  auto r = run("12018f010000");
  ASSERT_EQ(r.status, kStatusGood);
  ASSERT_GE(r.data_in.size(), 4u + 12 + 32);
  EXPECT_EQ(load_be16(&r.data_in[4]), 0x0001);  // Supported Commands
  EXPECT_EQ(r.data_in[9], 0x83);
  EXPECT_EQ(load_be16(&r.data_in[16]), 0x0008);  // Parameter Data
  EXPECT_EQ(load_be16(&r.data_in[24]), 2u);
}

}  // namespace
}  // namespace ipsan::client::scsi::testing
