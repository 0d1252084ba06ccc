// Conformance suite "virtualization-remapping": layouts of patent FIG. 7A, 7B and 8, striped and
// layered, declared in TOML on ram back ends. Chosen logical sectors are written through the
// exported disks; then every block of every physical back end is read directly and must hold
// exactly the data the mapping puts there (checked against an independent reference model written
// here) and zeroes everywhere else.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "ipsan/base/bytes.h"
#include "ipsan/base/pattern.h"
#include "ipsan/base/rng.h"
#include "ipsan/virt/layout.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::testing::read_sync;
using backends::testing::write_sync;

constexpr std::uint32_t kBs = 512;
constexpr std::uint64_t kMiB = (1u << 20) / kBs;  // blocks per MiB

bool is_zero(std::span<const std::uint8_t> b) {
  static const std::uint8_t kZero[4096] = {};
  return b.size() <= sizeof kZero && std::memcmp(b.data(), kZero, b.size()) == 0;
}

struct Where {
  std::string backend;
  std::uint64_t lba;
};
// Reference model: logical block of an exported disk -> physical block.
using Reference = std::function<Where(std::uint64_t logical)>;

struct Written {
  std::uint64_t seed;  // one per exported disk, so misplaced blocks are recognisable
  std::uint64_t logical;
};

class Remapping : public ::testing::Test {
 protected:
  void SetUp() override { std::printf("seed %llu\n", static_cast<unsigned long long>(seed_base_)); }
  void load(std::string_view toml) {
    auto l = parse_layout(toml, {});
    ASSERT_TRUE(l.has_value()) << l.error().message;
    layout_ = std::move(*l);
  }

  // Writes `blocks` blocks at `lba` of export `id` (pattern seeded per export) and records where
  // each must land according to `ref`.
  void write(std::uint32_t id, const Reference& ref, std::uint64_t lba, std::uint64_t blocks) {
    const Export* e = layout_.find_export(id);
    ASSERT_NE(e, nullptr) << id;
    Bytes buf(blocks * kBs);
    fill_pattern_blocks(buf, kBs, seed_base_ + id, lba, 1);
    ASSERT_EQ(write_sync(*e->backend, lba, buf), Errc::kOk) << "export " << id << " lba " << lba;
    for (std::uint64_t i = 0; i < blocks; ++i) {
      const Where w = ref(lba + i);
      expected_[w.backend][w.lba] = Written{seed_base_ + id, lba + i};
    }
  }

  // Writes boundary sectors (0, last, both sides of each boundary) plus `random` random ones.
  void write_chosen(std::uint32_t id, const Reference& ref, std::vector<std::uint64_t> boundaries,
                    int random) {
    const Export* e = layout_.find_export(id);
    ASSERT_NE(e, nullptr);
    const std::uint64_t n = e->backend->geometry().block_count;
    std::set<std::uint64_t> lbas = {0, n - 1};
    for (auto b : boundaries) {
      if (b > 0) lbas.insert(b - 1);
      if (b < n) lbas.insert(b);
    }
    Rng rng(seed_base_ + id);
    for (int i = 0; i < random; ++i) lbas.insert(rng.below(n));
    for (auto l : lbas) write(id, ref, l, 1);
  }

  // Reads every physical back end in full: each block holds what was mapped there, else zeroes.
  void verify_physical() {
    std::uint64_t checked = 0, data_blocks = 0;
    for (const auto& [name, backend] : layout_.backends) {
      const std::uint64_t n = backend->geometry().block_count;
      const auto& exp = expected_[name];
      Bytes buf(std::min<std::uint64_t>(n, 4 * kMiB) * kBs);
      for (std::uint64_t base = 0; base < n; base += buf.size() / kBs) {
        const std::uint64_t count = std::min<std::uint64_t>(n - base, buf.size() / kBs);
        auto span = std::span<std::uint8_t>(buf).first(count * kBs);
        ASSERT_EQ(read_sync(*backend, base, span), Errc::kOk);
        for (std::uint64_t i = 0; i < count; ++i) {
          auto blk = span.subspan(i * kBs, kBs);
          auto it = exp.find(base + i);
          if (it != exp.end()) {
            ASSERT_TRUE(check_pattern(blk, it->second.seed, it->second.logical, 1))
                << name << " block " << base + i << " should hold logical " << it->second.logical;
            ++data_blocks;
          } else {
            ASSERT_TRUE(is_zero(blk))
                << name << " block " << base + i << " should be untouched (zero)";
          }
          ++checked;
        }
      }
    }
    std::size_t want = 0;
    for (const auto& [n, m] : expected_) want += m.size();
    EXPECT_EQ(data_blocks, want);
    std::printf("checked %llu physical blocks, %llu holding data\n",
                static_cast<unsigned long long>(checked),
                static_cast<unsigned long long>(data_blocks));
  }

