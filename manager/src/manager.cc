#include "ipsan/manager/manager.h"

#include <algorithm>
#include <set>

#include "ipsan/auth/signed_call.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"

namespace ipsan::manager {

using json = nlohmann::json;

const std::vector<std::string>& schema_migrations() {
  static const std::vector<std::string> m = {
      // 1: the model.
      R"(CREATE TABLE admins(key TEXT PRIMARY KEY, added INTEGER NOT NULL);
         CREATE TABLE servers(name TEXT PRIMARY KEY, key TEXT UNIQUE NOT NULL,
           address TEXT NOT NULL DEFAULT '', capacity INTEGER NOT NULL DEFAULT 0,
           used INTEGER NOT NULL DEFAULT 0, devices TEXT NOT NULL DEFAULT '[]',
           last_seen INTEGER NOT NULL DEFAULT 0, added INTEGER NOT NULL);
         CREATE TABLE clients(name TEXT PRIMARY KEY, key TEXT UNIQUE NOT NULL, added INTEGER NOT NULL);
         CREATE TABLE disks(name TEXT PRIMARY KEY, server TEXT NOT NULL REFERENCES servers(name),
           device_id INTEGER NOT NULL, size INTEGER NOT NULL, state TEXT NOT NULL,
           created INTEGER NOT NULL, UNIQUE(server, device_id));
         CREATE TABLE grants(serial INTEGER PRIMARY KEY AUTOINCREMENT,
           disk TEXT NOT NULL REFERENCES disks(name), client TEXT NOT NULL REFERENCES clients(name),
           read_only INTEGER NOT NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE ops(id INTEGER PRIMARY KEY AUTOINCREMENT, server TEXT NOT NULL, kind TEXT NOT NULL,
           disk TEXT NOT NULL, device_id INTEGER NOT NULL, size INTEGER NOT NULL, client TEXT NOT NULL,
           state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL);
         CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
           actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
         CREATE TABLE nonces(nonce TEXT PRIMARY KEY, at INTEGER NOT NULL);
         CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);)",
      // 2: indexes for the paths that run on every sync.
      R"(CREATE INDEX ops_pending ON ops(server, state);
         CREATE INDEX nonces_at ON nonces(at);
         CREATE INDEX grants_client ON grants(client, revoked);)",
      // 3: revoked serials outlive their grant rows (a deleted disk's grants go with it, but an
      // unexpired grant must stay refused until it would have expired).
      R"(CREATE TABLE revocations(serial INTEGER PRIMARY KEY, at INTEGER NOT NULL);
         INSERT INTO revocations(serial, at) SELECT serial, revoked FROM grants WHERE revoked != 0;)",
  };
  return m;
}

