#include "ipsan/server/keyring.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ipsan/proto/login.h"

namespace ipsan::server {

Result<void, Error> KeyRing::add(std::string name, const Key256& key, KeyForm form) {
  if (!proto::valid_client_name(name))
    return fail("invalid client name '" + name + "' (1-64 printable ASCII characters)");
  if (keys_.count(name)) return fail("client '" + name + "' is listed twice");
  // "grant:NAME" in an export's client list means "NAME with a manager grant" (docs/MANAGER.md):
  // no key-ring client may carry such a name.
  if (name.rfind("grant:", 0) == 0)
    return fail("client name '" + name + "' is reserved (grant: names manager grants)");
  keys_.emplace(std::move(name), Entry{key, form});
  return {};
}

Result<void, Error> KeyRing::add_spec(std::string_view spec) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    return fail("client key must look like NAME=file:PATH or NAME=env:VAR");
  const std::string name(spec.substr(0, eq));
  const std::string_view src = spec.substr(eq + 1);
  Result<ParsedKey, Error> k = fail("unreachable");
  if (src.substr(0, 5) == "file:" && src.size() > 5) {
    k = read_client_key_file(std::string(src.substr(5)), name);
  } else if (src.substr(0, 4) == "env:" && src.size() > 4) {
    const std::string var(src.substr(4));
    const char* v = std::getenv(var.c_str());
    if (v == nullptr || *v == '\0') return fail("environment variable " + var + " is not set");
    k = parse_key_text(v, name);
    if (!k) return fail("key in " + var + ": " + k.error().message);
  } else {
    return fail("keys on the command line are visible to every local user (ps, /proc); give "
                "NAME=file:PATH, NAME=env:VAR or --key-file");
  }
  if (!k) return make_unexpected(k.error());
  return add(name, k->key, k->form);
}

Result<void, Error> parse_key_file_text(std::string_view text, const std::string& origin,
                                        KeyRing& out, bool derive) {
  std::istringstream in{std::string(text)};
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = origin + ":" + std::to_string(lineno) + ": ";
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string name, key, extra;
    if (!(ls >> name)) continue;
    if (!(ls >> key) || (ls >> extra)) return fail(where + "expected 'NAME KEY'");
    if (!proto::valid_client_name(name))
      return fail(where + "invalid client name (1-64 printable ASCII characters)");
    ParsedKey k;
    if (derive) {
      auto parsed = parse_key_text(key, name);
      if (!parsed) return fail(where + parsed.error().message);
      k = *parsed;
    } else {
      auto form = classify_key_text(key);
      if (!form) return fail(where + form.error().message);
      k.form = *form;
    }
    auto r = out.add(name, k.key, k.form);
    if (!r) return fail(where + r.error().message);
  }
  return {};
}

Result<void, Error> KeyRing::load_file(const std::filesystem::path& path) {
  if (auto m = check_key_file_mode(path); !m) return make_unexpected(m.error());
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open key file " + path.string());
  std::ostringstream all;
  all << in.rdbuf();
  return parse_key_file_text(all.str(), path.string(), *this);
}

std::optional<Key256> KeyRing::find(std::string_view name) const {
  auto it = keys_.find(name);
  if (it == keys_.end()) return std::nullopt;
  return it->second.key;
}

std::vector<std::pair<std::string, KeyForm>> KeyRing::forms() const {
  std::vector<std::pair<std::string, KeyForm>> out;
  for (const auto& [name, e] : keys_) out.emplace_back(name, e.form);
  return out;
}

}  // namespace ipsan::server
