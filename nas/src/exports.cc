// exports.cc: the exports file (TOML, `[[export]]` tables; see docs/NAS.md).
#include <toml++/toml.h>

#include <sstream>

#include "ipsan/nas/nas.h"

namespace ipsan::nas {

Result<std::vector<Export>, Error> parse_exports(std::string_view text) {
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << "exports: " << e.description() << " (line " << e.source().begin.line << ")";
    return fail(os.str());
  }
  for (const auto& [k, v] : root) {
    if (k.str() != "export") return fail("exports: unknown key '" + std::string(k.str()) + "'");
    (void)v;
  }
  std::vector<Export> out;
  const toml::array* arr = root["export"].as_array();
  if (arr == nullptr) return fail("exports: no [[export]] entries");
  std::size_t idx = 0;
  for (const auto& node : *arr) {
    const std::string where = "exports: entry " + std::to_string(idx++);
    const toml::table* t = node.as_table();
    if (t == nullptr) return fail(where + " is not a table");
    Export e;
    for (const auto& [k, v] : *t) {
      const std::string key(k.str());
      if (key == "path") {
        auto s = v.value<std::string>();
        if (!s || s->empty() || (*s)[0] != '/' || s->size() > 1024) {
          return fail(where + ": path must be an absolute path string");
        }
        e.path = *s;
      } else if (key == "clients") {
        const toml::array* c = v.as_array();
        if (c == nullptr) return fail(where + ": clients must be an array of strings");
        e.clients.clear();
        for (const auto& cn : *c) {
          auto s = cn.value<std::string>();
          if (!s) return fail(where + ": clients must be an array of strings");
          e.clients.push_back(*s);
        }
      } else if (key == "read_only" || key == "root_squash") {
        auto b = v.value<bool>();
        if (!b) return fail(where + ": " + key + " must be true or false");
        (key == "read_only" ? e.read_only : e.root_squash) = *b;
      } else if (key == "anon_uid" || key == "anon_gid") {
        auto n = v.value<std::int64_t>();
        if (!n || *n < 0 || *n > 0xFFFFFFFFll) return fail(where + ": " + key + " out of range");
        (key == "anon_uid" ? e.anon_uid : e.anon_gid) = static_cast<std::uint32_t>(*n);
      } else {
        return fail(where + ": unknown key '" + key + "'");
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace ipsan::nas