  // Reads back through the export: the logical view is intact too.
  void verify_logical(std::uint32_t id, std::uint64_t lba, std::uint64_t blocks) {
    const Export* e = layout_.find_export(id);
    Bytes buf(blocks * kBs), want(blocks * kBs);
    fill_pattern_blocks(want, kBs, seed_base_ + id, lba, 1);
    ASSERT_EQ(read_sync(*e->backend, lba, buf), Errc::kOk);
    EXPECT_EQ(buf, want);
  }

  Layout layout_;
  std::uint64_t seed_base_ = 0x7A7B08;
  std::map<std::string, std::map<std::uint64_t, Written>> expected_;
};

// FIG. 7A: three 20 GB physical disks 710 mapped to one 60 GB virtual disk 720 (MiB here).
TEST_F(Remapping, Fig7aConcatenation) {
  load(R"(
[backend.d710a]
spec = "ram:20M"
[backend.d710b]
spec = "ram:20M"
[backend.d710c]
spec = "ram:20M"
[disk.v720]
type = "concat"
members = ["d710a", "d710b", "d710c"]
[[export]]
device_id = 720
disk = "v720"
)");
  const std::uint64_t d = 20 * kMiB;
  EXPECT_EQ(layout_.find_export(720)->backend->geometry().block_count, 3 * d);
  Reference ref = [&](std::uint64_t l) {
    static const char* names[] = {"d710a", "d710b", "d710c"};
    return Where{names[l / d], l % d};
  };
  write_chosen(720, ref, {d, 2 * d}, 200);
  write(720, ref, d - 100, 300);   // spans the first boundary
  write(720, ref, 2 * d - 5, 10);  // and the second
  verify_physical();
  verify_logical(720, d - 100, 300);
}

// FIG. 7B: one 80 GB physical disk 730 mapped to two 40 GB virtual disks 740.
TEST_F(Remapping, Fig7bSplit) {
  load(R"(
[backend.d730]
spec = "ram:80M"
[[split]]
device = "d730"
into = ["v740a", "v740b"]
[[export]]
device_id = 1
disk = "v740a"
[[export]]
device_id = 2
disk = "v740b"
)");
  const std::uint64_t half = 40 * kMiB;
  EXPECT_EQ(layout_.find_export(1)->backend->geometry().block_count, half);
  EXPECT_EQ(layout_.find_export(2)->backend->geometry().block_count, half);
  Reference a = [](std::uint64_t l) { return Where{"d730", l}; };
  Reference b = [&](std::uint64_t l) { return Where{"d730", half + l}; };
  write_chosen(1, a, {}, 150);
  write_chosen(2, b, {}, 150);
  write(1, a, half - 64, 64);  // the last blocks of the first half
  write(2, b, 0, 64);          // the first of the second: adjacent physically, distinct disks
  // Past the end of a half is refused, not spilled into the neighbour.
  Bytes one(kBs, 0xEE);
  EXPECT_EQ(write_sync(*layout_.find_export(1)->backend, half, one), Errc::kLbaOutOfRange);
  verify_physical();
  verify_logical(1, half - 64, 64);
  verify_logical(2, 0, 64);
}

// FIG. 8: physical disks 840 and 850 form virtual device 830. Disk 840 holds partition 842
// (blocks 0..N-1, untouched), virtual disk 844 (N..M-1) and 846 (M..end); disk 850 holds a used
// area 854 (0..U-1) and virtual disk 856 (U..end). Logical disk 810 = 844, so its sector 0 is
// physical sector N; logical disk 820 = 846 followed by 856, its sector 0 at physical sector M.
// The logical disks are extents of the virtual device 830: two layers of virtualization.
TEST_F(Remapping, Fig8LayeredLogicalDisks) {
  load(R"(
[backend.p840]
spec = "ram:32M"
[backend.p850]
spec = "ram:16M"
[disk.v830]
type = "concat"
members = ["p840", "p850"]
[disk.ld810]
type = "extents"
extents = [{ device = "v830", start_lba = 2048, blocks = 20480 }]
[disk.ld820]
type = "extents"
extents = [
  { device = "v830", start_lba = 22528, size = "21M" },
  { device = "v830", start = "40M" },
]
[[export]]
device_id = 810
disk = "ld810"
[[export]]
device_id = 820
disk = "ld820"
)");
  const std::uint64_t n = 2048, m = 22528, p840 = 32 * kMiB, u = 8 * kMiB;
  const std::uint64_t ld810 = m - n, first820 = p840 - m, ld820 = first820 + (16 * kMiB - u);
  EXPECT_EQ(layout_.find_export(810)->backend->geometry().block_count, ld810);
  EXPECT_EQ(layout_.find_export(820)->backend->geometry().block_count, ld820);
  Reference r810 = [&](std::uint64_t l) { return Where{"p840", n + l}; };
  Reference r820 = [&](std::uint64_t l) {
    return l < first820 ? Where{"p840", m + l} : Where{"p850", u + (l - first820)};
  };
  write_chosen(810, r810, {}, 100);
  write_chosen(820, r820, {first820}, 100);
  write(820, r820, first820 - 3, 7);  // spans 846 -> 856, i.e. disk 840 -> disk 850
  verify_physical();                  // partition 842 and used area 854 stay zero
  verify_logical(820, first820 - 3, 7);
  // The layers are visible: every command of the logical disks is a request of device 830.
  const auto v830 = layout_.disks.at("v830")->counters();
  const auto c810 = layout_.disks.at("ld810")->counters();
  const auto c820 = layout_.disks.at("ld820")->counters();
  EXPECT_GE(c820.split_requests, 1u);
  EXPECT_EQ(v830.requests, c810.backend_commands + c820.backend_commands);
}

