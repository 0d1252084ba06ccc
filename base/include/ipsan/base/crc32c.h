// ipsan/base/crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI,
// SCTP and ext4. Debian 12 packages no CRC32C library, so ipsan carries its own: SSE4.2 crc32
// instructions when the CPU has them (checked once at run time), else a slicing-by-8 table.
// Thread-safe; no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ipsan {

// Extends `crc` (0 to start) over `data`; crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t size) noexcept;

inline std::uint32_t crc32c(std::span<const std::uint8_t> data) noexcept {
  return crc32c_extend(0, data.data(), data.size());
}

// The portable path, exposed so tests can check both paths agree.
std::uint32_t crc32c_extend_portable(std::uint32_t crc, const void* data, std::size_t size) noexcept;

}  // namespace ipsan
