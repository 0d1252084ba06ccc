#include "ipsan/server/slots.h"

namespace ipsan::server {

SlotVerdict SlotTable::admit(std::uint32_t slot, std::uint64_t seq) {
  if (slot >= slots_.size()) return SlotVerdict::kBadSlot;
  Slot& s = slots_[slot];
  if (seq == s.last_seq + 1 && !s.in_progress && seq != 0) {
    s.last_seq = seq;
    s.in_progress = true;
    s.cached = false;
    s.has_mac = false;
    s.reexecuted = false;
    s.reply.clear();
    s.reply.shrink_to_fit();
    return SlotVerdict::kExecute;
  }
  if (seq == s.last_seq && seq != 0) {
    if (s.in_progress) return SlotVerdict::kInProgress;
    if (s.cached) return SlotVerdict::kReplayCached;
    if (s.reexecuted) return SlotVerdict::kReexecuteSpent;
    s.reexecuted = true;
    s.in_progress = true;
    return SlotVerdict::kReexecute;
  }
  return SlotVerdict::kMisordered;
}

SlotVerdict SlotTable::admit_fence(std::uint32_t slot, std::uint64_t seq) {
  if (slot >= slots_.size()) return SlotVerdict::kBadSlot;
  Slot& s = slots_[slot];
  if (seq > s.last_seq) {
    if (s.in_progress) return SlotVerdict::kInProgress;  // the fenced request is still running
    s.last_seq = seq;
    s.in_progress = true;
    s.cached = false;
    s.has_mac = false;
    s.reexecuted = false;
    s.reply.clear();
    s.reply.shrink_to_fit();
    return SlotVerdict::kExecute;
  }
  if (seq == s.last_seq && seq != 0) {
    if (s.in_progress) return SlotVerdict::kInProgress;
    if (s.cached) return SlotVerdict::kReplayCached;
  }
  return SlotVerdict::kMisordered;
}

void SlotTable::complete(std::uint32_t slot, std::uint64_t seq, Bytes reply, const Tag128* mac) {
  if (slot >= slots_.size()) return;
  Slot& s = slots_[slot];
  if (s.last_seq != seq) return;
  s.in_progress = false;
  s.cached = !reply.empty();
  s.reply = std::move(reply);
  if (mac != nullptr && !s.has_mac) {
    s.mac = *mac;
    s.has_mac = true;
  }
}

bool SlotTable::busy() const {
  for (const auto& s : slots_)
    if (s.in_progress) return true;
  return false;
}

std::size_t SlotTable::cached_bytes() const {
  std::size_t n = 0;
  for (const auto& s : slots_) n += s.reply.size();
  return n;
}

}  // namespace ipsan::server
