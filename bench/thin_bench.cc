// Thin pool data path: 4 KiB random writes on a thin disk without a snapshot (overwrites of
// owned chunks), as the first write to a chunk after a snapshot (copy-on-write of a 64 KiB
// chunk), and as overwrites of chunks already copied; the same writes straight on the pool's
// device for reference; snapshot creation with 1 and 256 existing snapshots.
// The pool is a ram back end (file:0: the cost of the thin layer itself) or a file in $TMPDIR
// (file:1: page cache, and a worker-thread hand-off per I/O; snapshot create = two fdatasync).
// One request at a time: the pool serialises requests (docs/SNAPSHOTS.md, Limits).
// Links: ipsan_virt, ipsan_backends, benchmark::benchmark.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <vector>

#include "ipsan/backends/spec.h"
#include "ipsan/virt/thin.h"

namespace {

using ipsan::Errc;
using ipsan::backends::BackendPtr;
using ipsan::virt::ThinPool;

constexpr std::uint64_t kDisk = 256ull << 20;  // 4096 chunks of 64 KiB
constexpr std::uint64_t kChunk = 64 * 1024;

struct Fixture {
  std::filesystem::path path;
  BackendPtr dev;
  std::shared_ptr<ThinPool> pool;
  BackendPtr vol;
  explicit Fixture(bool file) {
    path =
        std::filesystem::temp_directory_path() / ("ipsan-thin-bench-" + std::to_string(::getpid()));
    std::filesystem::remove(path);
    dev = *ipsan::backends::open_backend(file ? "file:" + path.string() + ",size=1G"
                                              : std::string("ram:1G"));
    pool = *ThinPool::format(dev);
    (void)pool->create_disk("d", kDisk);
    vol = *pool->volume("d");
    // Allocate every chunk, so "no snapshot" measures overwrites of owned chunks.
    std::vector<std::uint8_t> c(kChunk, 1);
    for (std::uint64_t i = 0; i < kDisk / kChunk; ++i) write(i * kChunk / 512, c);
    (void)pool->commit();
  }
  ~Fixture() {
    vol.reset();
    pool.reset();
    dev.reset();
    std::filesystem::remove(path);
  }
  // The file back end completes on its worker threads: wait for the completion.
  static void write_on(ipsan::backends::Backend& b, std::uint64_t lba,
                       std::span<const std::uint8_t> d) {
    std::promise<Errc> p;
    b.write(lba, d, false, [&](Errc r) { p.set_value(r); });
    if (p.get_future().get() != Errc::kOk) std::abort();
  }
  void write(std::uint64_t lba, std::span<const std::uint8_t> d) { write_on(*vol, lba, d); }
};

Fixture& fixture(bool file) {
  static Fixture ram(false);
  static Fixture f(true);
  return file ? f : ram;
}

// mode 0: no snapshot; 1: first write after a snapshot (COW); 2: overwrite of a copied chunk;
// 3: the raw pool device (same offsets, no map).
void BM_ThinWrite4K(benchmark::State& state) {
  Fixture& f = fixture(state.range(1) != 0);
  const int mode = static_cast<int>(state.range(0));
  std::mt19937_64 rng(42);
  std::vector<std::uint8_t> buf(4096, 7);
  const std::uint64_t nchunks = kDisk / kChunk;
  std::vector<std::uint64_t> order(nchunks);
  std::size_t next = nchunks;  // forces a snapshot before the first COW write
  int snaps = 0;
  auto new_snapshot = [&] {
    (void)f.pool->snapshot("d", "bench" + std::to_string(snaps++));
    for (std::uint64_t i = 0; i < nchunks; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    next = 0;
  };
  if (mode == 2) {
    new_snapshot();
    for (std::uint64_t i = 0; i < nchunks; ++i) f.write(i * kChunk / 512, buf);  // copy all
  }
  for (auto _ : state) {
    std::uint64_t lba;
    if (mode == 1) {
      if (next == nchunks) {
        state.PauseTiming();
        new_snapshot();
        state.ResumeTiming();
      }
      lba = order[next++] * kChunk / 512 + (rng() % (kChunk / 4096)) * 8;
    } else {
      lba = (rng() % (kDisk / 4096)) * 8;
    }
    if (mode == 3)
      Fixture::write_on(*f.dev, lba, buf);
    else
      f.write(lba, buf);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["IOPS"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  for (int i = 0; i < snaps; ++i) (void)f.pool->remove("bench" + std::to_string(i));
  (void)f.pool->commit();
}
BENCHMARK(BM_ThinWrite4K)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->ArgNames({"mode", "file"})
    ->MinTime(1.0)
    ->UseRealTime();

// Snapshot creation (a durable metadata commit: two flushes of the pool device) with N snapshots.
void BM_SnapshotCreate(benchmark::State& state) {
  Fixture& f = fixture(state.range(1) != 0);
  const int existing = static_cast<int>(state.range(0));
  for (int i = 0; i < existing; ++i) (void)f.pool->snapshot("d", "old" + std::to_string(i));
  int n = 0;
  for (auto _ : state) {
    auto r = f.pool->snapshot("d", "new" + std::to_string(n));
    if (!r) std::abort();
    state.PauseTiming();
    (void)f.pool->remove("new" + std::to_string(n++));
    state.ResumeTiming();
  }
  for (int i = 0; i < existing; ++i) (void)f.pool->remove("old" + std::to_string(i));
  (void)f.pool->commit();
}
BENCHMARK(BM_SnapshotCreate)
    ->ArgsProduct({{1, 256}, {0, 1}})
    ->ArgNames({"snapshots", "file"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(200);

}  // namespace

BENCHMARK_MAIN();
