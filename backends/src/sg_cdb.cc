// Pure SCSI pieces of the sg back end: CDB builders, answer parsers, splitting arithmetic.
#include <algorithm>
#include <cstdio>
#include <string>

#include "ipsan/backends/sg.h"

namespace ipsan::backends::scsi {
namespace {

std::string trimmed(const std::uint8_t* p, std::size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  // Devices pad with spaces (and sometimes NULs); keep printable ASCII only.
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = ' ';
  }
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(' ');
  return s.substr(first, last - first + 1);
}

// A VPD page's bytes limited to its declared length; error if it is not the expected page.
Result<ByteSpan, Error> vpd_body(ByteSpan data, std::uint8_t page, std::size_t min_len) {
  if (data.size() < 4) return fail(Errc::kBadMessage, "VPD page shorter than its header");
  if (data[1] != page) {
    char msg[64];
    std::snprintf(msg, sizeof msg, "VPD page %02Xh answered as page %02Xh", page, data[1]);
    return fail(Errc::kBadMessage, msg);
  }
  const std::size_t len = std::min<std::size_t>(data.size(), 4 + std::size_t{load_be16(&data[2])});
  if (len < min_len) {
    char msg[64];
    std::snprintf(msg, sizeof msg, "VPD page %02Xh too short (%zu bytes)", page, len);
    return fail(Errc::kBadMessage, msg);
  }
  return data.first(len);
}

std::string hex(const std::uint8_t* p, std::size_t n) { return to_hex(ByteSpan(p, n)); }

}  // namespace

std::array<std::uint8_t, 6> cdb_test_unit_ready() { return {0x00, 0, 0, 0, 0, 0}; }

std::array<std::uint8_t, 6> cdb_inquiry(bool evpd, std::uint8_t page, std::uint16_t alloc_len) {
  std::array<std::uint8_t, 6> c{0x12};
  c[1] = evpd ? 0x01 : 0x00;
  c[2] = evpd ? page : 0;
  store_be16(&c[3], alloc_len);
  return c;
}

std::array<std::uint8_t, 10> cdb_read_capacity10() { return {0x25}; }

std::array<std::uint8_t, 16> cdb_read_capacity16(std::uint32_t alloc_len) {
  std::array<std::uint8_t, 16> c{0x9E, 0x10};
  store_be32(&c[10], alloc_len);
  return c;
}

std::array<std::uint8_t, 10> cdb_mode_sense10(std::uint8_t page, std::uint16_t alloc_len) {
  std::array<std::uint8_t, 10> c{0x5A, 0x08 /* DBD */};
  c[2] = page & 0x3f;  // PC = 0: current values
  store_be16(&c[7], alloc_len);
  return c;
}

std::array<std::uint8_t, 16> cdb_read16(std::uint64_t lba, std::uint32_t blocks, bool fua) {
  std::array<std::uint8_t, 16> c{0x88};
  c[1] = fua ? 0x08 : 0x00;
  store_be64(&c[2], lba);
  store_be32(&c[10], blocks);
  return c;
}

std::array<std::uint8_t, 16> cdb_write16(std::uint64_t lba, std::uint32_t blocks, bool fua) {
  std::array<std::uint8_t, 16> c{0x8A};
  c[1] = fua ? 0x08 : 0x00;
  store_be64(&c[2], lba);
  store_be32(&c[10], blocks);
  return c;
}

std::array<std::uint8_t, 10> cdb_sync_cache10(std::uint32_t lba, std::uint16_t blocks) {
  std::array<std::uint8_t, 10> c{0x35};
  store_be32(&c[2], lba);
  store_be16(&c[7], blocks);
  return c;
}

std::array<std::uint8_t, 16> cdb_sync_cache16(std::uint64_t lba, std::uint32_t blocks) {
  std::array<std::uint8_t, 16> c{0x91};
  store_be64(&c[2], lba);
  store_be32(&c[10], blocks);
  return c;
}

std::array<std::uint8_t, 10> cdb_unmap(std::uint16_t param_len) {
  std::array<std::uint8_t, 10> c{0x42};
  store_be16(&c[7], param_len);
  return c;
}

