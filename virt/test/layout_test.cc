#include "ipsan/virt/layout.h"

#include <gtest/gtest.h>

#include <fstream>

#include "ipsan/base/bytes.h"
#include "ipsan/base/pattern.h"
#include "temp_dir.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::testing::read_sync;
using backends::testing::TempDir;
using backends::testing::write_sync;

constexpr std::string_view kFig7 = R"(
# FIG. 7A: three 20 GB physical disks as one 60 GB virtual disk (scaled to MiB here).
[backend.p1]
spec = "ram:20M"
[backend.p2]
spec = "ram:20M"
[backend.p3]
spec = "ram:20M"

[disk.big]
type = "concat"
members = ["p1", "p2", "p3"]

# FIG. 7B: one 80 GB disk as two 40 GB disks.
[backend.p80]
spec = "ram:80M"

[[split]]
device = "p80"
into = ["half_a", "half_b"]

[[export]]
device_id = 1
disk = "big"
clients = ["alice"]

[[export]]
device_id = 2
disk = "half_a"

[[export]]
device_id = 3
disk = "half_b"
read_only = true
)";

Layout build(std::string_view text, const std::filesystem::path& dir = {}) {
  auto r = parse_layout(text, dir);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r ? std::move(*r) : Layout{};
}

TEST(Layout, BuildsFigure7) {
  Layout l = build(kFig7);
  ASSERT_EQ(l.exports.size(), 3u);
  const Export* big = l.find_export(1);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->name, "big");
  EXPECT_EQ(big->backend->geometry().size_bytes(), 60u << 20);
  EXPECT_TRUE(big->allows("alice"));
  EXPECT_FALSE(big->allows("mallory"));
  const Export* a = l.find_export(2);
  const Export* b = l.find_export(3);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->backend->geometry().size_bytes(), 40u << 20);
  EXPECT_EQ(b->backend->geometry().size_bytes(), 40u << 20);
  EXPECT_TRUE(a->allows("anyone"));
  EXPECT_FALSE(a->read_only);
  EXPECT_TRUE(b->read_only);
  Bytes w(512, 1);
  EXPECT_EQ(write_sync(*b->backend, 0, w), Errc::kWriteProtected);
  EXPECT_EQ(l.find_export(4), nullptr);
  // half_b block 0 is p80 block 40 MiB / 512.
  ASSERT_EQ(write_sync(*a->backend, (40u << 20) / 512 - 1, w), Errc::kOk);
  Bytes r(512);
  ASSERT_EQ(read_sync(*l.backends.at("p80"), (40u << 20) / 512 - 1, r), Errc::kOk);
  EXPECT_EQ(r, w);
}

TEST(Layout, RoundTripsThroughToml) {
  auto d = parse_layout_desc(kFig7);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  const std::string text = to_toml(*d);
  auto again = parse_layout_desc(text);
  ASSERT_TRUE(again.has_value()) << again.error().message << "\n" << text;
  EXPECT_EQ(*again, *d) << text;
  EXPECT_EQ(to_toml(*again), text);
  Layout l1 = build(kFig7), l2 = build(text);
  ASSERT_EQ(l1.exports.size(), l2.exports.size());
  for (std::size_t i = 0; i < l1.exports.size(); ++i) {
    EXPECT_EQ(l1.exports[i].device_id, l2.exports[i].device_id);
    EXPECT_EQ(l1.exports[i].name, l2.exports[i].name);
    EXPECT_EQ(l1.exports[i].backend->geometry().block_count,
              l2.exports[i].backend->geometry().block_count);
    EXPECT_EQ(l1.exports[i].read_only, l2.exports[i].read_only);
    EXPECT_EQ(l1.exports[i].allowed_clients, l2.exports[i].allowed_clients);
  }
}

TEST(Layout, RoundTripsEveryFieldKind) {
  constexpr std::string_view text = R"(
[backend.a]
spec = "ram:1M"
[backend.b]
spec = "ram:1M"
[backend.c]
spec = "ram:2M"
[disk.s]
type = "stripe"
members = ["a", "b"]
chunk_blocks = 8
[disk.e]
type = "extents"
extents = [
  { device = "c", start_lba = 100, blocks = 50 },
  { device = "c", start = "512K", size = "256K" },
  { device = "c", start = "1M" },
]
[[export]]
device_id = 4294967295
disk = "e"
clients = ["x", "y\"z"]
)";
  auto d = parse_layout_desc(text);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  auto again = parse_layout_desc(to_toml(*d));
  ASSERT_TRUE(again.has_value()) << again.error().message << "\n" << to_toml(*d);
  EXPECT_EQ(*again, *d) << to_toml(*d);
  Layout l = build(text);
  EXPECT_EQ(l.disks.at("s")->geometry().block_count, 4096u);
  EXPECT_EQ(l.disks.at("e")->geometry().block_count, 50u + 512 + 2048);
  EXPECT_EQ(l.find_export(4294967295u)->allowed_clients[1], "y\"z");
}

