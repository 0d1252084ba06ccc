#include "ipsan/auth/grant_keeper.h"

#include <fstream>

#include "ipsan/auth/signed_call.h"
#include "ipsan/base/log.h"

namespace ipsan::auth {

using json = nlohmann::json;

Result<Bytes, Error> parse_grant_text(std::string_view text) {
  std::string hex;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) hex.push_back(c);
  if (hex.size() > 2 * kMaxGrantBytes) return fail("grant text too long");
  Bytes b;
  if (hex.empty() || !from_hex(hex, b)) return fail("a grant is written as hex digits");
  return b;
}

GrantKeeper::GrantKeeper(GrantKeeperOptions options) : opt_(std::move(options)) {}

GrantKeeper::~GrantKeeper() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<GrantCredential, Error> GrantKeeper::read_file() {
  std::ifstream in(opt_.grant_file, std::ios::binary);
  if (!in) return fail("cannot read grant file " + opt_.grant_file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto b = parse_grant_text(text);
  if (!b) return fail(opt_.grant_file + ": " + b.error().message);
  auto g = decode_grant(*b);
  if (!g) return fail(opt_.grant_file + ": " + g.error().message);
  auto k = client_login_key(opt_.identity, *b);
  if (!k) return fail(opt_.grant_file + ": " + k.error().message);
  return GrantCredential{std::move(*b), *k, std::move(*g)};
}

Result<GrantCredential, Error> GrantKeeper::fetch() {
  auto r = manager_call(opt_.manager, opt_.identity, json{{"op", "client-grants"}},
                        &opt_.manager_key, std::chrono::seconds(5));
  if (!r) return make_unexpected(r.error());
  const json& list = (*r)["grants"];
  if (!list.is_array()) return fail("manager answer has no grant list");
  std::optional<GrantCredential> best;
  int best_score = -1;
  for (const auto& e : list) {
    if (!e.is_object() || !e.contains("grant") || !e["grant"].is_string()) continue;
    auto b = parse_grant_text(e["grant"].get<std::string>());
    if (!b) continue;
    auto g = open_grant(*b, opt_.manager_key);
    if (!g || g->client_key != opt_.identity.public_key) continue;
    int score = 0;
    if (opt_.device_id >= 0) {
      if (g->device_id != static_cast<std::uint64_t>(opt_.device_id)) continue;
      score += 2;
    }
    if (!opt_.server_address.empty() && e.value("server_address", "") == opt_.server_address)
      score += 1;
    if (score <= best_score) continue;
    auto k = client_login_key(opt_.identity, *b);
    if (!k) continue;
    best_score = score;
    best = GrantCredential{std::move(*b), *k, std::move(*g)};
  }
  if (!best) return fail("the manager has no grant for this client" +
                         (opt_.device_id >= 0 ? " and device " + std::to_string(opt_.device_id)
                                              : std::string()));
  return std::move(*best);
}

Result<void, Error> GrantKeeper::start() {
  if (opt_.manager.empty()) {
    auto c = read_file();
    if (!c) return make_unexpected(c.error());
    std::lock_guard lock(mu_);
    cached_ = std::move(*c);
    return {};
  }
  auto c = fetch();
  if (!c) return make_unexpected(c.error());
  {
    std::lock_guard lock(mu_);
    cached_ = std::move(*c);
    renewals_++;
  }
  thread_ = std::thread([this] { run(); });
  return {};
}

void GrantKeeper::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    Duration wait = opt_.retry;
    if (cached_) {
      const std::uint64_t now = opt_.clock();
      const std::uint64_t life = cached_->info.expires - cached_->info.issued;
      const std::uint64_t renew_at = cached_->info.issued + life / 2;
      if (now < renew_at) wait = std::chrono::seconds(std::min<std::uint64_t>(renew_at - now, 3600));
      else wait = Duration::zero();
    } else {
      wait = Duration::zero();
    }
    if (wait > Duration::zero()) {
      cv_.wait_for(lock, wait, [this] { return stop_; });
      if (stop_) break;
      if (cached_ && opt_.clock() < cached_->info.issued +
                                        (cached_->info.expires - cached_->info.issued) / 2)
        continue;
    }
    lock.unlock();
    auto c = fetch();
    lock.lock();
    if (c) {
      cached_ = std::move(*c);
      renewals_++;
      last_error_.clear();
    } else {
      last_error_ = c.error().message;
      // The manager answered and lists no grant for us: revoked or deleted, drop it now. Manager
      // unreachable: keep the cached grant until it expires (servers still accept it).
      // (Transport failures are reported as "manager ADDR: ...", the manager's refusals not.)
      if (last_error_.rfind("manager " + opt_.manager + ":", 0) != 0) cached_.reset();
      IPSAN_LOG(LogLevel::kWarn, "grant", "renewal failed: ", last_error_);
      cv_.wait_for(lock, opt_.retry, [this] { return stop_; });
    }
  }
}

std::optional<GrantCredential> GrantKeeper::current() {
  if (opt_.manager.empty() && !opt_.grant_file.empty()) {
    auto c = read_file();
    if (!c) {
      IPSAN_LOG(LogLevel::kError, "grant", c.error().message);
      return std::nullopt;
    }
    std::lock_guard lock(mu_);
    cached_ = *c;
  }
  std::lock_guard lock(mu_);
  if (!cached_ || opt_.clock() >= cached_->info.expires) return std::nullopt;
  return cached_;
}

std::uint64_t GrantKeeper::renewals() const {
  std::lock_guard lock(mu_);
  return renewals_;
}

std::string GrantKeeper::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

}  // namespace ipsan::auth
