// manager_agent.h: a server's link to the storage manager (`ipsan server --manager`).
//
// A thread that every `interval` sends a signed "server-sync" to the manager: the server's
// address, its devices, the space it offers to managed disks and what is used, the results of the
// manager's last commands, and the grant logins it refused (for the manager's audit log). The
// manager's signed answer carries commands (managed-create / managed-delete, idempotent, run on
// the io thread through the LayoutManager) and its current revocation list, installed in the
// verifier. The manager never connects to the server: the server pulls, so it needs no
// listening admin port and works behind NAT; commands are authenticated by the manager's
// signature over an answer that echoes this request's nonce (no replay).
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "ipsan/auth/grant.h"
#include "ipsan/auth/identity.h"
#include "ipsan/server/admin.h"
#include "ipsan/server/grant_login.h"
#include "ipsan/server/server.h"

namespace ipsan::server {

struct AgentOptions {
  std::string manager;  // HOST:PORT
  auth::PublicKey manager_key{};
  auth::Identity identity;
  std::string address;  // how clients reach this server, HOST:PORT
  std::uint16_t udp_port = 0, tcp_port = 0;
  std::string managed_dir;
  std::uint64_t capacity = 0;  // bytes offered to managed disks
  Duration interval = std::chrono::seconds(1);
};

class ManagerAgent {
 public:
  ManagerAgent(boost::asio::io_context& io, AgentOptions options, StorageServer& server,
               LayoutManager* layout, std::shared_ptr<auth::GrantVerifier> verifier);
  ~ManagerAgent();
  void start();
  // Stops syncing (safe from any thread; the destructor joins).
  void request_stop();
  // Called on the io thread by the server for every refused grant login.
  void refused(const GrantRefusal& r);

 private:
  void run();
  nlohmann::json on_io(std::function<nlohmann::json()> fn);
  nlohmann::json state();

  boost::asio::io_context& io_;
  AgentOptions opt_;
  StorageServer& server_;
  LayoutManager* layout_;
  std::shared_ptr<auth::GrantVerifier> verifier_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};
  std::deque<nlohmann::json> refused_;
  nlohmann::json results_ = nlohmann::json::array();
  bool registered_ = false;
  std::thread thread_;
};

}  // namespace ipsan::server
