// Pure ATA pieces: ATA PASS-THROUGH(16) CDBs, IDENTIFY DEVICE parsing, TRIM payloads.
#include <algorithm>
#include <string>

#include "ipsan/backends/ata.h"

namespace ipsan::backends::ata {
namespace {

std::uint16_t word(ByteSpan p, std::size_t w) {
  return static_cast<std::uint16_t>(p[2 * w] | (p[2 * w + 1] << 8));
}

// ATA strings: two characters per word, the first in the high byte.
std::string ata_string(ByteSpan p, std::size_t first_word, std::size_t words) {
  std::string s;
  for (std::size_t w = first_word; w < first_word + words; ++w) {
    for (const std::uint8_t c : {p[2 * w + 1], p[2 * w]}) {
      s.push_back(c >= 0x20 && c <= 0x7e ? static_cast<char>(c) : ' ');
    }
  }
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(' ') - first + 1);
}

// A word whose bit 15 is 0 and bit 14 is 1 carries valid data (ACS "shall be" pattern).
bool word_valid(std::uint16_t w) { return (w & 0xC000) == 0x4000; }

}  // namespace

std::array<std::uint8_t, 16> build_pass_through16(const Taskfile& tf, Protocol protocol,
                                                  XferDir dir, bool extend, bool ck_cond,
                                                  bool logical_blocks) {
  std::array<std::uint8_t, 16> c{0x85};
  c[1] = static_cast<std::uint8_t>((static_cast<std::uint8_t>(protocol) << 1) | (extend ? 1 : 0));
  std::uint8_t b2 = ck_cond ? 0x20 : 0x00;
  if (dir != XferDir::kNone) {
    b2 |= 0x04 | 0x02;  // BYT_BLOK = 1, T_LENGTH = 2: length in blocks, in the COUNT field
    if (dir == XferDir::kIn) b2 |= 0x08;  // T_DIR: from the device
    if (logical_blocks) b2 |= 0x10;       // T_TYPE: logical sectors, not 512 bytes
  }
  c[2] = b2;
  c[3] = static_cast<std::uint8_t>(tf.features >> 8);
  c[4] = static_cast<std::uint8_t>(tf.features);
  c[5] = static_cast<std::uint8_t>(tf.count >> 8);
  c[6] = static_cast<std::uint8_t>(tf.count);
  // SAT: LBA bytes interleave high/low halves: 31:24, 7:0, 39:32, 15:8, 47:40, 23:16.
  c[7] = static_cast<std::uint8_t>(tf.lba >> 24);
  c[8] = static_cast<std::uint8_t>(tf.lba);
  c[9] = static_cast<std::uint8_t>(tf.lba >> 32);
  c[10] = static_cast<std::uint8_t>(tf.lba >> 8);
  c[11] = static_cast<std::uint8_t>(tf.lba >> 40);
  c[12] = static_cast<std::uint8_t>(tf.lba >> 16);
  c[13] = tf.device;
  c[14] = tf.command;
  return c;
}

Result<IdentifyInfo, Error> parse_identify(ByteSpan p) {
  if (p.size() != 512) {
    return fail(Errc::kBadMessage,
                "IDENTIFY DEVICE data must be 512 bytes, got " + std::to_string(p.size()));
  }
  const std::uint16_t w255 = word(p, 255);
  if ((w255 & 0xff) == 0xA5) {
    std::uint8_t sum = 0;
    for (const std::uint8_t b : p) sum = static_cast<std::uint8_t>(sum + b);
    if (sum != 0) return fail(Errc::kBadMessage, "IDENTIFY DEVICE checksum mismatch");
  }
  if (word(p, 0) & 0x8000)
    return fail(Errc::kNotSupported, "IDENTIFY: not an ATA device (word 0 bit 15)");
  IdentifyInfo id;
  id.serial = ata_string(p, 10, 10);
  id.firmware = ata_string(p, 23, 4);
  id.model = ata_string(p, 27, 20);
  id.dma = (word(p, 49) & 0x0100) != 0;
  const std::uint16_t w83 = word(p, 83), w84 = word(p, 84), w82 = word(p, 82), w85 = word(p, 85);
  const std::uint16_t w86 = word(p, 86), w87 = word(p, 87);
  if (word_valid(w83)) {
    id.lba48 = (w83 & 0x0400) != 0;
    id.flush_ext = (w83 & 0x2000) != 0;
  }
  if (word_valid(w84)) id.fua_ext = (w84 & 0x0040) != 0;
  if (word_valid(w83)) id.write_cache_supported = (w82 & 0x0020) != 0;
  if (word_valid(w87)) id.write_cache_enabled = (w85 & 0x0020) != 0;
  // Word 86 bit 10 mirrors "48-bit address feature set enabled".
  if (id.lba48 && word_valid(w87)) id.lba48 = (w86 & 0x0400) != 0;
  if (id.lba48) {
    for (int i = 3; i >= 0; --i) id.sectors = (id.sectors << 16) | word(p, 100 + i);
  } else {
    id.sectors = std::uint64_t{word(p, 60)} | (std::uint64_t{word(p, 61)} << 16);
  }
  if (id.sectors == 0) return fail(Errc::kBadMessage, "IDENTIFY: capacity is 0 sectors");
  if (id.sectors > kMaxLba48)
    return fail(Errc::kBadMessage, "IDENTIFY: capacity beyond 48-bit LBA");
  const std::uint16_t w106 = word(p, 106);
  if (word_valid(w106)) {
    if (w106 & 0x1000) {
      const std::uint32_t words = std::uint32_t{word(p, 117)} | (std::uint32_t{word(p, 118)} << 16);
      const std::uint64_t bytes = std::uint64_t{words} * 2;
      if (bytes < 512 || bytes > 65536 || (bytes & (bytes - 1)) != 0) {
        return fail(Errc::kBadMessage,
                    "IDENTIFY: unsupported logical sector size " + std::to_string(bytes));
      }
      id.logical_sector_size = static_cast<std::uint32_t>(bytes);
    }
    id.physical_sector_size = id.logical_sector_size;
    if (w106 & 0x2000) id.physical_sector_size = id.logical_sector_size << (w106 & 0x0f);
  }
  const std::uint16_t w69 = word(p, 69);
  id.trim = (word(p, 169) & 0x0001) != 0;
  id.trim_deterministic = (w69 & 0x4000) != 0;
  id.trim_zeroes = (w69 & 0x0020) != 0;
  id.dsm_max_blocks = word(p, 105);
  id.rotation_rate = word(p, 217);
  return id;
}

TrimPayload build_trim_payload(std::uint64_t lba, std::uint64_t blocks, std::uint16_t max_pages) {
  constexpr std::uint64_t kMaxPerEntry = 0xFFFF;
  constexpr std::size_t kEntriesPerPage = 512 / 8;
  if (max_pages == 0) max_pages = 1;
  TrimPayload t;
  std::vector<std::uint64_t> entries;
  while (t.covered < blocks && entries.size() < std::size_t{max_pages} * kEntriesPerPage) {
    const std::uint64_t n = std::min(blocks - t.covered, kMaxPerEntry);
    entries.push_back(((lba + t.covered) & 0xFFFFFFFFFFFFull) | (n << 48));
    t.covered += n;
  }
  const std::size_t pages =
      std::max<std::size_t>(1, (entries.size() + kEntriesPerPage - 1) / kEntriesPerPage);
  t.data.assign(pages * 512, 0);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    for (int b = 0; b < 8; ++b)
      t.data[i * 8 + b] = static_cast<std::uint8_t>(entries[i] >> (8 * b));
  }
  return t;
}

}  // namespace ipsan::backends::ata
