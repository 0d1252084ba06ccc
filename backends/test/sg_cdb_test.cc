// SCSI CDB builders, answer parsers and splitting arithmetic of the sg back end.
#include <gtest/gtest.h>

#include <cstring>

#include "ipsan/backends/sg.h"
#include "ipsan/base/rng.h"

namespace ipsan::backends::scsi {
namespace {

TEST(SgCdb, ReadWrite16WithFua) {
  const auto r = cdb_read16(0x0102030405060708ULL, 0x0A0B0C0D, false);
  EXPECT_EQ(r[0], 0x88);
  EXPECT_EQ(r[1], 0x00);
  EXPECT_EQ(load_be64(&r[2]), 0x0102030405060708ULL);
  EXPECT_EQ(load_be32(&r[10]), 0x0A0B0C0Du);
  EXPECT_EQ(r[14], 0);
  EXPECT_EQ(r[15], 0);
  const auto w = cdb_write16(7, 8, true);
  EXPECT_EQ(w[0], 0x8A);
  EXPECT_EQ(w[1], 0x08);
  EXPECT_EQ(load_be64(&w[2]), 7u);
  EXPECT_EQ(load_be32(&w[10]), 8u);
}

TEST(SgCdb, DiscoveryAndCacheCommands) {
  const auto inq = cdb_inquiry(true, 0xB0, 0x1234);
  EXPECT_EQ(inq[0], 0x12);
  EXPECT_EQ(inq[1], 0x01);
  EXPECT_EQ(inq[2], 0xB0);
  EXPECT_EQ(load_be16(&inq[3]), 0x1234);
  const auto std_inq = cdb_inquiry(false, 0x83, 96);
  EXPECT_EQ(std_inq[1], 0);
  EXPECT_EQ(std_inq[2], 0);  // page code must be 0 without EVPD
  const auto rc16 = cdb_read_capacity16(32);
  EXPECT_EQ(rc16[0], 0x9E);
  EXPECT_EQ(rc16[1], 0x10);
  EXPECT_EQ(load_be32(&rc16[10]), 32u);
  EXPECT_EQ(cdb_read_capacity10()[0], 0x25);
  EXPECT_EQ(cdb_test_unit_ready(), (std::array<std::uint8_t, 6>{}));
  const auto sc10 = cdb_sync_cache10(0x11223344, 0x5566);
  EXPECT_EQ(sc10[0], 0x35);
  EXPECT_EQ(load_be32(&sc10[2]), 0x11223344u);
  EXPECT_EQ(load_be16(&sc10[7]), 0x5566);
  const auto sc16 = cdb_sync_cache16(1ULL << 40, 9);
  EXPECT_EQ(sc16[0], 0x91);
  EXPECT_EQ(load_be64(&sc16[2]), 1ULL << 40);
  const auto ms = cdb_mode_sense10(0x08, 64);
  EXPECT_EQ(ms[0], 0x5A);
  EXPECT_EQ(ms[2], 0x08);
  EXPECT_EQ(load_be16(&ms[7]), 64);
}

TEST(SgCdb, UnmapAndWriteSame) {
  const auto u = cdb_unmap(40);
  EXPECT_EQ(u[0], 0x42);
  EXPECT_EQ(load_be16(&u[7]), 40);
  const LbaRange ranges[] = {{100, 8}, {1ULL << 33, 0xFFFFFFFF}};
  const Bytes p = unmap_parameter_list(ranges);
  ASSERT_EQ(p.size(), 8u + 32u);
  EXPECT_EQ(load_be16(&p[0]), 38);
  EXPECT_EQ(load_be16(&p[2]), 32);
  EXPECT_EQ(load_be64(&p[8]), 100u);
  EXPECT_EQ(load_be32(&p[16]), 8u);
  EXPECT_EQ(load_be64(&p[24]), 1ULL << 33);
  EXPECT_EQ(load_be32(&p[32]), 0xFFFFFFFFu);
  const auto ws = cdb_write_same16(5, 6, true);
  EXPECT_EQ(ws[0], 0x93);
  EXPECT_EQ(ws[1], 0x08);
  EXPECT_EQ(cdb_write_same16(5, 6, false)[1], 0x00);
}

Bytes vpd(std::uint8_t page, std::size_t body) {
  Bytes b(4 + body, 0);
  b.at(1) = page;
  b.at(2) = static_cast<std::uint8_t>(body >> 8);
  b.at(3) = static_cast<std::uint8_t>(body);
  return b;
}

TEST(SgParse, StandardInquiry) {
  Bytes d(36, ' ');
  d[0] = 0x00;
  d[1] = 0x80;
  d[2] = 0x06;
  d[4] = 31;
  d[5] = 0x01;
  std::memcpy(&d[8], "QEMU    ", 8);
  std::memcpy(&d[16], "QEMU HARDDISK   ", 16);
  std::memcpy(&d[32], "2.5+", 4);
  auto q = parse_standard_inquiry(d);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->vendor, "QEMU");
  EXPECT_EQ(q->product, "QEMU HARDDISK");
  EXPECT_EQ(q->revision, "2.5+");
  EXPECT_TRUE(q->removable);
  EXPECT_TRUE(q->protect);
  EXPECT_EQ(q->device_type, 0);
  EXPECT_FALSE(parse_standard_inquiry(ByteSpan(d).first(4)));
  // A short answer (additional length 4) gives no strings, not garbage.
  d[4] = 4;
  auto s = parse_standard_inquiry(d);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->vendor.empty());
}

