// THE SCSI sense module (ipsan/scsi/sense.h): catalog, encode/decode round trips in both formats,
// hostile buffers.
#include "ipsan/scsi/sense.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

namespace ipsan::scsi {
namespace {

TEST(ScsiSense, CatalogHasOneNameForEveryCodeAndNoCodeTwice) {
  EXPECT_STREQ(asc_name(asc::kInvalidFieldInCdb), "INVALID FIELD IN CDB");
  EXPECT_STREQ(asc_name(Asc{0x2A, 0x09}), "CAPACITY DATA HAS CHANGED");
  EXPECT_EQ(asc_name(Asc{0x7F, 0x7F}), nullptr);
  std::set<std::pair<int, int>> codes;
  std::set<std::string> names;
#define IPSAN_CHECK_ENTRY(ident, a, q, text)          \
  EXPECT_TRUE(codes.insert({a, q}).second) << #ident; \
  EXPECT_TRUE(names.insert(text).second) << #ident;   \
  EXPECT_STREQ(asc_name(asc::ident), text) << #ident;
  IPSAN_SCSI_ASC_CATALOG(IPSAN_CHECK_ENTRY)
#undef IPSAN_CHECK_ENTRY
}

TEST(ScsiSense, FixedAndDescriptorFormatsRoundTrip) {
  Sense s = invalid_field_in_cdb(5, 3);
  s.information = 0x1234;
  for (bool descriptor : {false, true}) {
    const Bytes b = encode_sense(s, descriptor);
    auto back = decode_sense(b);
    ASSERT_TRUE(back) << descriptor;
    EXPECT_EQ(*back, s) << descriptor;
    const SenseInfo i = decode_sense_info(b);
    EXPECT_TRUE(i.valid);
    EXPECT_EQ(i.descriptor, descriptor);
    EXPECT_EQ(i.code(), asc::kInvalidFieldInCdb);
  }
  EXPECT_EQ(encode_sense(s, false).size(), 18u);
  EXPECT_EQ(encode_sense(make_sense(kUnitAttention, asc::kPowerOnResetOccurred), false)[12], 0x29);
  // The field pointer: SKSV, C/D, BPV + bit, byte.
  EXPECT_EQ((*invalid_field_in_parameter_list(0x102).sks),
            (std::array<std::uint8_t, 3>{0x80, 1, 2}));
  EXPECT_EQ((*invalid_field_in_cdb(1, 7).sks), (std::array<std::uint8_t, 3>{0xCF, 0, 1}));
}

TEST(ScsiSense, SatFixedFormatCarriesTheAtaRegisters) {
  Bytes b(18, 0);
  b[0] = 0x70;
  b[2] = kRecoveredError;
  b[7] = 10;
  b[3] = 0x04;  // ERROR
  b[4] = 0x51;  // STATUS
  b[12] = 0x00;
  b[13] = 0x1D;
  const SenseInfo i = decode_sense_info(b);
  ASSERT_TRUE(i.has_ata);
  EXPECT_EQ(i.ata.error, 0x04);
  EXPECT_EQ(i.ata.status, 0x51);
  EXPECT_FALSE(i.info_valid);
}

TEST(ScsiSense, HostileBuffersNeverReadPastTheSpan) {
  EXPECT_FALSE(decode_sense(Bytes{}));
  EXPECT_FALSE(decode_sense(Bytes{0x70, 0, 5}));  // no ASC/ASCQ
  EXPECT_FALSE(decode_sense(Bytes(18, 0x00)));    // unknown response code
  const Bytes full = encode_sense(invalid_field_in_cdb(2), true);
  for (std::size_t n = 0; n <= full.size(); ++n) (void)decode_sense_info(ByteSpan(full).first(n));
  std::mt19937 rng(11);
  std::printf("seed 11\n");
  for (int round = 0; round < 5000; ++round) {
    Bytes b(rng() % 40);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    if (!b.empty()) b[0] = static_cast<std::uint8_t>(0x70 + rng() % 4);
    (void)decode_sense(b);
  }
  EXPECT_STREQ(sense_key_name(kIllegalRequest), "ILLEGAL REQUEST");
  EXPECT_STREQ(status_name(kStatusReservationConflict), "RESERVATION CONFLICT");
  EXPECT_STREQ(status_name(0x77), "UNKNOWN STATUS");
}

}  // namespace
}  // namespace ipsan::scsi
