// Reservations and per-I_T-nexus unit attentions of LogicalUnit: PERSISTENT RESERVE IN/OUT,
// RESERVE(6)/RELEASE(6), nexus loss, resets.
#include <gtest/gtest.h>

#include "lu_fixture.h"

namespace ipsan::client::scsi::testing {
namespace {

class ReservationTest : public LuTest {
 protected:
  ScsiResult as(const std::string& nexus, const std::string& cdb, Bytes out = {}) {
    ScsiCommand c;
    c.cdb = hex(cdb);
    c.data_out = std::move(out);
    c.nexus = nexus;
    std::optional<ScsiResult> r;
    lu_->execute(c, [&](ScsiResult x) { r = std::move(x); });
    EXPECT_TRUE(r.has_value());
    return r.value_or(ScsiResult{});
  }
  static Bytes params(std::uint64_t key, std::uint64_t sa_key) {
    Bytes p(24, 0);
    store_be64(&p[0], key);
    store_be64(&p[8], sa_key);
    return p;
  }
  // PERSISTENT RESERVE OUT: service action, type.
  ScsiResult prout(const std::string& n, int sa, int type, std::uint64_t key, std::uint64_t sak) {
    char cdb[32];
    std::snprintf(cdb, sizeof cdb, "5f%02x%02x000000000018 00", sa, type);
    return as(n, cdb, params(key, sak));
  }
};

TEST_F(ReservationTest, RegisterReserveConflictPreempt) {
  EXPECT_EQ(prout("A", 0, 0, 0, 0xA).status, kStatusGood);
  EXPECT_EQ(prout("B", 0, 0, 0, 0xB).status, kStatusGood);
  EXPECT_EQ(prout("B", 0, 0, 0x99, 0xC).status, kStatusReservationConflict);  // wrong key
  auto keys = as("A", "5e00000000000000ff00");
  ASSERT_EQ(keys.status, kStatusGood);
  EXPECT_EQ(load_be32(&keys.data_in[0]), 2u);  // generation
  EXPECT_EQ(load_be32(&keys.data_in[4]), 16u);
  EXPECT_EQ(prout("A", 1, 1, 0xA, 0).status, kStatusGood);  // RESERVE, Write Exclusive
  EXPECT_EQ(as("B", "2a000000000000000100", filled(512, 1)).status, kStatusReservationConflict);
  EXPECT_EQ(as("B", "28000000000000000100").status, kStatusGood);  // reads allowed
  EXPECT_EQ(as("C", "2a000000000000000100", filled(512, 1)).status, kStatusReservationConflict);
  EXPECT_EQ(as("A", "2a000000000000000100", filled(512, 1)).status, kStatusGood);
  EXPECT_EQ(prout("B", 1, 1, 0xB, 0).status, kStatusReservationConflict);
  EXPECT_EQ(prout("A", 2, 3, 0xA, 0).status, kStatusCheckCondition);  // RELEASE with wrong type
  // B preempts A: A's registration goes (unit attention 2Ah/05h), the reservation is B's.
  EXPECT_EQ(prout("B", 4, 3, 0xB, 0xA).status, kStatusGood);
  expect_check(as("A", "000000000000"), kUnitAttention, 0x2A, 0x05);
  EXPECT_EQ(as("A", "28000000000000000100").status, kStatusReservationConflict);  // EA now
  auto res = as("A", "5e01000000000000ff00");
  ASSERT_EQ(res.data_in.size(), 24u);
  EXPECT_EQ(load_be64(&res.data_in[8]), 0xBu);
  EXPECT_EQ(res.data_in[21], 3);
  EXPECT_EQ(prout("B", 3, 0, 0xB, 0).status, kStatusGood);  // CLEAR
  EXPECT_EQ(as("A", "28000000000000000100").status, kStatusGood);
  auto caps = as("A", "5e02000000000000ff00");
  EXPECT_EQ(caps.data_in.size(), 8u);
  expect_check(as("A", "5e04000000000000ff00"), kIllegalRequest, 0x24, 0x00);
}

TEST_F(ReservationTest, Reserve6EndsWithTheNexusOrAReset) {
  EXPECT_EQ(as("A", "160000000000").status, kStatusGood);
  EXPECT_EQ(as("B", "000000000000").status, kStatusReservationConflict);
  EXPECT_EQ(as("B", "120000006000").status, kStatusGood);  // INQUIRY always works
  EXPECT_EQ(as("B", "170000000000").status, kStatusGood);  // another's RELEASE: no effect
  EXPECT_EQ(as("B", "000000000000").status, kStatusReservationConflict);
  lu_->nexus_lost("A");
  EXPECT_EQ(as("B", "000000000000").status, kStatusGood);
  EXPECT_EQ(as("B", "160000000000").status, kStatusGood);
  expect_check(as("A", "000000000000"), kUnitAttention, 0x29, 0x07);  // I_T NEXUS LOSS
  lu_->reset();
  expect_check(as("A", "000000000000"), kUnitAttention, 0x29, 0x00);
  expect_check(as("B", "000000000000"), kUnitAttention, 0x29, 0x00);
  EXPECT_EQ(as("A", "160000000000").status, kStatusGood);  // B's RESERVE(6) ended with the reset
}

TEST_F(ReservationTest, UnitAttentionsArePerNexus) {
  EXPECT_EQ(as("A", "000000000000").status, kStatusGood);
  EXPECT_EQ(as("B", "000000000000").status, kStatusGood);
  lu_->reset();
  expect_check(as("A", "000000000000"), kUnitAttention, 0x29, 0x00);
  EXPECT_EQ(as("A", "000000000000").status, kStatusGood);
  expect_check(as("B", "000000000000"), kUnitAttention, 0x29, 0x00);
  target_->resize(kDevice, kBlocks * 2);
  expect_check(as("A", "000000000000"), kUnitAttention, 0x2A, 0x09);
  expect_check(as("B", "000000000000"), kUnitAttention, 0x2A, 0x09);
  EXPECT_EQ(as("B", "000000000000").status, kStatusGood);
}

}  // namespace
}  // namespace ipsan::client::scsi::testing
