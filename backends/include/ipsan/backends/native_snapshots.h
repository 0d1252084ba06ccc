// ipsan/backends/native_snapshots.h: a back end whose store keeps snapshots itself (Ceph RBD),
// so ipsan's snapshot commands (`ipsan disk snapshot ...`, server/src/admin_thin.cc) can use them
// without knowing the store. A Backend that offers them also derives from NativeSnapshots; callers
// find out with dynamic_cast.
//
// Threading: the methods block (they talk to the store); never call them from an I/O completion.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/result.h"

namespace ipsan::backends {

struct NativeSnapshot {
  std::uint64_t id = 0;
  std::string name;
  std::uint64_t size_bytes = 0;
};

// A range that changed since a snapshot.
struct ChangedRange {
  std::uint64_t offset = 0;  // bytes
  std::uint64_t length = 0;
  bool data = true;  // false: the range is now zero (discarded)
};

class NativeSnapshots {
 public:
  virtual ~NativeSnapshots() = default;
  virtual Result<void, Error> snapshot_create(const std::string& name) = 0;
  virtual Result<std::vector<NativeSnapshot>, Error> snapshots() = 0;
  virtual Result<void, Error> snapshot_remove(const std::string& name) = 0;
  // Ranges changed since snapshot `from` ("" : since the image was created), in offset order.
  virtual Result<std::vector<ChangedRange>, Error> diff(const std::string& from) = 0;
  // The spec of a read-only back end showing snapshot `name`, given the spec this back end was
  // opened with (e.g. "rbd:p/i,id=gw" -> "rbd:p/i,id=gw,snap=NAME").
  virtual std::string snapshot_spec(std::string_view spec, const std::string& name) const = 0;
};

}  // namespace ipsan::backends
