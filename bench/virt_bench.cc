// Micro-benchmarks of the virtualization layer: extent lookup (binary search), request mapping,
// and the full split + parallel issue + join path, for 10, 1 000 and 100 000 extents.
// Members are null back ends that complete inline without touching data, so only the
// virtualization cost is measured. Links: ipsan_virt, benchmark::benchmark.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "ipsan/base/rng.h"
#include "ipsan/virt/virtual_disk.h"

namespace {

using ipsan::Errc;
using ipsan::backends::Backend;
using ipsan::backends::Capabilities;
using ipsan::backends::Completion;
using ipsan::backends::Geometry;
using ipsan::virt::Member;
using ipsan::virt::Piece;
using ipsan::virt::Segment;
using ipsan::virt::VirtualDisk;

class NullBackend final : public Backend {
 public:
  explicit NullBackend(std::uint64_t blocks) : g_{512, blocks} {}
  Geometry geometry() const override { return g_; }
  Capabilities capabilities() const override { return {}; }
  std::string describe() const override { return "null"; }
  void read(std::uint64_t, std::span<std::uint8_t>, Completion done) override { done(Errc::kOk); }
  void write(std::uint64_t, std::span<const std::uint8_t>, bool, Completion done) override {
    done(Errc::kOk);
  }
  void flush(Completion done) override { done(Errc::kOk); }
  void trim(std::uint64_t, std::uint64_t, Completion done) override { done(Errc::kOk); }
  void write_zeroes(std::uint64_t, std::uint64_t, bool, Completion done) override {
    done(Errc::kOk);
  }

 private:
  Geometry g_;
};

constexpr std::uint64_t kExtentBlocks = 64;

// `n` extents of 64 blocks spread round-robin over four members with a one-block gap, so no two
// are physically contiguous (no merging).
std::shared_ptr<VirtualDisk> make_disk(std::size_t n) {
  std::vector<Member> members;
  for (int i = 0; i < 4; ++i) {
    members.push_back({"m" + std::to_string(i),
                       std::make_shared<NullBackend>((n / 4 + 1) * (kExtentBlocks + 1))});
  }
  std::vector<Segment> segs;
  for (std::size_t i = 0; i < n; ++i) {
    segs.push_back(
        Segment{static_cast<std::uint32_t>(i % 4), (i / 4) * (kExtentBlocks + 1), kExtentBlocks});
  }
  return *VirtualDisk::linear("bench", std::move(members), std::move(segs));
}

std::vector<std::uint64_t> random_lbas(std::uint64_t limit) {
  ipsan::Rng rng(42);
  std::vector<std::uint64_t> v(4096);
  for (auto& x : v) x = rng.below(limit);
  return v;
}

void BM_Lookup(benchmark::State& state) {
  auto vd = make_disk(static_cast<std::size_t>(state.range(0)));
  auto lbas = random_lbas(vd->geometry().block_count);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(vd->segment_index(lbas[i++ & 4095]));
  }
}
BENCHMARK(BM_Lookup)->Arg(10)->Arg(1000)->Arg(100000);

// Mapping a 16-block request (usually inside one extent) and a request spanning 4 extents.
void BM_Map(benchmark::State& state) {
  auto vd = make_disk(static_cast<std::size_t>(state.range(0)));
  const std::uint64_t blocks = static_cast<std::uint64_t>(state.range(1));
  auto lbas = random_lbas(vd->geometry().block_count - blocks);
  std::vector<Piece> pieces;
  std::size_t i = 0;
  for (auto _ : state) {
    pieces.clear();
    vd->map(lbas[i++ & 4095], blocks, pieces);
    benchmark::DoNotOptimize(pieces.data());
  }
}
BENCHMARK(BM_Map)->ArgsProduct({{10, 1000, 100000}, {16, 4 * kExtentBlocks}});

// The whole data path: range check, map, issue to members, join, completion.
void BM_ReadSplit(benchmark::State& state) {
  auto vd = make_disk(static_cast<std::size_t>(state.range(0)));
  const std::uint64_t blocks = static_cast<std::uint64_t>(state.range(1));
  auto lbas = random_lbas(vd->geometry().block_count - blocks);
  std::vector<std::uint8_t> buf(blocks * 512);
  std::size_t i = 0, done = 0;
  for (auto _ : state) {
    vd->read(lbas[i++ & 4095], buf, [&done](Errc) { ++done; });
  }
  benchmark::DoNotOptimize(done);
  const auto c = vd->counters();
  state.counters["cmds_per_req"] =
      static_cast<double>(c.backend_commands) / static_cast<double>(c.requests);
}
BENCHMARK(BM_ReadSplit)->ArgsProduct({{10, 1000, 100000}, {16, 4 * kExtentBlocks}});

}  // namespace

BENCHMARK_MAIN();
