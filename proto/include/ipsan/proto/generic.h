// ipsan/proto/generic.h: the generic storage request and reply (patent FIG. 5 step 550, FIG. 6).
//
// Device-protocol independent: the SCSI and ATA front ends in client turn commands into these,
// the server executes them through the virtualization layer onto any back end. This, plus the wire
// codec, is all the client and the server share. Each Op is one ONC-RPC procedure of program
// IPSAN_PROG (see proto/ipsan.x and docs/PROTOCOL.md); numbers are part of the wire protocol.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ipsan/base/errc.h"

namespace ipsan::proto {

enum class Op : std::uint32_t {
  kNull = 0,          // RPC ping (RFC 5531 convention): no arguments, no result
  kLoginBegin = 1,    // challenge-response, step 1 (see login.h)
  kLoginFinish = 2,   // step 2: proof of key; yields the session (access token)
  kLogout = 3,
  kSlotFence = 4,     // closes every earlier seq of its slot (docs/PROTOCOL.md "Sessions, slots")
  kEndSession = 5,    // ends another (older) session of the same client; arg: its session id
  kReady = 10,        // is the device ready? answered by the server without device access
  kIdentify = 11,     // device identity and capabilities, without device access
  kCapacity = 12,     // block size and count, without device access
  kRead = 20,
  kWrite = 21,        // flags: kFua, kAtomic
  kFlush = 22,        // barrier: every write acknowledged before it is durable after it
  kTrim = 23,         // discard; reads of trimmed blocks return zeroes
  kWriteZeroes = 24,  // flags: kMayTrim
};

// Request flags (bit set).
inline constexpr std::uint32_t kFlagFua = 1u << 0;      // WRITE: durable before the reply
inline constexpr std::uint32_t kFlagMayTrim = 1u << 1;  // WRITE_ZEROES: may deallocate
// WRITE: all or nothing. Send only to a device whose IDENTIFY has kCapAtomicWrite (an older server
// ignores unknown flags); a server that cannot honour it answers NOT_SUPPORTED, never a plain write.
inline constexpr std::uint32_t kFlagAtomic = 1u << 2;

// A device operation addressed to one exported device. `data` is the WRITE payload (blocks *
// block_size bytes); empty for every other op.
struct Request {
  Op op = Op::kNull;
  std::uint32_t device_id = 0;
  std::uint64_t lba = 0;
  std::uint32_t blocks = 0;
  std::uint32_t flags = 0;
  std::vector<std::uint8_t> data;
};

// Capability bits reported by IDENTIFY.
inline constexpr std::uint32_t kCapFua = 1u << 0;
inline constexpr std::uint32_t kCapFlush = 1u << 1;
inline constexpr std::uint32_t kCapTrim = 1u << 2;
inline constexpr std::uint32_t kCapWriteZeroes = 1u << 3;
inline constexpr std::uint32_t kCapReadOnly = 1u << 4;
inline constexpr std::uint32_t kCapRotational = 1u << 5;
// A WRITE with kFlagAtomic of up to max_transfer_blocks is applied all or nothing: a concurrent
// READ sees all old or all new data, concurrent WRITEs are not interleaved with it (see
// docs/PROTOCOL.md for what each back end promises across a crash).
inline constexpr std::uint32_t kCapAtomicWrite = 1u << 6;

struct Identity {
  std::string vendor;    // <= 8 chars (SCSI T10 vendor field)
  std::string product;   // <= 16 chars
  std::string revision;  // <= 4 chars
  std::string serial;    // <= 32 chars
  std::array<std::uint8_t, 16> uuid{};  // stable per device; SCSI NAA/EUI and ATA WWN derive from it
  std::uint32_t block_size = 512;
  std::uint64_t block_count = 0;
  std::uint32_t capabilities = 0;
  std::uint32_t max_transfer_blocks = 0;  // largest READ/WRITE the server accepts, in blocks
  std::uint32_t optimal_transfer_blocks = 0;
};

struct Capacity {
  std::uint32_t block_size = 512;
  std::uint64_t block_count = 0;
};

struct Reply {
  Errc status = Errc::kOk;
  Identity identity;          // kIdentify
  Capacity capacity;          // kCapacity (and kReady)
  std::vector<std::uint8_t> data;  // kRead payload
};

}  // namespace ipsan::proto

namespace ipsan::proto {
// "read", "write", ...; "unknown" for values outside Op.
const char* op_name(Op op) noexcept;
// True for ops that need a device (patent FIG. 6 step 630); the others are answered by the server.
bool op_needs_device_access(Op op) noexcept;
}  // namespace ipsan::proto