TEST(SgParse, BlockLimitsAndProvisioning) {
  Bytes b0 = vpd(0xB0, 0x3C);
  store_be16(&b0[6], 8);
  store_be32(&b0[8], 2048);
  store_be32(&b0[20], 0x400000);
  store_be32(&b0[24], 16);
  store_be64(&b0[36], 0x10000);
  auto l = parse_vpd_block_limits(b0);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->optimal_granularity, 8);
  EXPECT_EQ(l->max_transfer_length, 2048u);
  EXPECT_EQ(l->max_unmap_lba_count, 0x400000u);
  EXPECT_EQ(l->max_unmap_descriptors, 16u);
  EXPECT_EQ(l->max_write_same_length, 0x10000u);
  EXPECT_FALSE(parse_vpd_block_limits(vpd(0xB0, 4)));     // too short
  EXPECT_FALSE(parse_vpd_block_limits(vpd(0xB2, 0x3C)));  // wrong page
  // Declared longer than delivered: only the delivered bytes count.
  Bytes trunc = b0;
  trunc.resize(20);
  auto t = parse_vpd_block_limits(trunc);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->max_unmap_lba_count, 0u);

  Bytes b2 = vpd(0xB2, 4);
  b2[5] = 0xC4;  // LBPU, LBPWS, LBPRZ
  b2[6] = 0x02;
  auto p = parse_vpd_provisioning(b2);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->lbpu);
  EXPECT_TRUE(p->lbpws);
  EXPECT_FALSE(p->lbpws10);
  EXPECT_TRUE(p->lbprz);
  EXPECT_EQ(p->provisioning_type, 2);

  Bytes b1 = vpd(0xB1, 0x3C);
  store_be16(&b1[4], 1);
  EXPECT_EQ(*parse_vpd_rotation_rate(b1), 1);
}

TEST(SgParse, DeviceIdentificationAndSerial) {
  Bytes p = vpd(0x83, 0);
  auto add = [&](std::uint8_t code_set, std::uint8_t type_assoc, Bytes v) {
    p.push_back(code_set);
    p.push_back(type_assoc);
    p.push_back(0);
    p.push_back(static_cast<std::uint8_t>(v.size()));
    p.insert(p.end(), v.begin(), v.end());
  };
  add(0x01, 0x03, {0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12});  // NAA, LU
  add(0x02, 0x01, {'Q', 'E', 'M', 'U', ' ', ' ', ' ', ' ', 'X'});     // T10, LU
  add(0x01, 0x13, {1, 2, 3, 4});                                      // target port: skipped
  store_be16(&p[2], static_cast<std::uint16_t>(p.size() - 4));
  auto ids = parse_vpd_device_id(p);
  ASSERT_TRUE(ids);
  ASSERT_EQ(ids->size(), 2u);
  EXPECT_EQ((*ids)[0], "naa:6001405abcdef012");
  EXPECT_EQ((*ids)[1], "t10:QEMU    X");
  // A designator claiming more bytes than remain is dropped, not read past the end.
  p[p.size() - 5] = 200;
  auto cut = parse_vpd_device_id(p);
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->size(), 2u);

  Bytes s = vpd(0x80, 10);
  std::memcpy(&s[4], "  SN1234  ", 10);
  EXPECT_EQ(*parse_vpd_serial(s), "SN1234");
}

