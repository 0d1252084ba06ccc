// Crash consistency of the thin pool: many seeded runs of a write + snapshot workload on a
// SimDisk that dies at a random operation, loses a random part of its volatile cache, and is
// reopened. After every crash: the pool opens, check() finds no leaked or doubly-owned chunk,
// every snapshot is intact, and every block holds its last flushed (or FUA) write or a later one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <random>

#include "ipsan/virt/thin.h"
#include "sim_disk.h"
#include "test_util.h"
#include "thin_model.h"

namespace ipsan::virt {
namespace {

using backends::testing::flush_sync;
using backends::testing::read_sync;
using backends::testing::trim_sync;
using backends::testing::write_sync;
using testing::Model;
using testing::SimDisk;

constexpr std::uint32_t kBs = 512;
constexpr std::uint64_t kBlocks = 128;  // 16 chunks of 4 KiB per volume

std::uint64_t env_u64(const char* var, std::uint64_t dflt) {
  if (const char* s = std::getenv(var)) return std::strtoull(s, nullptr, 0);
  return dflt;
}

// Does the reopened pool match `m` (same volumes; every block an allowed value)?
std::string compare(ThinPool& pool, const Model& m) {
  auto vols = pool.list();
  if (vols.size() != m.size())
    return "volume count " + std::to_string(vols.size()) + " != " + std::to_string(m.size());
  for (const auto& [name, mv] : m) {
    auto vol = pool.volume(name);
    if (!vol) return "missing volume " + name;
    std::vector<std::uint8_t> data(kBlocks * kBs);
    if (read_sync(**vol, 0, data) != Errc::kOk) return "read failed on " + name;
    for (std::uint64_t b = 0; b < kBlocks; ++b) {
      const long long got = testing::unstamp(&data[b * kBs], kBs, b);
      if (got < 0 || !mv.cells[b].allows(static_cast<std::uint32_t>(got))) {
        return "volume " + name + " block " + std::to_string(b) + " holds " + std::to_string(got) +
               ", durable " + std::to_string(mv.cells[b].durable) + ", " +
               std::to_string(mv.cells[b].pending.size()) + " pending";
      }
    }
  }
  return {};
}

// The model after reading what the pool actually holds (all of it durable from now on).
void settle(ThinPool& pool, Model& m) {
  for (auto& [name, mv] : m) {
    auto vol = *pool.volume(name);
    std::vector<std::uint8_t> data(kBlocks * kBs);
    ASSERT_EQ(read_sync(*vol, 0, data), Errc::kOk);
    for (std::uint64_t b = 0; b < kBlocks; ++b) {
      mv.cells[b].durable = static_cast<std::uint32_t>(testing::unstamp(&data[b * kBs], kBs, b));
      mv.cells[b].pending.clear();
    }
  }
}

struct Workload {
  std::mt19937_64& rng;
  std::shared_ptr<ThinPool> pool;
  Model model;
  std::optional<Model> alt;  // the model if the interrupted admin operation took effect
  std::uint32_t next_id = 1;
  int next_name = 0;

  std::string pick(bool snapshots) {
    std::vector<std::string> c;
    for (auto& [n, v] : model)
      if (v.snapshot == snapshots) c.push_back(n);
    if (c.empty()) return {};
    return c[rng() % c.size()];
  }

