// The sense decoder over hand-made fixed and descriptor sense buffers, and the outcome table.
#include <gtest/gtest.h>

#include "ipsan/backends/scsi_sense.h"
#include "ipsan/base/rng.h"

namespace ipsan::backends::scsi {
namespace {

Bytes fixed_sense(std::uint8_t key, std::uint8_t asc, std::uint8_t ascq, bool info_valid = false,
                  std::uint32_t info = 0) {
  Bytes s(18, 0);
  s[0] = 0x70 | (info_valid ? 0x80 : 0);
  s[2] = key;
  store_be32(&s[3], info);
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

Bytes descriptor_sense(std::uint8_t key, std::uint8_t asc, std::uint8_t ascq) {
  return Bytes{0x72, key, asc, ascq, 0, 0, 0, 0};
}

void add_info_descriptor(Bytes& s, std::uint64_t info) {
  Bytes d(12, 0);
  d[0] = 0x00;
  d[1] = 0x0A;
  d[2] = 0x80;
  store_be64(&d[4], info);
  s.insert(s.end(), d.begin(), d.end());
  s[7] = static_cast<std::uint8_t>(s.size() - 8);
}

void add_ata_descriptor(Bytes& s, std::uint8_t status, std::uint8_t error, std::uint64_t lba) {
  Bytes d(14, 0);
  d[0] = 0x09;
  d[1] = 0x0C;
  d[2] = 0x01;
  d[3] = error;
  d[5] = 1;
  d[7] = static_cast<std::uint8_t>(lba);
  d[9] = static_cast<std::uint8_t>(lba >> 8);
  d[11] = static_cast<std::uint8_t>(lba >> 16);
  d[6] = static_cast<std::uint8_t>(lba >> 24);
  d[8] = static_cast<std::uint8_t>(lba >> 32);
  d[10] = static_cast<std::uint8_t>(lba >> 40);
  d[12] = 0x40;
  d[13] = status;
  s.insert(s.end(), d.begin(), d.end());
  s[7] = static_cast<std::uint8_t>(s.size() - 8);
}

TEST(SenseDecoder, FixedMediumErrorCarriesFailingLba) {
  const Bytes s = fixed_sense(0x3, 0x11, 0x00, true, 0x12345678);
  const SenseInfo i = decode_sense(s);
  ASSERT_TRUE(i.valid);
  EXPECT_FALSE(i.descriptor);
  EXPECT_EQ(i.key, 0x3);
  EXPECT_EQ(i.asc, 0x11);
  EXPECT_TRUE(i.info_valid);
  EXPECT_EQ(i.information, 0x12345678u);
  const Verdict v = classify_sense(i);
  EXPECT_EQ(v.errc, Errc::kMediumError);
  EXPECT_FALSE(v.retry);
  EXPECT_NE(describe_sense(i).find("0x12345678"), std::string::npos);
}

TEST(SenseDecoder, DescriptorMediumErrorWith64BitInformation) {
  Bytes s = descriptor_sense(0x3, 0x11, 0x00);
  add_info_descriptor(s, 0x123456789AULL);
  const SenseInfo i = decode_sense(s);
  ASSERT_TRUE(i.valid);
  EXPECT_TRUE(i.descriptor);
  EXPECT_TRUE(i.info_valid);
  EXPECT_EQ(i.information, 0x123456789AULL);
  EXPECT_EQ(classify_sense(i).errc, Errc::kMediumError);
}

TEST(SenseDecoder, FixedInfoNotValidWhenBitClear) {
  const SenseInfo i = decode_sense(fixed_sense(0x3, 0x11, 0x00, false, 77));
  EXPECT_FALSE(i.info_valid);
}

TEST(SenseDecoder, IllegalRequestRows) {
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x5, 0x21, 0x00))).errc, Errc::kLbaOutOfRange);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x5, 0x20, 0x00))).errc, Errc::kNotSupported);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x5, 0x24, 0x00))).errc,
            Errc::kInvalidArgument);
  EXPECT_EQ(classify_sense(decode_sense(descriptor_sense(0x5, 0x21, 0x00))).errc,
            Errc::kLbaOutOfRange);
}