// Striping: three 8 MiB disks, 64 KiB chunks, round-robin.
TEST_F(Remapping, Striped) {
  load(R"(
[backend.s0]
spec = "ram:8M"
[backend.s1]
spec = "ram:8M"
[backend.s2]
spec = "ram:8M"
[disk.stripe]
type = "stripe"
members = ["s0", "s1", "s2"]
chunk = "64K"
[[export]]
device_id = 3
disk = "stripe"
)");
  const std::uint64_t c = 128;
  Reference ref = [&](std::uint64_t l) {
    static const char* names[] = {"s0", "s1", "s2"};
    const std::uint64_t chunk = l / c;
    return Where{names[chunk % 3], (chunk / 3) * c + l % c};
  };
  std::vector<std::uint64_t> boundaries;
  for (std::uint64_t k = 1; k < 12; ++k) boundaries.push_back(k * c);
  write_chosen(3, ref, boundaries, 300);
  write(3, ref, 5 * c - 10, 4 * c + 20);  // six chunks, wrapping the members twice
  verify_physical();
  verify_logical(3, 5 * c - 10, 4 * c + 20);
}

// Layered: two concatenations striped together, then a slice of the stripe exported, with a
// 4096-byte block size throughout.
TEST_F(Remapping, LayeredStripeOfConcatsWithSlice) {
  load(R"(
[backend.a0]
spec = "ram:4M,bs=4096"
[backend.a1]
spec = "ram:4M,bs=4096"
[backend.b0]
spec = "ram:2M,bs=4096"
[backend.b1]
spec = "ram:6M,bs=4096"
[disk.ca]
type = "concat"
members = ["a0", "a1"]
[disk.cb]
type = "concat"
members = ["b0", "b1"]
[disk.st]
type = "stripe"
members = ["ca", "cb"]
chunk_blocks = 16
[disk.slice]
type = "extents"
extents = [{ device = "st", start_lba = 100, blocks = 3000 }]
[[export]]
device_id = 9
disk = "slice"
)");
  const std::uint64_t c = 16, mb = 256;  // 4096-byte blocks per MiB
  Reference ref = [&](std::uint64_t l) {
    const std::uint64_t s = l + 100, chunk = s / c;
    const std::uint64_t in_leg = (chunk / 2) * c + s % c;
    if (chunk % 2 == 0) {
      return in_leg < 4 * mb ? Where{"a0", in_leg} : Where{"a1", in_leg - 4 * mb};
    }
    return in_leg < 2 * mb ? Where{"b0", in_leg} : Where{"b1", in_leg - 2 * mb};
  };
  // The block size of the test scaffolding is 512; this layout uses 4096-byte blocks.
  const Export* e = layout_.find_export(9);
  ASSERT_EQ(e->backend->geometry().block_size, 4096u);
  Rng rng(seed_base_);
  std::map<std::string, std::map<std::uint64_t, std::uint64_t>> where;  // backend -> lba -> logical
  Bytes blk(4096);
  // 0, the last block, and both sides of the a0|a1 (1931, 1948) and b0|b1 (923, 940) boundaries.
  std::set<std::uint64_t> lbas = {0, 2999, 1931, 1948, 923, 940};
  for (int i = 0; i < 200; ++i) lbas.insert(rng.below(3000));
  for (auto l : lbas) {
    fill_pattern(blk, 9, l, 1);
    ASSERT_EQ(write_sync(*e->backend, l, blk), Errc::kOk);
    const Where w = ref(l);
    where[w.backend][w.lba] = l;
  }
  for (const auto& [name, backend] : layout_.backends) {
    const std::uint64_t n = backend->geometry().block_count;
    Bytes all(n * 4096);
    ASSERT_EQ(read_sync(*backend, 0, all), Errc::kOk);
    for (std::uint64_t i = 0; i < n; ++i) {
      auto b = std::span<const std::uint8_t>(all).subspan(i * 4096, 4096);
      auto it = where[name].find(i);
      if (it != where[name].end()) {
        ASSERT_TRUE(check_pattern(b, 9, it->second, 1)) << name << " " << i;
      } else {
        ASSERT_TRUE(is_zero(b))
            << name << " " << i;
      }
    }
  }
}

}  // namespace
}  // namespace ipsan::virt
