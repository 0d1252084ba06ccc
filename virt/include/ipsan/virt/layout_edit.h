// ipsan/virt/layout_edit.h: online layout changes as pure functions on the description.
//
// Each function returns a new LayoutDesc, validated with plan_layout() against the given back-end
// geometries, or an error naming what is wrong; the input is never modified. Changes that could
// lose or move data are refused: removing a disk that is exported or used by another disk, and
// any edit that changes where an existing block of an existing disk lives (disks only grow, at
// their end). To retire an exported disk, remove its export first, then the disk. The server
// applies a result with build_layout(new_desc, base_dir, &current_layout) and persists
// to_toml(new_desc).
//
// Threading: pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "ipsan/virt/layout.h"

namespace ipsan::virt {

// Adds a back end. Its geometry must be in `geometry` (open it first, e.g. with open_backend).
Result<LayoutDesc, Error> add_backend(const LayoutDesc& desc, BackendDesc backend,
                                      const GeometryMap& geometry);
// Creates a virtual disk.
Result<LayoutDesc, Error> add_disk(const LayoutDesc& desc, DiskDesc disk,
                                   const GeometryMap& geometry);
// Grows an extents disk by appending an extent at its end.
Result<LayoutDesc, Error> append_extent(const LayoutDesc& desc, std::string_view disk,
                                        ExtentDesc extent, const GeometryMap& geometry);
// Removes a virtual disk that is neither exported nor used by another disk (split parts cannot
// be removed one by one).
Result<LayoutDesc, Error> remove_disk(const LayoutDesc& desc, std::string_view disk,
                                      const GeometryMap& geometry);
Result<LayoutDesc, Error> add_export(const LayoutDesc& desc, ExportDesc exp,
                                     const GeometryMap& geometry);
Result<LayoutDesc, Error> remove_export(const LayoutDesc& desc, std::uint32_t device_id);

// Refuses `after` when a disk of `before` that still exists (or any exported one) maps any of
// its blocks differently, or shrank, or an export's device id now names another disk.
Result<void, Error> check_no_data_loss(const LayoutDesc& before, const LayoutDesc& after,
                                       const GeometryMap& geometry);

}  // namespace ipsan::virt
