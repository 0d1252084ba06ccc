#include "manager_cli.h"

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "ipsan/auth/signed_call.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"
#include "ipsan/manager/listener.h"
#include "ipsan/manager/manager.h"

namespace ipsan::manager {
namespace {

using json = nlohmann::json;

[[noreturn]] void die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "ipsan manager: %s\n", msg.c_str());
  throw CLI::RuntimeError(code);
}

struct Common {
  std::string manager = "127.0.0.1:5270";
  std::string identity;
  std::string manager_key;
};

json call(const Common& c, json body) {
  if (c.identity.empty()) die("--identity FILE (your private key) is required");
  auto id = auth::read_identity_file(c.identity);
  if (!id) die("--identity: " + id.error().message);
  std::optional<auth::PublicKey> mk;
  if (!c.manager_key.empty()) {
    auto pk = auth::load_public_key(c.manager_key);
    if (!pk) die("--manager-key: " + pk.error().message);
    mk = *pk;
  }
  auto r = auth::manager_call(c.manager, *id, std::move(body), mk ? &*mk : nullptr,
                              std::chrono::seconds(60));
  if (!r) die(r.error().message);
  r->erase("re");
  return *r;
}

void print(const json& j) { std::printf("%s\n", j.dump(2).c_str()); }

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

void add_serve(CLI::App* mgr) {
  struct Args {
    std::string db, key, listen = "127.0.0.1:5270", ttl = "300s", alloc = "10s", offline = "10s",
                port_file;
    std::vector<std::string> admins;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = mgr->add_subcommand("serve", "Run the storage manager until SIGINT/SIGTERM");
  cmd->add_option("--db", a->db, "SQLite database file (created; WAL mode)")->required();
  cmd->add_option("--key", a->key, "The manager's private key file (`ipsan key gen`)")->required();
  cmd->add_option("--admin-key", a->admins,
                  "Administrator public key (64 hex digits or file; repeatable; kept in the "
                  "database once added)");
  cmd->add_option("-l,--listen", a->listen, "HOST:PORT for the API (port 0: any)")
      ->capture_default_str();
  cmd->add_option("--grant-ttl", a->ttl,
                  "Lifetime of a grant; clients renew at half of it. A revocation takes effect "
                  "within the servers' --manager-sync, at the latest when the grant expires")
      ->capture_default_str();
  cmd->add_option("--alloc-timeout", a->alloc,
                  "How long disk create waits for the server before rolling back")
      ->capture_default_str();
  cmd->add_option("--offline-after", a->offline,
                  "A server silent this long is unreachable (not chosen for new disks)")
      ->capture_default_str();
  cmd->add_option("--port-file", a->port_file, "Write 'port=PORT' here once listening");
  cmd->callback([a] {
    crypto_init();
    auto id = auth::read_identity_file(a->key);
    if (!id) die("--key: " + id.error().message);
    ManagerOptions o;
    o.db_path = a->db;
    o.identity = *id;
    for (const auto& k : a->admins) {
      auto pk = auth::load_public_key(k);
      if (!pk) die("--admin-key: " + pk.error().message);
      o.admin_keys.push_back(*pk);
    }
    auto secs = [](const std::string& t, const char* flag) {
      auto d = parse_duration(t);
      if (!d || *d < std::chrono::seconds(1)) die(std::string(flag) + ": expected a duration >= 1s");
      return *d;
    };
    o.grant_ttl = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(secs(a->ttl, "--grant-ttl")).count());
    o.alloc_timeout = secs(a->alloc, "--alloc-timeout");
    o.server_offline_after = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(secs(a->offline, "--offline-after")).count());
    auto m = Manager::open(std::move(o));
    if (!m) die(m.error().message);
    auto hp = parse_host_port(a->listen, "127.0.0.1", 5270);
    if (!hp) die("--listen: " + hp.error().message);
    auto l = Listener::start(**m, hp->host, hp->port);
    if (!l) die(l.error().message);
    std::printf("ipsan manager: listening on %s:%u key %s\n", hp->host.c_str(), (*l)->port(),
                auth::public_key_hex((*m)->public_key()).c_str());
    std::fflush(stdout);
    if (!a->port_file.empty()) {
      const std::string tmp = a->port_file + ".tmp";
      {
        std::ofstream f(tmp);
        f << "port=" << (*l)->port() << "\n";
      }
      std::rename(tmp.c_str(), a->port_file.c_str());
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    (*l)->stop();
    std::printf("ipsan manager: stopped\n");
  });
}

}  // namespace