std::array<std::uint8_t, 16> cdb_write_same16(std::uint64_t lba, std::uint32_t blocks, bool unmap) {
  std::array<std::uint8_t, 16> c{0x93};
  c[1] = unmap ? 0x08 : 0x00;
  store_be64(&c[2], lba);
  store_be32(&c[10], blocks);
  return c;
}

Bytes unmap_parameter_list(std::span<const LbaRange> ranges) {
  Bytes p(8 + 16 * ranges.size(), 0);
  store_be16(&p[0], static_cast<std::uint16_t>(p.size() - 2));
  store_be16(&p[2], static_cast<std::uint16_t>(16 * ranges.size()));
  std::size_t pos = 8;
  for (const LbaRange& r : ranges) {
    store_be64(&p[pos], r.lba);
    store_be32(&p[pos + 8], r.blocks);
    pos += 16;
  }
  return p;
}

Result<StandardInquiry, Error> parse_standard_inquiry(ByteSpan d) {
  if (d.size() < 5) return fail(Errc::kBadMessage, "INQUIRY data shorter than 5 bytes");
  StandardInquiry q;
  q.peripheral_qualifier = d[0] >> 5;
  q.device_type = d[0] & 0x1f;
  q.removable = (d[1] & 0x80) != 0;
  q.version = d[2];
  const std::size_t len = std::min<std::size_t>(d.size(), 5 + std::size_t{d[4]});
  if (len > 5) q.protect = (d[5] & 0x01) != 0;
  if (len >= 16) q.vendor = trimmed(&d[8], 8);
  if (len >= 32) q.product = trimmed(&d[16], 16);
  if (len >= 36) q.revision = trimmed(&d[32], 4);
  return q;
}

Result<std::vector<std::uint8_t>, Error> parse_vpd_supported(ByteSpan data) {
  auto body = vpd_body(data, 0x00, 4);
  if (!body) return make_unexpected(body.error());
  return std::vector<std::uint8_t>(body->begin() + 4, body->end());
}

Result<std::string, Error> parse_vpd_serial(ByteSpan data) {
  auto body = vpd_body(data, 0x80, 4);
  if (!body) return make_unexpected(body.error());
  return trimmed(body->data() + 4, body->size() - 4);
}

Result<std::vector<std::string>, Error> parse_vpd_device_id(ByteSpan data) {
  auto body = vpd_body(data, 0x83, 4);
  if (!body) return make_unexpected(body.error());
  std::vector<std::string> out;
  std::size_t pos = 4;
  while (pos + 4 <= body->size()) {
    const std::uint8_t* d = body->data() + pos;
    const std::size_t len = d[3];
    if (pos + 4 + len > body->size()) break;  // truncated designator: stop
    const std::uint8_t code_set = d[0] & 0x0f;
    const std::uint8_t assoc = (d[1] >> 4) & 0x03;
    const std::uint8_t type = d[1] & 0x0f;
    const std::uint8_t* v = d + 4;
    if (assoc == 0) {
      const bool text = code_set == 2 || code_set == 3;
      switch (type) {
        case 1: out.push_back("t10:" + (text ? trimmed(v, len) : hex(v, len))); break;
        case 2: out.push_back("eui64:" + hex(v, len)); break;
        case 3: out.push_back("naa:" + hex(v, len)); break;
        case 8: out.push_back("name:" + trimmed(v, len)); break;
        case 0: out.push_back("vendor:" + (text ? trimmed(v, len) : hex(v, len))); break;
        default: break;
      }
    }
    pos += 4 + len;
  }
  return out;
}

Result<BlockLimits, Error> parse_vpd_block_limits(ByteSpan data) {
  auto body = vpd_body(data, 0xB0, 16);
  if (!body) return make_unexpected(body.error());
  const ByteSpan b = *body;
  BlockLimits l;
  l.optimal_granularity = load_be16(&b[6]);
  l.max_transfer_length = load_be32(&b[8]);
  l.optimal_transfer_length = load_be32(&b[12]);
  if (b.size() >= 32) {
    l.max_unmap_lba_count = load_be32(&b[20]);
    l.max_unmap_descriptors = load_be32(&b[24]);
    l.unmap_granularity = load_be32(&b[28]);
  }
  if (b.size() >= 44) l.max_write_same_length = load_be64(&b[36]);
  return l;
}