TEST(Layout, ResolvesRelativeFilePathsAgainstTheConfigDirectory) {
  TempDir dir;
  {
    std::ofstream f(dir / "layout.toml");
    f << "[backend.img]\nspec = \"file:disk.img,size=1M\"\n"
         "[[export]]\ndevice_id = 7\ndisk = \"img\"\n";
  }
  auto l = load_layout(dir / "layout.toml");
  ASSERT_TRUE(l.has_value()) << l.error().message;
  EXPECT_TRUE(std::filesystem::exists(dir / "disk.img"));
  EXPECT_EQ(l->find_export(7)->backend->geometry().size_bytes(), 1u << 20);
  EXPECT_EQ(resolve_spec("file:a/b.img,ro", "/etc/ipsan"), "file:/etc/ipsan/a/b.img,ro");
  EXPECT_EQ(resolve_spec("file:/abs.img", "/etc/ipsan"), "file:/abs.img");
  EXPECT_EQ(resolve_spec("ram:1M", "/etc/ipsan"), "ram:1M");

  auto missing = load_layout(dir / "nope.toml");
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("cannot read"), std::string::npos);
}

TEST(Layout, ReusesOpenBackendsOnRebuild) {
  TempDir dir;
  const std::string text =
      "[backend.img]\nspec = \"file:" + (dir / "x.img").string() + ",size=1M\"\n";
  Layout first = build(text);
  ASSERT_EQ(first.backends.size(), 1u);
  // Opening the same image again would fail (flock); reuse hands over the open backend.
  EXPECT_FALSE(parse_layout(text, {}).has_value());
  auto desc = parse_layout_desc(text);
  auto second = build_layout(*desc, {}, &first);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_EQ(second->backends.at("img"), first.backends.at("img"));
}

