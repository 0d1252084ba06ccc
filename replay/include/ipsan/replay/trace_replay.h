// ipsan/replay/trace_replay.h: SCSI traces (docs/TRACES.md) against a real server: the LUN map
// and the Bus over a GenericTarget (normally a client::Runtime), for `ipsan replay TRACE...`.
//
// Map text: "LUN=DEVICE_ID" or "T:L=DEVICE_ID", several separated by commas, e.g. "0=1,1=2,2=3"
// (the traces' reference layout, kReferenceMap). Parsing treats the text as untrusted.
//
// Threading: make_bus() once, before use; the Bus's rules apply afterwards (bus.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/client/scsi/bus.h"

namespace ipsan::replay {

// The layout conformance/traces/*.trace are written for (see conformance_traces_test.cc):
// LUN 0 -> device 1 (4096 x 512 B), LUN 1 -> device 2 (1024 x 512 B, read-only),
// LUN 2 -> device 3 (1024 x 4096 B).
inline constexpr std::string_view kReferenceMap = "0=1,1=2,2=3";

struct DeviceMapping {
  std::uint32_t target = 0;
  std::uint32_t lun = 0;
  std::uint32_t device_id = 0;
};

Result<std::vector<DeviceMapping>, Error> parse_device_map(std::string_view text);

// A Bus with one server ("remote") = `target`, every mapping applied, LUNs attached.
Result<std::unique_ptr<client::scsi::Bus>, Error> make_bus(client::GenericTarget& target,
                                                           const std::vector<DeviceMapping>& map,
                                                           int attach_timeout_ms);

}  // namespace ipsan::replay