  // One random step; false when the device died under it.
  bool step() {
    alt.reset();
    const int op = static_cast<int>(rng() % 100);
    if (op < 60) {
      std::string name = pick(false);
      if (name.empty()) return true;
      const std::uint64_t n = 1 + rng() % 12;
      const std::uint64_t lba = rng() % (kBlocks - n + 1);
      const bool fua = rng() % 6 == 0;
      std::vector<std::uint8_t> buf(n * kBs);
      const std::uint32_t id = next_id++;
      for (std::uint64_t i = 0; i < n; ++i) testing::stamp(&buf[i * kBs], kBs, id, lba + i);
      for (std::uint64_t i = 0; i < n; ++i) model[name].cells[lba + i].pending.push_back(id);
      if (write_sync(**pool->volume(name), lba, buf, fua) != Errc::kOk) return false;
      if (fua) {
        for (std::uint64_t i = 0; i < n; ++i) {
          auto& c = model[name].cells[lba + i];
          c.durable = id;
          c.pending.clear();
        }
      }
    } else if (op < 64) {
      std::string name = pick(false);
      if (name.empty()) return true;
      const std::uint64_t n = 1 + rng() % 20;
      const std::uint64_t lba = rng() % (kBlocks - n + 1);
      for (std::uint64_t i = 0; i < n; ++i) model[name].cells[lba + i].pending.push_back(0);
      if (trim_sync(**pool->volume(name), lba, n) != Errc::kOk) return false;
    } else if (op < 76) {
      std::string name = pick(false);
      if (name.empty()) return true;
      if (flush_sync(**pool->volume(name)) != Errc::kOk) return false;
      model[name].flush();
    } else if (op < 86) {
      std::string src = pick(false);
      if (src.empty() || model.size() >= 8) return true;
      const std::string snap = "s" + std::to_string(next_name++);
      Model post = model;
      post[src].flush();
      post[snap] = post[src];
      post[snap].snapshot = true;
      alt = post;
      if (!pool->snapshot(src, snap)) return false;
      model = std::move(post);
    } else if (op < 90) {
      std::string snap = pick(true);
      if (snap.empty() || model.size() >= 8) return true;
      const std::string c = "c" + std::to_string(next_name++);
      Model post = model;
      post[c] = post[snap];
      post[c].snapshot = false;
      alt = post;
      if (!pool->clone(snap, c)) return false;
      model = std::move(post);
    } else if (op < 94) {
      std::string dst = pick(false), snap = pick(true);
      if (dst.empty() || snap.empty()) return true;
      Model post = model;
      post[dst] = post[snap];
      post[dst].snapshot = false;
      alt = post;
      if (!pool->rollback(dst, snap)) return false;
      model = std::move(post);
    } else {
      if (model.size() < 3) return true;
      std::string victim = pick(rng() % 3 != 0);
      if (victim.empty()) return true;
      Model post = model;
      post.erase(victim);
      alt = post;
      if (!pool->remove(victim)) return false;
      model = std::move(post);
    }
    alt.reset();
    return true;
  }
};

TEST(ThinCrash, KillAtRandomPointsManyTimes) {
  const std::uint64_t base = env_u64("IPSAN_THIN_CRASH_SEED", 17);
  const std::uint64_t iters = env_u64("IPSAN_THIN_CRASH_ITERS", 400);
  std::printf("thin crash test: seeds %llu..%llu (IPSAN_THIN_CRASH_SEED, IPSAN_THIN_CRASH_ITERS)\n",
              static_cast<unsigned long long>(base),
              static_cast<unsigned long long>(base + iters - 1));
  std::uint64_t crashes_in_admin = 0, recovered_alt = 0, checkpoints = 0;
  for (std::uint64_t it = 0; it < iters; ++it) {
    const std::uint64_t seed = base + it;
    std::mt19937_64 rng(seed);
    // Small metadata areas so checkpoints and superblock flips happen often.
    auto dev = std::make_shared<SimDisk>((1 << 20) / kBs, kBs);
    ThinFormatOptions o;
    o.chunk_bytes = 4096;
    o.metadata_bytes = 96 * 1024;  // ~36 KiB per checkpoint area, ~16 KiB log
    auto fmt = ThinPool::format(dev, o);
    ASSERT_TRUE(fmt) << fmt.error().message;
    Workload w{rng, *fmt, {}, {}};
    ASSERT_TRUE(w.pool->create_disk("d", kBlocks * kBs));
    w.model["d"].cells.resize(kBlocks);
    // Some warm-up history, then die at a random device operation.
    const int warm = static_cast<int>(rng() % 40);
    for (int i = 0; i < warm; ++i) ASSERT_TRUE(w.step()) << "seed " << seed;
    dev->arm(1 + rng() % 300);
    for (int i = 0; i < 400 && w.step(); ++i) {
    }
    checkpoints += w.pool->usage().checkpoints;
    const bool in_admin = w.alt.has_value();
    crashes_in_admin += in_admin;
    w.pool.reset();
    dev->crash(rng);
    auto reopened = ThinPool::open(dev);
    ASSERT_TRUE(reopened) << reopened.error().message << " seed " << seed;
    auto& pool = **reopened;
    auto chk = pool.check();
    ASSERT_TRUE(chk) << chk.error().message << " seed " << seed;
    std::string why = compare(pool, w.model);
    if (!why.empty() && w.alt) {
      const std::string why_alt = compare(pool, *w.alt);
      if (why_alt.empty()) {
        w.model = *w.alt;
        why.clear();
        ++recovered_alt;
      } else {
        why += " / if the interrupted operation happened: " + why_alt;
      }
    }
    ASSERT_TRUE(why.empty()) << why << " seed " << seed;
    // The recovered pool keeps working (the torn log tail is overwritten) and a clean restart
    // returns exactly what was written.
    w.pool = *reopened;
    settle(*w.pool, w.model);
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(w.step()) << "seed " << seed;
    ASSERT_EQ(w.pool->commit(), Errc::kOk);
    for (auto& [n, v] : w.model) v.flush();
    w.pool.reset();
    dev->crash(rng);
    auto again = ThinPool::open(dev);
    ASSERT_TRUE(again) << again.error().message << " seed " << seed;
    ASSERT_TRUE((*again)->check()) << "seed " << seed;
    why = compare(**again, w.model);
    ASSERT_TRUE(why.empty()) << "after clean restart: " << why << " seed " << seed;
  }
  std::printf(
      "thin crash test: %llu runs, %llu died inside an admin operation (%llu took effect), "
      "%llu checkpoints\n",
      static_cast<unsigned long long>(iters), static_cast<unsigned long long>(crashes_in_admin),
      static_cast<unsigned long long>(recovered_alt), static_cast<unsigned long long>(checkpoints));
}

}  // namespace
}  // namespace ipsan::virt
