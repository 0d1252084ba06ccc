// Layout description <-> TOML (toml++). Format: docs/CONFIG.md.
#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <sstream>

#include <toml++/toml.h>

#include "ipsan/backends/spec.h"
#include "ipsan/virt/layout.h"

namespace ipsan::virt {
namespace {

std::string at_line(const toml::node& n) {
  const auto& src = n.source();
  if (src.begin.line == 0) return "";
  return "line " + std::to_string(src.begin.line) + ": ";
}

Result<void, Error> check_keys(const toml::table& t, const std::string& label,
                               std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, node] : t) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return fail(at_line(node) + label + ": unknown key '" + std::string(key.str()) +
                  "' (allowed: " + list + ")");
    }
  }
  return {};
}

Result<std::string, Error> get_string(const toml::table& t, std::string_view key,
                                      const std::string& label, bool required = true) {
  const toml::node* n = t.get(key);
  if (!n) {
    if (!required) return std::string();
    return fail(at_line(t) + label + ": missing '" + std::string(key) + "'");
  }
  if (!n->is_string()) {
    return fail(at_line(*n) + label + ": '" + std::string(key) + "' must be a string");
  }
  return std::string(n->as_string()->get());
}

Result<std::vector<std::string>, Error> get_names(const toml::table& t, std::string_view key,
                                                  const std::string& label) {
  std::vector<std::string> out;
  const toml::node* n = t.get(key);
  if (!n) return out;
  const toml::array* a = n->as_array();
  if (!a)
    return fail(at_line(*n) + label + ": '" + std::string(key) + "' must be an array of strings");
  for (const auto& item : *a) {
    if (!item.is_string()) {
      return fail(at_line(item) + label + ": '" + std::string(key) +
                  "' must be an array of strings");
    }
    out.emplace_back(item.as_string()->get());
  }
  return out;
}

// A byte quantity: a non-negative integer or a size string ("40G").
Result<std::uint64_t, Error> node_bytes(const toml::node& n, const std::string& label,
                                        std::string_view key) {
  if (const auto* i = n.as_integer()) {
    if (i->get() < 0) return fail(at_line(n) + label + ": '" + std::string(key) + "' is negative");
    return static_cast<std::uint64_t>(i->get());
  }
  if (const auto* s = n.as_string()) {
    auto r = backends::parse_size(s->get());
    if (!r) return fail(at_line(n) + label + ": '" + std::string(key) + "': " + r.error().message);
    return *r;
  }
  return fail(at_line(n) + label + ": '" + std::string(key) +
              "' must be a size (integer bytes or a string like \"40G\")");
}

Result<std::uint64_t, Error> node_count(const toml::node& n, const std::string& label,
                                        std::string_view key) {
  const auto* i = n.as_integer();
  if (!i || i->get() < 0) {
    return fail(at_line(n) + label + ": '" + std::string(key) +
                "' must be a non-negative integer (blocks)");
  }
  return static_cast<std::uint64_t>(i->get());
}

// Reads `bytes_key` or `blocks_key` (at most one) into an Amount; absent: zero.
Result<Amount, Error> get_amount(const toml::table& t, std::string_view bytes_key,
                                 std::string_view blocks_key, const std::string& label) {
  const toml::node* b = t.get(bytes_key);
  const toml::node* k = t.get(blocks_key);
  if (b && k) {
    return fail(at_line(t) + label + ": give '" + std::string(bytes_key) + "' or '" +
                std::string(blocks_key) + "', not both");
  }
  if (b) {
    auto v = node_bytes(*b, label, bytes_key);
    if (!v) return make_unexpected(v.error());
    return Amount{*v, false};
  }
  if (k) {
    auto v = node_count(*k, label, blocks_key);
    if (!v) return make_unexpected(v.error());
    return Amount{*v, true};
  }
  return Amount{};
}

