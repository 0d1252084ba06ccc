// ipsan/base/pattern.h: deterministic block contents for verification.
//
// A block's expected content is a pure function of (seed, lba, generation, block size), so a
// verifier can write a range, read it back (even from another process) and check every byte
// without keeping a copy. Each block starts with a 32-byte header (magic, seed, lba, generation)
// so a misplaced block is recognisable in a hex dump; the rest is xoshiro output.
#pragma once

#include <cstdint>
#include <span>

namespace ipsan {

void fill_pattern(std::span<std::uint8_t> block, std::uint64_t seed, std::uint64_t lba,
                  std::uint64_t generation);

// Fills `count` consecutive blocks starting at `lba`.
void fill_pattern_blocks(std::span<std::uint8_t> buf, std::uint32_t block_size, std::uint64_t seed,
                         std::uint64_t lba, std::uint64_t generation);

// True when `block` holds exactly the pattern for (seed, lba, generation).
bool check_pattern(std::span<const std::uint8_t> block, std::uint64_t seed, std::uint64_t lba,
                   std::uint64_t generation);

}  // namespace ipsan
