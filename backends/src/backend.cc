// Shared helpers of the Backend interface.
#include "ipsan/backends/backend.h"

namespace ipsan::backends {

std::string_view to_string(OpKind op) noexcept {
  switch (op) {
    case OpKind::kRead: return "read";
    case OpKind::kWrite: return "write";
    case OpKind::kFlush: return "flush";
    case OpKind::kTrim: return "trim";
    case OpKind::kWriteZeroes: return "write-zeroes";
  }
  return "?";
}

}  // namespace ipsan::backends
