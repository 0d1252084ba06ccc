// `ipsan probe`: show what ipsan finds on a SCSI or ATA device.
#include "backends/cli/backends_cli.h"

#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "ipsan/backends/probe.h"
#ifdef HAVE_IPSAN_BACKENDS_RBD
#include "ipsan/backends/rbd.h"
#endif

namespace ipsan::backends {
namespace {

nlohmann::json caps_json(const Capabilities& c) {
  return {{"read_only", c.read_only},
          {"fua", c.fua},
          {"flush", c.flush},
          {"trim", c.trim},
          {"write_zeroes", c.write_zeroes},
          {"rotational", c.rotational},
          {"max_transfer_blocks", c.max_transfer_blocks}};
}

nlohmann::json to_json(const ProbeReport& r) {
  nlohmann::json j = {
      {"path", r.path},
      {"type", r.type},
      {"vendor", r.vendor},
      {"product", r.product},
      {"revision", r.revision},
      {"serial", r.serial},
      {"designators", r.designators},
      {"block_size", r.geometry.block_size},
      {"block_count", r.geometry.block_count},
      {"size_bytes", r.geometry.size_bytes()},
      {"physical_block_size", r.physical_block_size},
      {"protection", r.protection},
      {"lbpme", r.lbpme},
      {"lbprz", r.lbprz},
      {"unmap", r.unmap},
      {"write_same_unmap", r.write_same_unmap},
      {"read_capacity16", r.used_read_capacity16},
      {"driver_max_bytes", r.driver_max_bytes},
      {"rotation_rate", r.rotation_rate},
      {"capabilities", caps_json(r.capabilities)},
      {"specs", r.specs},
  };
  if (r.limits) {
    j["block_limits"] = {{"max_transfer_length", r.limits->max_transfer_length},
                         {"optimal_granularity", r.limits->optimal_granularity},
                         {"optimal_transfer_length", r.limits->optimal_transfer_length},
                         {"max_unmap_lba_count", r.limits->max_unmap_lba_count},
                         {"max_unmap_descriptors", r.limits->max_unmap_descriptors},
                         {"unmap_granularity", r.limits->unmap_granularity},
                         {"max_write_same_length", r.limits->max_write_same_length}};
  }
  if (r.ata) {
    const ata::IdentifyInfo& a = *r.ata;
    j["ata"] = {{"model", a.model},
                {"serial", a.serial},
                {"firmware", a.firmware},
                {"lba48", a.lba48},
                {"sectors", a.sectors},
                {"logical_sector_size", a.logical_sector_size},
                {"physical_sector_size", a.physical_sector_size},
                {"write_cache_supported", a.write_cache_supported},
                {"write_cache_enabled", a.write_cache_enabled},
                {"flush_ext", a.flush_ext},
                {"fua_ext", a.fua_ext},
                {"dma", a.dma},
                {"trim", a.trim},
                {"trim_deterministic", a.trim_deterministic},
                {"trim_zeroes", a.trim_zeroes},
                {"dsm_max_blocks", a.dsm_max_blocks},
                {"rotation_rate", a.rotation_rate}};
    if (r.ata_capabilities) j["ata"]["capabilities"] = caps_json(*r.ata_capabilities);
  }
  return j;
}

}  // namespace

void add_cli(CLI::App& app) {
  // The program that offers `probe` can also open sg:/ata: specs (server --device sg:/dev/sg0).
  register_hw_backends();
#ifdef HAVE_IPSAN_BACKENDS_RBD
  register_rbd_backend();  // rbd:POOL/IMAGE (docs/CEPH.md)
#endif
  auto* cmd = app.add_subcommand("probe", "Show what ipsan finds on a SCSI or ATA device (SG_IO)");
  auto device = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("device", *device, "sg device node, e.g. /dev/sg0 (sg: or ata: prefix allowed)")
      ->required();
  cmd->add_flag("--json", *json, "machine-readable output");
  cmd->callback([device, json] {
    std::string path = *device;
    for (const char* prefix : {"sg:", "ata:"}) {
      if (path.rfind(prefix, 0) == 0) path = path.substr(std::string(prefix).size());
    }
    auto r = probe_device(path);
    if (!r) {
      std::cerr << "ipsan probe: " << r.error().message << "\n";
      throw CLI::RuntimeError(1);
    }
    if (*json) {
      std::cout << to_json(*r).dump(2) << "\n";
    } else {
      std::cout << format_probe_report(*r);
    }
  });
}

}  // namespace ipsan::backends