Result<void, Error> parse_backends(const toml::table& root, LayoutDesc& d) {
  const toml::node* n = root.get("backend");
  if (!n) return {};
  const toml::table* t = n->as_table();
  if (!t) return fail(at_line(*n) + "'backend' must be a table: [backend.NAME] spec = \"...\"");
  for (const auto& [key, node] : *t) {
    const std::string name(key.str());
    const std::string label = "backend '" + name + "'";
    const toml::table* bt = node.as_table();
    if (!bt) return fail(at_line(node) + label + ": must be a table with a 'spec' string");
    if (auto r = check_keys(*bt, label, {"spec"}); !r) return r;
    auto spec = get_string(*bt, "spec", label);
    if (!spec) return make_unexpected(spec.error());
    d.backends.push_back(BackendDesc{name, *spec});
  }
  return {};
}

Result<void, Error> parse_pools(const toml::table& root, LayoutDesc& d) {
  const toml::node* n = root.get("pool");
  if (!n) return {};
  const toml::table* t = n->as_table();
  if (!t) return fail(at_line(*n) + "'pool' must be a table: [pool.NAME] device = \"...\"");
  for (const auto& [key, node] : *t) {
    PoolDesc p;
    p.name = std::string(key.str());
    const std::string label = "pool '" + p.name + "'";
    const toml::table* pt = node.as_table();
    if (!pt) return fail(at_line(node) + label + ": must be a table");
    if (auto r = check_keys(*pt, label, {"device", "chunk", "metadata", "disks"}); !r) return r;
    auto dev = get_string(*pt, "device", label);
    if (!dev) return make_unexpected(dev.error());
    p.device = *dev;
    if (const toml::node* c = pt->get("chunk")) {
      auto v = node_bytes(*c, label, "chunk");
      if (!v) return make_unexpected(v.error());
      p.chunk_bytes = *v;
    }
    if (const toml::node* m = pt->get("metadata")) {
      auto v = node_bytes(*m, label, "metadata");
      if (!v) return make_unexpected(v.error());
      p.metadata_bytes = *v;
    }
    if (const toml::node* dn = pt->get("disks")) {
      const toml::table* dt = dn->as_table();
      if (!dt) return fail(at_line(*dn) + label + ": 'disks' must be a table {NAME = \"SIZE\", ...}");
      for (const auto& [dk, dv] : *dt) {
        auto v = node_bytes(dv, label + " disk '" + std::string(dk.str()) + "'", "size");
        if (!v) return make_unexpected(v.error());
        p.disks.emplace_back(std::string(dk.str()), *v);
      }
    }
    d.pools.push_back(std::move(p));
  }
  return {};
}

Result<void, Error> parse_mirrors(const toml::table& root, LayoutDesc& d) {
  const toml::node* n = root.get("mirror");
  if (!n) return {};
  const toml::table* t = n->as_table();
  if (!t) return fail(at_line(*n) + "'mirror' must be a table: [mirror.NAME] legs = [...]");
  for (const auto& [key, node] : *t) {
    MirrorDesc m;
    m.name = std::string(key.str());
    const std::string label = "mirror '" + m.name + "'";
    const toml::table* mt = node.as_table();
    if (!mt) return fail(at_line(node) + label + ": must be a table");
    if (auto r = check_keys(*mt, label, {"legs", "bitmap", "region", "size"}); !r) return r;
    auto legs = get_names(*mt, "legs", label);
    if (!legs) return make_unexpected(legs.error());
    if (legs->empty()) return fail(at_line(*mt) + label + ": 'legs' must name at least one device");
    m.legs = std::move(*legs);
    auto bm = get_string(*mt, "bitmap", label);
    if (!bm) return make_unexpected(bm.error());
    m.bitmap = *bm;
    if (const toml::node* c = mt->get("region")) {
      auto v = node_bytes(*c, label, "region");
      if (!v) return make_unexpected(v.error());
      m.region_bytes = *v;
    }
    if (const toml::node* c = mt->get("size")) {
      auto v = node_bytes(*c, label, "size");
      if (!v) return make_unexpected(v.error());
      m.size_bytes = *v;
    }
    d.mirrors.push_back(std::move(m));
  }
  return {};
}

