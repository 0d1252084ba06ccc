#include "ipsan/ha/ledger.h"

#include <algorithm>
#include <cstring>

#include "ipsan/base/rng.h"

namespace ipsan::ha {
namespace {

constexpr std::uint64_t kMagic = 0x4950'5341'4e48'4131ull;  // "IPSANHA1"

void put64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

Bytes WriteLedger::pattern(std::uint64_t block, std::uint64_t id) const {
  Bytes b(kBlockSize);
  put64(b.data(), kMagic);
  put64(b.data() + 8, seed_);
  put64(b.data() + 16, block);
  put64(b.data() + 24, id);
  Rng rng(seed_ ^ (block * 0x9E3779B97F4A7C15ull) ^ (id * 0xC2B2AE3D27D4EB4Full));
  for (std::size_t i = 32; i < b.size(); i += 8) put64(b.data() + i, rng.next());
  return b;
}

std::uint64_t WriteLedger::issue(std::uint64_t block) {
  auto& s = blocks_[block];
  const std::uint64_t id = next_id_++;
  s.in_flight = id;
  return id;
}

bool WriteLedger::busy(std::uint64_t block) const {
  const auto it = blocks_.find(block);
  return it != blocks_.end() && it->second.in_flight != 0;
}

void WriteLedger::acknowledged(std::uint64_t block, std::uint64_t id) {
  auto& s = blocks_[block];
  if (s.in_flight == id) s.in_flight = 0;
  ++acked_;
  if (id > s.last_acked) {
    s.last_acked = id;
    std::erase_if(s.after_acked, [id](std::uint64_t u) { return u < id; });
  }
}

void WriteLedger::unknown(std::uint64_t block, std::uint64_t id) {
  auto& s = blocks_[block];
  if (s.in_flight == id) s.in_flight = 0;
  ++unknown_;
  if (id > s.last_acked) s.after_acked.push_back(id);
}

std::vector<std::uint64_t> WriteLedger::written_blocks() const {
  std::vector<std::uint64_t> out;
  out.reserve(blocks_.size());
  for (const auto& [b, s] : blocks_) out.push_back(b);
  std::sort(out.begin(), out.end());
  return out;
}

void WriteLedger::totals(Verdict& v) const {
  v.acknowledged += acked_;
  v.unknown += unknown_;
}

void WriteLedger::check(std::uint64_t block, ByteSpan content, Verdict& v) const {
  ++v.blocks_checked;
  const auto it = blocks_.find(block);
  const BlockState empty;
  const BlockState& s = it == blocks_.end() ? empty : it->second;
  auto problem = [&](std::string text) {
    if (v.problems.size() < 20)
      v.problems.push_back("block " + std::to_string(block) + ": " + text);
  };
  const bool zero =
      content.size() == kBlockSize &&
      std::all_of(content.begin(), content.end(), [](std::uint8_t c) { return c == 0; });
  if (zero) {
    if (s.last_acked != 0) {
      ++v.lost;
      problem("zeros, but write " + std::to_string(s.last_acked) + " was acknowledged");
    }
    return;
  }
  if (content.size() != kBlockSize || get64(content.data()) != kMagic ||
      get64(content.data() + 8) != seed_ || get64(content.data() + 16) != block) {
    ++v.corrupt;
    problem("content is no write of this run (corrupt, misplaced or another seed)");
    return;
  }
  const std::uint64_t id = get64(content.data() + 24);
  const Bytes want = pattern(block, id);
  if (!std::equal(want.begin(), want.end(), content.begin())) {
    ++v.corrupt;
    problem("write " + std::to_string(id) + " is torn or corrupted");
    return;
  }
  if (id == s.last_acked) return;
  if (id > s.last_acked &&
      std::find(s.after_acked.begin(), s.after_acked.end(), id) != s.after_acked.end()) {
    ++v.unknown_landed;
    return;
  }
  ++v.lost;
  if (id < s.last_acked) {
    problem("holds older write " + std::to_string(id) + ": acknowledged write " +
            std::to_string(s.last_acked) + " lost, or write " + std::to_string(id) +
            " applied again after it");
  } else {
    problem("holds write " + std::to_string(id) + " which was never issued to it");
  }
}

}  // namespace ipsan::ha
