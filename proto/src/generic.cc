#include "ipsan/proto/generic.h"

namespace ipsan::proto {

const char* op_name(Op op) noexcept {
  switch (op) {
    case Op::kNull: return "null";
    case Op::kLoginBegin: return "login-begin";
    case Op::kLoginFinish: return "login-finish";
    case Op::kLogout: return "logout";
    case Op::kSlotFence: return "slot-fence";
    case Op::kEndSession: return "end-session";
    case Op::kReady: return "ready";
    case Op::kIdentify: return "identify";
    case Op::kCapacity: return "capacity";
    case Op::kRead: return "read";
    case Op::kWrite: return "write";
    case Op::kFlush: return "flush";
    case Op::kTrim: return "trim";
    case Op::kWriteZeroes: return "write-zeroes";
  }
  return "unknown";
}

bool op_needs_device_access(Op op) noexcept {
  switch (op) {
    case Op::kRead:
    case Op::kWrite:
    case Op::kFlush:
    case Op::kTrim:
    case Op::kWriteZeroes: return true;
    default: return false;
  }
}

}  // namespace ipsan::proto