Result<void, Error> parse_disks(const toml::table& root, LayoutDesc& d) {
  const toml::node* n = root.get("disk");
  if (!n) return {};
  const toml::table* t = n->as_table();
  if (!t) return fail(at_line(*n) + "'disk' must be a table: [disk.NAME] type = \"...\"");
  for (const auto& [key, node] : *t) {
    DiskDesc disk;
    disk.name = std::string(key.str());
    const std::string label = "disk '" + disk.name + "'";
    const toml::table* dt = node.as_table();
    if (!dt) return fail(at_line(node) + label + ": must be a table");
    auto type = get_string(*dt, "type", label);
    if (!type) return make_unexpected(type.error());
    if (*type == "concat") {
      disk.type = DiskType::kConcat;
      if (auto r = check_keys(*dt, label, {"type", "members"}); !r) return r;
    } else if (*type == "stripe") {
      disk.type = DiskType::kStripe;
      if (auto r = check_keys(*dt, label, {"type", "members", "chunk", "chunk_blocks"}); !r) {
        return r;
      }
      auto chunk = get_amount(*dt, "chunk", "chunk_blocks", label);
      if (!chunk) return make_unexpected(chunk.error());
      disk.chunk = *chunk;
    } else if (*type == "extents") {
      disk.type = DiskType::kExtents;
      if (auto r = check_keys(*dt, label, {"type", "extents"}); !r) return r;
    } else {
      return fail(at_line(*dt) + label + ": unknown type '" + *type +
                  "' (concat, stripe or extents)");
    }
    auto members = get_names(*dt, "members", label);
    if (!members) return make_unexpected(members.error());
    disk.members = std::move(*members);
    if (const toml::node* en = dt->get("extents")) {
      const toml::array* arr = en->as_array();
      if (!arr) return fail(at_line(*en) + label + ": 'extents' must be an array of tables");
      std::size_t i = 0;
      for (const auto& item : *arr) {
        ++i;
        const std::string elabel = label + " extent " + std::to_string(i);
        const toml::table* et = item.as_table();
        if (!et) return fail(at_line(item) + elabel + ": must be a table {device = ..., ...}");
        if (auto r = check_keys(*et, elabel, {"device", "start", "start_lba", "size", "blocks"});
            !r) {
          return r;
        }
        ExtentDesc e;
        auto dev = get_string(*et, "device", elabel);
        if (!dev) return make_unexpected(dev.error());
        e.device = *dev;
        auto start = get_amount(*et, "start", "start_lba", elabel);
        if (!start) return make_unexpected(start.error());
        e.start = *start;
        auto size = get_amount(*et, "size", "blocks", elabel);
        if (!size) return make_unexpected(size.error());
        e.size = *size;
        disk.extents.push_back(std::move(e));
      }
    }
    d.disks.push_back(std::move(disk));
  }
  return {};
}

