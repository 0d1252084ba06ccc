// ipsan/client/scsi/bus.h: the client's device view (patent FIG. 5 step 520): SCSI target id +
// LUN -> (server name, device id) -> a LogicalUnit (and an ATA Device for `ata` trace lines) over
// that server's GenericTarget. Commands to unmapped LUNs get SPC-4 answers (INQUIRY: peripheral
// qualifier 011b; REPORT LUNS works; everything else ILLEGAL REQUEST / LOGICAL UNIT NOT
// SUPPORTED 25h/00h). REPORT LUNS is answered by the Bus for every LUN (never a request).
//
// Mapping text (for command lines and config): "T:L=SERVER/DEVICE", several separated by commas,
// e.g. "0:0=alpha/1,0:1=alpha/2,1:0=beta/7"; "L=SERVER/DEVICE" means target 0.
//
// Threading: configure (add_server, map) before use, from one thread. execute*() are then
// thread-safe. Servers (GenericTargets) must outlive the Bus.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipsan/base/result.h"
#include "ipsan/client/ata/device.h"
#include "ipsan/client/generic_target.h"
#include "ipsan/client/scsi/logical_unit.h"

namespace ipsan::client::scsi {

struct LunMapping {
  std::uint32_t target = 0;
  std::uint32_t lun = 0;
  std::string server;
  std::uint32_t device_id = 0;
  // Per-LUN export options (LogicalUnitOptions): a write-protected or removable logical unit,
  // and a physical block size (0: the Bus's default).
  bool read_only = false;
  bool removable = false;
  std::uint32_t physical_block_size = 0;
};

Result<std::vector<LunMapping>, Error> parse_lun_mappings(std::string_view text);

class Bus {
 public:
  explicit Bus(LogicalUnitOptions options = {}) : options_(options) {}

  void add_server(const std::string& name, GenericTarget& target);
  // Fails (with a message) for an unknown server, a duplicate (target, lun) or lun > 16383.
  Result<void, Error> map(const LunMapping& mapping);

  // Attaches every mapped LUN (SCSI and ATA views); `done` gets kOk or the first failure.
  void attach_all(std::function<void(Errc)> done);
  // Synchronous attach_all for start-up code: waits up to `timeout_ms`.
  Errc attach_all_and_wait(int timeout_ms = 10000);

  void execute(std::uint32_t target, std::uint32_t lun, const ScsiCommand& command, ScsiDone done);
  void execute_ata(std::uint32_t target, std::uint32_t lun, const ata::Taskfile& taskfile,
                   ata::AtaDone done);

  LogicalUnit* find(std::uint32_t target, std::uint32_t lun);
  ata::Device* find_ata(std::uint32_t target, std::uint32_t lun);
  std::vector<std::uint64_t> luns(std::uint32_t target) const;
  std::vector<LunMapping> mappings() const;
  // Logical unit reset of every LUN (unit attention 29h/00h pending again).
  void reset_all();
  // TARGET WARM / COLD RESET of one target id: a logical unit reset of each of its LUNs.
  void reset_target(std::uint32_t target, bool cold);
  // An I_T nexus to `target` ended (LogicalUnit::nexus_lost on each of its LUNs).
  void nexus_lost(std::uint32_t target, const std::string& nexus);

 private:
  struct Entry {
    LunMapping mapping;
    std::unique_ptr<LogicalUnit> lu;
    std::unique_ptr<ata::Device> ata;
  };
  LogicalUnitOptions options_;
  std::map<std::string, GenericTarget*> servers_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, Entry> entries_;
};

}  // namespace ipsan::client::scsi
