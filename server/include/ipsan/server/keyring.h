// ipsan/server/keyring.h: the clients a server accepts and their secret keys.
//
// Each client has a name and a 256-bit key shared with the server (the storage manager hands them
// out). Keys come from `--client-key NAME=KEY` options or a key file with lines `NAME KEY`
// (KEY = 64 hex digits, or a passphrase stretched with SHA-256; `#` starts a comment).
// Read-only after start-up; safe to share between threads.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ipsan/base/crypto.h"
#include "ipsan/base/result.h"

namespace ipsan::server {

class KeyRing {
 public:
  // Adds "NAME=KEY"; errors name the problem.
  Result<void, Error> add_spec(std::string_view name_eq_key);
  Result<void, Error> add(std::string name, const Key256& key);
  Result<void, Error> load_file(const std::filesystem::path& path);
  std::optional<Key256> find(std::string_view name) const;
  bool empty() const { return keys_.empty(); }
  std::size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, Key256, std::less<>> keys_;
};

}  // namespace ipsan::server
