#include "ipsan/server/grant_login.h"

#include "ipsan/base/log.h"

namespace ipsan::server {

std::optional<GrantAccess> check_login_grant(const GrantLogin& g, ByteSpan grant,
                                             std::string_view client, const std::string& peer) {
  auto refuse = [&](const std::string& why) -> std::optional<GrantAccess> {
    IPSAN_LOG(LogLevel::kWarn, "server", "login of '", client, "' from ", peer,
              " refused: ", why);
    if (g.on_refused) g.on_refused(GrantRefusal{std::string(client), peer, why});
    return std::nullopt;
  };
  if (!g.verifier) return refuse("it presents a grant but this server has no --manager-key");
  auto v = g.verifier->verify(grant, client);
  if (!v) return refuse(v.error().message);
  GrantAccess a;
  a.login_key = v->login_key;
  a.serial = v->grant.serial;
  a.expires = v->grant.expires;
  a.device_id = v->grant.device_id;
  a.read_only = v->grant.read_only;
  return a;
}

bool grant_still_valid(const GrantLogin& g, const GrantAccess& access) {
  return g.verifier && g.verifier->still_valid(access.serial, access.expires);
}

}  // namespace ipsan::server