// Every invalid layout is refused with a message naming the entry at fault.
TEST(Layout, InvalidLayoutsGiveClearErrors) {
  const std::string two = "[backend.a]\nspec = \"ram:1M\"\n[backend.b]\nspec = \"ram:1M\"\n";
  const std::pair<std::string, std::string> cases[] = {
      {"[backend.a\nspec = 1", "line 1"},
      {"colour = 1", "unknown key 'colour'"},
      {"[backend.a]\nspec = 5", "backend 'a': 'spec' must be a string"},
      {"[backend.a]\nspec = \"tape:x\"", "backend 'a': 'tape:x': unknown back-end kind"},
      {"[backend.a]\nspec = \"ram:1M\"\npath = \"x\"", "backend 'a': unknown key 'path'"},
      {two + "[disk.d]\ntype = \"mirror\"\nmembers = [\"a\"]", "disk 'd': unknown type 'mirror'"},
      {two + "[disk.d]\nmembers = [\"a\"]", "disk 'd': missing 'type'"},
      {two + "[disk.d]\ntype = \"concat\"\nmembers = [\"a\", \"zz\"]",
       "disk 'd': refers to 'zz', which is not a backend or disk"},
      {two + "[disk.d]\ntype = \"concat\"\nmembers = []", "disk 'd': no members"},
      {two + "[disk.d]\ntype = \"concat\"\nmembers = [\"a\", \"e\"]\n"
             "[disk.e]\ntype = \"concat\"\nmembers = [\"d\"]",
       "cycle: d -> e -> d"},
      {two + "[disk.a]\ntype = \"concat\"\nmembers = [\"b\"]", "duplicate device name 'a'"},
      {two + "[disk.d]\ntype = \"concat\"\nmembers = [\"a\"]\n"
             "[disk.e]\ntype = \"extents\"\nextents = [{ device = \"a\", start_lba = 10, "
             "blocks = 5 }]",
       "overlap on 'a' at block 10: disk 'd' and disk 'e'"},
      {two + "[disk.d]\ntype = \"extents\"\nextents = [{ device = \"a\", blocks = 10 }, "
             "{ device = \"a\", start_lba = 5, blocks = 10 }]",
       "overlap on 'a' at block 5: disk 'd' uses them twice"},
      {two + "[disk.d]\ntype = \"extents\"\nextents = [{ device = \"a\", start_lba = 2000, "
             "blocks = 100 }]",
       "disk 'd' extent 1: blocks 2000..2099 reach past the end of 'a' (2048 blocks)"},
      {two + "[disk.d]\ntype = \"extents\"\nextents = [{ device = \"a\", start = 1000 }]",
       "disk 'd' extent 1: start 1000 bytes is not a multiple of the block size 512"},
      {two + "[disk.d]\ntype = \"extents\"\nextents = [{ device = \"a\", start = 1, "
             "start_lba = 1 }]",
       "give 'start' or 'start_lba', not both"},
      {two + "[disk.d]\ntype = \"extents\"\nextents = [{ device = \"a\", colour = 1 }]",
       "disk 'd' extent 1: unknown key 'colour'"},
      {two + "[[split]]\ndevice = \"a\"\ninto = [\"x\", \"y\"]\nsizes = [\"600K\", \"600K\"]",
       "split of 'a': sizes add up to 2400 blocks but 'a' has only 2048"},
      {two + "[[split]]\ndevice = \"a\"\ninto = [\"x\", \"y\"]\nsizes = [\"600K\"]",
       "1 sizes for 2 parts"},
      {two + "[backend.c]\nspec = \"ram:2M\"\n[disk.s]\ntype = \"stripe\"\n"
             "members = [\"a\", \"c\"]\nchunk = \"64K\"",
       "disk 's': stripe member 'c' has 4096 blocks but 'a' has 2048"},
      {two + "[disk.s]\ntype = \"stripe\"\nmembers = [\"a\", \"b\"]\nchunk = \"768K\"",
       "is not a multiple of the chunk"},
      {two + "[disk.s]\ntype = \"stripe\"\nmembers = [\"a\", \"b\"]",
       "stripe needs a chunk size > 0"},
      {two + "[disk.s]\ntype = \"stripe\"\nmembers = [\"a\", \"b\"]\nchunk = 100",
       "stripe chunk 100 bytes is not a multiple of the block size 512"},
      {two + "[backend.k]\nspec = \"ram:1M,bs=4096\"\n[disk.d]\ntype = \"concat\"\n"
             "members = [\"a\", \"k\"]",
       "'k' has block size 4096 but 'a' has 512"},
      {two + "[[export]]\ndevice_id = 1\ndisk = \"a\"\n[[export]]\ndevice_id = 1\ndisk = \"b\"",
       "duplicate device id 1 (disks 'a' and 'b')"},
      {two + "[[export]]\ndevice_id = 1\ndisk = \"a\"\n[[export]]\ndevice_id = 2\ndisk = \"a\"",
       "export 2: 'a' is already exported as device id 1"},
      {two + "[[export]]\ndevice_id = 1\ndisk = \"q\"", "export 1: 'q' is not a backend or disk"},
      {two + "[[export]]\ndevice_id = -1\ndisk = \"a\"", "'device_id' must be an integer"},
      {two + "[[export]]\ndevice_id = 1\ndisk = \"a\"\nclients = []", "no clients allowed"},
      {two + "[[export]]\ndevice_id = 1\ndisk = \"a\"\nread_only = \"yes\"",
       "'read_only' must be true/false"},
      {two + "[disk.d]\ntype = \"concat\"\nmembers = [\"a\"]\n[[export]]\ndevice_id = 1\n"
             "disk = \"a\"",
       "overlap on 'a' at block 0: disk 'd' and export 1"},
      {"[backend.\"a b\"]\nspec = \"ram:1M\"", "backend 'a b': bad name"},
  };
  for (const auto& [text, needle] : cases) {
    auto r = parse_layout(text, {});
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().message.find(needle), std::string::npos)
        << "config:\n"
        << text << "\ngave: " << r.error().message << "\nwanted: " << needle;
  }
}

TEST(Layout, PlanIsPureAndNeedsOnlyGeometries) {
  auto d = parse_layout_desc(kFig7);
  ASSERT_TRUE(d.has_value());
  GeometryMap g;
  for (auto name : {"p1", "p2", "p3"}) g[name] = backends::Geometry{512, 40960};
  g["p80"] = backends::Geometry{512, 163840};
  auto plan = plan_layout(*d, g);
  ASSERT_TRUE(plan.has_value()) << plan.error().message;
  const ResolvedDisk* big = plan->find("big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->geometry.block_count, 3u * 40960);
  ASSERT_EQ(big->segments.size(), 3u);
  const ResolvedDisk* half_b = plan->find("half_b");
  ASSERT_NE(half_b, nullptr);
  EXPECT_EQ(half_b->segments[0].physical_lba, 81920u);
  g.erase("p3");
  EXPECT_FALSE(plan_layout(*d, g).has_value());
}

}  // namespace
}  // namespace ipsan::virt