TEST(SenseDecoder, UnitAttentionAndAbortedAreRetried) {
  Verdict v = classify_sense(decode_sense(fixed_sense(0x6, 0x29, 0x00)));  // power on / reset
  EXPECT_TRUE(v.retry);
  v = classify_sense(decode_sense(fixed_sense(0x6, 0x2A, 0x09)));  // capacity changed
  EXPECT_TRUE(v.retry);
  EXPECT_EQ(v.errc, Errc::kCapacityChanged);
  v = classify_sense(decode_sense(descriptor_sense(0xB, 0x47, 0x00)));
  EXPECT_TRUE(v.retry);
  EXPECT_EQ(v.errc, Errc::kIoError);
}

TEST(SenseDecoder, NotReadyWriteProtectAndOthers) {
  Verdict v = classify_sense(decode_sense(fixed_sense(0x2, 0x04, 0x01)));
  EXPECT_EQ(v.errc, Errc::kNotReady);
  EXPECT_TRUE(v.retry);
  v = classify_sense(decode_sense(fixed_sense(0x2, 0x3A, 0x00)));  // medium not present
  EXPECT_EQ(v.errc, Errc::kNotReady);
  EXPECT_FALSE(v.retry);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x7, 0x27, 0x00))).errc, Errc::kWriteProtected);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x7, 0x27, 0x07))).errc, Errc::kNoSpace);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x4, 0x44, 0x00))).errc, Errc::kIoError);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0xE, 0x1D, 0x00))).errc, Errc::kMiscompare);
  EXPECT_EQ(classify_sense(decode_sense(fixed_sense(0x1, 0x17, 0x01))).errc, Errc::kOk);
}

TEST(SenseDecoder, DeferredErrorsAreFlagged) {
  Bytes s = fixed_sense(0x3, 0x0C, 0x00);
  s[0] = 0x71;
  const SenseInfo i = decode_sense(s);
  EXPECT_TRUE(i.deferred);
  EXPECT_EQ(classify_sense(i).errc, Errc::kMediumError);
}

TEST(SenseDecoder, AtaStatusReturnDescriptor) {
  Bytes s = descriptor_sense(0x1, 0x00, 0x1D);  // CK_COND on success
  add_ata_descriptor(s, 0x50, 0x00, 0x0000BEEF0123ULL);
  SenseInfo i = decode_sense(s);
  ASSERT_TRUE(i.has_ata);
  EXPECT_TRUE(i.ata.extend);
  EXPECT_EQ(i.ata.status, 0x50);
  EXPECT_EQ(i.ata.lba, 0x0000BEEF0123ULL);
  EXPECT_EQ(i.ata.count, 1);
  EXPECT_EQ(classify_sense(i).errc, Errc::kOk);

  Bytes bad = descriptor_sense(0xB, 0x00, 0x00);  // failed ATA command
  add_ata_descriptor(bad, 0x51, 0x40, 1000);      // ERR + UNC
  EXPECT_EQ(classify_sense(decode_sense(bad)).errc, Errc::kMediumError);
  Bytes idnf = descriptor_sense(0xB, 0x00, 0x00);
  add_ata_descriptor(idnf, 0x51, 0x10, 1000);
  EXPECT_EQ(classify_sense(decode_sense(idnf)).errc, Errc::kLbaOutOfRange);
}

TEST(SenseDecoder, FixedFormatAtaPassThroughInformation) {
  Bytes s = fixed_sense(0x1, 0x00, 0x1D);
  s[3] = 0x04;  // error: ABRT
  s[4] = 0x51;  // status: DRDY|DSC|ERR
  s[5] = 0x40;
  s[6] = 0x08;
  s[8] = 0x80;  // extend
  s[9] = 0x11;
  s[10] = 0x22;
  s[11] = 0x33;
  const SenseInfo i = decode_sense(s);
  ASSERT_TRUE(i.has_ata);
  EXPECT_EQ(i.ata.error, 0x04);
  EXPECT_EQ(i.ata.status, 0x51);
  EXPECT_EQ(i.ata.lba, 0x332211u);
  EXPECT_TRUE(i.ata.extend);
  EXPECT_EQ(classify_sense(i).errc, Errc::kIoError);
}

