// Layout validation (plan_layout) and construction (build_layout); see layout.h.
#include "ipsan/virt/layout.h"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>

#include "ipsan/backends/spec.h"
#include "ipsan/virt/mirror.h"
#include "ipsan/virt/thin.h"

namespace ipsan::virt {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string amount_text(const Amount& a) {
  return a.in_blocks ? std::to_string(a.value) + " blocks" : std::to_string(a.value) + " bytes";
}

Result<std::uint64_t, Error> to_blocks(const Amount& a, std::uint32_t bs, const std::string& who,
                                       const char* what) {
  if (a.in_blocks) return a.value;
  if (a.value % bs != 0) {
    return fail(who + ": " + what + " " + amount_text(a) + " is not a multiple of the block size " +
                std::to_string(bs));
  }
  return a.value / bs;
}

// Who uses which blocks of a device, for the overlap check.
struct Use {
  std::uint64_t start;
  std::uint64_t blocks;
  std::string user;
};

// A node of the dependency graph: a virtual disk or one part of a split.
struct Node {
  std::string name;
  std::string label;               // "disk 'x'" / "split part 'x'"
  const DiskDesc* disk = nullptr;  // or
  const SplitDesc* split = nullptr;
  std::size_t part = 0;
  std::vector<std::string> deps;
};

class Planner {
 public:
  Planner(const LayoutDesc& d, const GeometryMap& bg) : d_(d), bg_(bg) {}

  Result<Plan, Error> run() {
    if (auto r = collect_names(); !r) return make_unexpected(r.error());
    if (auto r = order(); !r) return make_unexpected(r.error());
    for (const Node* n : topo_) {
      if (auto r = resolve(*n); !r) return make_unexpected(r.error());
    }
    if (auto r = check_exports(); !r) return make_unexpected(r.error());
    if (auto r = check_overlaps(); !r) return make_unexpected(r.error());
    return std::move(plan_);
  }

 private:
  Result<void, Error> add_name(const std::string& name, const std::string& label) {
    if (!valid_name(name)) {
      return fail(label + ": bad name (use 1-64 of A-Z a-z 0-9 _ -)");
    }
    auto [it, inserted] = labels_.emplace(name, label);
    if (!inserted)
      return fail("duplicate device name '" + name + "' (" + it->second + " and " + label + ")");
    return {};
  }

