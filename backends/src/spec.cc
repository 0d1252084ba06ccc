// Back-end spec parsing and the kind registry; see spec.h.
#include "ipsan/backends/spec.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>
#include <mutex>

#include "ipsan/backends/file.h"
#include "ipsan/backends/ram.h"

namespace ipsan::backends {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool valid_kind(std::string_view k) {
  if (k.empty()) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

Result<BackendPtr, Error> open_ram(const BackendSpec& spec) {
  if (auto ok = spec.check_options({"bs", "ro"}); !ok) return make_unexpected(ok.error());
  if (spec.target.empty()) return fail("'" + spec.text + "': ram needs a size, e.g. ram:64M");
  auto size = parse_size(spec.target);
  if (!size) return fail("'" + spec.text + "': " + size.error().message);
  auto bs = spec.block_size_option();
  if (!bs) return make_unexpected(bs.error());
  auto ro = spec.flag_option("ro");
  if (!ro) return make_unexpected(ro.error());
  auto r = RamBackend::create(*size, RamOptions{*bs, *ro});
  if (!r) return fail(r.error().code, "'" + spec.text + "': " + r.error().message);
  return BackendPtr(*r);
}

Result<BackendPtr, Error> open_file(const BackendSpec& spec) {
  if (auto ok = spec.check_options({"bs", "size", "ro", "direct", "threads"}); !ok) {
    return make_unexpected(ok.error());
  }
  if (spec.target.empty()) return fail("'" + spec.text + "': file needs a path, e.g. file:/x.img");
  FileOptions o;
  auto bs = spec.block_size_option();
  if (!bs) return make_unexpected(bs.error());
  o.block_size = *bs;
  auto size = spec.size_option("size", 0);
  if (!size) return make_unexpected(size.error());
  o.size_bytes = *size;
  auto ro = spec.flag_option("ro");
  if (!ro) return make_unexpected(ro.error());
  o.read_only = *ro;
  auto direct = spec.flag_option("direct");
  if (!direct) return make_unexpected(direct.error());
  o.direct = *direct;
  if (auto t = spec.value("threads")) {
    auto n = parse_size(*t);
    if (!n || *n < 1 || *n > 64) {
      return fail("'" + spec.text + "': threads=" + *t + " (must be 1..64)");
    }
    o.threads = static_cast<unsigned>(*n);
  }
  if (o.size_bytes % o.block_size != 0) {
    return fail("'" + spec.text + "': size " + std::to_string(o.size_bytes) +
                " is not a multiple of the block size " + std::to_string(o.block_size));
  }
  auto r = FileBackend::open(spec.target, o);
  if (!r) return make_unexpected(r.error());
  return BackendPtr(*r);
}

struct Registry {
  std::mutex mu;
  std::map<std::string, BackendFactory> kinds;
  Registry() {
    kinds["ram"] = open_ram;
    kinds["file"] = open_file;
    // Replaced by register_rbd_backend() (rbd.h) in programs built with librbd.
    kinds["rbd"] = [](const BackendSpec& spec) -> Result<BackendPtr, Error> {
      return fail(Errc::kNotSupported,
                  "'" + spec.text + "': this program has no RBD back end (built without librbd)");
    };
    // A block device (or large file) for everyday real disks: the file back end with O_DIRECT
    // unless `,buffered` is given.
    kinds["blockdev"] = [](const BackendSpec& spec) -> Result<BackendPtr, Error> {
      BackendSpec s = spec;
      bool buffered = false;
      for (auto it = s.options.begin(); it != s.options.end();) {
        if (it->first == "buffered") {
          buffered = true;
          it = s.options.erase(it);
        } else {
          ++it;
        }
      }
      if (!buffered && !s.has("direct")) s.options.emplace_back("direct", "");
      return open_file(s);
    };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::string format_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  unsigned u = 0;
  while (u + 1 < std::size(kUnits) && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return std::to_string(bytes) + kUnits[u];
}

bool BackendSpec::has(std::string_view name) const {
  return std::any_of(options.begin(), options.end(),
                     [&](const auto& o) { return o.first == name; });
}

std::optional<std::string> BackendSpec::value(std::string_view name) const {
  for (const auto& o : options) {
    if (o.first == name) return o.second;
  }
  return std::nullopt;
}

Result<void, Error> BackendSpec::check_options(
    std::initializer_list<std::string_view> allowed) const {
  for (const auto& o : options) {
    if (std::find(allowed.begin(), allowed.end(), o.first) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return fail("'" + text + "': unknown option '" + o.first + "' for " + kind +
                  " (allowed: " + list + ")");
    }
  }
  return {};
}

Result<std::uint64_t, Error> BackendSpec::size_option(std::string_view name,
                                                      std::uint64_t def) const {
  auto v = value(name);
  if (!v) return def;
  auto r = parse_size(*v);
  if (!r) return fail("'" + text + "': " + std::string(name) + ": " + r.error().message);
  return *r;
}

Result<std::uint32_t, Error> BackendSpec::block_size_option(std::uint32_t def) const {
  auto v = value("bs");
  if (!v) return def;
  auto r = parse_size(*v);
  if (!r || (*r != 512 && *r != 4096)) {
    return fail("'" + text + "': bs=" + *v + " (block size must be 512 or 4096)");
  }
  return static_cast<std::uint32_t>(*r);
}

Result<bool, Error> BackendSpec::flag_option(std::string_view name) const {
  auto v = value(name);
  if (!v) return false;
  if (!v->empty()) {
    return fail("'" + text + "': option '" + std::string(name) + "' takes no value");
  }
  return true;
}

Result<BackendSpec, Error> parse_backend_spec(std::string_view text) {
  BackendSpec spec;
  spec.text = std::string(text);
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return fail("'" + spec.text + "': expected kind:target, e.g. ram:64M or file:/path/disk.img");
  }
  spec.kind = lower(text.substr(0, colon));
  if (!valid_kind(spec.kind)) return fail("'" + spec.text + "': bad back-end kind");
  std::string_view rest = text.substr(colon + 1);
  const auto comma = rest.find(',');
  spec.target = std::string(rest.substr(0, comma));
  rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  while (comma != std::string_view::npos) {
    const auto next = rest.find(',');
    std::string_view item = rest.substr(0, next);
    if (item.empty()) return fail("'" + spec.text + "': empty option");
    const auto eq = item.find('=');
    std::string name = lower(item.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : std::string(item.substr(eq + 1));
    if (name.empty()) return fail("'" + spec.text + "': option without a name");
    if (eq != std::string_view::npos && value.empty()) {
      return fail("'" + spec.text + "': option '" + name + "=' without a value");
    }
    if (spec.has(name)) return fail("'" + spec.text + "': option '" + name + "' given twice");
    spec.options.emplace_back(std::move(name), std::move(value));
    if (next == std::string_view::npos) break;
    rest = rest.substr(next + 1);
  }
  return spec;
}

void register_backend_kind(std::string kind, BackendFactory factory) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.kinds[lower(kind)] = std::move(factory);
}

std::vector<std::string> backend_kinds() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [k, f] : r.kinds) out.push_back(k);
  return out;
}

Result<BackendPtr, Error> open_backend(std::string_view text) {
  auto spec = parse_backend_spec(text);
  if (!spec) return make_unexpected(spec.error());
  BackendFactory factory;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    auto it = r.kinds.find(spec->kind);
    if (it == r.kinds.end()) {
      std::string list;
      for (const auto& [k, f] : r.kinds) list += (list.empty() ? "" : ", ") + k;
      return fail("'" + spec->text + "': unknown back-end kind '" + spec->kind +
                  "' (known: " + list + ")");
    }
    factory = it->second;
  }
  return factory(*spec);  // outside the lock: factories may be slow (open, probe)
}

}  // namespace ipsan::backends
