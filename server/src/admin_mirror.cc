// Admin requests for mirrors and jobs (see admin.h, docs/MIRROR.md): mirror status, online add /
// remove / replace / offline of a leg, resync and verify as jobs of the job engine, job list /
// cancel / rate limit. A monitor thread re-attaches failed legs that answer again and starts a
// resync job for any mirror with stale regions; it also clears idle write-intent bits.
#include <algorithm>
#include <condition_variable>
#include <thread>

#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"
#include "ipsan/server/admin.h"
#include "ipsan/server/replicate.h"
#include "ipsan/virt/mirror.h"

namespace ipsan::server {

using nlohmann::json;

struct LayoutManager::MirrorWatch {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::map<std::string, std::shared_ptr<virt::MirrorDisk>, std::less<>> mirrors;
  std::thread thread;

  std::shared_ptr<virt::MirrorDisk> find(const std::string& name) {
    std::lock_guard lk(mu);
    auto it = mirrors.find(name);
    return it == mirrors.end() ? nullptr : it->second;
  }
};

namespace {

constexpr std::uint64_t kStepBytes = 1 << 20;  // work per job step (the rate limit's grain)

std::string jstr(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// "limit": bytes per second as an integer or a size string ("50M"); absent: 0 (unlimited).
Result<std::uint64_t, Error> limit_from(const json& req) {
  auto it = req.find("limit");
  if (it == req.end() || it->is_null()) return std::uint64_t{0};
  if (it->is_number_unsigned()) return it->get<std::uint64_t>();
  if (it->is_string()) {
    auto v = parse_size(it->get<std::string>());
    if (!v) return fail("limit: " + v.error().message);
    return *v;
  }
  return fail("limit must be bytes per second (an integer or a size like \"50M\")");
}

class ResyncJob : public jobs::Job {
 public:
  explicit ResyncJob(std::shared_ptr<virt::MirrorDisk> m, std::uint64_t copied)
      : m_(std::move(m)), copied_(copied) {}
  Result<jobs::StepResult, Error> step() override {
    if (first_) {
      m_->reattach_failed();
      first_ = false;
    }
    const std::uint64_t region = m_->region_blocks() * m_->geometry().block_size;
    auto n = m_->resync_step(std::max<std::uint64_t>(1, kStepBytes / region));
    if (!n) return make_unexpected(n.error());
    copied_ += *n;
    stale_ = m_->status().stale_regions;
    jobs::StepResult r;
    r.bytes = *n * region;
    r.total_bytes = (copied_ + stale_) * region;
    r.finished = *n == 0;
    return r;
  }
  json checkpoint() const override { return json{{"regions_copied", copied_}}; }
  json result() const override {
    return json{{"regions_copied", copied_}, {"stale_regions", stale_}};
  }

 private:
  std::shared_ptr<virt::MirrorDisk> m_;
  std::uint64_t copied_ = 0, stale_ = 0;
  bool first_ = true;
};

class VerifyJob : public jobs::Job {
 public:
  VerifyJob(std::shared_ptr<virt::MirrorDisk> m, bool repair, const json& cp)
      : m_(std::move(m)), repair_(repair) {
    cursor_ = cp.value("cursor", std::uint64_t{0});
    rep_.regions_checked = cp.value("regions_checked", std::uint64_t{0});
    rep_.mismatched_regions = cp.value("mismatched_regions", std::uint64_t{0});
    rep_.repaired_regions = cp.value("repaired_regions", std::uint64_t{0});
    if (cp.contains("mismatches")) rep_.mismatches = cp["mismatches"].get<std::vector<std::uint64_t>>();
  }
  Result<jobs::StepResult, Error> step() override {
    const std::uint64_t region = m_->region_blocks() * m_->geometry().block_size;
    const std::uint64_t before = rep_.regions_checked;
    auto more = m_->verify_step(&cursor_, std::max<std::uint64_t>(1, kStepBytes / region), repair_,
                                rep_);
    if (!more) return make_unexpected(more.error());
    jobs::StepResult r;
    r.bytes = (rep_.regions_checked - before) * region;
    r.total_bytes = m_->regions() * region;
    r.finished = !*more;
    return r;
  }
  json checkpoint() const override { return result(); }
  json result() const override {
    return json{{"cursor", cursor_},
                {"repair", repair_},
                {"regions_checked", rep_.regions_checked},
                {"mismatched_regions", rep_.mismatched_regions},
                {"repaired_regions", rep_.repaired_regions},
                {"mismatches", rep_.mismatches}};
  }

 private:
  std::shared_ptr<virt::MirrorDisk> m_;
  bool repair_;
  std::uint64_t cursor_ = 0;
  virt::VerifyReport rep_;
};

json mirror_json(const virt::MirrorDisk& m, const jobs::JobEngine& engine) {
  const auto s = m.status();
  json legs = json::array();
  for (const auto& l : s.legs)
    legs.push_back({{"name", l.name},
                    {"state", std::string(virt::to_string(l.state))},
                    {"stale_regions", l.stale_regions},
                    {"stale_bytes", l.stale_regions * s.region_bytes},
                    {"errors", l.errors},
                    {"backend", l.describe}});
  json jl = json::array();
  for (const auto& j : engine.list())
    if (j.target == s.name && j.kind.rfind("mirror-", 0) == 0) jl.push_back(jobs::to_json(j));
  // The last few only.
  if (jl.size() > 4) jl.erase(jl.begin(), jl.end() - 4);
  return json{{"name", s.name},
              {"blocks", s.blocks},
              {"block_size", s.block_size},
              {"region_bytes", s.region_bytes},
              {"regions", s.regions},
              {"degraded", s.degraded},
              {"stale_regions", s.stale_regions},
              {"legs", legs},
              {"stats",
               {{"reads", s.stats.reads},
                {"writes", s.stats.writes},
                {"read_retries", s.stats.read_retries},
                {"bitmap_writes", s.stats.bitmap_writes},
                {"resync_regions", s.stats.resync_regions},
                {"resync_bytes", s.stats.resync_bytes},
                {"verify_regions", s.stats.verify_regions},
                {"verify_mismatches", s.stats.verify_mismatches},
                {"verify_repairs", s.stats.verify_repairs}}},
              {"jobs", jl}};
}

}  // namespace

bool is_mirror_op(const std::string& op) {
  return op.rfind("mirror-", 0) == 0 || op.rfind("job-", 0) == 0 ||
         op.rfind("replicate-", 0) == 0;
}

LayoutManager::~LayoutManager() { stop_jobs(); }

void LayoutManager::stop_jobs() {
  if (watch_) {
    {
      std::lock_guard lk(watch_->mu);
      watch_->stop = true;
    }
    watch_->cv.notify_all();
    if (watch_->thread.joinable()) watch_->thread.join();
  }
  jobs_.reset();  // joins the job threads; running jobs resume after the next start
}

void LayoutManager::watch_mirrors() {
  if (!watch_) return;
  std::lock_guard lk(watch_->mu);
  watch_->mirrors.clear();
  for (const auto& [name, m] : layout_.mirrors) watch_->mirrors[name] = m;
  if (repl_) repl_->set_layout(layout_);
}

Result<void, Error> LayoutManager::start_jobs() {
  std::filesystem::path state;
  if (!path_.empty()) state = path_.string() + ".jobs.json";
  jobs_ = std::make_unique<jobs::JobEngine>(state);
  watch_ = std::make_shared<MirrorWatch>();
  watch_mirrors();
  std::weak_ptr<MirrorWatch> w = watch_;
  jobs_->register_kind("mirror-resync", [w](const std::string& target, const json&,
                                            const json& cp) -> Result<std::unique_ptr<jobs::Job>, Error> {
    auto watch = w.lock();
    auto m = watch ? watch->find(target) : nullptr;
    if (!m) return fail("no mirror '" + target + "'");
    return std::unique_ptr<jobs::Job>(
        new ResyncJob(m, cp.value("regions_copied", std::uint64_t{0})));
  });
  jobs_->register_kind("mirror-verify", [w](const std::string& target, const json& params,
                                            const json& cp) -> Result<std::unique_ptr<jobs::Job>, Error> {
    auto watch = w.lock();
    auto m = watch ? watch->find(target) : nullptr;
    if (!m) return fail("no mirror '" + target + "'");
    return std::unique_ptr<jobs::Job>(new VerifyJob(m, params.value("repair", false), cp));
  });
  std::filesystem::path repl_state;
  if (!path_.empty()) repl_state = path_.string() + ".replication.json";
  repl_ = std::make_shared<ReplicationManager>(repl_state, layout_.base_dir);
  if (auto r = repl_->load(); !r) return make_unexpected(r.error());
  repl_->set_layout(layout_);
  repl_->register_kind(*jobs_);
  if (auto r = jobs_->load(); !r) return make_unexpected(r.error());
  jobs_->resume_all();
  // The monitor: failed legs that answer again are resynced; stale regions (e.g. after a crash)
  // get a resync job; idle write-intent bits are cleared.
  jobs::JobEngine* engine = jobs_.get();
  watch_->thread = std::thread([watch = watch_, engine, repl = repl_] {
    std::map<std::string, std::uint64_t> last_writes;
    std::map<std::string, int> idle;
    std::unique_lock lk(watch->mu);
    for (;;) {
      auto mirrors = watch->mirrors;
      lk.unlock();
      for (auto& [name, m] : mirrors) {
        auto st = m->status();
        const bool failed = std::any_of(st.legs.begin(), st.legs.end(), [](const virt::LegStatus& l) {
          return l.state == virt::LegState::kFailed;
        });
        if (failed && m->reattach_failed() > 0) st = m->status();
        if (st.stale_regions > 0 && !engine->running("mirror-resync", name) &&
            !engine->running("mirror-verify", name)) {
          auto r = engine->start("mirror-resync", name, json::object());
          if (!r) IPSAN_LOG(LogLevel::kWarn, "mirror", name, ": cannot start a resync: ", r.error().message);
        }
        // Two checkpoints after the last write: the second clears the bits of idle regions.
        if (last_writes[name] != st.stats.writes || idle[name] < 2) {
          idle[name] = last_writes[name] != st.stats.writes ? 0 : idle[name] + 1;
          last_writes[name] = st.stats.writes;
          m->checkpoint();
        }
      }
      repl->tick(*engine);
      lk.lock();
      if (watch->cv.wait_for(lk, std::chrono::seconds(2), [&] { return watch->stop; })) return;
    }
  });
  return {};
}

json LayoutManager::handle_mirror(const json& req, StorageServer& server) {
  auto error = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  const std::string op = jstr(req, "op");
  if (op.rfind("replicate-", 0) == 0) return repl_->handle(req, *jobs_);
  if (op == "job-list") {
    json out = json::array();
    for (const auto& j : jobs_->list()) out.push_back(jobs::to_json(j));
    return json{{"ok", true}, {"jobs", out}};
  }
  if (op == "job-cancel" || op == "job-limit") {
    auto it = req.find("id");
    if (it == req.end() || !it->is_number_unsigned()) return error(op + " needs an integer \"id\"");
    const auto id = it->get<std::uint64_t>();
    Result<void, Error> r;
    if (op == "job-cancel") {
      r = jobs_->cancel(id);
    } else {
      auto l = limit_from(req);
      if (!l) return error(l.error().message);
      r = jobs_->set_limit(id, *l);
    }
    if (!r) return error(r.error().message);
    return json{{"ok", true}, {"applied", op}, {"job", jobs::to_json(*jobs_->get(id))}};
  }
  if (op == "mirror-status") {
    const std::string name = jstr(req, "mirror");
    json out = json::array();
    for (const auto& [n, m] : layout_.mirrors)
      if (name.empty() || n == name) out.push_back(mirror_json(*m, *jobs_));
    if (!name.empty() && out.empty()) return error("no mirror '" + name + "'");
    return json{{"ok", true}, {"mirrors", out}};
  }
  const std::string name = jstr(req, "mirror");
  auto it = layout_.mirrors.find(name);
  if (it == layout_.mirrors.end())
    return error(name.empty() ? op + " needs \"mirror\"" : "no mirror '" + name + "'");
  auto mirror = it->second;
  auto desc_it = std::find_if(layout_.desc.mirrors.begin(), layout_.desc.mirrors.end(),
                              [&](const virt::MirrorDesc& d) { return d.name == name; });
  if (desc_it == layout_.desc.mirrors.end()) return error("mirror '" + name + "' is not in the layout");
  const std::size_t desc_index = static_cast<std::size_t>(desc_it - layout_.desc.mirrors.begin());

  if (op == "mirror-resync" || op == "mirror-verify") {
    auto l = limit_from(req);
    if (!l) return error(l.error().message);
    json params = json::object();
    if (op == "mirror-verify") {
      auto r = req.find("repair");
      if (r != req.end() && !r->is_boolean()) return error("repair must be true or false");
      params["repair"] = r != req.end() && r->get<bool>();
      if (jobs_->running("mirror-resync", name))
        return error("mirror '" + name + "' is resyncing; verify it when the resync is done");
    } else {
      mirror->reattach_failed(true);
    }
    auto id = jobs_->start(op, name, params, *l);
    if (!id) return error(id.error().message);
    return json{{"ok", true}, {"applied", op}, {"job", jobs::to_json(*jobs_->get(*id))}};
  }
  if (op == "mirror-offline") {
    auto r = mirror->offline_leg(jstr(req, "leg"));
    if (!r) return error(r.error().message);
    return json{{"ok", true}, {"applied", op}, {"mirror", mirror_json(*mirror, *jobs_)}};
  }
  // Leg changes edit the layout: the mirror first (its bitmap names its legs), then the file.
  auto used_elsewhere = [&](const std::string& dev) -> std::string {
    const auto& d = layout_.desc;
    for (const auto& m : d.mirrors) {
      if (std::find(m.legs.begin(), m.legs.end(), dev) != m.legs.end())
        return "a leg of mirror '" + m.name + "'";
      if (m.bitmap == dev) return "the bitmap of mirror '" + m.name + "'";
    }
    for (const auto& disk : d.disks) {
      if (std::find(disk.members.begin(), disk.members.end(), dev) != disk.members.end())
        return "disk '" + disk.name + "'";
      for (const auto& e : disk.extents)
        if (e.device == dev) return "disk '" + disk.name + "'";
    }
    for (const auto& s : d.splits)
      if (s.device == dev) return "a split";
    for (const auto& e : d.exports)
      if (e.disk == dev) return "export " + std::to_string(e.device_id);
    for (const auto& p : d.pools)
      if (p.device == dev) return "pool '" + p.name + "'";
    return {};
  };
  // The new leg: an existing unused device, or a new back end from "spec".
  auto new_leg = [&](const std::string& leg, const std::string& spec, virt::LayoutDesc& next,
                     backends::BackendPtr& out) -> std::string {
    if (leg.empty()) return op + " needs \"leg\"";
    if (!spec.empty()) {
      if (layout_.device(leg)) return "'" + leg + "' is already a device of the layout";
      auto b = backends::open_backend(virt::resolve_spec(spec, layout_.base_dir));
      if (!b) return "leg '" + leg + "': " + b.error().message;
      out = *b;
      next.backends.push_back(virt::BackendDesc{leg, spec});
      return {};
    }
    out = layout_.device(leg);
    if (!out) return "no device '" + leg + "' (give \"spec\" to open a new back end)";
    if (layout_.disks.count(leg)) return "'" + leg + "' is a virtual disk; legs are back ends or pool volumes";
    if (layout_.mirrors.count(leg)) return "'" + leg + "' is a mirror";
    if (auto u = used_elsewhere(leg); !u.empty()) return "'" + leg + "' is in use by " + u;
    return {};
  };
  virt::LayoutDesc next = layout_.desc;
  auto& legs = next.mirrors[desc_index].legs;
  if (op == "mirror-add-leg" || op == "mirror-replace-leg") {
    const std::string leg = jstr(req, op == "mirror-add-leg" ? "leg" : "new");
    const std::string old = jstr(req, "old");
    if (op == "mirror-replace-leg" && std::find(legs.begin(), legs.end(), old) == legs.end())
      return error("mirror '" + name + "' has no leg '" + old + "'");
    backends::BackendPtr b;
    if (auto e = new_leg(leg, jstr(req, "spec"), next, b); !e.empty()) return error(e);
    if (op == "mirror-replace-leg") {
      // Refuse before touching anything if the old leg is the only one in sync.
      auto st = mirror->status();
      int in_sync = 0;
      bool old_in_sync = false;
      for (const auto& l : st.legs)
        if (l.state == virt::LegState::kInSync) {
          ++in_sync;
          old_in_sync |= l.name == old;
        }
      if (old_in_sync && in_sync == 1)
        return error("'" + old + "' is the only in-sync leg of '" + name +
                     "': add the new leg, let it sync, then remove '" + old + "'");
    }
    if (auto r = mirror->add_leg(virt::Member{leg, b}); !r) return error(r.error().message);
    legs.push_back(leg);
    if (op == "mirror-replace-leg") {
      if (auto r = mirror->remove_leg(old); !r) {
        mirror->remove_leg(leg);
        return error(r.error().message);
      }
      legs.erase(std::find(legs.begin(), legs.end(), old));
    }
    if (auto r = commit(next, server); !r) {
      // Undo in the mirror: the layout file still names the old legs.
      mirror->remove_leg(leg);
      return error(r.error().message);
    }
    IPSAN_LOG(LogLevel::kInfo, "admin", op, " ", name, ": ", leg);
    auto l = limit_from(req);
    auto id = jobs_->start("mirror-resync", name, json::object(), l ? *l : 0);
    json out{{"ok", true}, {"applied", op}, {"mirror", mirror_json(*mirror, *jobs_)}};
    if (id) out["job"] = jobs::to_json(*jobs_->get(*id));
    return out;
  }
  if (op == "mirror-remove-leg") {
    const std::string leg = jstr(req, "leg");
    auto pos = std::find(legs.begin(), legs.end(), leg);
    if (pos == legs.end()) return error("mirror '" + name + "' has no leg '" + leg + "'");
    if (legs.size() == 1) return error("'" + leg + "' is the last leg of '" + name + "'");
    if (auto r = mirror->remove_leg(leg); !r) return error(r.error().message);
    legs.erase(pos);
    if (auto r = commit(next, server); !r)
      return error("leg removed from the mirror but the layout file was not updated (" +
                   r.error().message + "); the next start drops it as well");
    IPSAN_LOG(LogLevel::kInfo, "admin", op, " ", name, ": ", leg);
    return json{{"ok", true}, {"applied", op}, {"mirror", mirror_json(*mirror, *jobs_)}};
  }
  return error("unknown mirror op '" + op + "'");
}

}  // namespace ipsan::server