void add_cli(CLI::App& app) {
  auto c = std::make_shared<Common>();
  auto* mgr = app.add_subcommand(
      "manager", "Storage manager: identities, disk allocation, grants (docs/MANAGER.md)");
  mgr->require_subcommand(1);
  mgr->fallthrough();
  mgr->add_option("-m,--manager", c->manager, "Manager HOST:PORT")->capture_default_str();
  mgr->add_option("--identity", c->identity,
                  "Your private key file (an administrator's; a client's for `grant fetch`)");
  mgr->add_option("--manager-key", c->manager_key,
                  "The manager's public key: answers are checked against it");
  add_serve(mgr);

  for (const char* kind : {"server", "client"}) {
    const std::string k = kind;
    auto* grp = mgr->add_subcommand(k, k == "server" ? "Storage servers the manager knows"
                                                     : "Clients the manager knows");
    grp->require_subcommand(1);
    auto args = std::make_shared<std::pair<std::string, std::string>>();
    auto* add = grp->add_subcommand("add", "Register a " + k + " by its public key");
    add->add_option("name", args->first, "Name")->required();
    add->add_option("key", args->second, "Public key (64 hex digits or a file)")->required();
    add->callback([c, args, k] {
      auto pk = auth::load_public_key(args->second);
      if (!pk) die("key: " + pk.error().message);
      call(*c, json{{"op", k + "-add"}, {"name", args->first}, {"key", auth::public_key_hex(*pk)}});
      std::printf("%s '%s' added\n", k.c_str(), args->first.c_str());
    });
    grp->add_subcommand("list", "List them")->callback([c, k] {
      print(call(*c, json{{"op", k + "-list"}})[k + "s"]);
    });
  }

  auto* disk = mgr->add_subcommand("disk", "Virtual disks: create, grant, revoke, list, show, delete");
  disk->require_subcommand(1);
  {
    struct A {
      std::string size, server = "auto", client, name;
      bool ro = false;
    };
    auto a = std::make_shared<A>();
    auto* cr = disk->add_subcommand(
        "create", "Allocate a disk on a server with space (least used, or --server) and grant it");
    cr->add_option("--size", a->size, "Size, e.g. 100G")->required();
    cr->add_option("--server", a->server, "Server name, or auto")->capture_default_str();
    cr->add_option("--for", a->client, "Client to grant it to")->required();
    cr->add_option("--name", a->name, "Disk name (default: generated)");
    cr->add_flag("--read-only", a->ro, "Grant read-only access");
    cr->callback([c, a] {
      auto sz = parse_size(a->size);
      if (!sz || *sz == 0) die("--size: expected a size like 100G");
      json body{{"op", "disk-create"}, {"size", *sz}, {"server", a->server},
                {"client", a->client}, {"read_only", a->ro}};
      if (!a->name.empty()) body["name"] = a->name;
      json r = call(*c, body);
      std::printf("disk %s created on %s as device %lld (%lld bytes), granted to %s (serial %lld)\n",
                  r.value("disk", "").c_str(), r.value("server", "").c_str(),
                  static_cast<long long>(r.value("device_id", 0)),
                  static_cast<long long>(r.value("size", 0)), a->client.c_str(),
                  static_cast<long long>(r.value("serial", 0)));
    });
  }
  for (const char* op : {"grant", "revoke"}) {
    const std::string o = op;
    auto a = std::make_shared<std::tuple<std::string, std::string, bool>>();
    auto* cmd = disk->add_subcommand(o, o == "grant" ? "Grant a client access to a disk"
                                                     : "Revoke a client's access to a disk");
    cmd->add_option("disk", std::get<0>(*a), "Disk")->required();
    cmd->add_option("client", std::get<1>(*a), "Client")->required();
    if (o == "grant") cmd->add_flag("--read-only", std::get<2>(*a), "Read-only access");
    cmd->callback([c, a, o] {
      json r = call(*c, json{{"op", "disk-" + o}, {"disk", std::get<0>(*a)},
                             {"client", std::get<1>(*a)}, {"read_only", std::get<2>(*a)}});
      if (o == "grant")
        std::printf("granted %s to %s (serial %lld)\n", std::get<0>(*a).c_str(),
                    std::get<1>(*a).c_str(), static_cast<long long>(r.value("serial", 0)));
      else
        std::printf("revoked %s from %s\n", std::get<0>(*a).c_str(), std::get<1>(*a).c_str());
    });
  }
  disk->add_subcommand("list", "List disks and their grants")->callback([c] {
    print(call(*c, json{{"op", "disk-list"}})["disks"]);
  });
  {
    auto name = std::make_shared<std::string>();
    auto* show = disk->add_subcommand("show", "Show one disk");
    show->add_option("disk", *name, "Disk")->required();
    show->callback([c, name] { print(call(*c, json{{"op", "disk-show"}, {"disk", *name}})["disk"]); });
    auto name2 = std::make_shared<std::string>();
    auto* del = disk->add_subcommand("delete", "Revoke every grant of a disk and delete it");
    del->add_option("disk", *name2, "Disk")->required();
    del->callback([c, name2] {
      json r = call(*c, json{{"op", "disk-delete"}, {"disk", *name2}});
      if (r.value("deleted", false))
        std::printf("disk %s deleted\n", name2->c_str());
      else
        std::printf("disk %s: %s\n", name2->c_str(), r.value("note", "").c_str());
    });
  }
  {
    auto limit = std::make_shared<int>(100);
    auto* au = mgr->add_subcommand("audit", "Print the audit log (oldest first)");
    au->add_option("--limit", *limit, "Last N entries")->capture_default_str();
    au->callback([c, limit] {
      const json r = call(*c, json{{"op", "audit"}, {"limit", *limit}});
      for (const auto& e : r["audit"])
        std::printf("%lld %s %s %s %s\n", static_cast<long long>(e.value("at", 0)),
                    e.value("actor", "").c_str(), e.value("action", "").c_str(),
                    e.value("target", "").c_str(), e.value("detail", "").c_str());
    });
  }
  {
    struct G {
      std::string out;
      long long device = -1;
      std::string disk;
    };
    auto g = std::make_shared<G>();
    auto* gr = mgr->add_subcommand("grant", "A client's grants");
    gr->require_subcommand(1);
    auto* fetch = gr->add_subcommand(
        "fetch", "Fetch this client's current grant (--identity is the client's key) into a file "
                 "for `ipsan client --grant`");
    fetch->add_option("-o,--out", g->out, "Grant file to write (hex)")->required();
    fetch->add_option("--device", g->device, "The grant for this device id");
    fetch->add_option("--disk", g->disk, "The grant for this disk");
    fetch->callback([c, g] {
      json r = call(*c, json{{"op", "client-grants"}});
      for (const auto& e : r["grants"]) {
        if (g->device >= 0 && e.value("device_id", -1LL) != g->device) continue;
        if (!g->disk.empty() && e.value("disk", "") != g->disk) continue;
        const std::string tmp = g->out + ".tmp";
        {
          std::ofstream f(tmp);
          f << e.value("grant", "") << "\n";
        }
        std::rename(tmp.c_str(), g->out.c_str());
        std::printf("grant %lld for disk %s (device %lld on %s), expires %lld\n",
                    static_cast<long long>(e.value("serial", 0)), e.value("disk", "").c_str(),
                    static_cast<long long>(e.value("device_id", 0)),
                    e.value("server_address", "").c_str(),
                    static_cast<long long>(e.value("expires", 0)));
        return;
      }
      die("no grant for this client" + (g->device >= 0 ? " and device " + std::to_string(g->device)
                                                        : std::string()));
    });
  }
}

}  // namespace ipsan::manager
