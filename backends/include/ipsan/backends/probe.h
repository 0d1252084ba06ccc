// ipsan/backends/probe.h: what ipsan finds on a hardware device (`ipsan probe DEVICE`), and the
// registration of the hardware back-end kinds "sg" and "ata" with the spec registry (spec.h).
//
// probe_device() opens the node read-only, runs SCSI discovery (INQUIRY, VPD pages, READ
// CAPACITY, caching mode page) and, when the device is an ATA disk behind SAT (vendor "ATA"),
// IDENTIFY DEVICE through ATA PASS-THROUGH as well. It blocks the caller; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ipsan/backends/ata.h"
#include "ipsan/backends/backend.h"
#include "ipsan/backends/sg.h"
#include "ipsan/base/result.h"

namespace ipsan::backends {

struct ProbeReport {
  std::string path;
  std::string type;  // "scsi-disk", "ata-disk (SAT)"
  std::string vendor, product, revision, serial;
  std::vector<std::string> designators;
  Geometry geometry;
  std::uint32_t physical_block_size = 0;
  Capabilities capabilities;  // as SgBackend would report them
  bool protection = false;
  bool lbpme = false, lbprz = false, unmap = false, write_same_unmap = false;
  bool used_read_capacity16 = false;
  std::optional<scsi::BlockLimits> limits;
  std::uint64_t driver_max_bytes = 0;
  std::uint16_t rotation_rate = 0;
  std::optional<ata::IdentifyInfo> ata;  // ATA disks behind SAT
  std::optional<Capabilities> ata_capabilities;
  std::vector<std::string> specs;  // back-end specs that open this device, best first
};

Result<ProbeReport, Error> probe_device(const std::string& path);

// A readable multi-line report.
std::string format_probe_report(const ProbeReport& r);

// Registers "sg:<path>[,ro][,workers=N]" and "ata:<path>[,ro][,workers=N]" with
// register_backend_kind(). Idempotent; call once at start-up (the ipsan program does).
void register_hw_backends();

}  // namespace ipsan::backends
