// libFuzzer target: arbitrary CDBs and data-out buffers into a SCSI LogicalUnit (and the same
// bytes as an ATA taskfile into an ata::Device) over an in-memory GenericTarget.
//
// Input layout: byte 0 = flags (bit 0: ATA instead of SCSI, bit 1: deferred completions,
// bits 2-7: EDTL selector), byte 1 = CDB length (mod 33), then the CDB, then the data-out.
// Invariants checked: exactly one completion per command; CHECK CONDITION carries decodable sense;
// data-in never exceeds a given EDTL.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "ipsan/client/ata/device.h"
#include "ipsan/client/memory_target.h"
#include "ipsan/client/scsi/logical_unit.h"
#include "ipsan/client/scsi/sense.h"

namespace {

using namespace ipsan;
using namespace ipsan::client;

struct World {
  World() {
    target.add_device(1, MemoryTarget::default_identity(2048, 512, 8));
    target.set_log_data(false);
    client::scsi::LogicalUnitOptions o;
    o.max_command_bytes = 256 * 1024;
    o.max_write_same_blocks = 4096;
    lu = std::make_unique<client::scsi::LogicalUnit>(target, 1, o);
    lu->attach([](Errc) {});
    ata = std::make_unique<ata::Device>(target, 1, 256 * 1024);
    ata->attach([](Errc) {});
  }
  MemoryTarget target;
  std::unique_ptr<client::scsi::LogicalUnit> lu;
  std::unique_ptr<ata::Device> ata;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World* world = new World();
  if (size < 2) return 0;
  const std::uint8_t flags = data[0];
  const std::size_t cdb_len = data[1] % 33;
  if (size < 2 + cdb_len) return 0;
  Bytes cdb(data + 2, data + 2 + cdb_len);
  Bytes out(data + 2 + cdb_len, data + size);
  world->target.set_deferred(flags & 0x02);
  int completions = 0;
  if (flags & 0x01) {
    ata::Taskfile tf;
    if (cdb_len >= 1) tf.command = cdb[0];
    if (cdb_len >= 3) tf.features = static_cast<std::uint16_t>(cdb[1] | (cdb[2] << 8));
    if (cdb_len >= 5) tf.count = static_cast<std::uint16_t>(cdb[3] | (cdb[4] << 8));
    if (cdb_len >= 11) {
      tf.lba = 0;
      for (int i = 0; i < 6; ++i) tf.lba |= std::uint64_t{cdb[5 + i]} << (8 * i);
    }
    if (cdb_len >= 12) tf.device = cdb[11];
    tf.data_out = std::move(out);
    world->ata->execute(tf, [&completions](ata::AtaResult r) {
      ++completions;
      if (r.data_in.size() > 256 * 1024 + 512) std::abort();
    });
  } else {
    client::scsi::ScsiCommand c;
    c.cdb = std::move(cdb);
    c.data_out = std::move(out);
    const std::uint8_t sel = flags >> 2;
    c.data_in_length = sel == 0 ? client::scsi::kAutoLength : static_cast<std::uint32_t>(sel) * 37u;
    const std::uint32_t edtl = c.data_in_length;
    world->lu->execute(c, [&completions, edtl](client::scsi::ScsiResult r) {
      ++completions;
      if (r.status == client::scsi::kStatusCheckCondition && !client::scsi::decode_sense(r.sense)) std::abort();
      if (edtl != client::scsi::kAutoLength && r.data_in.size() > edtl) std::abort();
    });
  }
  world->target.run_pending();
  world->target.set_deferred(false);
  if (completions != 1) std::abort();
  return 0;
}
