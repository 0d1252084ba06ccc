// Online layout changes as pure functions; see layout_edit.h.
#include "ipsan/virt/layout_edit.h"

#include <algorithm>

namespace ipsan::virt {
namespace {

struct Flat {
  std::string device;
  std::uint64_t lba;
  std::uint64_t blocks;
};

// The disk's mapping as (device, lba, blocks) runs, physically contiguous runs merged.
std::vector<Flat> flatten(const ResolvedDisk& d) {
  std::vector<Flat> out;
  for (const auto& s : d.segments) {
    const std::string& dev = d.members[s.member];
    if (!out.empty() && out.back().device == dev &&
        out.back().lba + out.back().blocks == s.physical_lba) {
      out.back().blocks += s.blocks;
    } else {
      out.push_back(Flat{dev, s.physical_lba, s.blocks});
    }
  }
  return out;
}

// Old mapping preserved: `after` equals `before` followed by more blocks.
bool extends(const ResolvedDisk& before, const ResolvedDisk& after) {
  if (before.striped || after.striped) {
    return before.striped == after.striped && before.chunk_blocks == after.chunk_blocks &&
           before.members == after.members && before.segments.size() == after.segments.size() &&
           std::equal(before.segments.begin(), before.segments.end(), after.segments.begin(),
                      [](const Segment& a, const Segment& b) {
                        return a.member == b.member && a.physical_lba == b.physical_lba &&
                               a.blocks == b.blocks;
                      });
  }
  const auto a = flatten(before), b = flatten(after);
  if (b.size() < a.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].device != b[i].device || a[i].lba != b[i].lba) return false;
    const bool last = i + 1 == a.size();
    if (last ? b[i].blocks < a[i].blocks : b[i].blocks != a[i].blocks) return false;
  }
  return true;
}

Result<LayoutDesc, Error> finish(const LayoutDesc& before, LayoutDesc after,
                                 const GeometryMap& geometry) {
  if (auto p = plan_layout(after, geometry); !p) return make_unexpected(p.error());
  if (auto ok = check_no_data_loss(before, after, geometry); !ok) {
    return make_unexpected(ok.error());
  }
  return after;
}

const ExportDesc* export_of(const LayoutDesc& d, std::string_view disk) {
  for (const auto& e : d.exports) {
    if (e.disk == disk) return &e;
  }
  return nullptr;
}

}  // namespace

Result<void, Error> check_no_data_loss(const LayoutDesc& before, const LayoutDesc& after,
                                       const GeometryMap& geometry) {
  auto pb = plan_layout(before, geometry);
  if (!pb) return {};  // an invalid layout serves nothing: nothing to lose
  auto pa = plan_layout(after, geometry);
  if (!pa) return make_unexpected(pa.error());
  for (const auto& old : pb->disks) {
    const ResolvedDisk* now = pa->find(old.name);
    if (!now) {
      if (const ExportDesc* e = export_of(before, old.name)) {
        return fail("disk '" + old.name + "' is exported as device id " +
                    std::to_string(e->device_id) + "; remove the export first");
      }
      continue;
    }
    if (now->geometry.block_count < old.geometry.block_count) {
      return fail("disk '" + old.name + "' would shrink from " +
                  std::to_string(old.geometry.block_count) + " to " +
                  std::to_string(now->geometry.block_count) + " blocks");
    }
    if (!extends(old, *now)) {
      return fail("disk '" + old.name +
                  "' would map existing blocks elsewhere (data would be lost)");
    }
  }
  for (const auto& e : before.exports) {
    for (const auto& n : after.exports) {
      if (n.device_id == e.device_id && n.disk != e.disk) {
        return fail("device id " + std::to_string(e.device_id) + " would change from disk '" +
                    e.disk + "' to '" + n.disk + "'; remove the export first");
      }
    }
  }
  return {};
}

Result<LayoutDesc, Error> add_backend(const LayoutDesc& desc, BackendDesc backend,
                                      const GeometryMap& geometry) {
  LayoutDesc after = desc;
  after.backends.push_back(std::move(backend));
  return finish(desc, std::move(after), geometry);
}

Result<LayoutDesc, Error> add_disk(const LayoutDesc& desc, DiskDesc disk,
                                   const GeometryMap& geometry) {
  LayoutDesc after = desc;
  after.disks.push_back(std::move(disk));
  return finish(desc, std::move(after), geometry);
}

Result<LayoutDesc, Error> append_extent(const LayoutDesc& desc, std::string_view disk,
                                        ExtentDesc extent, const GeometryMap& geometry) {
  LayoutDesc after = desc;
  auto it = std::find_if(after.disks.begin(), after.disks.end(),
                         [&](const DiskDesc& d) { return d.name == disk; });
  if (it == after.disks.end()) return fail("no disk '" + std::string(disk) + "'");
  if (it->type != DiskType::kExtents) {
    return fail("disk '" + std::string(disk) + "' is a " + std::string(to_string(it->type)) +
                " disk; only extents disks grow by appending an extent");
  }
  it->extents.push_back(std::move(extent));
  return finish(desc, std::move(after), geometry);
}

Result<LayoutDesc, Error> remove_disk(const LayoutDesc& desc, std::string_view disk,
                                      const GeometryMap& geometry) {
  const std::string name(disk);
  for (const auto& s : desc.splits) {
    if (std::find(s.into.begin(), s.into.end(), name) != s.into.end()) {
      return fail("disk '" + name + "' is part of the split of '" + s.device +
                  "' and cannot be removed alone");
    }
  }
  auto it = std::find_if(desc.disks.begin(), desc.disks.end(),
                         [&](const DiskDesc& d) { return d.name == disk; });
  if (it == desc.disks.end()) return fail("no disk '" + name + "'");
  if (const ExportDesc* e = export_of(desc, name)) {
    return fail("disk '" + name + "' is exported as device id " + std::to_string(e->device_id) +
                "; remove the export first");
  }
  for (const auto& d : desc.disks) {
    const bool uses = std::find(d.members.begin(), d.members.end(), name) != d.members.end() ||
                      std::any_of(d.extents.begin(), d.extents.end(),
                                  [&](const ExtentDesc& e) { return e.device == name; });
    if (uses) return fail("disk '" + name + "' is used by disk '" + d.name + "'");
  }
  for (const auto& s : desc.splits) {
    if (s.device == name) return fail("disk '" + name + "' is split into other disks");
  }
  LayoutDesc after = desc;
  after.disks.erase(after.disks.begin() + (it - desc.disks.begin()));
  return finish(desc, std::move(after), geometry);
}

Result<LayoutDesc, Error> add_export(const LayoutDesc& desc, ExportDesc exp,
                                     const GeometryMap& geometry) {
  LayoutDesc after = desc;
  after.exports.push_back(std::move(exp));
  return finish(desc, std::move(after), geometry);
}

Result<LayoutDesc, Error> remove_export(const LayoutDesc& desc, std::uint32_t device_id) {
  LayoutDesc after = desc;
  auto it = std::find_if(after.exports.begin(), after.exports.end(),
                         [&](const ExportDesc& e) { return e.device_id == device_id; });
  if (it == after.exports.end())
    return fail("no export with device id " + std::to_string(device_id));
  after.exports.erase(it);
  return after;
}

}  // namespace ipsan::virt
