// conformance/rudp/workload.cc: seeded workload, block model and runner (workload.h).
#include "workload.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ipsan/base/pattern.h"
#include "ipsan/base/rng.h"

namespace ipsan::conformance {

namespace {

constexpr std::uint64_t kPatternMagic = 0x697073616e50544eull;  // base/pattern.cc "ipsanPTN"
constexpr std::size_t kMaxFailureLines = 12;

std::uint32_t draw_blocks(Rng& rng, std::uint32_t max_blocks) {
  // Mostly small requests, some medium, a few multi-fragment giants (up to max_blocks).
  const std::uint64_t r = rng.below(100);
  std::uint64_t lo = 1, hi = 8;
  if (r >= 60 && r < 90) {
    lo = 9;
    hi = 64;
  } else if (r >= 90 && r < 98) {
    lo = 65;
    hi = 256;
  } else if (r >= 98) {
    lo = max_blocks / 2;
    hi = max_blocks;
  }
  hi = std::min<std::uint64_t>(hi, max_blocks);
  lo = std::min(lo, hi);
  return static_cast<std::uint32_t>(lo + rng.below(hi - lo + 1));
}

std::string kib(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fMiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

bool overlaps(const WorkOp& a, const WorkOp& b) {
  if (a.kind == OpKind::kFlush || b.kind == OpKind::kFlush) return false;
  return a.lba < b.lba + b.blocks && b.lba < a.lba + a.blocks;
}

}  // namespace

std::vector<WorkOp> make_workload(const WorkloadOptions& o) {
  Rng rng(o.seed ^ 0x7275647063306e66ull);  // "rudpc0nf": independent of the pattern stream
  std::vector<WorkOp> ops;
  std::vector<WorkOp> recent;  // ring of the last writes, targets of overwrites
  const std::uint32_t max_blocks =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(o.max_io_blocks, o.device_blocks));
  std::uint64_t written = 0;
  while (written < o.write_bytes) {
    WorkOp op;
    const std::uint64_t k = rng.below(100);
    if (k < o.flush_percent) {
      op.kind = OpKind::kFlush;
    } else if (k < o.flush_percent + o.read_percent) {
      op.kind = OpKind::kRead;
    } else {
      op.kind = OpKind::kWrite;
    }
    if (op.kind != OpKind::kFlush) {
      op.blocks = draw_blocks(rng, max_blocks);
      if (op.blocks < o.min_io_blocks) op.blocks = std::min(o.min_io_blocks, max_blocks);
      const bool aim_recent = !recent.empty() && rng.below(100) < o.overwrite_percent;
      if (aim_recent) {
        const WorkOp& t = recent[rng.below(recent.size())];
        // Same start, or shifted inside the old range, so overwrites overlap partially too.
        op.lba = t.lba + rng.below(t.blocks);
      } else {
        op.lba = rng.below(o.device_blocks);
      }
      if (op.lba + op.blocks > o.device_blocks) op.lba = o.device_blocks - op.blocks;
    }
    if (op.kind == OpKind::kWrite) {
      op.generation = ops.size() + 1;
      op.fua = rng.below(100) < o.fua_percent;
      written += std::uint64_t{op.blocks} * o.block_size;
      if (recent.size() < 16) {
        recent.push_back(op);
      } else {
        recent[rng.below(recent.size())] = op;
      }
    }
    ops.push_back(op);
  }
  return ops;
}

std::uint64_t digest(const std::vector<WorkOp>& ops) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 0x100000001b3ull;
    }
  };
  for (const WorkOp& op : ops) {
    mix(static_cast<std::uint64_t>(op.kind));
    mix(op.lba);
    mix(op.blocks);
    mix(op.generation);
    mix(op.fua ? 1 : 0);
  }
  return h;
}

std::string describe(const std::vector<WorkOp>& ops, std::uint32_t block_size, std::size_t show) {
  std::size_t writes = 0, reads = 0, flushes = 0;
  std::uint64_t wbytes = 0, rbytes = 0;
  for (const WorkOp& op : ops) {
    if (op.kind == OpKind::kWrite) {
      ++writes;
      wbytes += std::uint64_t{op.blocks} * block_size;
    } else if (op.kind == OpKind::kRead) {
      ++reads;
      rbytes += std::uint64_t{op.blocks} * block_size;
    } else {
      ++flushes;
    }
  }
  std::ostringstream os;
  char d[32];
  std::snprintf(d, sizeof d, "0x%016llx", static_cast<unsigned long long>(digest(ops)));
  os << "ops=" << ops.size() << " writes=" << writes << " reads=" << reads << " flushes=" << flushes
     << " written=" << kib(wbytes) << " read=" << kib(rbytes) << " digest=" << d;
  static const char* const kNames[] = {"write", "read", "flush"};
  for (std::size_t i = 0; i < std::min(show, ops.size()); ++i) {
    const WorkOp& op = ops[i];
    os << "\n  #" << i << ' ' << kNames[static_cast<int>(op.kind)];
    if (op.kind != OpKind::kFlush) os << " lba=" << op.lba << " blocks=" << op.blocks;
    if (op.kind == OpKind::kWrite) os << " gen=" << op.generation << (op.fua ? " fua" : "");
  }
  return os.str();
}

