// Grant logins for every command that connects (client, iscsi-portal, nbd-export, ...).
#include <cstdio>
#include <memory>

#include "ipsan/auth/grant_keeper.h"
#include "ipsan/client/connect.h"

namespace ipsan::client {

Result<void, Error> apply_grant_args(const ConnectArgs& a, ConnectSettings& s) {
  if (a.identity.empty()) {
    if (!a.manager.empty() || !a.grant_file.empty() || !a.manager_key.empty())
      return fail("--manager, --manager-key and --grant need --identity (the client's key)");
    return {};
  }
  auto id = auth::read_identity_file(a.identity);
  if (!id) return fail("--identity: " + id.error().message);
  auth::GrantKeeperOptions o;
  o.identity = *id;
  o.server_address = a.server;
  if (!a.manager.empty()) {
    if (!a.grant_file.empty()) return fail("give --manager or --grant, not both");
    if (a.manager_key.empty()) return fail("--manager needs --manager-key (its public key)");
    auto pk = auth::load_public_key(a.manager_key);
    if (!pk) return fail("--manager-key: " + pk.error().message);
    o.manager = a.manager;
    o.manager_key = *pk;
  } else if (a.grant_file.empty()) {
    return fail("--identity needs --manager HOST:PORT (with --manager-key) or --grant FILE");
  } else {
    o.grant_file = a.grant_file;
  }
  auto keeper = std::make_shared<auth::GrantKeeper>(std::move(o));
  if (auto r = keeper->start(); !r) return fail("grant: " + r.error().message);
  const auto first = keeper->current();
  if (!first) return fail("grant: the grant has expired");
  if (a.name != "default" && a.name != first->info.client_name)
    return fail("--name '" + a.name + "' differs from the grant's client '" +
                first->info.client_name + "'");
  s.client.client_name = first->info.client_name;
  std::fprintf(stderr, "ipsan: logging in as '%s' with grant %llu (device %u, %s, %llu s left)\n",
               first->info.client_name.c_str(),
               static_cast<unsigned long long>(first->info.serial), first->info.device_id,
               first->info.read_only ? "read-only" : "read-write",
               static_cast<unsigned long long>(first->info.expires - auth::system_unix_seconds()));
  s.client.grant_source = [keeper]() -> std::optional<LoginGrant> {
    auto c = keeper->current();
    if (!c) return std::nullopt;
    return LoginGrant{std::move(c->grant), c->key};
  };
  return {};
}

}  // namespace ipsan::client