namespace {

json error(const std::string& m) { return json{{"ok", false}, {"error", m}}; }

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string str(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Result<std::unique_ptr<Manager>, Error> Manager::open(ManagerOptions o) {
  auto db = Db::open(o.db_path, schema_migrations());
  if (!db) return make_unexpected(db.error());
  std::unique_ptr<Manager> m(new Manager(std::move(o), std::move(*db)));
  try {
    for (const auto& k : m->opt_.admin_keys) {
      auto s = m->db_.prepare("INSERT OR IGNORE INTO admins(key, added) VALUES(?, ?)");
      s.bind(1, auth::public_key_hex(k)).bind(2, static_cast<std::int64_t>(m->now()));
      s.step();
      if (m->db_.changes() > 0)
        m->audit("manager", "admin-add", auth::public_key_hex(k), "from the command line");
    }
    m->recover();
  } catch (const DbError& e) {
    return fail(std::string("manager database: ") + e.what());
  }
  return m;
}

void Manager::audit(const std::string& actor, const std::string& action, const std::string& target,
                    const std::string& detail) {
  auto s = db_.prepare("INSERT INTO audit(at, actor, action, target, detail) VALUES(?,?,?,?,?)");
  s.bind(1, static_cast<std::int64_t>(now())).bind(2, actor).bind(3, action).bind(4, target).bind(5, detail);
  s.step();
}

void Manager::recover() {
  std::lock_guard lock(mu_);
  Txn t(db_);
  std::vector<std::string> creating;
  {
    auto s = db_.prepare("SELECT name FROM disks WHERE state='creating'");
    while (s.step()) creating.push_back(s.text(0));
  }
  for (const auto& d : creating) {
    db_.prepare("UPDATE ops SET state='cancelled' WHERE disk=? AND kind='create' AND state='pending'")
        .bind(1, d)
        .step();
    auto s = db_.prepare(
        "INSERT INTO ops(server, kind, disk, device_id, size, client, state, created) "
        "SELECT server, 'delete', name, device_id, size, '', 'pending', ? FROM disks WHERE name=?");
    s.bind(1, static_cast<std::int64_t>(now())).bind(2, d);
    s.step();
    db_.prepare("UPDATE disks SET state='deleting' WHERE name=?").bind(1, d).step();
    audit("manager", "disk-rollback", d, "allocation interrupted (restart): rolled back");
  }
  t.commit();
}

json Manager::handle(const json& env) {
  std::string nonce;
  if (env.is_object() && env.contains("body") && env["body"].is_string()) {
    json b = json::parse(env["body"].get<std::string>(), nullptr, false);
    if (b.is_object()) nonce = str(b, "nonce");
  }
  json answer;
  try {
    std::unique_lock lock(mu_);
    auto req = auth::open_request(env, now());
    if (!req) {
      audit("?", "request-refused", "", req.error().message);
      return auth::sign_response(opt_.identity, error(req.error().message), nonce);
    }
    const std::string key = auth::public_key_hex(req->key);
    Caller c;
    for (const auto& [table, role] : {std::pair{"admins", "admin"}, std::pair{"servers", "server"},
                                      std::pair{"clients", "client"}}) {
      auto s = db_.prepare(std::string("SELECT ") + (std::string(table) == "admins" ? "key" : "name") +
                           " FROM " + table + " WHERE key=?");
      s.bind(1, key);
      if (s.step()) {
        c.role = role;
        c.name = std::string(table) == "admins" ? "admin:" + key.substr(0, 8) : s.text(0);
        break;
      }
    }
    const std::string op = str(req->body, "op");
    if (c.role.empty()) {
      audit("key:" + key.substr(0, 16), "request-refused", op, "unknown key");
      return auth::sign_response(opt_.identity, error("unknown key " + key.substr(0, 16) + "..."),
                                 req->nonce);
    }
    // Replay: a nonce is accepted once within the request window.
    db_.prepare("DELETE FROM nonces WHERE at < ?")
        .bind(1, static_cast<std::int64_t>(now()) - 2 * static_cast<std::int64_t>(auth::kRequestWindowSeconds))
        .step();
    {
      auto s = db_.prepare("INSERT OR IGNORE INTO nonces(nonce, at) VALUES(?, ?)");
      s.bind(1, req->nonce).bind(2, static_cast<std::int64_t>(now()));
      s.step();
      if (db_.changes() == 0) {
        audit(c.name, "request-refused", op, "replayed request (nonce seen before)");
        return auth::sign_response(opt_.identity, error("replayed request refused"), req->nonce);
      }
    }
    answer = dispatch(c, req->body, lock);
    nonce = req->nonce;
  } catch (const std::exception& e) {
    answer = error(std::string("manager error: ") + e.what());
  }
  std::lock_guard lock(mu_);
  return auth::sign_response(opt_.identity, answer, nonce);
}

json Manager::dispatch(const Caller& c, const json& body, std::unique_lock<std::mutex>& lock) {
  const std::string op = str(body, "op");
  if (c.role == "server") {
    if (op == "server-sync") return server_sync(c, body);
    return error("servers may only sync");
  }
  if (c.role == "client") {
    if (op == "client-grants") return client_grants(c);
    return error("clients may only fetch their grants");
  }
  // Administrator.
  const std::int64_t t = static_cast<std::int64_t>(now());
  if (op == "server-add" || op == "client-add") {
    const bool server = op == "server-add";
    const std::string name = str(body, "name");
    if (!valid_name(name)) return error("name must be 1-64 of [A-Za-z0-9._-]");
    auto pk = auth::parse_public_key(str(body, "key"));
    if (!pk) return error("key: " + pk.error().message);
    Txn tx(db_);
    auto s = db_.prepare(std::string("INSERT OR IGNORE INTO ") + (server ? "servers" : "clients") +
                         "(name, key, added) VALUES(?,?,?)");
    s.bind(1, name).bind(2, auth::public_key_hex(*pk)).bind(3, t);
    s.step();
    if (db_.changes() == 0) return error("a " + std::string(server ? "server" : "client") +
                                         " with that name or key exists");
    audit(c.name, op, name, auth::public_key_hex(*pk));
    tx.commit();
    return json{{"ok", true}};
  }
  if (op == "admin-add") {
    auto pk = auth::parse_public_key(str(body, "key"));
    if (!pk) return error("key: " + pk.error().message);
    Txn tx(db_);
    db_.prepare("INSERT OR IGNORE INTO admins(key, added) VALUES(?,?)")
        .bind(1, auth::public_key_hex(*pk))
        .bind(2, t)
        .step();
    audit(c.name, op, auth::public_key_hex(*pk), "");
    tx.commit();
    return json{{"ok", true}};
  }
  if (op == "server-list") {
    json out = json::array();
    auto s = db_.prepare("SELECT name, key, address, capacity, used, last_seen, devices FROM servers ORDER BY name");
    while (s.step()) {
      const auto seen = s.i64(5);
      out.push_back(json{{"name", s.text(0)}, {"key", s.text(1)}, {"address", s.text(2)},
                         {"capacity", s.i64(3)}, {"used", s.i64(4)}, {"last_seen", seen},
                         {"online", seen != 0 && t - seen <= static_cast<std::int64_t>(opt_.server_offline_after)},
                         {"devices", json::parse(s.text(6), nullptr, false)}});
    }
    return json{{"ok", true}, {"servers", out}};
  }
  if (op == "client-list") {
    json out = json::array();
    auto s = db_.prepare("SELECT name, key FROM clients ORDER BY name");
    while (s.step()) out.push_back(json{{"name", s.text(0)}, {"key", s.text(1)}});
    return json{{"ok", true}, {"clients", out}};
  }
  if (op == "disk-create") return disk_create(c, body, lock);
  if (op == "disk-delete") return disk_delete(c, body, lock);
  if (op == "disk-list") return disk_list("");
  if (op == "disk-show") {
    json l = disk_list(str(body, "disk"));
    if (l["disks"].empty()) return error("no disk '" + str(body, "disk") + "'");
    return json{{"ok", true}, {"disk", l["disks"][0]}};
  }
  if (op == "disk-grant" || op == "disk-revoke") {
    const std::string disk = str(body, "disk"), client = str(body, "client");
    Txn tx(db_);
    {
      auto s = db_.prepare("SELECT state FROM disks WHERE name=?");
      s.bind(1, disk);
      if (!s.step()) return error("no disk '" + disk + "'");
      if (op == "disk-grant" && s.text(0) != "ready")
        return error("disk '" + disk + "' is " + s.text(0));
    }
    {
      auto s = db_.prepare("SELECT 1 FROM clients WHERE name=?");
      s.bind(1, client);
      if (!s.step()) return error("no client '" + client + "'");
    }
    if (op == "disk-grant") {
      const bool ro = body.value("read_only", false);
      auto s = db_.prepare("SELECT serial FROM grants WHERE disk=? AND client=? AND revoked=0");
      s.bind(1, disk).bind(2, client);
      if (s.step()) return error("client '" + client + "' already has a grant for '" + disk +
                                 "' (serial " + std::to_string(s.i64(0)) + "); revoke it first");
      db_.prepare("INSERT INTO grants(disk, client, read_only, created) VALUES(?,?,?,?)")
          .bind(1, disk).bind(2, client).bind(3, ro ? 1 : 0).bind(4, t)
          .step();
      const auto serial = db_.last_insert_id();
      audit(c.name, "grant", disk, "client " + client + (ro ? " read-only" : " read-write") +
                                       ", serial " + std::to_string(serial));
      tx.commit();
      return json{{"ok", true}, {"serial", serial}};
    }
    db_.prepare("INSERT OR IGNORE INTO revocations(serial, at) SELECT serial, ? FROM grants "
                "WHERE disk=? AND client=? AND revoked=0")
        .bind(1, t).bind(2, disk).bind(3, client)
        .step();
    auto s = db_.prepare("UPDATE grants SET revoked=? WHERE disk=? AND client=? AND revoked=0");
    s.bind(1, t).bind(2, disk).bind(3, client);
    s.step();
    if (db_.changes() == 0) return error("client '" + client + "' has no grant for '" + disk + "'");
    audit(c.name, "revoke", disk, "client " + client);
    tx.commit();
    return json{{"ok", true}};
  }
  if (op == "audit") {
    const std::int64_t limit = std::clamp<std::int64_t>(body.value("limit", 100), 1, 100000);
    json out = json::array();
    auto s = db_.prepare("SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?");
    s.bind(1, limit);
    while (s.step())
      out.push_back(json{{"id", s.i64(0)}, {"at", s.i64(1)}, {"actor", s.text(2)},
                         {"action", s.text(3)}, {"target", s.text(4)}, {"detail", s.text(5)}});
    std::reverse(out.begin(), out.end());
    return json{{"ok", true}, {"audit", out}};
  }
  return error("unknown op '" + op + "'");
}

json Manager::disk_list(const std::string& only) {
  json out = json::array();
  auto s = db_.prepare(only.empty()
                           ? "SELECT name, server, device_id, size, state, created FROM disks ORDER BY name"
                           : "SELECT name, server, device_id, size, state, created FROM disks WHERE name=?");
  if (!only.empty()) s.bind(1, only);
  while (s.step()) {
    json grants = json::array();
    auto g = db_.prepare("SELECT serial, client, read_only, revoked FROM grants WHERE disk=? ORDER BY serial");
    g.bind(1, s.text(0));
    while (g.step())
      grants.push_back(json{{"serial", g.i64(0)}, {"client", g.text(1)},
                            {"read_only", g.i64(2) != 0}, {"revoked", g.i64(3) != 0}});
    out.push_back(json{{"name", s.text(0)}, {"server", s.text(1)}, {"device_id", s.i64(2)},
                       {"size", s.i64(3)}, {"state", s.text(4)}, {"created", s.i64(5)},
                       {"grants", grants}});
  }
  return json{{"ok", true}, {"disks", out}};
}

json Manager::disk_create(const Caller& c, const json& body, std::unique_lock<std::mutex>& lock) {
  const std::int64_t t = static_cast<std::int64_t>(now());
  const std::string client = str(body, "client");
  const bool ro = body.value("read_only", false);
  if (!body.contains("size") || !body["size"].is_number_unsigned() || body["size"] == 0)
    return error("size must be a positive number of bytes");
  const auto size = static_cast<std::int64_t>(body["size"].get<std::uint64_t>());
  if (size <= 0) return error("size too large");
  std::string name = str(body, "name");
  if (name.empty()) {
    std::array<std::uint8_t, 4> r{};
    random_bytes(r);
    name = "disk-" + to_hex(ByteSpan(r.data(), r.size()));
  }
  if (!valid_name(name) || name.find('.') != std::string::npos)
    return error("disk name must be 1-64 of [A-Za-z0-9_-]");
  const std::string want_server = str(body, "server");
  std::string server;
  std::int64_t device_id = 0, op_id = 0;
  {
    Txn tx(db_);
    {
      auto s = db_.prepare("SELECT 1 FROM clients WHERE name=?");
      s.bind(1, client);
      if (!s.step()) return error("no client '" + client + "' (add it with `ipsan manager client add`)");
    }
    {
      auto s = db_.prepare("SELECT 1 FROM disks WHERE name=?");
      s.bind(1, name);
      if (s.step()) return error("a disk named '" + name + "' exists");
    }
    // Placement: among servers seen recently, the one with the most free space (least used);
    // free = offered capacity - max(what it reports used, what the manager has placed there).
    struct Cand {
      std::string name;
      std::int64_t free;
      std::int64_t seen;
      std::string devices;
    };
    std::vector<Cand> cands;
    {
      auto s = db_.prepare(
          "SELECT s.name, s.capacity, s.used, s.last_seen, s.devices, "
          "(SELECT COALESCE(SUM(size),0) FROM disks d WHERE d.server=s.name) FROM servers s ORDER BY s.name");
      while (s.step())
        cands.push_back(Cand{s.text(0), s.i64(1) - std::max(s.i64(2), s.i64(5)), s.i64(3), s.text(4)});
    }
    const Cand* pick = nullptr;
    std::string why;
    for (const auto& cd : cands) {
      if (!want_server.empty() && want_server != "auto" && cd.name != want_server) continue;
      const bool online = cd.seen != 0 && t - cd.seen <= static_cast<std::int64_t>(opt_.server_offline_after);
      if (!online) {
        why += " " + cd.name + ": unreachable (" +
               (cd.seen == 0 ? std::string("never synced") : "last seen " + std::to_string(t - cd.seen) + " s ago") + ");";
        continue;
      }
      if (cd.free < size) {
        why += " " + cd.name + ": " + std::to_string(cd.free) + " bytes free;";
        continue;
      }
      if (!pick || cd.free > pick->free) pick = &cd;
    }
    if (!pick) {
      if (!want_server.empty() && want_server != "auto" &&
          std::none_of(cands.begin(), cands.end(), [&](const Cand& x) { return x.name == want_server; }))
        return error("no server '" + want_server + "'");
      audit(c.name, "disk-create-refused", name, "no server can hold it:" + why);
      return error("no server can hold " + std::to_string(size) + " bytes:" + why +
                   " nothing was created");
    }
    server = pick->name;
    std::set<std::int64_t> used_ids;
    json devs = json::parse(pick->devices, nullptr, false);
    if (devs.is_array())
      for (const auto& d : devs)
        if (d.is_object() && d.contains("device_id") && d["device_id"].is_number_integer())
          used_ids.insert(d["device_id"].get<std::int64_t>());
    {
      auto s = db_.prepare("SELECT device_id FROM disks WHERE server=?");
      s.bind(1, server);
      while (s.step()) used_ids.insert(s.i64(0));
    }
    device_id = 1;
    while (used_ids.count(device_id)) ++device_id;
    db_.prepare("INSERT INTO disks(name, server, device_id, size, state, created) VALUES(?,?,?,?,'creating',?)")
        .bind(1, name).bind(2, server).bind(3, device_id).bind(4, size).bind(5, t)
        .step();
    db_.prepare("INSERT INTO ops(server, kind, disk, device_id, size, client, state, created) "
                "VALUES(?, 'create', ?, ?, ?, ?, 'pending', ?)")
        .bind(1, server).bind(2, name).bind(3, device_id).bind(4, size).bind(5, client).bind(6, t)
        .step();
    op_id = db_.last_insert_id();
    audit(c.name, "disk-create", name,
          "size " + std::to_string(size) + " on " + server + " device " + std::to_string(device_id) +
              " for " + client);
    tx.commit();
  }
  // Wait for the server's result (it pulls the command at its next sync).
  std::string state, err;
  auto op_state = [&] {
    auto s = db_.prepare("SELECT state, error FROM ops WHERE id=?");
    s.bind(1, op_id);
    if (s.step()) {
      state = s.text(0);
      err = s.text(1);
    }
    return state != "pending";
  };
  op_done_.wait_for(lock, opt_.alloc_timeout, op_state);
  Txn tx(db_);
  op_state();
  if (state == "done") {
    db_.prepare("UPDATE disks SET state='ready' WHERE name=?").bind(1, name).step();
    db_.prepare("INSERT INTO grants(disk, client, read_only, created) VALUES(?,?,?,?)")
        .bind(1, name).bind(2, client).bind(3, ro ? 1 : 0).bind(4, t)
        .step();
    const auto serial = db_.last_insert_id();
    audit(c.name, "grant", name, "client " + client + (ro ? " read-only" : " read-write") +
                                     ", serial " + std::to_string(serial));
    tx.commit();
    return json{{"ok", true}, {"disk", name}, {"server", server}, {"device_id", device_id},
                {"size", size}, {"serial", serial}};
  }
  // Failed or no answer in time: roll back everywhere (delete is idempotent on the server).
  const std::string why = state == "failed" ? "server " + server + " refused: " + err
                                            : "server " + server + " did not confirm within " +
                                                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(opt_.alloc_timeout).count()) +
                                                  " s (unreachable?)";
  db_.prepare("UPDATE ops SET state='cancelled' WHERE id=? AND state='pending'").bind(1, op_id).step();
  db_.prepare("UPDATE disks SET state='deleting' WHERE name=?").bind(1, name).step();
  db_.prepare("INSERT INTO ops(server, kind, disk, device_id, size, client, state, created) "
              "VALUES(?, 'delete', ?, ?, ?, '', 'pending', ?)")
      .bind(1, server).bind(2, name).bind(3, device_id).bind(4, size).bind(5, t)
      .step();
  audit(c.name, "disk-create-failed", name, why + "; rolled back");
  tx.commit();
  return error(why + "; nothing was created (rolled back)");
}

json Manager::disk_delete(const Caller& c, const json& body, std::unique_lock<std::mutex>& lock) {
  const std::string name = str(body, "disk");
  const std::int64_t t = static_cast<std::int64_t>(now());
  std::int64_t op_id = 0;
  {
    Txn tx(db_);
    auto s = db_.prepare("SELECT server, device_id, size, state FROM disks WHERE name=?");
    s.bind(1, name);
    if (!s.step()) return error("no disk '" + name + "'");
    if (s.text(3) == "creating") return error("disk '" + name + "' is being created");
    db_.prepare("INSERT OR IGNORE INTO revocations(serial, at) SELECT serial, ? FROM grants "
                "WHERE disk=? AND revoked=0")
        .bind(1, t).bind(2, name)
        .step();
    db_.prepare("UPDATE grants SET revoked=? WHERE disk=? AND revoked=0").bind(1, t).bind(2, name).step();
    if (s.text(3) != "deleting") {
      db_.prepare("UPDATE disks SET state='deleting' WHERE name=?").bind(1, name).step();
      db_.prepare("INSERT INTO ops(server, kind, disk, device_id, size, client, state, created) "
                  "VALUES(?, 'delete', ?, ?, ?, '', 'pending', ?)")
          .bind(1, s.text(0)).bind(2, name).bind(3, s.i64(1)).bind(4, s.i64(2)).bind(5, t)
          .step();
      op_id = db_.last_insert_id();
    } else {
      auto o = db_.prepare("SELECT id FROM ops WHERE disk=? AND kind='delete' AND state='pending'");
      o.bind(1, name);
      if (o.step()) op_id = o.i64(0);
    }
    audit(c.name, "disk-delete", name, "grants revoked");
    tx.commit();
  }
  bool gone = op_done_.wait_for(lock, opt_.alloc_timeout, [&] {
    auto s = db_.prepare("SELECT 1 FROM disks WHERE name=?");
    s.bind(1, name);
    return !s.step();
  });
  if (gone) return json{{"ok", true}, {"deleted", true}};
  return json{{"ok", true}, {"deleted", false},
              {"note", "grants revoked; the server has not confirmed the delete yet (op " +
                           std::to_string(op_id) + "); it will be removed when it does"}};
}

Bytes Manager::revocations() {
  // Serials revoked recently enough that a grant with them may still be unexpired.
  auth::RevocationList l;
  const std::int64_t t = static_cast<std::int64_t>(now());
  const std::int64_t horizon =
      t - static_cast<std::int64_t>(opt_.grant_ttl + auth::kClockSkewSeconds) - 1;
  db_.prepare("DELETE FROM revocations WHERE at < ?").bind(1, horizon).step();
  auto s = db_.prepare("SELECT serial FROM revocations");
  while (s.step()) l.serials.push_back(static_cast<std::uint64_t>(s.i64(0)));
  // Issue times never go backwards, even if the clock does (servers refuse older lists).
  std::int64_t last = 0;
  {
    auto m = db_.prepare("SELECT value FROM meta WHERE key='rev_issued'");
    if (m.step()) last = m.i64(0);
  }
  const std::int64_t issued = std::max(t, last);
  db_.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('rev_issued', ?)").bind(1, issued).step();
  l.issued = static_cast<std::uint64_t>(issued);
  return auth::encode_revocations(l, opt_.identity);
}

json Manager::server_sync(const Caller& c, const json& body) {
  const std::int64_t t = static_cast<std::int64_t>(now());
  Txn tx(db_);
  std::int64_t seen_before = 0;
  std::string addr_before;
  {
    auto s = db_.prepare("SELECT last_seen, address FROM servers WHERE name=?");
    s.bind(1, c.name);
    if (s.step()) {
      seen_before = s.i64(0);
      addr_before = s.text(1);
    }
  }
  const std::string address = str(body, "address");
  auto num = [&](const char* k) {
    auto it = body.find(k);
    return it != body.end() && it->is_number_unsigned()
               ? static_cast<std::int64_t>(std::min<std::uint64_t>(it->get<std::uint64_t>(), INT64_MAX))
               : std::int64_t{0};
  };
  const json devices = body.value("devices", json::array());
  db_.prepare("UPDATE servers SET address=?, capacity=?, used=?, devices=?, last_seen=? WHERE name=?")
      .bind(1, address).bind(2, num("capacity")).bind(3, num("used"))
      .bind(4, devices.is_array() ? devices.dump() : std::string("[]")).bind(5, t).bind(6, c.name)
      .step();
  if (seen_before == 0 || address != addr_before || t - seen_before > static_cast<std::int64_t>(opt_.server_offline_after))
    audit(c.name, "server-register", c.name, "address " + address + ", capacity " + std::to_string(num("capacity")));
  bool changed = false;
  for (const auto& r : body.value("results", json::array())) {
    if (!r.is_object() || !r.contains("id") || !r["id"].is_number_unsigned()) continue;
    const auto id = static_cast<std::int64_t>(r["id"].get<std::uint64_t>());
    auto s = db_.prepare("SELECT kind, disk, state FROM ops WHERE id=? AND server=?");
    s.bind(1, id).bind(2, c.name);
    if (!s.step()) continue;
    const std::string kind = s.text(0), disk = s.text(1), state = s.text(2);
    const bool ok = r.value("ok", false);
    const std::string err = str(r, "error");
    if (state != "pending") continue;  // cancelled (timed out): its delete follows
    db_.prepare("UPDATE ops SET state=?, error=? WHERE id=?")
        .bind(1, std::string(ok ? "done" : "failed")).bind(2, err).bind(3, id)
        .step();
    changed = true;
    if (kind == "delete" && ok) {
      // Its grants were revoked when the delete began (the revocations table keeps the serials
      // until any grant issued with them has expired).
      db_.prepare("DELETE FROM grants WHERE disk=?").bind(1, disk).step();
      db_.prepare("DELETE FROM disks WHERE name=?").bind(1, disk).step();
      audit(c.name, "disk-deleted", disk, "confirmed by the server");
    } else if (kind == "delete") {
      audit(c.name, "disk-delete-failed", disk, err + " (will retry)");
      db_.prepare("INSERT INTO ops(server, kind, disk, device_id, size, client, state, created) "
                  "SELECT server, kind, disk, device_id, size, client, 'pending', ? FROM ops WHERE id=?")
          .bind(1, t).bind(2, id)
          .step();
    }
  }
  for (const auto& r : body.value("refused", json::array())) {
    if (!r.is_object()) continue;
    audit(c.name, "login-refused", str(r, "client"), str(r, "reason") + " (from " + str(r, "peer") + ")");
  }
  json ops = json::array();
  {
    auto s = db_.prepare("SELECT id, kind, disk, device_id, size, client FROM ops WHERE server=? AND state='pending' ORDER BY id");
    s.bind(1, c.name);
    while (s.step())
      ops.push_back(json{{"id", s.i64(0)}, {"kind", s.text(1)}, {"name", s.text(2)},
                         {"device_id", s.i64(3)}, {"size", s.i64(4)}, {"client", s.text(5)}});
  }
  const Bytes rev = revocations();
  tx.commit();
  if (changed) op_done_.notify_all();
  return json{{"ok", true}, {"ops", ops}, {"revocations", to_hex(rev)}};
}

json Manager::client_grants(const Caller& c) {
  const std::uint64_t t = now();
  json out = json::array();
  std::string client_key;
  {
    auto s = db_.prepare("SELECT key FROM clients WHERE name=?");
    s.bind(1, c.name);
    if (s.step()) client_key = s.text(0);
  }
  auto ck = auth::parse_public_key(client_key);
  if (!ck) return error("client key unreadable");
  auto s = db_.prepare(
      "SELECT g.serial, g.read_only, d.device_id, d.name, sv.key, sv.address FROM grants g "
      "JOIN disks d ON d.name=g.disk JOIN servers sv ON sv.name=d.server "
      "WHERE g.client=? AND g.revoked=0 AND d.state='ready' ORDER BY g.serial");
  s.bind(1, c.name);
  while (s.step()) {
    auto sk = auth::parse_public_key(s.text(4));
    if (!sk) continue;
    auth::Grant g;
    g.serial = static_cast<std::uint64_t>(s.i64(0));
    g.read_only = s.i64(1) != 0;
    g.device_id = static_cast<std::uint32_t>(s.i64(2));
    g.issued = t;
    g.expires = t + opt_.grant_ttl;
    g.client_key = *ck;
    g.server_key = *sk;
    g.client_name = c.name;
    out.push_back(json{{"grant", to_hex(auth::encode_grant(g, opt_.identity))},
                       {"serial", g.serial}, {"disk", s.text(3)}, {"device_id", g.device_id},
                       {"read_only", g.read_only}, {"server_address", s.text(5)},
                       {"expires", g.expires}});
  }
  return json{{"ok", true}, {"grants", out}};
}

}  // namespace ipsan::manager