Model::Model(std::uint64_t seed, std::uint32_t block_size, std::uint64_t blocks)
    : seed_(seed), block_size_(block_size), gen_(blocks, 0) {}

void Model::acknowledged(const WorkOp& w) {
  for (std::uint64_t b = w.lba; b < w.lba + w.blocks; ++b) {
    gen_[b] = w.generation;
    uncertain_.erase(b);
  }
}

void Model::unknown_fate(const WorkOp& w) {
  for (std::uint64_t b = w.lba; b < w.lba + w.blocks; ++b) uncertain_[b].push_back(w.generation);
}

bool Model::matches(std::uint64_t lba, std::uint64_t gen, ByteSpan block) const {
  if (gen == 0)
    return std::all_of(block.begin(), block.end(), [](std::uint8_t c) { return c == 0; });
  return check_pattern(block, seed_, lba, gen);
}

std::string Model::check(std::uint64_t lba, ByteSpan block) const {
  const std::uint64_t want = gen_[lba];
  if (matches(lba, want, block)) return {};
  if (auto it = uncertain_.find(lba); it != uncertain_.end()) {
    for (std::uint64_t g : it->second)
      if (matches(lba, g, block)) return {};
  }
  std::ostringstream os;
  os << "lba " << lba << ": expected generation " << want;
  if (block.size() >= 32 && load_be64(block.data()) == kPatternMagic) {
    const std::uint64_t seed = load_be64(block.data() + 8);
    const std::uint64_t at = load_be64(block.data() + 16);
    const std::uint64_t gen = load_be64(block.data() + 24);
    os << ", holds a block of (seed " << seed << ", lba " << at << ", generation " << gen << ")";
    if (seed == seed_ && at == lba && check_pattern(block, seed_, lba, gen)) {
      os << (gen < want ? ": an OLDER write (lost write, or an old write applied again)"
                        : ": a write the model never acknowledged");
    } else {
      os << ": corrupted or misplaced data";
    }
  } else if (std::all_of(block.begin(), block.end(), [](std::uint8_t c) { return c == 0; })) {
    os << ", holds zeroes: lost write";
  } else {
    os << ", holds unrecognisable bytes: corruption";
  }
  return os.str();
}

Bytes pattern_data(const WorkOp& w, std::uint64_t seed, std::uint32_t block_size) {
  Bytes data(std::size_t{w.blocks} * block_size);
  fill_pattern_blocks(data, block_size, seed, w.lba, w.generation);
  return data;
}

void RunReport::fail(std::string what) {
  ++failures_total;
  if (failures.size() < kMaxFailureLines) failures.push_back(std::move(what));
}

Runner::Runner(client::GenericTarget& target, std::vector<WorkOp> ops, Model& model,
               RunOptions options, std::function<void(RunReport)> done)
    : target_(target),
      ops_(std::move(ops)),
      model_(model),
      opt_(std::move(options)),
      done_(std::move(done)) {
  if (opt_.queue_depth == 0) opt_.queue_depth = 1;
}

std::shared_ptr<Runner> Runner::start(client::GenericTarget& target, std::vector<WorkOp> ops,
                                      Model& model, RunOptions options,
                                      std::function<void(RunReport)> done) {
  auto r =
      std::make_shared<Runner>(target, std::move(ops), model, std::move(options), std::move(done));
  r->start_ = steady_now();
  r->report_.latencies.reserve(r->ops_.size());
  r->pump();
  return r;
}

bool Runner::conflicts(const WorkOp& op) const {
  for (const auto& [i, a] : active_) {
    if ((a.kind == OpKind::kWrite || op.kind == OpKind::kWrite) && overlaps(a, op)) return true;
  }
  return false;
}

void Runner::pump() {
  while (next_ < ops_.size() && active_.size() < opt_.queue_depth && !conflicts(ops_[next_])) {
    issue(next_++);
  }
  if (!finished_ && completed_ == ops_.size()) {
    finished_ = true;
    report_.elapsed = steady_now() - start_;
    auto done = std::move(done_);
    done(std::move(report_));
  }
}

void Runner::issue(std::size_t index) {
  const WorkOp& op = ops_[index];
  active_.emplace(index, op);
  proto::Request req;
  req.device_id = opt_.device_id;
  switch (op.kind) {
    case OpKind::kWrite:
      req.op = proto::Op::kWrite;
      req.lba = op.lba;
      req.blocks = op.blocks;
      req.flags = op.fua ? proto::kFlagFua : 0;
      req.data = pattern_data(op, model_.seed(), model_.block_size());
      break;
    case OpKind::kRead:
      req.op = proto::Op::kRead;
      req.lba = op.lba;
      req.blocks = op.blocks;
      break;
    case OpKind::kFlush: req.op = proto::Op::kFlush; break;
  }
  const TimePoint t0 = steady_now();
  std::weak_ptr<Runner> weak = weak_from_this();
  target_.execute(std::move(req), [weak, index, t0](proto::Reply rep) {
    if (auto self = weak.lock()) self->completed(index, t0, std::move(rep));
  });
}

