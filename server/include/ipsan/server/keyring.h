// ipsan/server/keyring.h: the clients a server accepts and their secret keys.
//
// Each client has a name and a 256-bit key shared with the server (the storage manager hands them
// out). Keys come from a key file with lines `NAME KEY` (`#` starts a comment; the file must not
// be readable or writable by group or others) or from `--client-key NAME=file:PATH` (first line
// of PATH, same mode rule) / `--client-key NAME=env:VAR`; a key given on the command line itself
// (`NAME=KEY`) is refused, since every local user can read argv. KEY is 64 hex digits or a
// passphrase of 12+ characters stretched with Argon2id salted by NAME (ipsan/base/key.h).
// Read-only after start-up; safe to share between threads.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/base/crypto.h"
#include "ipsan/base/key.h"
#include "ipsan/base/result.h"

namespace ipsan::server {

class KeyRing {
 public:
  // Adds "NAME=file:PATH" or "NAME=env:VAR"; errors name the problem. "NAME=KEY" is refused.
  Result<void, Error> add_spec(std::string_view spec);
  Result<void, Error> add(std::string name, const Key256& key, KeyForm form = KeyForm::kHex);
  Result<void, Error> load_file(const std::filesystem::path& path);
  std::optional<Key256> find(std::string_view name) const;
  bool empty() const { return keys_.empty(); }
  std::size_t size() const { return keys_.size(); }
  // (name, form) of every key, in name order: what the server reports on stderr.
  std::vector<std::pair<std::string, KeyForm>> forms() const;
  // A secret derived from every (name, key) and `label`: stable across restarts with the same
  // keys, unknown to anyone without all of them (reliable-UDP reset tokens and cookies).
  Key256 derive_secret(std::string_view label) const {
    Key256 acc{};
    for (const auto& [name, entry] : keys_) {
      const Digest256 d = hmac_sha256(entry.key, {as_bytes(label), as_bytes(name), acc});
      std::copy(d.begin(), d.end(), acc.begin());
    }
    return acc;
  }

 private:
  struct Entry {
    Key256 key;
    KeyForm form;
  };
  std::map<std::string, Entry, std::less<>> keys_;
};

// Parses a key file's text (the part after the mode check); `origin` prefixes error messages.
// Exposed for the fuzz target and tests; `derive` false checks the syntax only (no Argon2id: the
// keys added are zero).
Result<void, Error> parse_key_file_text(std::string_view text, const std::string& origin,
                                        KeyRing& out, bool derive = true);

}  // namespace ipsan::server
