#include "ipsan/server/keyring.h"

#include <fstream>
#include <sstream>

#include "ipsan/proto/login.h"

namespace ipsan::server {

Result<void, Error> KeyRing::add(std::string name, const Key256& key) {
  if (!proto::valid_client_name(name))
    return fail("invalid client name '" + name + "' (1-64 printable ASCII characters)");
  if (keys_.count(name)) return fail("client '" + name + "' is listed twice");
  keys_.emplace(std::move(name), key);
  return {};
}

Result<void, Error> KeyRing::add_spec(std::string_view spec) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    return fail("client key must look like NAME=KEY, got '" + std::string(spec) + "'");
  Key256 key;
  if (!parse_key(spec.substr(eq + 1), key)) return fail("empty key for client");
  return add(std::string(spec.substr(0, eq)), key);
}

Result<void, Error> KeyRing::load_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return fail("cannot open key file " + path.string());
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string name, key, extra;
    if (!(ls >> name)) continue;
    if (!(ls >> key) || (ls >> extra))
      return fail(path.string() + ":" + std::to_string(lineno) + ": expected 'NAME KEY'");
    Key256 k;
    if (!parse_key(key, k)) return fail(path.string() + ":" + std::to_string(lineno) + ": bad key");
    auto r = add(name, k);
    if (!r) return fail(path.string() + ":" + std::to_string(lineno) + ": " + r.error().message);
  }
  return {};
}

std::optional<Key256> KeyRing::find(std::string_view name) const {
  auto it = keys_.find(name);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

}  // namespace ipsan::server