void Runner::completed(std::size_t index, TimePoint issued, proto::Reply reply) {
  auto it = active_.find(index);
  if (it == active_.end()) return;
  const WorkOp op = it->second;
  active_.erase(it);
  ++completed_;
  ++report_.ops_done;
  report_.latencies.push_back(steady_now() - issued);
  const char* name = op.kind == OpKind::kWrite  ? "write"
                     : op.kind == OpKind::kRead ? "read"
                                                : "flush";
  if (reply.status != Errc::kOk) {
    if (reply.status == Errc::kTimeout) ++report_.timeouts;
    if (reply.status == Errc::kTimeout && opt_.allow_timeouts) {
      if (op.kind == OpKind::kWrite) model_.unknown_fate(op);
    } else {
      std::ostringstream os;
      os << "op #" << index << ' ' << name << " lba=" << op.lba << " blocks=" << op.blocks
         << " failed: " << to_string(reply.status);
      report_.fail(os.str());
      if (op.kind == OpKind::kWrite) model_.unknown_fate(op);
    }
  } else if (op.kind == OpKind::kWrite) {
    report_.bytes_written += std::uint64_t{op.blocks} * model_.block_size();
    if (opt_.on_write_acked) opt_.on_write_acked(op, model_.generation(op.lba));
    model_.acknowledged(op);
  } else if (op.kind == OpKind::kRead) {
    const std::size_t bs = model_.block_size();
    if (reply.data.size() != std::size_t{op.blocks} * bs) {
      std::ostringstream os;
      os << "op #" << index << " read lba=" << op.lba << " blocks=" << op.blocks << " returned "
         << reply.data.size() << " bytes";
      report_.fail(os.str());
    } else {
      report_.bytes_read += reply.data.size();
      for (std::uint32_t b = 0; b < op.blocks; ++b) {
        std::string why =
            model_.check(op.lba + b, ByteSpan(reply.data).subspan(std::size_t{b} * bs, bs));
        if (!why.empty()) report_.fail("op #" + std::to_string(index) + " read: " + why);
      }
    }
  }
  pump();
}

void verify_all(client::GenericTarget& target, const Model& model, std::uint32_t device_id,
                std::uint32_t io_blocks, std::uint32_t queue_depth,
                std::function<void(RunReport)> done) {
  struct State {
    client::GenericTarget& target;
    const Model& model;
    std::uint32_t device_id, io_blocks, queue_depth;
    std::function<void(RunReport)> done;
    std::uint64_t next = 0;
    std::uint32_t active = 0;
    RunReport report;
    TimePoint start = steady_now();
    bool finished = false;
  };
  auto st = std::make_shared<State>(State{target,
                                          model,
                                          device_id,
                                          std::max(io_blocks, 1u),
                                          std::max(queue_depth, 1u),
                                          std::move(done),
                                          0,
                                          0,
                                          {},
                                          steady_now(),
                                          false});
  auto pump = std::make_shared<std::function<void()>>();
  *pump = [st, weak_pump = std::weak_ptr<std::function<void()>>(pump)]() {
    while (st->next < st->model.blocks() && st->active < st->queue_depth) {
      const std::uint64_t lba = st->next;
      const auto n = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(st->io_blocks, st->model.blocks() - lba));
      st->next += n;
      ++st->active;
      proto::Request req;
      req.op = proto::Op::kRead;
      req.device_id = st->device_id;
      req.lba = lba;
      req.blocks = n;
      const TimePoint t0 = steady_now();
      auto p = weak_pump.lock();
      st->target.execute(std::move(req), [st, p, lba, n, t0](proto::Reply rep) {
        --st->active;
        ++st->report.ops_done;
        st->report.latencies.push_back(steady_now() - t0);
        const std::size_t bs = st->model.block_size();
        if (rep.status != Errc::kOk) {
          st->report.fail("verify read lba=" + std::to_string(lba) +
                          " failed: " + std::string(to_string(rep.status)));
        } else if (rep.data.size() != std::size_t{n} * bs) {
          st->report.fail("verify read lba=" + std::to_string(lba) + ": short data");
        } else {
          st->report.bytes_read += rep.data.size();
          for (std::uint32_t b = 0; b < n; ++b) {
            std::string why =
                st->model.check(lba + b, ByteSpan(rep.data).subspan(std::size_t{b} * bs, bs));
            if (!why.empty()) st->report.fail("final verify: " + why);
          }
        }
        if (p) (*p)();
      });
    }
    if (!st->finished && st->active == 0 && st->next >= st->model.blocks()) {
      st->finished = true;
      st->report.elapsed = steady_now() - st->start;
      auto d = std::move(st->done);
      d(std::move(st->report));
    }
  };
  // The pump owns itself through the completions it hands out; the first call starts the chain.
  (*pump)();
}

}  // namespace ipsan::conformance
