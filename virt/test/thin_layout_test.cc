// Thin pools in the TOML layout: declared, formatted when blank, reopened (never reformatted),
// thin disks created, every pool volume usable as a device; bad pool declarations refused.
#include <gtest/gtest.h>

#include <fstream>

#include "ipsan/virt/layout.h"
#include "ipsan/virt/thin.h"
#include "temp_dir.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::testing::flush_sync;
using backends::testing::read_sync;
using backends::testing::TempDir;
using backends::testing::write_sync;

const char* kToml = R"(
[backend.b1]
spec = "file:pool.img,size=8M"

[pool.p1]
device = "b1"
chunk = "16K"
disks = { vm1 = "1M", vm2 = "512K" }

[[export]]
device_id = 1
disk = "vm1"
)";

TEST(ThinLayout, DeclaredPoolIsFormattedOnceAndPersists) {
  TempDir dir;
  auto desc = parse_layout_desc(kToml);
  ASSERT_TRUE(desc) << desc.error().message;
  ASSERT_EQ(desc->pools.size(), 1u);
  EXPECT_EQ(desc->pools[0].chunk_bytes, 16u * 1024);
  // Canonical TOML round-trips.
  auto again = parse_layout_desc(to_toml(*desc));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->pools, desc->pools);
  std::vector<std::uint8_t> data(4096, 0x5A);
  {
    auto layout = build_layout(*desc, dir.path());
    ASSERT_TRUE(layout) << layout.error().message;
    ASSERT_EQ(layout->pools.count("p1"), 1u);
    auto pool = layout->pools.at("p1");
    EXPECT_EQ(pool->usage().chunk_bytes, 16u * 1024);
    auto vm1 = layout->device("vm1");
    ASSERT_TRUE(vm1);
    EXPECT_EQ(vm1->geometry().size_bytes(), 1u << 20);
    ASSERT_EQ(write_sync(*layout->find_export(1)->backend, 8, data), Errc::kOk);
    ASSERT_EQ(flush_sync(*vm1), Errc::kOk);
    ASSERT_TRUE(pool->snapshot("vm1", "vm1-snap"));
  }
  // Reloaded: the same pool (not reformatted), the snapshot is a device that can be exported.
  desc->exports.push_back(ExportDesc{2, "vm1-snap", true, {"*"}});
  auto layout = build_layout(*desc, dir.path());
  ASSERT_TRUE(layout) << layout.error().message;
  auto snap = layout->find_export(2);
  ASSERT_NE(snap, nullptr);
  EXPECT_TRUE(snap->read_only);
  std::vector<std::uint8_t> got(4096);
  ASSERT_EQ(read_sync(*snap->backend, 8, got), Errc::kOk);
  EXPECT_EQ(got, data);
  EXPECT_EQ(layout->pools.at("p1")->list().size(), 3u);
}

TEST(ThinLayout, BadPoolDeclarationsAreRefused) {
  TempDir dir;
  auto expect_error = [&](const std::string& toml, const std::string& needle) {
    auto desc = parse_layout_desc(toml);
    if (!desc) {
      EXPECT_NE(desc.error().message.find(needle), std::string::npos) << desc.error().message;
      return;
    }
    auto layout = build_layout(*desc, dir.path());
    ASSERT_FALSE(layout) << toml;
    EXPECT_NE(layout.error().message.find(needle), std::string::npos) << layout.error().message;
  };
  const std::string b = "[backend.b1]\nspec = \"file:p.img,size=4M\"\n";
  expect_error(b + "[pool.p1]\ndevice = \"nope\"\n", "not a [backend]");
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\ncolour = 1\n", "unknown key");
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\nchunk = \"3K\"\n", "chunk size");
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\n[disk.x]\ntype = \"concat\"\nmembers = [\"b1\"]\n",
               "also used by disk 'x'");
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\n[[export]]\ndevice_id = 1\ndisk = \"b1\"\n",
               "also exported");
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\ndisks = { b1 = \"1M\" }\n", "name of a backend");
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\ndisks = { v = \"1000\" }\n", "multiple of");
  // A thin disk whose declared size differs from the pool's.
  {
    auto ok = parse_layout_desc(b + "[pool.p1]\ndevice = \"b1\"\ndisks = { v = \"1M\" }\n");
    ASSERT_TRUE(ok);
    ASSERT_TRUE(build_layout(*ok, dir.path()));
  }
  expect_error(b + "[pool.p1]\ndevice = \"b1\"\ndisks = { v = \"2M\" }\n", "the layout says");
  // A non-blank device that is not a pool is never formatted over.
  {
    std::ofstream f(dir.path() / "junk.img", std::ios::binary);
    std::string junk(1 << 20, 'x');
    f << junk;
  }
  expect_error("[backend.j]\nspec = \"file:junk.img\"\n[pool.p]\ndevice = \"j\"\n",
               "no valid superblock");
}

}  // namespace
}  // namespace ipsan::virt
