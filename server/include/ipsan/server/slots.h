// ipsan/server/slots.h: exactly-once execution for one session (NFSv4.1-style slots).
//
// A session has N slots. A client uses a slot for one request at a time, numbering the requests on
// that slot 1, 2, 3, ... The server executes a call only if seq == last_seq + 1; a call with
// seq == last_seq is a retransmission: the cached reply is sent again (or, for READ, whose data is
// not cached, the read is executed again, which is harmless); anything else is answered
// SEQ_MISORDERED without execution. So a delayed duplicate of an old WRITE can never be applied
// twice or overwrite newer data. An uncached READ is re-executed at most once per (slot, seq); later
// copies get kReexecuteSpent (the server answers an unauthenticated BUSY), so a replayed call
// cannot make the server read (and queue replies) again and again. SLOT_FENCE (admit_fence) moves
// a slot past a seq whose fate the client gave up on: every lower seq is then misordered for ever.
// Pure logic, no I/O; not thread-safe (one io thread owns it).
#pragma once

#include <cstdint>
#include <vector>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"

namespace ipsan::server {

enum class SlotVerdict {
  kExecute,       // new request: run it; slot is now in progress
  kReplayCached,  // retransmission of a completed request: send cached_reply()
  kReexecute,     // retransmission of a completed request whose reply was not cached (READ)
  kReexecuteSpent,  // another retransmission of it: the one re-execution was used, do not run it
  kInProgress,    // retransmission of a request still running: its reply will come
  kMisordered,    // stale or skipped sequence: do not execute, answer SEQ_MISORDERED
  kBadSlot,       // slot number out of range
};

class SlotTable {
 public:
  explicit SlotTable(std::uint32_t slots) : slots_(slots) {}

  std::uint32_t size() const { return static_cast<std::uint32_t>(slots_.size()); }

  SlotVerdict admit(std::uint32_t slot, std::uint64_t seq);
  // SLOT_FENCE at `seq`: if seq > last_seq and the slot is idle, last_seq jumps to seq (kExecute:
  // the server then completes it with its cached reply); a request still running on the slot
  // gives kInProgress (no answer: the client asks again); seq == last_seq is a retransmission
  // (kReplayCached); a lower seq is kMisordered.
  SlotVerdict admit_fence(std::uint32_t slot, std::uint64_t seq);
  // Records completion of (slot, seq). `reply` is cached for retransmissions unless empty; `mac`
  // is the MAC of the reply sent (kept for uncached READ replies: a re-executed READ may only be
  // answered with a reply carrying the same MAC, since Poly1305 keys are one-time per (slot, seq)).
  void complete(std::uint32_t slot, std::uint64_t seq, Bytes reply, const Tag128* mac = nullptr);
  // MAC of the uncached reply recorded for the slot's current seq, or nullptr.
  const Tag128* reply_mac(std::uint32_t slot) const {
    return slots_[slot].has_mac ? &slots_[slot].mac : nullptr;
  }
  const Bytes& cached_reply(std::uint32_t slot) const { return slots_[slot].reply; }
  std::uint64_t last_seq(std::uint32_t slot) const { return slots_[slot].last_seq; }
  bool busy() const;  // any slot in progress
  std::size_t cached_bytes() const;

 private:
  struct Slot {
    std::uint64_t last_seq = 0;
    bool in_progress = false;
    bool cached = false;
    bool has_mac = false;
    bool reexecuted = false;
    Tag128 mac{};
    Bytes reply;
  };
  std::vector<Slot> slots_;
};

}  // namespace ipsan::server
