// ATA PASS-THROUGH(16) taskfile building, IDENTIFY DEVICE parsing, TRIM payloads.
#include <gtest/gtest.h>

#include <cstring>

#include "ipsan/backends/ata.h"
#include "ipsan/base/rng.h"

namespace ipsan::backends::ata {
namespace {

class Identify {
 public:
  Identify() : page_(512, 0) {}
  void set(std::size_t w, std::uint16_t v) {
    page_[2 * w] = static_cast<std::uint8_t>(v);
    page_[2 * w + 1] = static_cast<std::uint8_t>(v >> 8);
  }
  void str(std::size_t w, std::size_t words, const char* s) {
    std::string t(s);
    t.resize(words * 2, ' ');
    for (std::size_t i = 0; i < words; ++i) {
      set(w + i,
          static_cast<std::uint16_t>((std::uint8_t(t[2 * i]) << 8) | std::uint8_t(t[2 * i + 1])));
    }
  }
  void checksum() {
    set(255, 0x00A5);
    std::uint8_t sum = 0;
    for (std::size_t i = 0; i < 511; ++i) sum = static_cast<std::uint8_t>(sum + page_[i]);
    page_[511] = static_cast<std::uint8_t>(-sum);
  }
  Bytes& bytes() { return page_; }

 private:
  Bytes page_;
};

Identify typical_disk() {
  Identify id;
  id.str(10, 10, "SGVMATA0");
  id.str(23, 4, "2.5+");
  id.str(27, 20, "SGVM-ATA-DISK");
  id.set(49, 0x0300);  // DMA, LBA
  id.set(60, 0xFFFF);  // 28-bit capacity saturates
  id.set(61, 0x0FFF);
  id.set(82, 0x0020);                    // write cache supported
  id.set(83, 0x4000 | 0x2000 | 0x0400);  // valid, FLUSH EXT, 48-bit
  id.set(84, 0x4000 | 0x0040);           // valid, FUA EXT
  id.set(85, 0x0020);                    // write cache enabled
  id.set(86, 0x2000 | 0x0400);
  id.set(87, 0x4000);
  id.set(69, 0x4020);   // DRAT, RZAT
  id.set(100, 0x0000);  // 0x1_0000_0000 + 0x20000 sectors
  id.set(101, 0x0002);
  id.set(102, 0x0001);
  id.set(103, 0x0000);
  id.set(105, 8);
  id.set(106, 0x6003);  // valid, multiple logical per physical: 2^3
  id.set(169, 0x0001);  // TRIM
  id.set(217, 0x0001);  // solid state
  return id;
}

TEST(AtaPassThrough, ReadDmaExtCdb) {
  Taskfile tf;
  tf.command = kCmdReadDmaExt;
  tf.count = 0x0102;
  tf.lba = 0x0000AABBCCDDEEFFULL;
  const auto c = build_pass_through16(tf, Protocol::kDma, XferDir::kIn, true, false);
  EXPECT_EQ(c[0], 0x85);
  EXPECT_EQ(c[1], (6 << 1) | 1);
  EXPECT_EQ(c[2], 0x08 | 0x04 | 0x02);
  EXPECT_EQ(c[5], 0x01);
  EXPECT_EQ(c[6], 0x02);
  EXPECT_EQ(c[7], 0xCC);   // 31:24
  EXPECT_EQ(c[8], 0xFF);   // 7:0
  EXPECT_EQ(c[9], 0xBB);   // 39:32
  EXPECT_EQ(c[10], 0xEE);  // 15:8
  EXPECT_EQ(c[11], 0xAA);  // 47:40
  EXPECT_EQ(c[12], 0xDD);  // 23:16
  EXPECT_EQ(c[13], 0x40);
  EXPECT_EQ(c[14], 0x25);
  EXPECT_EQ(c[15], 0x00);
}

TEST(AtaPassThrough, WriteNonDataAndLogicalBlocks) {
  Taskfile tf;
  tf.command = kCmdWriteDmaExt;
  tf.count = 8;
  auto c = build_pass_through16(tf, Protocol::kDma, XferDir::kOut, true, false, true);
  EXPECT_EQ(c[2], 0x10 | 0x04 | 0x02);  // T_TYPE, BYT_BLOK, T_LENGTH; T_DIR = to device
  tf.command = kCmdFlushCacheExt;
  c = build_pass_through16(tf, Protocol::kNonData, XferDir::kNone, true, true);
  EXPECT_EQ(c[1], (3 << 1) | 1);
  EXPECT_EQ(c[2], 0x20);  // CK_COND only
  tf.command = kCmdDataSetManagement;
  tf.features = 0x0001;
  c = build_pass_through16(tf, Protocol::kDma, XferDir::kOut, true, false);
  EXPECT_EQ(c[3], 0x00);
  EXPECT_EQ(c[4], 0x01);
}

TEST(AtaIdentify, ParsesTypicalDisk) {
  Identify id = typical_disk();
  id.checksum();
  auto r = parse_identify(id.bytes());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->model, "SGVM-ATA-DISK");
  EXPECT_EQ(r->serial, "SGVMATA0");
  EXPECT_EQ(r->firmware, "2.5+");
  EXPECT_TRUE(r->lba48);
  EXPECT_EQ(r->sectors, 0x100020000ULL);
  EXPECT_EQ(r->logical_sector_size, 512u);
  EXPECT_EQ(r->physical_sector_size, 4096u);
  EXPECT_TRUE(r->write_cache_supported);
  EXPECT_TRUE(r->write_cache_enabled);
  EXPECT_TRUE(r->flush_ext);
  EXPECT_TRUE(r->fua_ext);
  EXPECT_TRUE(r->dma);
  EXPECT_TRUE(r->trim);
  EXPECT_TRUE(r->trim_deterministic);
  EXPECT_TRUE(r->trim_zeroes);
  EXPECT_EQ(r->dsm_max_blocks, 8);
  EXPECT_EQ(r->rotation_rate, 1);
}

TEST(AtaIdentify, TwentyEightBitCapacityAndLargeSectors) {
  Identify id = typical_disk();
  id.set(83, 0x4000);  // no 48-bit
  id.set(60, 0x5678);
  id.set(61, 0x0123);
  id.set(106, 0x5000);  // valid, logical sector > 256 words
  id.set(117, 2048);    // words: 4096 bytes
  id.set(118, 0);
  auto r = parse_identify(id.bytes());
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->lba48);
  EXPECT_EQ(r->sectors, 0x01235678u);
  EXPECT_EQ(r->logical_sector_size, 4096u);
  EXPECT_FALSE(r->flush_ext);
}