TEST(SgParse, ReadCapacity) {
  Bytes d(32, 0);
  store_be64(&d[0], 2097151);
  store_be32(&d[8], 4096);
  d[12] = 0x05;  // P_TYPE 2, PROT_EN
  d[13] = 0x03;
  d[14] = 0xC0;
  auto c = parse_read_capacity16(d);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->block_count, 2097152u);
  EXPECT_EQ(c->block_size, 4096u);
  EXPECT_TRUE(c->prot_en);
  EXPECT_EQ(c->p_type, 2);
  EXPECT_EQ(c->physical_exponent, 3);
  EXPECT_TRUE(c->lbpme);
  EXPECT_TRUE(c->lbprz);
  EXPECT_FALSE(parse_read_capacity16(ByteSpan(d).first(8)));
  store_be32(&d[8], 0);
  EXPECT_FALSE(parse_read_capacity16(d));

  Bytes d10(8, 0);
  store_be32(&d10[0], 0xFFFFFFFF);
  store_be32(&d10[4], 512);
  auto c10 = parse_read_capacity10(d10);
  ASSERT_TRUE(c10);
  EXPECT_EQ(c10->block_count, 0x100000000ULL);  // "use READ CAPACITY(16)"
}

TEST(SgParse, CachingModePage) {
  Bytes d(8 + 20, 0);
  store_be16(&d[0], static_cast<std::uint16_t>(d.size() - 2));
  d[3] = 0x10;  // DPOFUA
  d[8] = 0x08;
  d[9] = 0x12;
  d[10] = 0x04;  // WCE
  auto c = parse_mode_sense10_caching(d);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->wce);
  EXPECT_TRUE(c->dpofua);
  EXPECT_FALSE(c->write_protect);
  store_be16(&d[6], 200);  // block descriptors claimed past the end
  EXPECT_FALSE(parse_mode_sense10_caching(d));
}

TEST(SgSplit, ChunksCoverTheRangeInOrder) {
  const auto chunks = split_request(1000, 2500, 1024);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].lba, 1000u);
  EXPECT_EQ(chunks[0].blocks, 1024u);
  EXPECT_EQ(chunks[1].lba, 2024u);
  EXPECT_EQ(chunks[1].offset_blocks, 1024u);
  EXPECT_EQ(chunks[2].blocks, 452u);
  EXPECT_EQ(chunks[2].offset_blocks, 2048u);
  EXPECT_TRUE(split_request(5, 0, 8).empty());
  EXPECT_EQ(split_request(0, 3, 0).size(), 3u);  // a zero limit is treated as 1
  const auto big = split_request(0, 1ULL << 33, 0xFFFFFFFF);
  ASSERT_EQ(big.size(), 3u);
  EXPECT_EQ(big[2].blocks, 2u);
}

TEST(SgSplit, MaxTransferIsTheSmallestKnownLimit) {
  EXPECT_EQ(max_transfer_blocks(0, 0, 512, 0), 0xFFFFFFFFu);
  EXPECT_EQ(max_transfer_blocks(2048, 512 * 1024, 512, 0), 1024u);
  EXPECT_EQ(max_transfer_blocks(128, 512 * 1024, 512, 8192), 128u);
  EXPECT_EQ(max_transfer_blocks(0, 0, 4096, 256), 256u);
  EXPECT_EQ(max_transfer_blocks(0, 100, 4096, 0), 1u);  // never 0
}

}  // namespace
}  // namespace ipsan::backends::scsi

namespace ipsan::backends::scsi {
namespace {

// Device answers are untrusted: random and truncated buffers give a value or an error, never a
// crash or an out-of-bounds read (checked by ASan in the sanitizer build).
TEST(SgParse, RandomAnswersAreHandled) {
  Rng rng(0xB0B0);
  int accepted = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    Bytes b(rng.below(300));
    for (auto& x : b) x = static_cast<std::uint8_t>(rng.next() % (rng.chance(0.3) ? 4 : 256));
    const std::uint8_t pages[] = {0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2};
    if (b.size() > 1) b[1] = pages[rng.below(6)];
    accepted += parse_standard_inquiry(b).has_value();
    accepted += parse_vpd_supported(b).has_value();
    accepted += parse_vpd_serial(b).has_value();
    accepted += parse_vpd_device_id(b).has_value();
    accepted += parse_vpd_block_limits(b).has_value();
    accepted += parse_vpd_provisioning(b).has_value();
    accepted += parse_vpd_rotation_rate(b).has_value();
    accepted += parse_read_capacity16(b).has_value();
    accepted += parse_read_capacity10(b).has_value();
    accepted += parse_mode_sense10_caching(b).has_value();
  }
  EXPECT_GT(accepted, 10000);
}

}  // namespace
}  // namespace ipsan::backends::scsi