  Result<void, Error> collect_names() {
    for (const auto& b : d_.backends) {
      const std::string label = "backend '" + b.name + "'";
      if (auto r = add_name(b.name, label); !r) return r;
      if (b.spec.empty()) return fail(label + ": empty spec");
      auto g = bg_.find(b.name);
      if (g == bg_.end()) return fail(Errc::kInternal, label + ": no geometry (not opened)");
      plan_.geometry[b.name] = g->second;
    }
    // Devices with a geometry but no [backend] entry are thin pool volumes and mirrors
    // (build_layout).
    for (const auto& [name, g] : bg_) {
      if (labels_.count(name)) continue;
      const std::string& dev = name;
      const bool mirror = std::any_of(d_.mirrors.begin(), d_.mirrors.end(),
                                      [&](const MirrorDesc& m) { return m.name == dev; });
      if (auto r = add_name(name, (mirror ? "mirror '" : "pool volume '") + name + "'"); !r)
        return r;
      plan_.geometry[name] = g;
    }
    for (const auto& disk : d_.disks) {
      Node n;
      n.name = disk.name;
      n.label = "disk '" + disk.name + "'";
      n.disk = &disk;
      if (auto r = add_name(disk.name, n.label); !r) return r;
      switch (disk.type) {
        case DiskType::kConcat:
        case DiskType::kStripe:
          if (disk.members.empty()) return fail(n.label + ": no members");
          if (!disk.extents.empty())
            return fail(n.label + ": extents given for a " + std::string(to_string(disk.type)) +
                        " disk");
          n.deps = disk.members;
          break;
        case DiskType::kExtents:
          if (disk.extents.empty()) return fail(n.label + ": no extents");
          if (!disk.members.empty()) return fail(n.label + ": members given for an extents disk");
          for (const auto& e : disk.extents) n.deps.push_back(e.device);
          break;
      }
      if (disk.type == DiskType::kStripe && disk.chunk.value == 0) {
        return fail(n.label + ": stripe needs a chunk size > 0 (e.g. chunk = \"64K\")");
      }
      if (disk.type != DiskType::kStripe && disk.chunk.value != 0) {
        return fail(n.label + ": chunk given for a " + std::string(to_string(disk.type)) + " disk");
      }
      nodes_.push_back(std::move(n));
    }
    for (std::size_t s = 0; s < d_.splits.size(); ++s) {
      const SplitDesc& sp = d_.splits[s];
      const std::string label = "split " + std::to_string(s + 1) + " (of '" + sp.device + "')";
      if (sp.into.empty()) return fail(label + ": 'into' names no disks");
      if (!sp.sizes.empty() && sp.sizes.size() != sp.into.size()) {
        return fail(label + ": " + std::to_string(sp.sizes.size()) + " sizes for " +
                    std::to_string(sp.into.size()) + " parts");
      }
      for (const auto& a : sp.sizes) {
        if (a.in_blocks != sp.sizes[0].in_blocks) {
          return fail(label + ": sizes mix bytes and blocks");
        }
      }
      for (std::size_t i = 0; i < sp.into.size(); ++i) {
        Node n;
        n.name = sp.into[i];
        n.label = "split part '" + sp.into[i] + "'";
        n.split = &sp;
        n.part = i;
        n.deps = {sp.device};
        if (auto r = add_name(n.name, n.label); !r) return r;
        nodes_.push_back(std::move(n));
      }
    }
    for (auto& n : nodes_) by_name_[n.name] = &n;
    for (const auto& n : nodes_) {
      for (const auto& dep : n.deps) {
        if (!labels_.count(dep)) {
          return fail(n.label + ": refers to '" + dep + "', which is not a backend or disk");
        }
      }
    }
    return {};
  }

  // Depth-first topological order; a back edge is a cycle, reported with its path.
  Result<void, Error> order() {
    std::map<std::string, int, std::less<>> state;  // 0 new, 1 on stack, 2 done
    std::vector<std::string> stack;
    std::function<Result<void, Error>(const Node&)> visit =
        [&](const Node& n) -> Result<void, Error> {
      state[n.name] = 1;
      stack.push_back(n.name);
      for (const auto& dep : n.deps) {
        auto it = by_name_.find(dep);
        if (it == by_name_.end()) continue;  // a back end
        const int s = state[dep];
        if (s == 1) {
          std::string path;
          auto from = std::find(stack.begin(), stack.end(), dep);
          for (auto p = from; p != stack.end(); ++p) path += *p + " -> ";
          return fail("cycle: " + path + dep);
        }
        if (s == 0) {
          if (auto r = visit(*it->second); !r) return r;
        }
      }
      stack.pop_back();
      state[n.name] = 2;
      topo_.push_back(&n);
      return {};
    };
    for (const auto& n : nodes_) {
      if (state[n.name] == 0) {
        if (auto r = visit(n); !r) return r;
      }
    }
    return {};
  }

  // Adds segment [start, start + blocks) of `device` to `rd`, checking block size and bounds.
  Result<void, Error> add_segment(ResolvedDisk& rd, const std::string& who,
                                  const std::string& device, std::uint64_t start,
                                  std::uint64_t blocks) {
    const backends::Geometry& g = plan_.geometry.at(device);
    if (rd.members.empty()) {
      rd.geometry.block_size = g.block_size;
    } else if (g.block_size != rd.geometry.block_size) {
      return fail(who + ": '" + device + "' has block size " + std::to_string(g.block_size) +
                  " but '" + rd.members[0] + "' has " + std::to_string(rd.geometry.block_size) +
                  " (all members must share one block size)");
    }
    if (blocks == 0) return fail(who + ": empty range on '" + device + "'");
    if (start > g.block_count || blocks > g.block_count - start) {
      return fail(
          who + ": blocks " + std::to_string(start) + ".." +
          (blocks > kMax - start ? std::string("(overflow)") : std::to_string(start + blocks - 1)) +
          " reach past the end of '" + device + "' (" + std::to_string(g.block_count) + " blocks)");
    }
    auto it = std::find(rd.members.begin(), rd.members.end(), device);
    const auto idx = static_cast<std::uint32_t>(it - rd.members.begin());
    if (it == rd.members.end()) rd.members.push_back(device);
    rd.segments.push_back(Segment{idx, start, blocks});
    uses_[device].push_back(Use{start, blocks, "disk '" + rd.name + "'"});
    return {};
  }

