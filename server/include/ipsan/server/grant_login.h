// ipsan/server/grant_login.h: the server's side of a login with a storage-manager grant.
//
// The storage server calls these two functions and nothing else of the grant machinery
// (ipsan/auth/grant.h does the cryptography): at LOGIN_FINISH carrying a grant, and on every call
// of a session that logged in with one. The verifier needs only the manager's public key and the
// server's own identity, so logins keep working while the manager is down. Refusals are logged
// and reported to `on_refused` (the manager agent forwards them to the manager's audit log).
// Threading: the server's io thread; the verifier's revocation list may be replaced from another
// thread (it locks).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ipsan/auth/grant.h"
#include "ipsan/base/bytes.h"
#include "ipsan/base/crypto.h"

namespace ipsan::server {

struct GrantAccess {
  Key256 login_key{};
  std::uint64_t serial = 0;
  std::uint64_t expires = 0;  // Unix seconds
  std::uint32_t device_id = 0;
  bool read_only = false;
};

struct GrantRefusal {
  std::string client;
  std::string peer;
  std::string reason;
};

struct GrantLogin {
  std::shared_ptr<const auth::GrantVerifier> verifier;  // null: grants are refused
  std::function<void(const GrantRefusal&)> on_refused;
};

// The access a presented grant gives, or nullopt (refused: logged, reported, never explained to
// the client, which sees AUTH_FAILED like any failed login).
std::optional<GrantAccess> check_login_grant(const GrantLogin& g, ByteSpan grant,
                                             std::string_view client, const std::string& peer);
// False once the session's grant expired or was revoked.
bool grant_still_valid(const GrantLogin& g, const GrantAccess& access);

}  // namespace ipsan::server
