#include "ipsan/base/pattern.h"

#include <cstring>

#include "ipsan/base/bytes.h"
#include "ipsan/base/rng.h"

namespace ipsan {
namespace {
constexpr std::uint64_t kMagic = 0x697073616e50544eull;  // "ipsanPTN"

void generate(std::uint8_t* out, std::size_t n, std::uint64_t seed, std::uint64_t lba,
              std::uint64_t generation) {
  std::size_t i = 0;
  std::uint8_t header[32];
  store_be64(header, kMagic);
  store_be64(header + 8, seed);
  store_be64(header + 16, lba);
  store_be64(header + 24, generation);
  for (; i < n && i < sizeof header; ++i) out[i] = header[i];
  std::uint64_t mix = seed ^ (lba * 0x9E3779B97F4A7C15ull) ^ (generation * 0xC2B2AE3D27D4EB4Full);
  Rng rng(mix);
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w = rng.next();
    std::memcpy(out + i, &w, 8);
  }
  if (i < n) {
    std::uint64_t w = rng.next();
    std::memcpy(out + i, &w, n - i);
  }
}
}  // namespace

void fill_pattern(std::span<std::uint8_t> block, std::uint64_t seed, std::uint64_t lba,
                  std::uint64_t generation) {
  generate(block.data(), block.size(), seed, lba, generation);
}

void fill_pattern_blocks(std::span<std::uint8_t> buf, std::uint32_t block_size, std::uint64_t seed,
                         std::uint64_t lba, std::uint64_t generation) {
  for (std::size_t off = 0; off + block_size <= buf.size(); off += block_size, ++lba) {
    generate(buf.data() + off, block_size, seed, lba, generation);
  }
}

bool check_pattern(std::span<const std::uint8_t> block, std::uint64_t seed, std::uint64_t lba,
                   std::uint64_t generation) {
  std::uint8_t tmp[4096];
  if (block.size() <= sizeof tmp) {
    generate(tmp, block.size(), seed, lba, generation);
    return std::memcmp(tmp, block.data(), block.size()) == 0;
  }
  Bytes whole(block.size());
  generate(whole.data(), whole.size(), seed, lba, generation);
  return std::memcmp(whole.data(), block.data(), block.size()) == 0;
}

}  // namespace ipsan
