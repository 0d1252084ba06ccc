// A model of a thin pool for the tests: per volume, per block, the durable write id and the ids
// written since the last FLUSH of that volume. Block contents are stamped so a read identifies
// the write that produced it (id 0 = never written = zeroes).
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ipsan/base/bytes.h"

namespace ipsan::virt::testing {

inline void stamp(std::uint8_t* p, std::uint32_t bs, std::uint32_t id, std::uint64_t lba) {
  if (id == 0) {
    std::memset(p, 0, bs);
    return;
  }
  store_be32(p, id);
  store_be64(p + 4, lba);
  for (std::uint32_t k = 12; k < bs; ++k) p[k] = static_cast<std::uint8_t>(id * 31 + k);
}

// The write id a block holds, or -1 if it is not a valid stamp for `lba`.
inline long long unstamp(const std::uint8_t* p, std::uint32_t bs, std::uint64_t lba) {
  const std::uint32_t id = load_be32(p);
  std::vector<std::uint8_t> want(bs);
  stamp(want.data(), bs, id, lba);
  if (std::memcmp(want.data(), p, bs) != 0) return -1;
  return id;
}

struct Cell {
  std::uint32_t durable = 0;
  std::vector<std::uint32_t> pending;  // written since the last flush, oldest first
  std::uint32_t latest() const { return pending.empty() ? durable : pending.back(); }
  bool allows(std::uint32_t v) const {
    if (v == durable) return true;
    for (auto p : pending)
      if (p == v) return true;
    return false;
  }
};

struct ModelVolume {
  bool snapshot = false;
  std::vector<Cell> cells;
  void flush() {
    for (auto& c : cells) {
      c.durable = c.latest();
      c.pending.clear();
    }
  }
};

using Model = std::map<std::string, ModelVolume>;

}  // namespace ipsan::virt::testing
