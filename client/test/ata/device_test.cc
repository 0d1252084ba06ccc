#include "ipsan/client/ata/device.h"

#include <gtest/gtest.h>

#include <optional>

#include "ipsan/client/memory_target.h"
#include "ipsan/client/scsi/logical_unit.h"

namespace ipsan::client::ata {
namespace {

std::uint16_t word(const Bytes& d, int w) {
  return static_cast<std::uint16_t>(d[2 * w] | (d[2 * w + 1] << 8));
}

std::string ata_string(const Bytes& d, int first, int words) {
  std::string s;
  for (int w = first; w < first + words; ++w) {
    s.push_back(static_cast<char>(word(d, w) >> 8));
    s.push_back(static_cast<char>(word(d, w) & 0xFF));
  }
  return s;
}

class AtaTest : public ::testing::Test {
 public:
  void SetUp() override { make(MemoryTarget::default_identity(5000, 512, 8)); }
  void make(const proto::Identity& id) {
    target_ = std::make_unique<MemoryTarget>();
    target_->add_device(3, id);
    dev_ = std::make_unique<Device>(*target_, 3);
    Errc e = Errc::kInternal;
    dev_->attach([&](Errc r) { e = r; });
    ASSERT_EQ(e, Errc::kOk);
    target_->clear_log();
  }
  AtaResult run(Taskfile tf) {
    std::optional<AtaResult> out;
    dev_->execute(tf, [&](AtaResult r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out.value_or(AtaResult{});
  }
  static Taskfile tf(std::uint8_t cmd, std::uint64_t lba = 0, std::uint16_t count = 0,
                     std::uint16_t features = 0, std::uint8_t device = 0x40) {
    Taskfile t;
    t.command = cmd;
    t.lba = lba;
    t.count = count;
    t.features = features;
    t.device = device;
    return t;
  }
  std::unique_ptr<MemoryTarget> target_;
  std::unique_ptr<Device> dev_;
};

Bytes filled(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed * 31 + i);
  return b;
}

TEST_F(AtaTest, IdentifyDeviceWords) {
  auto r = run(tf(kCmdIdentifyDevice));
  ASSERT_EQ(r.status, kStatusDrdy);
  ASSERT_EQ(r.data_in.size(), 512u);
  const Bytes& d = r.data_in;
  std::uint8_t sum = 0;
  for (std::uint8_t b : d) sum = static_cast<std::uint8_t>(sum + b);
  EXPECT_EQ(sum, 0);
  EXPECT_EQ(d[510], 0xA5);
  EXPECT_EQ(word(d, 60) | (word(d, 61) << 16), 5000);
  EXPECT_EQ(word(d, 100), 5000);
  EXPECT_EQ(word(d, 101) | word(d, 102) | word(d, 103), 0);
  EXPECT_EQ(ata_string(d, 10, 10), "MEM0001             ");
  EXPECT_EQ(ata_string(d, 23, 4), "0001    ");
  EXPECT_EQ(ata_string(d, 27, 20).substr(0, 17), "IPSAN memory disk");
  EXPECT_EQ(d[2 * 10], 'E');             // byte-swapped in memory: "ME" stored as 'E','M'
  EXPECT_TRUE(word(d, 83) & (1 << 10));  // 48-bit
  EXPECT_TRUE(word(d, 83) & (1 << 13));  // FLUSH CACHE EXT
  EXPECT_TRUE(word(d, 85) & (1 << 5));   // write cache enabled
  EXPECT_EQ(word(d, 169) & 1, 1);        // TRIM
  EXPECT_EQ(word(d, 75), 31);            // queue depth 32
  EXPECT_TRUE(word(d, 76) & (1 << 8));   // NCQ
  EXPECT_EQ(word(d, 106), 0x4000);
  EXPECT_EQ(word(d, 108) >> 12, 5);  // NAA 5 WWN
  EXPECT_TRUE(target_->log().empty());
}

TEST_F(AtaTest, IdentifyLargeSectorsAndLba48) {
  auto id = MemoryTarget::default_identity((std::uint64_t{1} << 32) + 5, 4096, 8);
  id.capabilities &= ~proto::kCapTrim;
  make(id);
  auto d = run(tf(kCmdIdentifyDevice)).data_in;
  EXPECT_EQ(word(d, 60) | (word(d, 61) << 16), 0x0FFFFFFF);
  EXPECT_EQ(word(d, 100), 5);
  EXPECT_EQ(word(d, 102), 1);
  EXPECT_EQ(word(d, 106), 0x5000);
  EXPECT_EQ(word(d, 117) | (word(d, 118) << 16), 2048);
  EXPECT_EQ(word(d, 169), 0);
}

TEST_F(AtaTest, ReadWriteCommandsRoundTrip) {
  const Bytes data = filled(20 * 512, 1);
  Taskfile w = tf(kCmdWriteDmaExt, 100, 20);
  w.data_out = data;
  ASSERT_EQ(run(w).status, kStatusDrdy);
  ASSERT_EQ(target_->log().size(), 3u);  // split at 8 blocks
  EXPECT_EQ(run(tf(kCmdReadDmaExt, 100, 20)).data_in, data);
  EXPECT_EQ(run(tf(kCmdReadSectorsExt, 100, 20)).data_in, data);
  EXPECT_EQ(run(tf(kCmdReadFpdmaQueued, 100, 0, 20)).data_in, data);
  // 28-bit: LBA 27:24 in the device register.
  EXPECT_EQ(run(tf(kCmdReadDma, 100, 1)).data_in, Bytes(data.begin(), data.begin() + 512));
  EXPECT_EQ(run(tf(kCmdReadSectors, 100, 1)).data_in.size(), 512u);
  EXPECT_EQ(run(tf(kCmdReadDma, 0x1000000, 1)).error, kErrorAbrt);   // HOB bits on 28-bit
  EXPECT_EQ(run(tf(kCmdReadDma, 0, 1, 0, 0x00)).error, kErrorAbrt);  // CHS mode
  Taskfile w28 = tf(kCmdWriteSectors, 7, 1);
  w28.data_out = filled(512, 9);
  ASSERT_EQ(run(w28).status, kStatusDrdy);
  EXPECT_EQ(target_->peek(3, 7, 1), filled(512, 9));
}

TEST_F(AtaTest, ErrorsThroughTheTable) {
  auto r = run(tf(kCmdReadDmaExt, 4999, 2));
  EXPECT_EQ(r.status, kStatusDrdy | kStatusErr);
  EXPECT_EQ(r.error, kErrorIdnf);
  EXPECT_EQ(r.lba, 4999u);
  EXPECT_TRUE(target_->log().empty());
  target_->inject({proto::Op::kRead, std::nullopt, 0, ~0ull, Errc::kMediumError, 1});
  r = run(tf(kCmdReadDmaExt, 10, 1));
  EXPECT_EQ(r.error, kErrorUnc);
  EXPECT_EQ(r.lba, 10u);
  target_->inject({proto::Op::kRead, std::nullopt, 0, ~0ull, Errc::kConnectionLost, 1});
  EXPECT_EQ(run(tf(kCmdReadDmaExt, 10, 1)).error, kErrorIcrc | kErrorAbrt);
  target_->inject({proto::Op::kWrite, std::nullopt, 0, ~0ull, Errc::kIoError, 1});
  Taskfile w = tf(kCmdWriteDmaExt, 10, 1);
  w.data_out = filled(512, 1);
  r = run(w);
  EXPECT_EQ(r.status, kStatusDrdy | kStatusErr | kStatusDf);
  EXPECT_EQ(run(tf(0x99)).error, kErrorAbrt);
  Taskfile short_data = tf(kCmdWriteDmaExt, 10, 2);
  short_data.data_out = filled(512, 1);
  EXPECT_EQ(run(short_data).error, kErrorAbrt);
  EXPECT_EQ(map_errc(Errc::kWriteProtected, true).error, kErrorAbrt);
  EXPECT_EQ(map_errc(Errc::kMediumError, true).status, kStatusDrdy | kStatusErr | kStatusDf);
  EXPECT_EQ(map_errc(Errc::kLbaOutOfRange, false).error, kErrorIdnf);
}

TEST_F(AtaTest, FlushTrimSetFeaturesPowerMode) {
  ASSERT_EQ(run(tf(kCmdFlushCacheExt)).status, kStatusDrdy);
  ASSERT_EQ(run(tf(kCmdFlushCache)).status, kStatusDrdy);
  EXPECT_EQ(target_->log().size(), 2u);
  EXPECT_EQ(target_->log()[0].op, proto::Op::kFlush);
  target_->clear_log();
  Taskfile dsm = tf(kCmdDataSetManagement, 0, 1, 1);
  dsm.data_out.assign(512, 0);
  // Entry: LBA 0x20, length 3 (little-endian 48+16 bits).
  dsm.data_out[0] = 0x20;
  dsm.data_out[6] = 3;
  ASSERT_EQ(run(dsm).status, kStatusDrdy);
  ASSERT_EQ(target_->log().size(), 1u);
  EXPECT_EQ(target_->log()[0].op, proto::Op::kTrim);
  EXPECT_EQ(target_->log()[0].lba, 0x20u);
  EXPECT_EQ(target_->log()[0].blocks, 3u);
  dsm.data_out[0] = 0x88;
  dsm.data_out[1] = 0x13;  // LBA 5000: out of range
  EXPECT_EQ(run(dsm).error, kErrorIdnf);
  EXPECT_EQ(run(tf(kCmdDataSetManagement, 0, 1, 0)).error, kErrorAbrt);  // no TRIM bit
  auto pm = run(tf(kCmdCheckPowerMode));
  EXPECT_EQ(pm.count, 0xFF);
  EXPECT_TRUE(dev_->write_cache_enabled());
  ASSERT_EQ(run(tf(kCmdSetFeatures, 0, 0, 0x82)).status, kStatusDrdy);
  EXPECT_FALSE(dev_->write_cache_enabled());
  EXPECT_EQ(word(run(tf(kCmdIdentifyDevice)).data_in, 85) & (1 << 5), 0);
  target_->clear_log();
  Taskfile w = tf(kCmdWriteDmaExt, 1, 1);
  w.data_out = filled(512, 2);
  run(w);
  EXPECT_EQ(target_->log().at(0).flags, proto::kFlagFua);
  EXPECT_EQ(run(tf(kCmdSetFeatures, 0, 0, 0x55)).error, kErrorAbrt);
}

// The same generic request, whichever front end the command came through.
TEST_F(AtaTest, SameRequestsAsScsi) {
  scsi::LogicalUnit lu(*target_, 3);
  lu.attach([](Errc) {});
  const Bytes data = filled(4 * 512, 5);
  auto scsi = [&](const std::string& cdb_hex, Bytes out) {
    scsi::ScsiCommand c;
    from_hex(cdb_hex, c.cdb);
    c.data_out = std::move(out);
    lu.execute(c, [](scsi::ScsiResult) {});
  };
  scsi("000000000000", {});  // unit attention
  struct Pair {
    std::string cdb;
    Taskfile tf;
  };
  Taskfile fua = tf(kCmdWriteFpdmaQueued, 0x40, 0, 4, 0xC0);
  fua.data_out = data;
  Taskfile plain = tf(kCmdWriteDmaExt, 0x40, 4);
  plain.data_out = data;
  const Pair pairs[] = {
      {"2a080000004000000400", fua},    // WRITE(10) FUA
      {"2a000000004000000400", plain},  // WRITE(10)
      {"28000000004000000400", tf(kCmdReadDmaExt, 0x40, 4)},
      {"88000000000000000040000000040000", tf(kCmdReadFpdmaQueued, 0x40, 0, 4)},
      {"35000000000000000000", tf(kCmdFlushCacheExt)},
  };
  for (const Pair& p : pairs) {
    target_->clear_log();
    scsi(p.cdb, p.tf.data_out);
    const auto via_scsi = target_->log();
    target_->clear_log();
    run(p.tf);
    const auto via_ata = target_->log();
    ASSERT_EQ(via_scsi.size(), via_ata.size()) << p.cdb;
    ASSERT_FALSE(via_scsi.empty()) << p.cdb;
    for (std::size_t i = 0; i < via_scsi.size(); ++i) {
      EXPECT_EQ(via_scsi[i].op, via_ata[i].op) << p.cdb;
      EXPECT_EQ(via_scsi[i].device_id, via_ata[i].device_id) << p.cdb;
      EXPECT_EQ(via_scsi[i].lba, via_ata[i].lba) << p.cdb;
      EXPECT_EQ(via_scsi[i].blocks, via_ata[i].blocks) << p.cdb;
      EXPECT_EQ(via_scsi[i].flags, via_ata[i].flags) << p.cdb;
      EXPECT_EQ(via_scsi[i].data, via_ata[i].data) << p.cdb;
    }
  }
}

TEST_F(AtaTest, NotAttachedAborts) {
  MemoryTarget t;
  Device d(t, 1);
  std::optional<AtaResult> out;
  d.execute(tf(kCmdIdentifyDevice), [&](AtaResult r) { out = r; });
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error, kErrorAbrt);
}

// The op table: every command it lists has a name; anything else ends with ABRT.
TEST_F(AtaTest, OpTableNamesItsCommandsAndAbortsTheRest) {
  for (std::uint8_t cmd : {kCmdDataSetManagement, kCmdReadSectors, kCmdReadSectorsExt,
                           kCmdReadDmaExt, kCmdWriteSectors, kCmdWriteSectorsExt, kCmdWriteDmaExt,
                           kCmdWriteDmaFuaExt, kCmdReadFpdmaQueued, kCmdWriteFpdmaQueued,
                           kCmdReadDma, kCmdWriteDma, kCmdCheckPowerMode, kCmdFlushCache,
                           kCmdIdentifyDevice, kCmdFlushCacheExt, kCmdSetFeatures}) {
    EXPECT_STRNE(command_name(cmd), "unsupported command") << int{cmd};
  }
  EXPECT_STREQ(command_name(kCmdWriteDmaFuaExt), "WRITE DMA FUA EXT");
  for (std::uint8_t cmd : {0x00, 0x07, 0x92, 0xB0, 0xFF}) {
    EXPECT_STREQ(command_name(cmd), "unsupported command");
    const AtaResult r = run(tf(cmd));
    EXPECT_EQ(r.error, kErrorAbrt) << int{cmd};
    EXPECT_EQ(r.status & kStatusErr, kStatusErr);
  }
}

// The one geometry check (proto::valid_geometry): the ATA device and the SCSI logical unit refuse
// the same identities (block count up to 2^48 - 1, block sizes 512..64 KiB, powers of two).
TEST(AtaGeometry, SameLimitsAsTheScsiLogicalUnit) {
  struct Case {
    std::uint64_t blocks;
    std::uint32_t block_size;
    bool ok;
  };
  for (const Case c : {Case{(std::uint64_t{1} << 48) - 1, 512, true},
                       Case{std::uint64_t{1} << 48, 512, false},
                       Case{std::uint64_t{1} << 56, 512, false}, Case{1000, 65536, true},
                       Case{1000, 131072, false}, Case{1000, 1536, false}}) {
    MemoryTarget t;
    auto id = MemoryTarget::default_identity(1000, 512, 8);
    id.block_count = c.blocks;
    id.block_size = c.block_size;
    t.add_device(1, id);
    Device d(t, 1);
    Errc e = Errc::kInternal;
    d.attach([&](Errc r) { e = r; });
    EXPECT_EQ(e == Errc::kOk, c.ok) << c.blocks << " x " << c.block_size << ": " << to_string(e);
  }
}

}  // namespace
}  // namespace ipsan::client::ata