  Result<void, Error> resolve(const Node& n) {
    ResolvedDisk rd;
    rd.name = n.name;
    if (n.split) {
      const SplitDesc& sp = *n.split;
      const backends::Geometry& g = plan_.geometry.at(sp.device);
      const std::string who = n.label;
      std::uint64_t start = 0, blocks = 0, total = 0;
      if (sp.sizes.empty()) {
        blocks = g.block_count / sp.into.size();
        if (blocks == 0) {
          return fail(who + ": '" + sp.device + "' is too small for " +
                      std::to_string(sp.into.size()) + " parts");
        }
        start = blocks * n.part;
      } else {
        for (std::size_t i = 0; i < sp.sizes.size(); ++i) {
          auto b = to_blocks(sp.sizes[i], g.block_size, "split part '" + sp.into[i] + "'", "size");
          if (!b) return make_unexpected(b.error());
          if (*b == 0) return fail("split part '" + sp.into[i] + "': size must be > 0");
          if (*b > kMax - total) return fail(who + ": sizes overflow");
          if (i == n.part) {
            start = total;
            blocks = *b;
          }
          total += *b;
        }
        if (total > g.block_count) {
          return fail("split of '" + sp.device + "': sizes add up to " + std::to_string(total) +
                      " blocks but '" + sp.device + "' has only " + std::to_string(g.block_count));
        }
      }
      if (auto r = add_segment(rd, who, sp.device, start, blocks); !r) return r;
    } else {
      const DiskDesc& d = *n.disk;
      if (d.type == DiskType::kExtents) {
        for (std::size_t i = 0; i < d.extents.size(); ++i) {
          const ExtentDesc& e = d.extents[i];
          const std::string who = n.label + " extent " + std::to_string(i + 1);
          const backends::Geometry& g = plan_.geometry.at(e.device);
          auto start = to_blocks(e.start, g.block_size, who, "start");
          if (!start) return make_unexpected(start.error());
          auto size = to_blocks(e.size, g.block_size, who, "size");
          if (!size) return make_unexpected(size.error());
          std::uint64_t blocks = *size;
          if (e.size.value == 0) {
            if (*start >= g.block_count) {
              return fail(who + ": start block " + std::to_string(*start) +
                          " is past the end of '" + e.device + "' (" +
                          std::to_string(g.block_count) + " blocks)");
            }
            blocks = g.block_count - *start;
          }
          if (auto r = add_segment(rd, who, e.device, *start, blocks); !r) return r;
        }
      } else {
        for (const auto& m : d.members) {
          const backends::Geometry& g = plan_.geometry.at(m);
          if (auto r = add_segment(rd, n.label, m, 0, g.block_count); !r) return r;
        }
      }
      if (d.type == DiskType::kStripe) {
        rd.striped = true;
        auto chunk = to_blocks(d.chunk, rd.geometry.block_size, n.label, "stripe chunk");
        if (!chunk) return make_unexpected(chunk.error());
        if (*chunk == 0) return fail(n.label + ": stripe chunk must be at least one block");
        rd.chunk_blocks = *chunk;
        const std::uint64_t leg = rd.segments[0].blocks;
        for (const auto& s : rd.segments) {
          const std::string& m = rd.members[s.member];
          if (s.blocks != leg) {
            return fail(n.label + ": stripe member '" + m + "' has " + std::to_string(s.blocks) +
                        " blocks but '" + rd.members[0] + "' has " + std::to_string(leg) +
                        " (stripe members must be equal in size)");
          }
          if (s.blocks % *chunk != 0) {
            return fail(n.label + ": stripe member '" + m + "' (" + std::to_string(s.blocks) +
                        " blocks) is not a multiple of the chunk (" + std::to_string(*chunk) +
                        " blocks)");
          }
        }
      }
    }
    std::uint64_t total = 0;
    for (const auto& s : rd.segments) {
      if (s.blocks > kMax - total) return fail(n.label + ": size overflows");
      total += s.blocks;
    }
    rd.geometry.block_count = total;
    plan_.geometry[rd.name] = rd.geometry;
    plan_.disks.push_back(std::move(rd));
    return {};
  }