TEST(SenseDecoder, HostileBuffersNeverCrash) {
  EXPECT_FALSE(decode_sense({}).valid);
  const Bytes junk = {0x12, 0x34};
  EXPECT_FALSE(decode_sense(junk).valid);
  const Bytes short_fixed = {0x70, 0x00};
  EXPECT_FALSE(decode_sense(short_fixed).valid);
  // Descriptor with an additional length pointing past the buffer and a truncated descriptor.
  Bytes d = {0x72, 0x03, 0x11, 0x00, 0, 0, 0, 200, 0x00, 0x0A, 0x80, 0};
  const SenseInfo i = decode_sense(d);
  EXPECT_TRUE(i.valid);
  EXPECT_FALSE(i.info_valid);
  // Fixed with additional length too small for ASC/ASCQ.
  Bytes f = fixed_sense(0x3, 0x11, 0x00);
  f[7] = 2;
  EXPECT_EQ(decode_sense(f).asc, 0);
  // Every prefix of a full descriptor sense decodes without reading past the end.
  Bytes full = descriptor_sense(0xB, 0, 0);
  add_ata_descriptor(full, 0x51, 0x04, 5);
  add_info_descriptor(full, 9);
  for (std::size_t n = 0; n <= full.size(); ++n) {
    const SenseInfo p = decode_sense(ByteSpan(full).first(n));
    EXPECT_EQ(p.valid, n >= 2);
  }
  EXPECT_EQ(classify_sense(SenseInfo{}).errc, Errc::kIoError);
}

TEST(SenseOutcome, StatusAndTransportTable) {
  RawOutcome r;
  EXPECT_EQ(classify_outcome(r).errc, Errc::kOk);
  r.status = kStatusBusy;
  EXPECT_EQ(classify_outcome(r).errc, Errc::kBusy);
  EXPECT_TRUE(classify_outcome(r).retry);
  r.status = kStatusGood;
  r.host_status = 0x03;  // DID_TIME_OUT
  EXPECT_EQ(classify_outcome(r).errc, Errc::kTimeout);
  r.host_status = 0x08;  // DID_RESET
  EXPECT_TRUE(classify_outcome(r).retry);
  r.host_status = 0x01;  // DID_NO_CONNECT
  EXPECT_EQ(classify_outcome(r).errc, Errc::kNotReady);
  r.host_status = 0;
  r.os_error = 5;
  EXPECT_EQ(classify_outcome(r).errc, Errc::kIoError);
  r.os_error = 0;
  const Bytes s = fixed_sense(0x5, 0x21, 0x00);
  r.status = kStatusCheckCondition;
  r.sense = s;
  SenseInfo decoded;
  EXPECT_EQ(classify_outcome(r, &decoded).errc, Errc::kLbaOutOfRange);
  EXPECT_EQ(decoded.asc, 0x21);
  r.sense = {};
  EXPECT_EQ(classify_outcome(r).errc, Errc::kIoError);  // CHECK CONDITION without sense
}

TEST(SenseOutcome, AtaStatusTable) {
  AtaStatusReturn a;
  a.status = 0x50;
  EXPECT_EQ(classify_ata(a).errc, Errc::kOk);
  a.status = 0x51;
  a.error = 0x80;
  EXPECT_TRUE(classify_ata(a).retry);
  a.error = 0x04;
  EXPECT_EQ(classify_ata(a).errc, Errc::kIoError);
  a.status = 0x70;  // device fault
  a.error = 0;
  EXPECT_EQ(classify_ata(a).errc, Errc::kIoError);
}

}  // namespace
}  // namespace ipsan::backends::scsi

namespace ipsan::backends::scsi {
namespace {

// Random and mutated buffers: decoding and classifying must never read out of bounds or crash
// (run under ASan in the sanitizer build) and a verdict is always produced.
TEST(SenseDecoder, RandomBuffersAreHandled) {
  Rng rng(0x5e45e);
  int valid = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    Bytes b(rng.below(80));
    for (auto& x : b) x = static_cast<std::uint8_t>(rng.next());
    if (!b.empty() && rng.chance(0.5)) b[0] = static_cast<std::uint8_t>(0x70 + rng.below(4));
    const SenseInfo i = decode_sense(b);
    valid += i.valid ? 1 : 0;
    const Verdict v = classify_sense(i);
    EXPECT_LE(static_cast<std::uint32_t>(v.errc), kErrcMax);
    if (!i.valid) {
      EXPECT_EQ(v.errc, Errc::kIoError);
    }
    (void)describe_sense(i);
  }
  EXPECT_GT(valid, 5000);  // the generator reaches the decoders, not just the early exits
}

}  // namespace
}  // namespace ipsan::backends::scsi
