// ipsan/auth/grant_keeper.h: the client's side of grants: fetch, cache and renew.
//
// A GrantKeeper holds the client's identity and the grant it logs in with. With a manager address
// it asks the manager for the client's grants ("client-grants", signed with the client key,
// answer signed by the manager) and renews in a background thread when half of the grant's
// lifetime is left, so a session whose grant expired logs in again at once with a fresh one.
// While the manager is down the cached grant is used until it expires. When the manager no longer
// lists the grant (revoked, deleted) it is dropped at the next renewal: the next login fails.
// Without a manager, the grant is read from a file (hex) at every login, so an outside renewer
// can replace it. current() never blocks on the network.
// Threading: thread-safe; the renewal thread stops in the destructor.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "ipsan/auth/grant.h"
#include "ipsan/auth/identity.h"
#include "ipsan/base/clock.h"

namespace ipsan::auth {

struct GrantCredential {
  Bytes grant;
  Key256 key{};  // the login key (client_login_key)
  Grant info;
};

struct GrantKeeperOptions {
  Identity identity;
  std::string manager;         // HOST:PORT; empty: grant_file only
  PublicKey manager_key{};     // required with `manager` (answers and grants are checked)
  std::string grant_file;      // hex grant, re-read at every login (no manager)
  std::string server_address;  // prefer the grant of this server (as it registered), if several
  std::int64_t device_id = -1; // prefer the grant of this device, if several
  UnixClock clock = system_unix_seconds;
  Duration retry = std::chrono::seconds(1);  // manager unreachable: try again after this
};

class GrantKeeper {
 public:
  explicit GrantKeeper(GrantKeeperOptions options);
  ~GrantKeeper();
  GrantKeeper(const GrantKeeper&) = delete;
  GrantKeeper& operator=(const GrantKeeper&) = delete;

  // Fetches once (blocking) so that the first login has a grant; the error says why not.
  Result<void, Error> start();
  // The grant to log in with now, or nullopt (none, expired, or dropped).
  std::optional<GrantCredential> current();
  std::uint64_t renewals() const;
  std::string last_error() const;

 private:
  Result<GrantCredential, Error> fetch();
  Result<GrantCredential, Error> read_file();
  void run();

  GrantKeeperOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<GrantCredential> cached_;
  std::uint64_t renewals_ = 0;
  std::string last_error_;
  bool stop_ = false;
  std::thread thread_;
};

// Hex text of a grant file -> bytes (whitespace ignored).
Result<Bytes, Error> parse_grant_text(std::string_view text);

}  // namespace ipsan::auth