Result<void, Error> parse_splits(const toml::table& root, LayoutDesc& d) {
  const toml::node* n = root.get("split");
  if (!n) return {};
  const toml::array* arr = n->as_array();
  if (!arr) return fail(at_line(*n) + "'split' must be an array of tables: [[split]]");
  std::size_t i = 0;
  for (const auto& item : *arr) {
    ++i;
    const std::string label = "split " + std::to_string(i);
    const toml::table* t = item.as_table();
    if (!t) return fail(at_line(item) + label + ": must be a table");
    if (auto r = check_keys(*t, label, {"device", "into", "sizes", "blocks"}); !r) return r;
    SplitDesc s;
    auto dev = get_string(*t, "device", label);
    if (!dev) return make_unexpected(dev.error());
    s.device = *dev;
    auto into = get_names(*t, "into", label);
    if (!into) return make_unexpected(into.error());
    s.into = std::move(*into);
    const toml::node* sizes = t->get("sizes");
    const toml::node* blocks = t->get("blocks");
    if (sizes && blocks) return fail(at_line(*t) + label + ": give 'sizes' or 'blocks', not both");
    if (const toml::node* list = sizes ? sizes : blocks) {
      const toml::array* a = list->as_array();
      if (!a) return fail(at_line(*list) + label + ": sizes must be an array");
      for (const auto& v : *a) {
        auto amount = sizes ? node_bytes(v, label, "sizes") : node_count(v, label, "blocks");
        if (!amount) return make_unexpected(amount.error());
        s.sizes.push_back(Amount{*amount, blocks != nullptr});
      }
    }
    d.splits.push_back(std::move(s));
  }
  return {};
}

Result<void, Error> parse_exports(const toml::table& root, LayoutDesc& d) {
  const toml::node* n = root.get("export");
  if (!n) return {};
  const toml::array* arr = n->as_array();
  if (!arr) return fail(at_line(*n) + "'export' must be an array of tables: [[export]]");
  std::size_t i = 0;
  for (const auto& item : *arr) {
    ++i;
    std::string label = "export " + std::to_string(i);
    const toml::table* t = item.as_table();
    if (!t) return fail(at_line(item) + label + ": must be a table");
    if (auto r = check_keys(*t, label, {"device_id", "disk", "read_only", "clients"}); !r) {
      return r;
    }
    ExportDesc e;
    const toml::node* id = t->get("device_id");
    if (!id) return fail(at_line(*t) + label + ": missing 'device_id'");
    const auto* iv = id->as_integer();
    if (!iv || iv->get() < 0 || iv->get() > 0xFFFFFFFFll) {
      return fail(at_line(*id) + label + ": 'device_id' must be an integer 0..4294967295");
    }
    e.device_id = static_cast<std::uint32_t>(iv->get());
    label = "export " + std::to_string(e.device_id);
    auto disk = get_string(*t, "disk", label);
    if (!disk) return make_unexpected(disk.error());
    e.disk = *disk;
    if (const toml::node* ro = t->get("read_only")) {
      if (!ro->is_boolean()) return fail(at_line(*ro) + label + ": 'read_only' must be true/false");
      e.read_only = ro->as_boolean()->get();
    }
    if (t->get("clients")) {
      auto clients = get_names(*t, "clients", label);
      if (!clients) return make_unexpected(clients.error());
      e.clients = std::move(*clients);
    }
    d.exports.push_back(std::move(e));
  }
  return {};
}

// TOML basic string with escapes.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string quote_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + quote(v[i]);
  return out + "]";
}

std::string bytes_value(std::uint64_t v) { return quote(backends::format_size(v)); }

// ` key = value` for an Amount, choosing the byte or block key.
std::string amount_kv(const Amount& a, std::string_view bytes_key, std::string_view blocks_key) {
  if (a.in_blocks) return std::string(blocks_key) + " = " + std::to_string(a.value);
  return std::string(bytes_key) + " = " + bytes_value(a.value);
}

}  // namespace

Result<LayoutDesc, Error> parse_layout_desc(std::string_view toml_text) {
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    return fail("line " + std::to_string(e.source().begin.line) + ", column " +
                std::to_string(e.source().begin.column) + ": " + std::string(e.description()));
  }
  if (auto r = check_keys(root, "layout", {"backend", "pool", "mirror", "disk", "split", "export"});
      !r) {
    return make_unexpected(r.error());
  }
  LayoutDesc d;
  if (auto r = parse_backends(root, d); !r) return make_unexpected(r.error());
  if (auto r = parse_pools(root, d); !r) return make_unexpected(r.error());
  if (auto r = parse_mirrors(root, d); !r) return make_unexpected(r.error());
  if (auto r = parse_disks(root, d); !r) return make_unexpected(r.error());
  if (auto r = parse_splits(root, d); !r) return make_unexpected(r.error());
  if (auto r = parse_exports(root, d); !r) return make_unexpected(r.error());
  return d;
}

