#include "manager_agent.h"

#include <boost/asio/post.hpp>
#include <future>

#include "ipsan/auth/grant_keeper.h"
#include "ipsan/auth/signed_call.h"
#include "ipsan/base/log.h"

namespace ipsan::server {

using json = nlohmann::json;
namespace asio = boost::asio;

ManagerAgent::ManagerAgent(asio::io_context& io, AgentOptions options, StorageServer& server,
                           LayoutManager* layout, std::shared_ptr<auth::GrantVerifier> verifier)
    : io_(io),
      opt_(std::move(options)),
      server_(server),
      layout_(layout),
      verifier_(std::move(verifier)) {}

ManagerAgent::~ManagerAgent() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ManagerAgent::request_stop() {
  stopping_ = true;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void ManagerAgent::start() { thread_ = std::thread([this] { run(); }); }

void ManagerAgent::refused(const GrantRefusal& r) {
  std::lock_guard lock(mu_);
  if (refused_.size() >= 1000) refused_.pop_front();  // bounded; the count says so
  refused_.push_back(json{{"client", r.client}, {"peer", r.peer}, {"reason", r.reason},
                          {"at", auth::system_unix_seconds()}});
}

json ManagerAgent::on_io(std::function<json()> fn) {
  auto p = std::make_shared<std::promise<json>>();
  auto f = p->get_future();
  asio::post(io_, [p, fn = std::move(fn)] {
    try {
      p->set_value(fn());
    } catch (const std::exception& e) {
      p->set_value(json{{"ok", false}, {"error", e.what()}});
    }
  });
  for (int i = 0; f.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready; ++i) {
    if (stopping_ || i > 300) return json{{"ok", false}, {"error", "server is stopping"}};
  }
  return f.get();
}

json ManagerAgent::state() {
  return on_io([this] {
    json devices = json::array();
    std::uint64_t used = 0;
    for (const auto& e : server_.exports()) {
      const auto g = e.backend->geometry();
      const std::uint64_t bytes = g.block_count * g.block_size;
      const bool managed = e.name.rfind("m-", 0) == 0;
      if (managed) used += bytes;
      devices.push_back(json{{"device_id", e.device_id}, {"name", e.name}, {"bytes", bytes},
                             {"managed", managed}});
    }
    return json{{"devices", devices}, {"used", used}};
  });
}

void ManagerAgent::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    json st = state();
    json body{{"op", "server-sync"},
              {"address", opt_.address},
              {"udp_port", opt_.udp_port},
              {"tcp_port", opt_.tcp_port},
              {"capacity", opt_.capacity},
              {"used", st.value("used", std::uint64_t{0})},
              {"devices", st.value("devices", json::array())}};
    json results, refused = json::array();
    {
      std::lock_guard g(mu_);
      results = results_;
      for (auto& r : refused_) refused.push_back(r);
    }
    body["results"] = results;
    body["refused"] = refused;
    auto answer = auth::manager_call(opt_.manager, opt_.identity, body, &opt_.manager_key,
                                     std::chrono::seconds(5));
    bool again = false;
    if (!answer) {
      IPSAN_LOG(registered_ ? LogLevel::kWarn : LogLevel::kInfo, "agent",
                "manager sync failed: ", answer.error().message);
      registered_ = false;
    } else {
      if (!registered_)
        IPSAN_LOG(LogLevel::kInfo, "agent", "registered with the manager at ", opt_.manager);
      registered_ = true;
      {
        std::lock_guard g(mu_);
        // Delivered: forget what the manager has now seen.
        results_ = json::array();
        refused_.erase(refused_.begin(),
                       refused_.begin() + static_cast<std::ptrdiff_t>(
                                              std::min(refused_.size(), refused.size())));
      }
      if (answer->contains("revocations") && (*answer)["revocations"].is_string()) {
        auto b = auth::parse_grant_text((*answer)["revocations"].get<std::string>());
        if (b) {
          auto r = verifier_->update_revocations(*b);
          if (!r && r.error().message.find("older") == std::string::npos)
            IPSAN_LOG(LogLevel::kWarn, "agent", "revocation list refused: ", r.error().message);
        }
      }
      const json ops = answer->value("ops", json::array());
      for (const auto& op : ops) {
        if (!op.is_object()) continue;
        json req = op;
        req["op"] = op.value("kind", "") == "create" ? "managed-create" : "managed-delete";
        req["dir"] = opt_.managed_dir;
        json res;
        if (!layout_) {
          res = json{{"ok", false}, {"error", "server has no --config layout"}};
        } else {
          res = on_io([this, req] { return layout_->handle(req, server_); });
        }
        std::lock_guard g(mu_);
        results_.push_back(json{{"id", op.value("id", std::uint64_t{0})},
                                {"ok", res.value("ok", false)},
                                {"error", res.value("error", std::string())}});
        again = true;  // report at once
      }
    }
    lock.lock();
    if (!again) cv_.wait_for(lock, opt_.interval, [this] { return stop_; });
  }
}

}  // namespace ipsan::server