  Result<void, Error> check_exports() {
    std::map<std::uint32_t, const ExportDesc*> ids;
    std::map<std::string, const ExportDesc*, std::less<>> disks;
    for (const auto& e : d_.exports) {
      const std::string label = "export " + std::to_string(e.device_id);
      auto [it, inserted] = ids.emplace(e.device_id, &e);
      if (!inserted) {
        return fail("duplicate device id " + std::to_string(e.device_id) + " (disks '" +
                    it->second->disk + "' and '" + e.disk + "')");
      }
      if (!labels_.count(e.disk)) {
        return fail(label + ": '" + e.disk + "' is not a backend or disk");
      }
      auto [dit, dinserted] = disks.emplace(e.disk, &e);
      if (!dinserted) {
        return fail(label + ": '" + e.disk + "' is already exported as device id " +
                    std::to_string(dit->second->device_id));
      }
      if (e.clients.empty()) return fail(label + ": no clients allowed (use clients = [\"*\"])");
      for (const auto& c : e.clients) {
        if (c.empty()) return fail(label + ": empty client name");
      }
      uses_[e.disk].push_back(Use{0, plan_.geometry.at(e.disk).block_count, label});
    }
    return {};
  }

  // Two users of overlapping blocks of one device would alias data.
  Result<void, Error> check_overlaps() {
    for (auto& [device, uses] : uses_) {
      std::sort(uses.begin(), uses.end(),
                [](const Use& a, const Use& b) { return a.start < b.start; });
      for (std::size_t i = 1; i < uses.size(); ++i) {
        const Use& a = uses[i - 1];
        const Use& b = uses[i];
        if (a.start + a.blocks > b.start) {
          const std::string both =
              a.user == b.user ? a.user + " uses them twice" : a.user + " and " + b.user;
          return fail("overlap on '" + device + "' at block " + std::to_string(b.start) + ": " +
                      both);
        }
      }
    }
    return {};
  }

  const LayoutDesc& d_;
  const GeometryMap& bg_;
  std::map<std::string, std::string, std::less<>> labels_;
  std::vector<Node> nodes_;
  std::map<std::string, Node*, std::less<>> by_name_;
  std::vector<const Node*> topo_;
  std::map<std::string, std::vector<Use>, std::less<>> uses_;
  Plan plan_;
};

}  // namespace

std::string_view to_string(DiskType t) noexcept {
  switch (t) {
    case DiskType::kConcat: return "concat";
    case DiskType::kStripe: return "stripe";
    case DiskType::kExtents: return "extents";
  }
  return "?";
}