std::string to_toml(const LayoutDesc& desc) {
  std::ostringstream o;
  o << "# ipsan storage layout (format: docs/CONFIG.md)\n";
  auto backends_sorted = desc.backends;
  std::sort(backends_sorted.begin(), backends_sorted.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& b : backends_sorted) {
    o << "\n[backend." << b.name << "]\nspec = " << quote(b.spec) << "\n";
  }
  auto pools_sorted = desc.pools;
  std::sort(pools_sorted.begin(), pools_sorted.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& p : pools_sorted) {
    o << "\n[pool." << p.name << "]\ndevice = " << quote(p.device) << "\n";
    if (p.chunk_bytes) o << "chunk = " << bytes_value(p.chunk_bytes) << "\n";
    if (p.metadata_bytes) o << "metadata = " << bytes_value(p.metadata_bytes) << "\n";
    if (!p.disks.empty()) {
      auto disks = p.disks;
      std::sort(disks.begin(), disks.end());
      o << "disks = { ";
      for (std::size_t i = 0; i < disks.size(); ++i)
        o << (i ? ", " : "") << disks[i].first << " = " << bytes_value(disks[i].second);
      o << " }\n";
    }
  }
  auto mirrors_sorted = desc.mirrors;
  std::sort(mirrors_sorted.begin(), mirrors_sorted.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& m : mirrors_sorted) {
    o << "\n[mirror." << m.name << "]\nlegs = " << quote_list(m.legs)
      << "\nbitmap = " << quote(m.bitmap) << "\n";
    if (m.region_bytes) o << "region = " << bytes_value(m.region_bytes) << "\n";
    if (m.size_bytes) o << "size = " << bytes_value(m.size_bytes) << "\n";
  }
  auto disks_sorted = desc.disks;
  std::sort(disks_sorted.begin(), disks_sorted.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& d : disks_sorted) {
    o << "\n[disk." << d.name << "]\ntype = " << quote(to_string(d.type)) << "\n";
    if (d.type != DiskType::kExtents) o << "members = " << quote_list(d.members) << "\n";
    if (d.type == DiskType::kStripe) o << amount_kv(d.chunk, "chunk", "chunk_blocks") << "\n";
    if (d.type == DiskType::kExtents) {
      o << "extents = [\n";
      for (const auto& e : d.extents) {
        o << "  { device = " << quote(e.device);
        if (e.start.value != 0) o << ", " << amount_kv(e.start, "start", "start_lba");
        if (e.size.value != 0) o << ", " << amount_kv(e.size, "size", "blocks");
        o << " },\n";
      }
      o << "]\n";
    }
  }
  for (const auto& s : desc.splits) {
    o << "\n[[split]]\ndevice = " << quote(s.device) << "\ninto = " << quote_list(s.into) << "\n";
    if (!s.sizes.empty()) {
      const bool blocks = s.sizes[0].in_blocks;
      o << (blocks ? "blocks = [" : "sizes = [");
      for (std::size_t i = 0; i < s.sizes.size(); ++i) {
        o << (i ? ", " : "")
          << (blocks ? std::to_string(s.sizes[i].value) : bytes_value(s.sizes[i].value));
      }
      o << "]\n";
    }
  }
  for (const auto& e : desc.exports) {
    o << "\n[[export]]\ndevice_id = " << e.device_id << "\ndisk = " << quote(e.disk)
      << "\nread_only = " << (e.read_only ? "true" : "false")
      << "\nclients = " << quote_list(e.clients) << "\n";
  }
  return o.str();
}

}  // namespace ipsan::virt