Result<Provisioning, Error> parse_vpd_provisioning(ByteSpan data) {
  auto body = vpd_body(data, 0xB2, 8);
  if (!body) return make_unexpected(body.error());
  const ByteSpan b = *body;
  Provisioning p;
  p.lbpu = (b[5] & 0x80) != 0;
  p.lbpws = (b[5] & 0x40) != 0;
  p.lbpws10 = (b[5] & 0x20) != 0;
  p.lbprz = (b[5] & 0x1c) != 0;
  p.provisioning_type = b[6] & 0x07;
  return p;
}

Result<std::uint16_t, Error> parse_vpd_rotation_rate(ByteSpan data) {
  auto body = vpd_body(data, 0xB1, 6);
  if (!body) return make_unexpected(body.error());
  return load_be16(&(*body)[4]);
}

Result<Capacity, Error> parse_read_capacity16(ByteSpan d) {
  if (d.size() < 12) return fail(Errc::kBadMessage, "READ CAPACITY(16) data shorter than 12 bytes");
  Capacity c;
  const std::uint64_t last = load_be64(&d[0]);
  if (last == ~std::uint64_t{0})
    return fail(Errc::kBadMessage, "READ CAPACITY(16): last LBA overflows");
  c.block_count = last + 1;
  c.block_size = load_be32(&d[8]);
  if (c.block_size == 0) return fail(Errc::kBadMessage, "READ CAPACITY(16): block size 0");
  if (d.size() >= 15) {
    c.prot_en = (d[12] & 0x01) != 0;
    c.p_type = (d[12] >> 1) & 0x07;
    c.physical_exponent = d[13] & 0x0f;
    c.lbpme = (d[14] & 0x80) != 0;
    c.lbprz = (d[14] & 0x40) != 0;
  }
  return c;
}

Result<Capacity, Error> parse_read_capacity10(ByteSpan d) {
  if (d.size() < 8) return fail(Errc::kBadMessage, "READ CAPACITY(10) data shorter than 8 bytes");
  Capacity c;
  c.block_count = std::uint64_t{load_be32(&d[0])} + 1;
  c.block_size = load_be32(&d[4]);
  if (c.block_size == 0) return fail(Errc::kBadMessage, "READ CAPACITY(10): block size 0");
  return c;
}

Result<CachingPage, Error> parse_mode_sense10_caching(ByteSpan d) {
  if (d.size() < 8) return fail(Errc::kBadMessage, "MODE SENSE(10) header truncated");
  CachingPage c;
  c.write_protect = (d[3] & 0x80) != 0;
  c.dpofua = (d[3] & 0x10) != 0;
  const std::size_t total = std::min<std::size_t>(d.size(), 2 + std::size_t{load_be16(&d[0])});
  const std::size_t page = 8 + std::size_t{load_be16(&d[6])};
  if (page + 3 > total) return fail(Errc::kBadMessage, "MODE SENSE(10): no caching page");
  if ((d[page] & 0x3f) != 0x08)
    return fail(Errc::kBadMessage, "MODE SENSE(10): not the caching page");
  c.wce = (d[page + 2] & 0x04) != 0;
  return c;
}

std::vector<Chunk> split_request(std::uint64_t lba, std::uint64_t blocks,
                                 std::uint32_t max_blocks) {
  std::vector<Chunk> out;
  if (max_blocks == 0) max_blocks = 1;
  std::uint64_t done = 0;
  while (done < blocks) {
    const std::uint64_t n = std::min<std::uint64_t>(blocks - done, max_blocks);
    out.push_back(Chunk{lba + done, static_cast<std::uint32_t>(n), done});
    done += n;
  }
  return out;
}

std::uint32_t max_transfer_blocks(std::uint32_t device_max_blocks, std::uint64_t driver_max_bytes,
                                  std::uint32_t block_size, std::uint32_t cap_blocks) {
  std::uint64_t m = 0xFFFFFFFFu;
  if (device_max_blocks != 0) m = std::min<std::uint64_t>(m, device_max_blocks);
  if (driver_max_bytes != 0 && block_size != 0)
    m = std::min<std::uint64_t>(m, driver_max_bytes / block_size);
  if (cap_blocks != 0) m = std::min<std::uint64_t>(m, cap_blocks);
  return static_cast<std::uint32_t>(std::max<std::uint64_t>(m, 1));
}

}  // namespace ipsan::backends::scsi