const ResolvedDisk* Plan::find(std::string_view name) const {
  for (const auto& d : disks) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

Result<Plan, Error> plan_layout(const LayoutDesc& desc, const GeometryMap& backend_geometry) {
  return Planner(desc, backend_geometry).run();
}

bool Export::allows(std::string_view client) const {
  return std::any_of(allowed_clients.begin(), allowed_clients.end(),
                     [&](const std::string& c) { return c == "*" || c == client; });
}

const Export* Layout::find_export(std::uint32_t device_id) const {
  auto it = std::lower_bound(exports.begin(), exports.end(), device_id,
                             [](const Export& e, std::uint32_t id) { return e.device_id < id; });
  return it != exports.end() && it->device_id == device_id ? &*it : nullptr;
}

BackendPtr Layout::device(std::string_view name) const {
  if (auto it = disks.find(name); it != disks.end()) return it->second;
  if (auto it = backends.find(name); it != backends.end()) return it->second;
  return nullptr;
}

GeometryMap Layout::backend_geometry() const {
  GeometryMap g;
  for (const auto& [name, b] : backends) g[name] = b->geometry();
  return g;
}

void Layout::set_trace(const TraceHook& hook) {
  for (auto& [name, d] : disks) d->set_trace(hook);
}

std::string resolve_spec(std::string_view spec, const std::filesystem::path& base_dir) {
  auto parsed = backends::parse_backend_spec(spec);
  if (!parsed || parsed->kind != "file" || parsed->target.empty()) return std::string(spec);
  std::filesystem::path target(parsed->target);
  if (target.is_absolute() || base_dir.empty()) return std::string(spec);
  const std::size_t colon = spec.find(':');
  const std::string_view rest = spec.substr(colon + 1 + parsed->target.size());
  return std::string(spec.substr(0, colon + 1)) + (base_dir / target).lexically_normal().string() +
         std::string(rest);
}

namespace {

// Opens (or formats, when blank) every pool, creates its missing thin disks, and adds every pool
// volume to layout.backends. A pool uses its device whole: nothing else may refer to it.
Result<void, Error> open_pools(const LayoutDesc& desc, Layout& layout, const Layout* reuse) {
  std::set<std::string, std::less<>> pool_devices;
  for (const auto& p : desc.pools) {
    const std::string label = "pool '" + p.name + "'";
    if (!valid_name(p.name)) return fail(label + ": bad name (use 1-64 of A-Z a-z 0-9 _ -)");
    auto dev = layout.backends.find(p.device);
    if (dev == layout.backends.end())
      return fail(label + ": device '" + p.device + "' is not a [backend] of the layout");
    if (!pool_devices.insert(p.device).second)
      return fail(label + ": backend '" + p.device + "' already holds another pool");
    for (const auto& d : desc.disks) {
      bool uses = std::find(d.members.begin(), d.members.end(), p.device) != d.members.end();
      for (const auto& e : d.extents) uses |= e.device == p.device;
      if (uses) return fail(label + ": backend '" + p.device + "' is also used by disk '" + d.name + "'");
    }
    for (const auto& sp : desc.splits)
      if (sp.device == p.device) return fail(label + ": backend '" + p.device + "' is also split");
    for (const auto& e : desc.exports)
      if (e.disk == p.device)
        return fail(label + ": backend '" + p.device + "' is also exported (export a pool volume)");
    std::shared_ptr<ThinPool> pool;
    if (reuse) {
      auto it = reuse->pools.find(p.name);
      if (it != reuse->pools.end() && it->second->device() == dev->second) pool = it->second;
    }
    if (!pool) {
      auto blank = ThinPool::is_blank(dev->second);
      if (!blank) return fail(blank.error().code, label + ": " + blank.error().message);
      Result<std::shared_ptr<ThinPool>, Error> opened =
          *blank ? ThinPool::format(dev->second, ThinFormatOptions{p.chunk_bytes ? p.chunk_bytes : 64 * 1024,
                                                                   p.metadata_bytes})
                 : ThinPool::open(dev->second);
      if (!opened) return fail(opened.error().code, label + ": " + opened.error().message);
      if (auto c = (*opened)->check(); !c) return fail(c.error().code, label + ": " + c.error().message);
      pool = *opened;
    }
    for (const auto& [name, size] : p.disks) {
      if (layout.backends.count(name) || !valid_name(name))
        return fail(label + ": thin disk '" + name +
                    "': bad name or the name of a backend or another pool's volume");
    }
    for (const auto& [name, size] : p.disks) {
      auto info = pool->info(name);
      if (info) {
        if (info->kind != ThinKind::kDisk)
          return fail(label + ": '" + name + "' exists in the pool as a " +
                      std::string(to_string(info->kind)));
        if (info->blocks * pool->usage().block_size != size)
          return fail(label + ": thin disk '" + name + "' has " +
                      std::to_string(info->blocks * pool->usage().block_size) +
                      " bytes in the pool, the layout says " + std::to_string(size));
        continue;
      }
      if (auto r = pool->create_disk(name, size); !r)
        return fail(r.error().code, label + ": thin disk '" + name + "': " + r.error().message);
    }
    for (const auto& v : pool->list()) {
      if (layout.backends.count(v.name))
        return fail(label + ": volume '" + v.name + "' has the name of a backend or another pool's volume");
      auto b = pool->volume(v.name);
      if (!b) return make_unexpected(b.error());
      layout.backends[v.name] = *b;
    }
    layout.pools[p.name] = pool;
  }
  return {};
}

// Opens every mirror (legs: back ends or pool volumes; the bitmap: a back end of its own) and adds
// it to layout.backends. A leg or bitmap device is the mirror's alone: nothing else may use it.
Result<void, Error> open_mirrors(const LayoutDesc& desc, Layout& layout, const Layout* reuse) {
  std::map<std::string, std::string, std::less<>> owner;  // device -> "mirror 'x'"
  auto claim = [&](const std::string& dev, const std::string& label) -> Result<void, Error> {
    auto [it, inserted] = owner.emplace(dev, label);
    if (!inserted) return fail(label + ": '" + dev + "' is already used by " + it->second);
    for (const auto& d : desc.disks) {
      bool uses = std::find(d.members.begin(), d.members.end(), dev) != d.members.end();
      for (const auto& e : d.extents) uses |= e.device == dev;
      if (uses) return fail(label + ": '" + dev + "' is also used by disk '" + d.name + "'");
    }
    for (const auto& sp : desc.splits)
      if (sp.device == dev) return fail(label + ": '" + dev + "' is also split");
    for (const auto& e : desc.exports)
      if (e.disk == dev)
        return fail(label + ": '" + dev + "' is also exported (export the mirror instead)");
    for (const auto& p : desc.pools)
      if (p.device == dev) return fail(label + ": '" + dev + "' holds pool '" + p.name + "'");
    return {};
  };
  for (const auto& m : desc.mirrors) {
    const std::string label = "mirror '" + m.name + "'";
    if (!valid_name(m.name)) return fail(label + ": bad name (use 1-64 of A-Z a-z 0-9 _ -)");
    if (layout.backends.count(m.name))
      return fail(label + ": the name of a backend or pool volume");
    if (m.legs.empty()) return fail(label + ": no legs");
    std::vector<Member> legs;
    for (const auto& l : m.legs) {
      auto it = layout.backends.find(l);
      if (it == layout.backends.end())
        return fail(label + ": leg '" + l + "' is not a backend or pool volume of the layout");
      if (auto r = claim(l, label); !r) return r;
      legs.push_back(Member{l, it->second});
    }
    const bool bitmap_is_backend =
        std::any_of(desc.backends.begin(), desc.backends.end(),
                    [&](const BackendDesc& b) { return b.name == m.bitmap; });
    auto bm = layout.backends.find(m.bitmap);
    if (bm == layout.backends.end() || !bitmap_is_backend)
      return fail(label + ": bitmap '" + m.bitmap + "' is not a [backend] of the layout");
    if (auto r = claim(m.bitmap, label); !r) return r;
    std::shared_ptr<MirrorDisk> mirror;
    if (reuse) {
      auto it = reuse->mirrors.find(m.name);
      if (it != reuse->mirrors.end()) {
        auto names = it->second->leg_names();
        auto want = m.legs;
        std::sort(names.begin(), names.end());
        std::sort(want.begin(), want.end());
        auto old = std::find_if(reuse->desc.mirrors.begin(), reuse->desc.mirrors.end(),
                                [&](const MirrorDesc& o) { return o.name == m.name; });
        if (names != want || old == reuse->desc.mirrors.end() || old->bitmap != m.bitmap ||
            old->region_bytes != m.region_bytes || old->size_bytes != m.size_bytes)
          return fail(label + ": changed while open (legs change through `ipsan disk mirror`)");
        mirror = it->second;
      }
    }
    if (!mirror) {
      MirrorOptions o;
      if (m.region_bytes) o.region_bytes = m.region_bytes;
      const std::uint32_t bs = legs[0].backend->geometry().block_size;
      if (m.size_bytes) {
        if (m.size_bytes % bs != 0)
          return fail(label + ": size " + std::to_string(m.size_bytes) +
                      " is not a multiple of the block size " + std::to_string(bs));
        o.blocks = m.size_bytes / bs;
      }
      auto opened = MirrorDisk::open(m.name, std::move(legs), bm->second, o);
      if (!opened) return make_unexpected(opened.error());
      mirror = *opened;
    }
    layout.mirrors[m.name] = mirror;
  }
  for (const auto& [name, mirror] : layout.mirrors) layout.backends[name] = mirror;
  return {};
}

}  // namespace

Result<Layout, Error> build_layout(LayoutDesc desc, const std::filesystem::path& base_dir,
                                   const Layout* reuse) {
  Layout layout;
  layout.base_dir = base_dir;
  // Names first, so a duplicate backend name is reported before anything is opened twice.
  std::set<std::string, std::less<>> seen;
  for (const auto& b : desc.backends) {
    if (!seen.insert(b.name).second) {
      return fail("duplicate device name '" + b.name + "' (two backends)");
    }
  }
  for (const auto& b : desc.backends) {
    const std::string resolved = resolve_spec(b.spec, base_dir);
    BackendPtr p;
    if (reuse) {
      auto it = reuse->backends.find(b.name);
      if (it != reuse->backends.end()) {
        for (const auto& old : reuse->desc.backends) {
          if (old.name == b.name && resolve_spec(old.spec, reuse->base_dir) == resolved) {
            p = it->second;
          }
        }
      }
    }
    if (!p) {
      auto r = backends::open_backend(resolved);
      if (!r) return fail(r.error().code, "backend '" + b.name + "': " + r.error().message);
      p = std::move(*r);
    }
    layout.backends[b.name] = std::move(p);
  }
  if (auto r = open_pools(desc, layout, reuse); !r) return make_unexpected(r.error());
  if (auto r = open_mirrors(desc, layout, reuse); !r) return make_unexpected(r.error());
  auto plan = plan_layout(desc, layout.backend_geometry());
  if (!plan) return make_unexpected(plan.error());

  std::map<std::string, BackendPtr, std::less<>> devices(layout.backends.begin(),
                                                         layout.backends.end());
  for (const auto& rd : plan->disks) {
    std::vector<Member> members;
    for (const auto& m : rd.members) members.push_back(Member{m, devices.at(m)});
    auto vd = rd.striped
                  ? VirtualDisk::striped(rd.name, std::move(members), rd.segments, rd.chunk_blocks)
                  : VirtualDisk::linear(rd.name, std::move(members), rd.segments);
    if (!vd) return make_unexpected(vd.error());
    devices[rd.name] = *vd;
    layout.disks[rd.name] = std::move(*vd);
  }
  for (const auto& e : desc.exports) {
    Export x;
    x.device_id = e.device_id;
    x.name = e.disk;
    x.backend = devices.at(e.disk);
    if (e.read_only) x.backend = make_read_only(std::move(x.backend));
    x.read_only = e.read_only || x.backend->capabilities().read_only;
    x.allowed_clients = e.clients;
    layout.exports.push_back(std::move(x));
  }
  std::sort(layout.exports.begin(), layout.exports.end(),
            [](const Export& a, const Export& b) { return a.device_id < b.device_id; });
  layout.desc = std::move(desc);
  return layout;
}

Result<Layout, Error> parse_layout(std::string_view toml_text,
                                   const std::filesystem::path& base_dir) {
  auto desc = parse_layout_desc(toml_text);
  if (!desc) return make_unexpected(desc.error());
  return build_layout(std::move(*desc), base_dir);
}

Result<Layout, Error> load_layout(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(Errc::kInvalidArgument,
                path.string() +
                    ": cannot read: " + std::error_code(errno, std::generic_category()).message());
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return fail(path.string() + ": read error");
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  auto layout = parse_layout(text.str(), dir);
  if (!layout) return fail(layout.error().code, path.string() + ": " + layout.error().message);
  return layout;
}

}  // namespace ipsan::virt
