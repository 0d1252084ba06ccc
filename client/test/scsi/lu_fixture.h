// Test helpers: a LogicalUnit over a MemoryTarget with synchronous helpers.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "ipsan/client/memory_target.h"
#include "ipsan/client/scsi/logical_unit.h"
#include "ipsan/client/scsi/sense.h"

namespace ipsan::client::scsi::testing {

inline Bytes hex(const std::string& s) {
  Bytes b;
  std::string clean;
  for (char c : s) {
    if (c != ' ' && c != '_') clean.push_back(c);
  }
  EXPECT_TRUE(from_hex(clean, b)) << s;
  return b;
}

class LuTest : public ::testing::Test {
 public:
  static constexpr std::uint32_t kDevice = 7;
  static constexpr std::uint64_t kBlocks = 1000;

  void SetUp() override { make(MemoryTarget::default_identity(kBlocks, 512, 8)); }

  void make(proto::Identity id, LogicalUnitOptions options = {}) {
    target_ = std::make_unique<MemoryTarget>();
    target_->add_device(kDevice, id);
    lu_ = std::make_unique<LogicalUnit>(*target_, kDevice, options);
    Errc result = Errc::kInternal;
    lu_->attach([&](Errc e) { result = e; });
    ASSERT_EQ(result, Errc::kOk);
    // Consume the power-on unit attention.
    auto r = run("000000000000");
    ASSERT_EQ(r.status, kStatusCheckCondition);
    ASSERT_EQ(sense(r).asc, 0x29);
    target_->clear_log();
  }

  ScsiResult run(const std::string& cdb, Bytes data_out = {}, std::uint32_t edtl = kAutoLength) {
    ScsiCommand c;
    c.cdb = hex(cdb);
    c.data_out = std::move(data_out);
    c.data_in_length = edtl;
    std::optional<ScsiResult> out;
    lu_->execute(c, [&](ScsiResult r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value()) << "no inline completion for " << cdb;
    return out.value_or(ScsiResult{});
  }

  static Sense sense(const ScsiResult& r) {
    auto s = decode_sense(r.sense);
    EXPECT_TRUE(s.has_value());
    return s.value_or(Sense{});
  }

  // Expects CHECK CONDITION with key/asc/ascq and (optionally) the sense-key specific bytes.
  static void expect_check(const ScsiResult& r, std::uint8_t key, std::uint8_t asc,
                           std::uint8_t ascq, const std::string& sks = "") {
    ASSERT_EQ(r.status, kStatusCheckCondition);
    const Sense s = sense(r);
    EXPECT_EQ(s.key, key);
    EXPECT_EQ(s.asc, asc);
    EXPECT_EQ(s.ascq, ascq);
    if (!sks.empty()) {
      ASSERT_TRUE(s.sks.has_value());
      EXPECT_EQ(to_hex(ByteSpan(s.sks->data(), 3)), sks);
    }
  }

  std::unique_ptr<MemoryTarget> target_;
  std::unique_ptr<LogicalUnit> lu_;
};

inline Bytes filled(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
  return b;
}

}  // namespace ipsan::client::scsi::testing
