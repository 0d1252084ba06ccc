// ipsan/virt/layout.h: the declarative storage layout of a server: back ends, virtual disks
// built from them (and from each other), and exports (device id -> disk). Format: docs/CONFIG.md.
//
// Three stages, each usable alone:
//  - LayoutDesc: plain data, what the TOML file says. parse_layout_desc() reads it, to_toml()
//    writes it back (a restarted server given that text serves exactly the same layout).
//  - plan_layout(): pure validation and resolution of a LayoutDesc against the geometries of its
//    back ends: names, references, cycles, block sizes, extents past the end, overlaps, sizes that
//    do not add up, stripe chunks, duplicate device ids. Errors name the entry at fault.
//  - build_layout(): opens the back ends (open_backend specs; relative file paths resolve against
//    the config file's directory), plans, then builds VirtualDisk objects and exports. Nothing is
//    returned (or served) unless everything validated.
// Online changes (layout_edit.h) are pure functions LayoutDesc -> LayoutDesc.
//
// Threading: all functions are pure or open their own objects; a built Layout is immutable and
// may be read from any thread (its Backends follow the Backend threading rules).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"
#include "ipsan/virt/virtual_disk.h"

namespace ipsan::virt {

// ---------------------------------------------------------------- description (the TOML) ----

// A byte quantity ("40G", 1048576) or, when in_blocks, a count of blocks (start_lba/blocks keys).
struct Amount {
  std::uint64_t value = 0;
  bool in_blocks = false;
  friend bool operator==(const Amount&, const Amount&) = default;
};

struct BackendDesc {
  std::string name;
  std::string spec;  // open_backend() grammar, e.g. "file:disks/p1.img,size=20G"
  friend bool operator==(const BackendDesc&, const BackendDesc&) = default;
};

// A range of a device (back end or virtual disk). size.value == 0: up to the device's end.
struct ExtentDesc {
  std::string device;
  Amount start;
  Amount size;
  friend bool operator==(const ExtentDesc&, const ExtentDesc&) = default;
};

enum class DiskType { kConcat, kStripe, kExtents };
std::string_view to_string(DiskType t) noexcept;

struct DiskDesc {
  std::string name;
  DiskType type = DiskType::kExtents;
  std::vector<std::string> members;  // concat, stripe: whole devices, in order
  Amount chunk;                      // stripe
  std::vector<ExtentDesc> extents;   // extents: laid end to end, in order
  friend bool operator==(const DiskDesc&, const DiskDesc&) = default;
};

// One device cut into consecutive virtual disks (FIG. 7B). No sizes: equal parts (any remainder
// of the device stays unused); sizes: one per part, their sum at most the device size.
struct SplitDesc {
  std::string device;
  std::vector<std::string> into;
  std::vector<Amount> sizes;
  friend bool operator==(const SplitDesc&, const SplitDesc&) = default;
};

struct ExportDesc {
  std::uint32_t device_id = 0;
  std::string disk;  // a virtual disk or a back end
  bool read_only = false;
  std::vector<std::string> clients = {"*"};  // client names allowed; "*" = any client
  friend bool operator==(const ExportDesc&, const ExportDesc&) = default;
};

// A thin pool (thin.h) on a back end, and the thin disks that must exist in it (created when
// missing). Every volume of the pool (thin disks, snapshots, clones) is a device of the layout,
// usable by exports and virtual disks like a back end.
struct PoolDesc {
  std::string name;
  std::string device;                 // a backend of the layout, used whole by the pool
  std::uint64_t chunk_bytes = 0;      // 0: default (64 KiB); used only to format a blank device
  std::uint64_t metadata_bytes = 0;   // 0: automatic; used only to format a blank device
  std::vector<std::pair<std::string, std::uint64_t>> disks;  // thin disk name -> size in bytes
  friend bool operator==(const PoolDesc&, const PoolDesc&) = default;
};

// A synchronous mirror (mirror.h) of whole devices (back ends or pool volumes) with its
// write-intent bitmap on a back end of its own. The mirror is a device of the layout.
struct MirrorDesc {
  std::string name;
  std::vector<std::string> legs;  // in order; the first is the truth of a new mirror
  std::string bitmap;             // a [backend] used only for the bitmap
  std::uint64_t region_bytes = 0; // 0: default (1 MiB)
  std::uint64_t size_bytes = 0;   // 0: the first leg's size
  friend bool operator==(const MirrorDesc&, const MirrorDesc&) = default;
};

struct LayoutDesc {
  std::vector<BackendDesc> backends;
  std::vector<PoolDesc> pools;
  std::vector<MirrorDesc> mirrors;
  std::vector<DiskDesc> disks;
  std::vector<SplitDesc> splits;
  std::vector<ExportDesc> exports;
  friend bool operator==(const LayoutDesc&, const LayoutDesc&) = default;
};

// Parses TOML text into a description; syntax, type and unknown-key errors only (no sizes).
Result<LayoutDesc, Error> parse_layout_desc(std::string_view toml_text);
// Canonical TOML for `desc`; parse_layout_desc(to_toml(d)) == d up to entry order.
std::string to_toml(const LayoutDesc& desc);
// Replaces the layout file at `path` with to_toml(desc), durably and atomically: temporary file
// written and fsync'd, renamed over `path`, directory fsync'd. On error `path` is unchanged.
Result<void, Error> save_layout_file(const std::filesystem::path& path, const LayoutDesc& desc);

// ------------------------------------------------------------------ validation (pure) ----

using GeometryMap = std::map<std::string, backends::Geometry, std::less<>>;

// A virtual disk resolved to blocks: segments (legs when striped) on named devices.
struct ResolvedDisk {
  std::string name;
  bool striped = false;
  std::uint64_t chunk_blocks = 0;
  std::vector<std::string> members;  // distinct devices, first use first
  std::vector<Segment> segments;     // member indexes into `members`
  backends::Geometry geometry;
};

struct Plan {
  GeometryMap geometry;             // every device: back ends and virtual disks
  std::vector<ResolvedDisk> disks;  // dependencies first (build order)
  const ResolvedDisk* find(std::string_view name) const;
};

// Validates `desc` given the geometry of each of its back ends (by name).
Result<Plan, Error> plan_layout(const LayoutDesc& desc, const GeometryMap& backend_geometry);

// ------------------------------------------------------------------ built layout ----

struct Export {
  std::uint32_t device_id = 0;
  std::string name;    // the exported disk or back end
  BackendPtr backend;  // wrapped read-only when read_only
  bool read_only = false;
  std::vector<std::string> allowed_clients;
  bool allows(std::string_view client) const;
};

class ThinPool;
class MirrorDisk;

struct Layout {
  LayoutDesc desc;
  // Opened thin pools by pool name; their volumes are also in `backends` (by volume name).
  std::map<std::string, std::shared_ptr<ThinPool>, std::less<>> pools;
  // Opened mirrors by name; also in `backends`.
  std::map<std::string, std::shared_ptr<MirrorDisk>, std::less<>> mirrors;
  std::filesystem::path base_dir;
  std::map<std::string, BackendPtr, std::less<>> backends;                 // opened specs + pool volumes
  std::map<std::string, std::shared_ptr<VirtualDisk>, std::less<>> disks;  // virtual disks
  std::vector<Export> exports;                                             // sorted by device id

  const Export* find_export(std::uint32_t device_id) const;
  BackendPtr device(std::string_view name) const;  // back end or virtual disk; null if none
  GeometryMap backend_geometry() const;
  // Installs `hook` on every virtual disk; call before the layout is shared between threads.
  void set_trace(const TraceHook& hook);
};

// Opens every back end (reusing those of `reuse` with the same name and spec, so an online change
// never opens an image twice), validates and builds. On error nothing stays open.
Result<Layout, Error> build_layout(LayoutDesc desc, const std::filesystem::path& base_dir,
                                   const Layout* reuse = nullptr);
Result<Layout, Error> parse_layout(std::string_view toml_text,
                                   const std::filesystem::path& base_dir);
Result<Layout, Error> load_layout(const std::filesystem::path& path);
inline std::string to_toml(const Layout& layout) { return to_toml(layout.desc); }

// A spec with a relative file path made relative to base_dir ("file:a.img" -> "file:/etc/x/a.img").
std::string resolve_spec(std::string_view spec, const std::filesystem::path& base_dir);

}  // namespace ipsan::virt
