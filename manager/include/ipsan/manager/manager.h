// ipsan/manager/manager.h: the storage manager (patent: the storage manager that allocates
// storage to client computers and authorizes them; issue 16, docs/MANAGER.md).
//
// State lives in SQLite (WAL, migrations; db.h): administrators, servers, clients (by Ed25519
// public key), virtual disks, grants (client x disk x mode; the grant serial is the row id),
// commands for servers, an audit log, and the request nonces of the replay window.
//
// API: signed JSON requests (auth/signed_call.h), answered by handle(). Roles by the caller's key:
// an administrator manages servers, clients, disks and grants; a server syncs (registration,
// devices, space, command results, refused logins) and receives commands and the revocation list;
// a client fetches its current grants (short-lived; renewal = fetching again).
//
// Allocation is all-or-nothing: the disk row is written "creating" with a create command in one
// transaction; the server pulls the command at its next sync and runs it (idempotent); the
// manager waits for the result, then marks the disk "ready" and records the grant in one
// transaction. A failure, a timeout or a manager restart in between turns the disk into
// "deleting" with a delete command (idempotent on the server), so nothing stays half-created;
// the row goes when the server confirms the delete.
//
// Threading: handle() is thread-safe (one mutex around the database); disk-create blocks its
// caller until the server answered or the allocation timeout passed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ipsan/auth/grant.h"
#include "ipsan/auth/identity.h"
#include "ipsan/base/clock.h"
#include "ipsan/base/result.h"
#include "ipsan/manager/db.h"

namespace ipsan::manager {

struct ManagerOptions {
  std::string db_path;
  auth::Identity identity;                   // signs grants, revocation lists and answers
  std::vector<auth::PublicKey> admin_keys;   // added as administrators at start (if new)
  std::uint64_t grant_ttl = 300;             // seconds a grant is valid
  std::uint64_t server_offline_after = 10;   // seconds without a sync: server unreachable
  Duration alloc_timeout = std::chrono::seconds(10);
  auth::UnixClock clock = auth::system_unix_seconds;
};

// The migrations of the manager's schema, in order (exposed for tests).
const std::vector<std::string>& schema_migrations();

class Manager {
 public:
  static Result<std::unique_ptr<Manager>, Error> open(ManagerOptions options);
  // One signed request (envelope) -> the signed answer (envelope). Never throws.
  nlohmann::json handle(const nlohmann::json& envelope);
  const auth::PublicKey& public_key() const { return opt_.identity.public_key; }
  // Disks left "creating" by a crash become "deleting" (called by open()).
  void recover();

 private:
  explicit Manager(ManagerOptions o, Db db) : opt_(std::move(o)), db_(std::move(db)) {}
  struct Caller {
    std::string role;  // admin, server, client
    std::string name;
  };
  nlohmann::json dispatch(const Caller& c, const nlohmann::json& body, std::unique_lock<std::mutex>& lock);
  nlohmann::json server_sync(const Caller& c, const nlohmann::json& body);
  nlohmann::json client_grants(const Caller& c);
  nlohmann::json disk_create(const Caller& c, const nlohmann::json& body,
                             std::unique_lock<std::mutex>& lock);
  nlohmann::json disk_delete(const Caller& c, const nlohmann::json& body,
                             std::unique_lock<std::mutex>& lock);
  nlohmann::json disk_list(const std::string& only);
  void audit(const std::string& actor, const std::string& action, const std::string& target,
             const std::string& detail);
  Bytes revocations();
  std::uint64_t now() const { return opt_.clock(); }

  ManagerOptions opt_;
  std::mutex mu_;
  std::condition_variable op_done_;
  Db db_;
};

}  // namespace ipsan::manager
