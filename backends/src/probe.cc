// probe_device(), the readable probe report, and the "sg"/"ata" spec kinds.
#include "ipsan/backends/probe.h"

#include <sstream>

#include "ipsan/backends/spec.h"

namespace ipsan::backends {
namespace {

const char* yes_no(bool b) { return b ? "yes" : "no"; }

void put_caps(std::ostringstream& os, const Capabilities& c) {
  os << "  read-only:      " << yes_no(c.read_only) << "\n"
     << "  fua:            " << (c.fua ? "native" : "emulated with flush") << "\n"
     << "  volatile cache: " << yes_no(c.flush) << "\n"
     << "  trim:           " << yes_no(c.trim) << "\n"
     << "  write zeroes:   " << yes_no(c.write_zeroes) << "\n"
     << "  rotational:     " << yes_no(c.rotational) << "\n"
     << "  max transfer:   " << c.max_transfer_blocks << " blocks\n";
}

Result<unsigned, Error> workers_option(const BackendSpec& spec) {
  auto v = spec.value("workers");
  if (!v) return 2u;
  unsigned n = 0;
  if (v->empty() || v->size() > 3) return fail("'" + spec.text + "': bad workers value");
  for (char c : *v) {
    if (c < '0' || c > '9') return fail("'" + spec.text + "': bad workers value");
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  if (n == 0 || n > 64) return fail("'" + spec.text + "': workers must be 1..64");
  return n;
}

}  // namespace

Result<ProbeReport, Error> probe_device(const std::string& path) {
  SgOptions so;
  so.read_only = true;
  so.workers = 1;
  auto sg = SgBackend::open(path, so);
  if (!sg) return make_unexpected(sg.error());
  const SgDeviceInfo& i = (*sg)->info();
  ProbeReport r;
  r.path = path;
  r.type = "scsi-disk";
  r.vendor = i.inquiry.vendor;
  r.product = i.inquiry.product;
  r.revision = i.inquiry.revision;
  r.serial = i.serial;
  r.designators = i.designators;
  r.geometry = (*sg)->geometry();
  r.physical_block_size = i.capacity.block_size << i.capacity.physical_exponent;
  r.capabilities = (*sg)->capabilities();
  r.capabilities.read_only = i.has_caching && i.caching.write_protect;  // not our O_RDONLY
  r.protection = i.capacity.prot_en;
  r.lbpme = i.capacity.lbpme;
  r.lbprz = i.capacity.lbprz;
  r.unmap = i.can_unmap;
  r.write_same_unmap = i.can_write_same_unmap;
  r.used_read_capacity16 = i.used_read_capacity16;
  if (i.has_block_limits) r.limits = i.limits;
  r.driver_max_bytes = i.driver_max_bytes;
  r.rotation_rate = i.rotation_rate;
  if (i.inquiry.vendor == "ATA") {
    AtaOptions ao;
    ao.read_only = true;
    ao.workers = 1;
    if (auto a = AtaBackend::open(path, ao)) {
      r.type = "ata-disk (SAT)";
      r.ata = (*a)->info().identify;
      Capabilities c = (*a)->capabilities();
      c.read_only = false;
      r.ata_capabilities = c;
    }
  }
  if (r.ata) {
    r.specs = {"ata:" + path, "sg:" + path};
  } else {
    r.specs = {"sg:" + path};
  }
  return r;
}

std::string format_probe_report(const ProbeReport& r) {
  std::ostringstream os;
  os << r.path << ": " << r.type << "\n"
     << "  vendor/product: " << r.vendor << " / " << r.product << " (rev " << r.revision << ")\n"
     << "  serial:         " << (r.serial.empty() ? "-" : r.serial) << "\n";
  for (const std::string& d : r.designators) os << "  designator:     " << d << "\n";
  os << "  capacity:       " << r.geometry.block_count << " blocks x " << r.geometry.block_size
     << " bytes = " << format_size(r.geometry.size_bytes()) << " (physical block "
     << r.physical_block_size << ", via READ CAPACITY(" << (r.used_read_capacity16 ? 16 : 10)
     << "))\n"
     << "  protection:     " << yes_no(r.protection) << "\n"
     << "  provisioning:   lbpme=" << yes_no(r.lbpme) << " lbprz=" << yes_no(r.lbprz)
     << " unmap=" << yes_no(r.unmap) << " write-same-unmap=" << yes_no(r.write_same_unmap) << "\n";
  if (r.limits) {
    os << "  block limits:   max transfer " << r.limits->max_transfer_length
       << ", optimal granularity " << r.limits->optimal_granularity << ", max unmap LBAs "
       << r.limits->max_unmap_lba_count << ", max write same " << r.limits->max_write_same_length
       << " (blocks; 0 = not reported)\n";
  }
  os << "  driver limit:   " << r.driver_max_bytes << " bytes per command\n"
     << "  rotation:       "
     << (r.rotation_rate == 1   ? std::string("solid state")
         : r.rotation_rate == 0 ? std::string("not reported")
                                : std::to_string(r.rotation_rate) + " rpm")
     << "\n"
     << "SCSI back end (sg:):\n";
  put_caps(os, r.capabilities);
  if (r.ata) {
    const ata::IdentifyInfo& a = *r.ata;
    os << "ATA IDENTIFY DEVICE:\n"
       << "  model:          " << a.model << "\n"
       << "  serial:         " << a.serial << "\n"
       << "  firmware:       " << a.firmware << "\n"
       << "  sectors:        " << a.sectors << " (48-bit: " << yes_no(a.lba48) << ")\n"
       << "  sector size:    logical " << a.logical_sector_size << ", physical "
       << a.physical_sector_size << "\n"
       << "  write cache:    "
       << (a.write_cache_supported ? (a.write_cache_enabled ? "enabled" : "disabled") : "absent")
       << "\n"
       << "  trim:           " << yes_no(a.trim) << " (deterministic "
       << yes_no(a.trim_deterministic) << ", zeroes " << yes_no(a.trim_zeroes) << ", "
       << a.dsm_max_blocks << " range pages)\n"
       << "  dma:            " << yes_no(a.dma) << ", fua ext " << yes_no(a.fua_ext) << "\n";
    if (r.ata_capabilities) {
      os << "ATA back end (ata:):\n";
      put_caps(os, *r.ata_capabilities);
    }
  }
  os << "open with:      ";
  for (std::size_t k = 0; k < r.specs.size(); ++k) os << (k ? "  " : "") << r.specs[k];
  os << "\n";
  return os.str();
}

void register_hw_backends() {
  register_backend_kind("sg", [](const BackendSpec& spec) -> Result<BackendPtr, Error> {
    if (auto c = spec.check_options({"ro", "workers"}); !c) return make_unexpected(c.error());
    auto ro = spec.flag_option("ro");
    if (!ro) return make_unexpected(ro.error());
    auto w = workers_option(spec);
    if (!w) return make_unexpected(w.error());
    SgOptions o;
    o.read_only = *ro;
    o.workers = *w;
    auto b = SgBackend::open(spec.target, o);
    if (!b) return make_unexpected(b.error());
    return BackendPtr(std::move(*b));
  });
  register_backend_kind("ata", [](const BackendSpec& spec) -> Result<BackendPtr, Error> {
    if (auto c = spec.check_options({"ro", "workers"}); !c) return make_unexpected(c.error());
    auto ro = spec.flag_option("ro");
    if (!ro) return make_unexpected(ro.error());
    auto w = workers_option(spec);
    if (!w) return make_unexpected(w.error());
    AtaOptions o;
    o.read_only = *ro;
    o.workers = *w;
    auto b = AtaBackend::open(spec.target, o);
    if (!b) return make_unexpected(b.error());
    return BackendPtr(std::move(*b));
  });
}

}  // namespace ipsan::backends
