// Incremental replication of thin disks as jobs; see replicate.h and docs/MIRROR.md.
#include "ipsan/server/replicate.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <sstream>

#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"
#include "ipsan/base/units.h"

namespace ipsan::server {

using nlohmann::json;

namespace {

constexpr std::uint64_t kStepBytes = 16 << 20;  // per step (persisted cursor, rate-limit grain)
constexpr std::uint64_t kPieceBytes = 1 << 20;  // per target write

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Errc wait_for(const std::function<void(backends::Completion)>& op) {
  auto p = std::make_shared<std::promise<Errc>>();
  auto f = p->get_future();
  op([p](Errc e) { p->set_value(e); });
  if (f.wait_for(std::chrono::seconds(120)) != std::future_status::ready) return Errc::kTimeout;
  return f.get();
}

std::string jstr(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool write_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return false;
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

json cycle_json(const ReplicationManager::Cycle& c) {
  json ex = json::array();
  for (const auto& e : c.extents) ex.push_back(json::array({e.lba, e.blocks}));
  return json{{"snapshot", c.snapshot}, {"base", c.base},     {"extents", ex},
              {"index", c.index},       {"offset", c.offset}, {"bytes", c.bytes},
              {"started", c.started},   {"point", c.point}};
}

ReplicationManager::Cycle cycle_from(const json& j) {
  ReplicationManager::Cycle c;
  c.snapshot = j.at("snapshot").get<std::string>();
  c.base = j.at("base").get<std::string>();
  for (const auto& e : j.at("extents"))
    c.extents.push_back(virt::ThinExtent{e.at(0).get<std::uint64_t>(), e.at(1).get<std::uint64_t>()});
  c.index = j.at("index").get<std::uint64_t>();
  c.offset = j.at("offset").get<std::uint64_t>();
  c.bytes = j.value("bytes", std::uint64_t{0});
  c.started = j.value("started", std::int64_t{0});
  c.point = j.value("point", std::int64_t{0});
  return c;
}

std::uint64_t cycle_total_blocks(const ReplicationManager::Cycle& c) {
  std::uint64_t t = 0;
  for (const auto& e : c.extents) t += e.blocks;
  return t;
}

std::uint64_t cycle_done_blocks(const ReplicationManager::Cycle& c) {
  std::uint64_t t = 0;
  for (std::uint64_t i = 0; i < c.index && i < c.extents.size(); ++i) t += c.extents[i].blocks;
  return t + c.offset;
}

class ReplicateJob : public jobs::Job {
 public:
  ReplicateJob(std::shared_ptr<ReplicationManager> mgr, std::string disk)
      : mgr_(std::move(mgr)), disk_(std::move(disk)) {}

  Result<jobs::StepResult, Error> step() override {
    if (!src_) {
      if (auto r = start(); !r) return make_unexpected(r.error());
    }
    ReplicationManager::Cycle c;
    {
      std::lock_guard lk(mgr_->mu());
      c = mgr_->relations().at(disk_).cycle;
    }
    const std::uint32_t bs = src_->geometry().block_size;
    jobs::StepResult res;
    res.total_bytes = cycle_total_blocks(c) * bs;
    // Up to kStepBytes per step, in pieces of at most kPieceBytes written in parallel (a WAN
    // needs many bytes in flight); the cursor moves only when every piece is on the target.
    struct Piece {
      std::uint64_t lba, blocks;
      std::vector<std::uint8_t> data;
    };
    std::vector<Piece> pieces;
    std::uint64_t budget = std::max<std::uint64_t>(1, step_bytes_ / bs);
    const std::uint64_t piece_max = std::max<std::uint64_t>(1, kPieceBytes / bs);
    while (budget > 0 && c.index < c.extents.size()) {
      const auto& e = c.extents[c.index];
      const std::uint64_t n = std::min({budget, piece_max, e.blocks - c.offset});
      Piece p{e.lba + c.offset, n, std::vector<std::uint8_t>(static_cast<std::size_t>(n * bs))};
      Errc err = wait_for([&](backends::Completion d) { src_->read(p.lba, p.data, std::move(d)); });
      if (err != Errc::kOk)
        return fail(err, "reading snapshot '" + c.snapshot + "' at block " + std::to_string(p.lba) +
                             ": " + std::string(to_string(err)));
      pieces.push_back(std::move(p));
      c.offset += n;
      c.bytes += n * bs;
      res.bytes += n * bs;
      budget -= n;
      if (c.offset == e.blocks) {
        ++c.index;
        c.offset = 0;
      }
    }
    {
      struct Wait {
        std::mutex mu;
        std::condition_variable cv;
        std::size_t left;
        Errc err = Errc::kOk;
        std::uint64_t lba = 0;
      };
      auto w = std::make_shared<Wait>();
      w->left = pieces.size();
      for (auto& p : pieces) {
        const std::uint64_t lba = p.lba;
        target_->write(p.lba, p.data, false, [w, lba](Errc e) {
          std::lock_guard lk(w->mu);
          if (e != Errc::kOk && w->err == Errc::kOk) {
            w->err = e;
            w->lba = lba;
          }
          if (--w->left == 0) w->cv.notify_all();
        });
      }
      std::unique_lock lk(w->mu);
      if (!w->cv.wait_for(lk, std::chrono::seconds(300), [&] { return w->left == 0; }))
        return fail(Errc::kTimeout, "the target did not answer within 300 s");
      if (w->err != Errc::kOk)
        return fail(w->err, "writing the target at block " + std::to_string(w->lba) + ": " +
                                std::string(to_string(w->err)) + " (the cycle resumes from here)");
    }
    if (c.index < c.extents.size()) {
      // Persist the cursor only once the target has these writes (a flush per step).
      if (Errc err = wait_for([&](backends::Completion d) { target_->flush(std::move(d)); });
          err != Errc::kOk)
        return fail(err, "flushing the target: " + std::string(to_string(err)));
      std::lock_guard lk(mgr_->mu());
      auto& rel = mgr_->relations().at(disk_);
      rel.cycle = c;
      mgr_->save_locked();
      return res;
    }
    // The cycle is complete: the target holds the snapshot once flushed.
    if (Errc err = wait_for([&](backends::Completion d) { target_->flush(std::move(d)); });
        err != Errc::kOk)
      return fail(err, "flushing the target: " + std::string(to_string(err)));
    std::string old;
    {
      std::lock_guard lk(mgr_->mu());
      auto& rel = mgr_->relations().at(disk_);
      old = rel.last_snapshot;
      rel.last_snapshot = c.snapshot;
      rel.last_point = c.point;
      rel.last_bytes = c.bytes;
      rel.last_seconds = std::max<double>(
          0.001, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
      if (resumed_) rel.last_seconds = static_cast<double>(std::max<std::int64_t>(1, unix_now() - c.started));
      ++rel.cycles;
      rel.in_cycle = false;
      rel.cycle = {};
      mgr_->save_locked();
      result_ = json{{"snapshot", c.snapshot}, {"bytes", c.bytes}, {"extents", c.extents.size()},
                     {"incremental", !c.base.empty()}, {"seconds", rel.last_seconds}};
    }
    if (!old.empty()) {
      if (auto r = pool_->remove(old); !r)
        IPSAN_LOG(LogLevel::kWarn, "replicate", disk_, ": cannot delete the old point '", old,
                  "': ", r.error().message);
    }
    IPSAN_LOG(LogLevel::kInfo, "replicate", disk_, ": cycle done, ", c.bytes, " bytes, point ",
              c.snapshot);
    res.finished = true;
    return res;
  }
  json result() const override { return result_; }

 private:
  Result<void, Error> start() {
    t0_ = std::chrono::steady_clock::now();
    auto pool = mgr_->pool_of(disk_);
    if (!pool) return make_unexpected(pool.error());
    pool_ = *pool;
    {
      std::lock_guard lk(mgr_->mu());
      const auto& rel = mgr_->relations().at(disk_);
      resumed_ = rel.in_cycle;
      // Under a rate limit, steps of about half a second: the limit stays smooth.
      if (rel.limit) step_bytes_ = std::clamp<std::uint64_t>(rel.limit / 2, kPieceBytes, kStepBytes);
    }
    if (auto r = mgr_->begin_cycle(disk_); !r) return r;
    std::string spec, snap;
    {
      std::lock_guard lk(mgr_->mu());
      const auto& rel = mgr_->relations().at(disk_);
      spec = rel.target;
      snap = rel.cycle.snapshot;
    }
    auto src = pool_->volume(snap);
    if (!src) return make_unexpected(src.error());
    src_ = *src;
    auto t = backends::open_backend(spec);
    if (!t) return fail(t.error().code, "target '" + spec + "': " + t.error().message);
    target_ = *t;
    const auto sg = src_->geometry(), tg = target_->geometry();
    if (tg.block_size != sg.block_size || tg.block_count < sg.block_count)
      return fail("target '" + spec + "' (" + std::to_string(tg.size_bytes()) +
                  " bytes, block size " + std::to_string(tg.block_size) + ") cannot hold '" +
                  disk_ + "' (" + std::to_string(sg.size_bytes()) + " bytes, block size " +
                  std::to_string(sg.block_size) + ")");
    if (target_->capabilities().read_only) return fail("target '" + spec + "' is read-only");
    return {};
  }

  std::shared_ptr<ReplicationManager> mgr_;
  std::string disk_;
  std::shared_ptr<virt::ThinPool> pool_;
  backends::BackendPtr src_, target_;
  std::chrono::steady_clock::time_point t0_;
  bool resumed_ = false;
  std::uint64_t step_bytes_ = kStepBytes;
  json result_ = json::object();
};

}  // namespace

ReplicationManager::ReplicationManager(std::filesystem::path state_file,
                                       std::filesystem::path base_dir)
    : path_(std::move(state_file)), base_dir_(std::move(base_dir)) {}

Result<void, Error> ReplicationManager::load() {
  if (path_.empty()) return {};
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return {};
  std::ifstream in(path_, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  try {
    const json j = json::parse(text.str());
    std::lock_guard lk(mu_);
    for (const auto& x : j.at("relations")) {
      Relation r;
      r.disk = x.at("disk").get<std::string>();
      r.target = x.at("target").get<std::string>();
      r.interval_s = x.value("interval_s", std::uint64_t{0});
      r.limit = x.value("limit", std::uint64_t{0});
      r.seq = x.value("seq", std::uint64_t{0});
      r.last_snapshot = x.value("last_snapshot", std::string());
      r.last_point = x.value("last_point", std::int64_t{0});
      r.last_bytes = x.value("last_bytes", std::uint64_t{0});
      r.last_seconds = x.value("last_seconds", 0.0);
      r.cycles = x.value("cycles", std::uint64_t{0});
      if (x.contains("cycle") && !x["cycle"].is_null()) {
        r.in_cycle = true;
        r.cycle = cycle_from(x["cycle"]);
      }
      rel_[r.disk] = std::move(r);
    }
  } catch (const std::exception& e) {
    return fail(path_.string() + ": not a replication state file: " + e.what());
  }
  return {};
}

void ReplicationManager::save_locked() {
  if (path_.empty()) return;
  json rels = json::array();
  for (const auto& [d, r] : rel_) {
    json x{{"disk", r.disk},
           {"target", r.target},
           {"interval_s", r.interval_s},
           {"limit", r.limit},
           {"seq", r.seq},
           {"last_snapshot", r.last_snapshot},
           {"last_point", r.last_point},
           {"last_bytes", r.last_bytes},
           {"last_seconds", r.last_seconds},
           {"cycles", r.cycles},
           {"cycle", r.in_cycle ? cycle_json(r.cycle) : json()}};
    rels.push_back(std::move(x));
  }
  if (!write_atomically(path_, json{{"relations", rels}}.dump(1) + "\n"))
    IPSAN_LOG(LogLevel::kError, "replicate", "cannot write ", path_.string());
}

void ReplicationManager::set_layout(const virt::Layout& layout) {
  std::lock_guard lk(mu_);
  pools_ = layout.pools;
  layout_specs_.clear();
  for (const auto& b : layout.desc.backends)
    layout_specs_.push_back(virt::resolve_spec(b.spec, layout.base_dir));
}

Result<std::shared_ptr<virt::ThinPool>, Error> ReplicationManager::pool_of(
    const std::string& disk) const {
  std::lock_guard lk(mu_);
  for (const auto& [n, p] : pools_) {
    auto i = p->info(disk);
    if (!i) continue;
    if (i->kind == virt::ThinKind::kSnapshot)
      return fail("'" + disk + "' is a snapshot; replicate a thin disk or clone");
    return p;
  }
  return fail("no thin disk '" + disk + "' in any pool (replication needs a thin disk: [pool.NAME])");
}

Result<void, Error> ReplicationManager::begin_cycle(const std::string& disk) {
  auto pool = pool_of(disk);
  if (!pool) return make_unexpected(pool.error());
  std::lock_guard lk(mu_);
  auto it = rel_.find(disk);
  if (it == rel_.end()) return fail("'" + disk + "' is not replicated (replicate-set first)");
  Relation& r = it->second;
  if (r.in_cycle && (*pool)->info(r.cycle.snapshot)) return {};  // resume
  // A new point in time.
  Cycle c;
  c.snapshot = disk + "-rep-" + std::to_string(++r.seq);
  while ((*pool)->info(c.snapshot)) c.snapshot = disk + "-rep-" + std::to_string(++r.seq);
  if (auto s = (*pool)->snapshot(disk, c.snapshot); !s) return make_unexpected(s.error());
  c.point = unix_now();
  c.started = c.point;
  if (!r.last_snapshot.empty() && (*pool)->info(r.last_snapshot)) {
    c.base = r.last_snapshot;
    auto d = (*pool)->diff(c.base, c.snapshot);
    if (!d) return make_unexpected(d.error());
    c.extents = std::move(*d);
  } else {
    auto info = (*pool)->info(disk);
    c.extents.push_back(virt::ThinExtent{0, info->blocks});
  }
  r.in_cycle = true;
  r.cycle = std::move(c);
  save_locked();
  return {};
}

void ReplicationManager::register_kind(jobs::JobEngine& engine) {
  std::weak_ptr<ReplicationManager> w = weak_from_this();
  engine.register_kind("replicate", [w](const std::string& disk, const json&, const json&)
                                        -> Result<std::unique_ptr<jobs::Job>, Error> {
    auto m = w.lock();
    if (!m) return fail("shutting down");
    {
      std::lock_guard lk(m->mu());
      if (!m->relations().count(disk)) return fail("'" + disk + "' is not replicated");
    }
    if (auto p = m->pool_of(disk); !p) return make_unexpected(p.error());
    return std::unique_ptr<jobs::Job>(new ReplicateJob(m, disk));
  });
}

void ReplicationManager::tick(jobs::JobEngine& engine) {
  std::vector<std::pair<std::string, std::uint64_t>> due;
  {
    std::lock_guard lk(mu_);
    const std::int64_t now = unix_now();
    for (const auto& [d, r] : rel_) {
      if (r.interval_s == 0) continue;
      const std::int64_t last = r.in_cycle ? 0 : r.last_point;
      if (now - last >= static_cast<std::int64_t>(r.interval_s)) due.emplace_back(d, r.limit);
    }
  }
  for (auto& [d, limit] : due) {
    if (engine.running("replicate", d)) continue;
    auto id = engine.start("replicate", d, json::object(), limit);
    if (!id) IPSAN_LOG(LogLevel::kWarn, "replicate", d, ": scheduled cycle: ", id.error().message);
  }
}

json ReplicationManager::handle(const json& req, jobs::JobEngine& engine) {
  auto error = [](const std::string& m) { return json{{"ok", false}, {"error", m}}; };
  const std::string op = jstr(req, "op");
  const std::string disk = jstr(req, "disk");
  auto status_of = [&](const Relation& r) {
    const std::int64_t now = unix_now();
    json j{{"disk", r.disk},
           {"target", r.target},
           {"interval_s", r.interval_s},
           {"limit_bytes_per_s", r.limit},
           {"cycles", r.cycles},
           {"last_point", r.last_snapshot},
           {"last_point_time", r.last_point},
           {"lag_s", r.last_point ? json(now - r.last_point) : json()},
           {"last_cycle_bytes", r.last_bytes},
           {"last_cycle_seconds", r.last_seconds},
           {"last_cycle_bytes_per_s",
            r.last_seconds > 0 ? static_cast<double>(r.last_bytes) / r.last_seconds : 0.0}};
    if (r.in_cycle) {
      const std::uint64_t total = cycle_total_blocks(r.cycle), done = cycle_done_blocks(r.cycle);
      j["cycle"] = {{"snapshot", r.cycle.snapshot},
                    {"incremental", !r.cycle.base.empty()},
                    {"done_blocks", done},
                    {"total_blocks", total},
                    {"progress", total ? static_cast<double>(done) / static_cast<double>(total) : 0.0}};
    }
    if (auto id = engine.running("replicate", r.disk)) j["job"] = jobs::to_json(*engine.get(*id));
    return j;
  };
  if (op == "replicate-status") {
    json out = json::array();
    std::lock_guard lk(mu_);
    for (const auto& [d, r] : rel_)
      if (disk.empty() || d == disk) out.push_back(status_of(r));
    if (!disk.empty() && out.empty()) return error("'" + disk + "' is not replicated");
    return json{{"ok", true}, {"replications", out}};
  }
  if (disk.empty()) return error(op + " needs \"disk\"");
  if (op == "replicate-set") {
    const std::string target = jstr(req, "target");
    if (target.empty()) return error("replicate-set needs \"target\" (a back-end spec)");
    auto pool = pool_of(disk);
    if (!pool) return error(pool.error().message);
    std::uint64_t interval = 0, limit = 0;
    if (auto it = req.find("interval"); it != req.end()) {
      if (it->is_number_unsigned()) interval = it->get<std::uint64_t>();
      else if (it->is_string()) {
        auto d = parse_duration(it->get<std::string>());
        if (!d) return error("interval: " + d.error().message);
        interval = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(*d).count());
      } else return error("interval must be seconds or a duration like \"5m\"");
    }
    if (auto it = req.find("limit"); it != req.end()) {
      if (it->is_number_unsigned()) limit = it->get<std::uint64_t>();
      else if (it->is_string()) {
        auto v = parse_size(it->get<std::string>());
        if (!v) return error("limit: " + v.error().message);
        limit = *v;
      } else return error("limit must be bytes per second");
    }
    const std::string resolved = virt::resolve_spec(target, base_dir_);
    {
      std::lock_guard lk(mu_);
      for (const auto& s : layout_specs_)
        if (s == resolved) return error("target '" + target + "' is a back end of this server's layout (in use)");
      for (const auto& [d, r] : rel_)
        if (d != disk && r.target == resolved)
          return error("target '" + target + "' is already the replica of '" + d + "'");
    }
    // Validate the target now (size, block size, writable): a clear error, nothing written.
    auto t = backends::open_backend(resolved);
    if (!t) return error("target '" + target + "': " + t.error().message);
    auto info = (*pool)->info(disk);
    const auto tg = (*t)->geometry();
    const std::uint64_t bs = (*pool)->usage().block_size;
    if (tg.block_size != bs || tg.block_count < info->blocks)
      return error("target '" + target + "' (" + std::to_string(tg.size_bytes()) +
                   " bytes) is smaller than '" + disk + "' (" + std::to_string(info->blocks * bs) +
                   " bytes) or has another block size");
    if ((*t)->capabilities().read_only) return error("target '" + target + "' is read-only");
    t->reset();
    if (engine.running("replicate", disk)) return error("a cycle of '" + disk + "' is running");
    std::lock_guard lk(mu_);
    Relation& r = rel_[disk];
    if (r.disk.empty()) r.disk = disk;
    if (!r.target.empty() && r.target != resolved) {
      // Another target: the next cycle is a full copy.
      r.last_snapshot.clear();
      r.last_point = 0;
      r.in_cycle = false;
    }
    r.target = resolved;
    r.interval_s = interval;
    r.limit = limit;
    save_locked();
    return json{{"ok", true}, {"applied", op}, {"replication", status_of(r)}};
  }
  if (op == "replicate-run") {
    std::uint64_t limit = 0;
    {
      std::lock_guard lk(mu_);
      auto it = rel_.find(disk);
      if (it == rel_.end()) return error("'" + disk + "' is not replicated (replicate-set first)");
      limit = it->second.limit;
    }
    auto id = engine.start("replicate", disk, json::object(), limit);
    if (!id) return error(id.error().message);
    return json{{"ok", true}, {"applied", op}, {"job", jobs::to_json(*engine.get(*id))}};
  }
  if (op == "replicate-remove") {
    if (engine.running("replicate", disk)) return error("a cycle of '" + disk + "' is running; cancel it first");
    Relation r;
    {
      std::lock_guard lk(mu_);
      auto it = rel_.find(disk);
      if (it == rel_.end()) return error("'" + disk + "' is not replicated");
      r = it->second;
      rel_.erase(it);
      save_locked();
    }
    if (auto pool = pool_of(disk)) {
      if (!r.last_snapshot.empty()) (void)(*pool)->remove(r.last_snapshot);
      if (r.in_cycle) (void)(*pool)->remove(r.cycle.snapshot);
    }
    return json{{"ok", true}, {"applied", op}};
  }
  return error("unknown replication op '" + op + "'");
}

}  // namespace ipsan::server
