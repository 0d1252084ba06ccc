// ipsan/backends/spec.h: back-end specifications for command lines and config files.
//
// Grammar (one string, no spaces):
//   spec    := kind ":" target { "," option }
//   option  := name [ "=" value ]
//   size    := digits [ K | M | G | T | P ] [ iB | B ]   (binary: K = 1024; any case)
// Built-in kinds:
//   ram:<size>[,bs=512|4096][,ro]             e.g. ram:64M  ram:1G,bs=4096
//   file:<path>[,size=<size>][,bs=512|4096][,ro][,direct][,threads=N]
//        e.g. file:/srv/disk.img,size=1G (created sparse if missing)  file:/dev/sdb  file:/x,ro
// Paths cannot contain ','. Unknown options, repeated options and bad values are errors.
//   rbd:<pool>/<image>[,conf=..][,id=..][,keyring=..][,snap=..][,ro][,takeover]  Ceph RBD (rbd.h)
// Other kinds (sg:, ata:, rbd:) register a factory with register_backend_kind().
//
// Threading: parse/open functions are thread-safe; the registry is guarded by a mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"
#include "ipsan/base/units.h"

namespace ipsan::backends {

struct BackendSpec {
  std::string text;                                          // the whole spec, for messages
  std::string kind;                                          // "ram", "file", ...
  std::string target;                                        // size for ram, path for file
  std::vector<std::pair<std::string, std::string>> options;  // in order; value "" if none

  bool has(std::string_view name) const;
  std::optional<std::string> value(std::string_view name) const;
  // Error naming the first option not in `allowed`.
  Result<void, Error> check_options(std::initializer_list<std::string_view> allowed) const;
  // Helpers for factories: parse an option or return its default; errors name the spec.
  Result<std::uint64_t, Error> size_option(std::string_view name, std::uint64_t def) const;
  Result<std::uint32_t, Error> block_size_option(std::uint32_t def = 512) const;  // "bs"
  Result<bool, Error> flag_option(std::string_view name) const;  // present without value
};

// Sizes in specs follow THE size rule of ipsan/base/units.h ("64M", "1G", "4096", "2TiB"; whole
// numbers, binary multiples, exact).
using ::ipsan::parse_size;
// "64MiB", "1GiB", "1536KiB", "100B": the largest exact binary unit.
std::string format_size(std::uint64_t bytes);

Result<BackendSpec, Error> parse_backend_spec(std::string_view spec);

using BackendFactory = std::function<Result<BackendPtr, Error>(const BackendSpec&)>;

// Registers (or replaces) the factory for `kind` ([a-z0-9_-]+). Thread-safe.
void register_backend_kind(std::string kind, BackendFactory factory);
// Registered kinds, sorted ("file", "ram" are always present).
std::vector<std::string> backend_kinds();

// Parses `spec` and opens it with the factory of its kind.
Result<BackendPtr, Error> open_backend(std::string_view spec);

}  // namespace ipsan::backends