TEST(AtaIdentify, RejectsHostilePages) {
  Identify id = typical_disk();
  id.checksum();
  id.bytes()[100] ^= 1;  // checksum now wrong
  EXPECT_FALSE(parse_identify(id.bytes()));
  EXPECT_FALSE(parse_identify(ByteSpan(typical_disk().bytes()).first(256)));
  Identify zero = typical_disk();
  for (int w = 100; w <= 103; ++w) zero.set(w, 0);
  EXPECT_FALSE(parse_identify(zero.bytes()));
  Identify odd = typical_disk();
  odd.set(106, 0x5000);
  odd.set(117, 300);  // 600-byte sectors
  EXPECT_FALSE(parse_identify(odd.bytes()));
  Identify atapi = typical_disk();
  atapi.set(0, 0x8580);
  EXPECT_FALSE(parse_identify(atapi.bytes()));
  EXPECT_FALSE(parse_identify(Bytes(512, 0)));  // all-zero page: capacity 0
}

TEST(AtaTrim, EntriesAreLittleEndianAndBounded) {
  const TrimPayload t = build_trim_payload(0x0000123456789ABCULL, 70000, 1);
  ASSERT_EQ(t.data.size(), 512u);
  EXPECT_EQ(t.covered, 70000u);
  std::uint64_t e0 = 0, e1 = 0;
  for (int b = 7; b >= 0; --b) e0 = (e0 << 8) | t.data[b];
  for (int b = 7; b >= 0; --b) e1 = (e1 << 8) | t.data[8 + b];
  EXPECT_EQ(e0 & 0xFFFFFFFFFFFFULL, 0x123456789ABCULL);
  EXPECT_EQ(e0 >> 48, 0xFFFFu);
  EXPECT_EQ(e1 & 0xFFFFFFFFFFFFULL, 0x123456789ABCULL + 0xFFFF);
  EXPECT_EQ(e1 >> 48, 70000u - 0xFFFF);
  for (std::size_t i = 16; i < 512; ++i) ASSERT_EQ(t.data[i], 0);

  // One page holds 64 entries: a huge range is covered partly; the caller loops.
  const TrimPayload big = build_trim_payload(0, 100ULL * 0xFFFF, 1);
  EXPECT_EQ(big.data.size(), 512u);
  EXPECT_EQ(big.covered, 64ULL * 0xFFFF);
  const TrimPayload two = build_trim_payload(0, 100ULL * 0xFFFF, 2);
  EXPECT_EQ(two.data.size(), 1024u);
  EXPECT_EQ(two.covered, 100ULL * 0xFFFF);
}

}  // namespace
}  // namespace ipsan::backends::ata

namespace ipsan::backends::ata {
namespace {

TEST(AtaIdentify, RandomPagesAreHandled) {
  Rng rng(0xA7A);
  int accepted = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    Bytes page = typical_disk().bytes();
    const int flips = 1 + static_cast<int>(rng.below(40));
    for (int k = 0; k < flips; ++k) page[rng.below(512)] = static_cast<std::uint8_t>(rng.next());
    auto r = parse_identify(page);
    if (r) {
      ++accepted;
      EXPECT_GT(r->sectors, 0u);
      EXPECT_LE(r->sectors, kMaxLba48);
      EXPECT_GE(r->logical_sector_size, 512u);
      EXPECT_EQ(r->logical_sector_size & (r->logical_sector_size - 1), 0u);
    }
  }
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace ipsan::backends::ata
