#include "ipsan/client/scsi/sense.h"

#include <gtest/gtest.h>

namespace ipsan::client::scsi {
namespace {

TEST(SenseTest, FixedFormatLayout) {
  Sense s = invalid_field_in_cdb(7, 3);
  s.information = 0x01020304;
  const Bytes b = encode_sense(s, false);
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(b[0], 0xF0);  // VALID | 70h
  EXPECT_EQ(b[2], kIllegalRequest);
  EXPECT_EQ(load_be32(&b[3]), 0x01020304u);
  EXPECT_EQ(b[7], 10);
  EXPECT_EQ(b[12], 0x24);
  EXPECT_EQ(b[15], 0x80 | 0x40 | 0x08 | 3);
  EXPECT_EQ(load_be16(&b[16]), 7);
  EXPECT_EQ(decode_sense(b), s);
}

TEST(SenseTest, DescriptorFormatLayout) {
  Sense s = invalid_field_in_parameter_list(300);
  s.information = 0x1122334455667788ull;
  const Bytes b = encode_sense(s, true);
  ASSERT_EQ(b.size(), 8u + 12 + 8);
  EXPECT_EQ(b[0], 0x72);
  EXPECT_EQ(b[1], kIllegalRequest);
  EXPECT_EQ(b[2], 0x26);
  EXPECT_EQ(b[7], 20);
  EXPECT_EQ(b[8], 0x00);
  EXPECT_EQ(b[9], 0x0A);
  EXPECT_EQ(b[10], 0x80);
  EXPECT_EQ(load_be64(&b[12]), 0x1122334455667788ull);
  EXPECT_EQ(b[20], 0x02);
  EXPECT_EQ(b[24], 0x80);  // SKSV, C/D = 0 (parameter list), no bit pointer
  EXPECT_EQ(load_be16(&b[25]), 300);
  EXPECT_EQ(decode_sense(b), s);
  // A 64-bit information value cannot be VALID in fixed format.
  EXPECT_EQ(encode_sense(s, false)[0], 0x70);
}

TEST(SenseTest, DecodeRejectsGarbage) {
  EXPECT_FALSE(decode_sense(Bytes{}).has_value());
  EXPECT_FALSE(decode_sense(Bytes{0x70, 0, 5}).has_value());
  EXPECT_FALSE(decode_sense(Bytes(18, 0x11)).has_value());
  Bytes lying = {0x72, 5, 0x24, 0, 0, 0, 0, 200, 0x02, 0x30};  // additional length too big
  auto s = decode_sense(lying);
  ASSERT_TRUE(s.has_value());
  EXPECT_FALSE(s->sks.has_value());
}

TEST(SenseTest, ErrcTableMatchesTheDocumentedChoices) {
  struct Row {
    Errc e;
    Direction d;
    std::uint8_t status, key, asc, ascq;
  };
  const Row rows[] = {
      {Errc::kOk, Direction::kRead, kStatusGood, 0, 0, 0},
      {Errc::kAuthFailed, Direction::kRead, kStatusCheckCondition, kDataProtect, 0x20, 0x02},
      {Errc::kStaleSession, Direction::kRead, kStatusCheckCondition, kAbortedCommand, 0x08, 0},
      {Errc::kUnknownDevice, Direction::kRead, kStatusCheckCondition, kIllegalRequest, 0x25, 0},
      {Errc::kLbaOutOfRange, Direction::kRead, kStatusCheckCondition, kIllegalRequest, 0x21, 0},
      {Errc::kInvalidArgument, Direction::kRead, kStatusCheckCondition, kIllegalRequest, 0x24, 0},
      {Errc::kTooLarge, Direction::kRead, kStatusCheckCondition, kIllegalRequest, 0x24, 0},
      {Errc::kIoError, Direction::kRead, kStatusCheckCondition, kHardwareError, 0x44, 0},
      {Errc::kMediumError, Direction::kRead, kStatusCheckCondition, kMediumError, 0x11, 0},
      {Errc::kMediumError, Direction::kWrite, kStatusCheckCondition, kMediumError, 0x0C, 0},
      {Errc::kWriteProtected, Direction::kWrite, kStatusCheckCondition, kDataProtect, 0x27, 0},
      {Errc::kNotSupported, Direction::kRead, kStatusCheckCondition, kIllegalRequest, 0x20, 0},
      {Errc::kNoSpace, Direction::kWrite, kStatusCheckCondition, kDataProtect, 0x27, 0x07},
      {Errc::kNotReady, Direction::kRead, kStatusCheckCondition, kNotReady, 0x04, 0},
      {Errc::kBusy, Direction::kRead, kStatusBusy, 0, 0, 0},
      {Errc::kSeqMisordered, Direction::kRead, kStatusCheckCondition, kAbortedCommand, 0x08, 0},
      {Errc::kBadMessage, Direction::kRead, kStatusCheckCondition, kAbortedCommand, 0x4B, 0},
      {Errc::kMiscompare, Direction::kRead, kStatusCheckCondition, kMiscompare, 0x1D, 0},
      {Errc::kTimeout, Direction::kRead, kStatusCheckCondition, kAbortedCommand, 0x08, 0x01},
      {Errc::kConnectionLost, Direction::kRead, kStatusCheckCondition, kAbortedCommand, 0x08, 0},
      {Errc::kShutdown, Direction::kRead, kStatusCheckCondition, kNotReady, 0x04, 0},
      {Errc::kCapacityChanged, Direction::kRead, kStatusCheckCondition, kUnitAttention, 0x2A, 9},
      {Errc::kInternal, Direction::kRead, kStatusCheckCondition, kHardwareError, 0x44, 0},
  };
  for (const Row& r : rows) {
    const ErrcMapping m = map_errc(r.e, r.d);
    EXPECT_EQ(m.status, r.status) << to_string(r.e);
    EXPECT_EQ(m.sense.key, r.key) << to_string(r.e);
    EXPECT_EQ(m.sense.asc, r.asc) << to_string(r.e);
    EXPECT_EQ(m.sense.ascq, r.ascq) << to_string(r.e);
  }
  // Every Errc has an entry that is not the fallback for unknown values.
  for (std::uint32_t v = 1; v <= kErrcMax; ++v) {
    EXPECT_NE(map_errc(static_cast<Errc>(v), Direction::kRead).status, kStatusGood) << v;
  }
  EXPECT_EQ(map_errc(static_cast<Errc>(999), Direction::kRead).sense.key, kHardwareError);
}

}  // namespace
}  // namespace ipsan::client::scsi
