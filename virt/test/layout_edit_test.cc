#include "ipsan/virt/layout_edit.h"

#include <gtest/gtest.h>

#include "ipsan/base/bytes.h"
#include "ipsan/base/pattern.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::testing::read_sync;
using backends::testing::write_sync;

constexpr std::string_view kBase = R"(
[backend.p1]
spec = "ram:1M"
[backend.p2]
spec = "ram:1M"
[disk.grow]
type = "extents"
extents = [{ device = "p1", blocks = 100 }]
[disk.spare]
type = "extents"
extents = [{ device = "p2", start_lba = 1000, blocks = 10 }]
[disk.top]
type = "concat"
members = ["spare"]
[[export]]
device_id = 1
disk = "grow"
)";

struct Fixture : ::testing::Test {
  void SetUp() override {
    auto d = parse_layout_desc(kBase);
    ASSERT_TRUE(d.has_value()) << d.error().message;
    desc = *d;
    for (auto n : {"p1", "p2"}) geometry[n] = backends::Geometry{512, 2048};
  }
  LayoutDesc desc;
  GeometryMap geometry;
};

using LayoutEdit = Fixture;

TEST_F(LayoutEdit, AppendExtentGrowsAndKeepsData) {
  auto built = build_layout(desc, {});
  ASSERT_TRUE(built.has_value()) << built.error().message;
  Bytes w(512);
  fill_pattern(w, 1, 99, 1);
  ASSERT_EQ(write_sync(*built->find_export(1)->backend, 99, w), Errc::kOk);

  auto grown = append_extent(desc, "grow", ExtentDesc{"p2", {0, true}, {500, true}}, geometry);
  ASSERT_TRUE(grown.has_value()) << grown.error().message;
  EXPECT_EQ(desc.disks[0].extents.size(), 1u);  // the input is untouched
  auto rebuilt = build_layout(*grown, {}, &*built);
  ASSERT_TRUE(rebuilt.has_value()) << rebuilt.error().message;
  const Export* e = rebuilt->find_export(1);
  EXPECT_EQ(e->backend->geometry().block_count, 600u);
  Bytes r(512);
  ASSERT_EQ(read_sync(*e->backend, 99, r), Errc::kOk);  // old block still where it was
  EXPECT_EQ(r, w);
  // The new space is usable and lands on p2.
  ASSERT_EQ(write_sync(*e->backend, 100, w), Errc::kOk);
  ASSERT_EQ(read_sync(*rebuilt->backends.at("p2"), 0, r), Errc::kOk);
  EXPECT_EQ(r, w);
}

TEST_F(LayoutEdit, AppendExtentRefusesBadGrowth) {
  auto overlap = append_extent(desc, "grow", ExtentDesc{"p2", {1005, true}, {10, true}}, geometry);
  ASSERT_FALSE(overlap.has_value());
  EXPECT_NE(overlap.error().message.find("overlap on 'p2'"), std::string::npos);
  auto past = append_extent(desc, "grow", ExtentDesc{"p2", {2040, true}, {10, true}}, geometry);
  ASSERT_FALSE(past.has_value());
  EXPECT_NE(past.error().message.find("past the end"), std::string::npos);
  auto concat = append_extent(desc, "top", ExtentDesc{"p2", {0, true}, {1, true}}, geometry);
  ASSERT_FALSE(concat.has_value());
  EXPECT_NE(concat.error().message.find("only extents disks grow"), std::string::npos);
  EXPECT_FALSE(append_extent(desc, "nope", ExtentDesc{"p2", {}, {}}, geometry).has_value());
}

TEST_F(LayoutEdit, AddDiskValidates) {
  DiskDesc d;
  d.name = "new";
  d.type = DiskType::kExtents;
  d.extents = {ExtentDesc{"p2", {0, true}, {500, true}}};
  auto ok = add_disk(desc, d, geometry);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->disks.size(), 4u);
  d.name = "grow";
  auto dup = add_disk(desc, d, geometry);
  ASSERT_FALSE(dup.has_value());
  EXPECT_NE(dup.error().message.find("duplicate device name 'grow'"), std::string::npos);
  d.name = "cyc";
  d.type = DiskType::kConcat;
  d.extents.clear();
  d.members = {"cyc"};
  EXPECT_FALSE(add_disk(desc, d, geometry).has_value());
}

TEST_F(LayoutEdit, RemoveDiskOnlyWhenUnused) {
  auto exported = remove_disk(desc, "grow", geometry);
  ASSERT_FALSE(exported.has_value());
  EXPECT_NE(exported.error().message.find("remove the export first"), std::string::npos);
  auto used = remove_disk(desc, "spare", geometry);
  ASSERT_FALSE(used.has_value());
  EXPECT_NE(used.error().message.find("used by disk 'top'"), std::string::npos);
  auto top = remove_disk(desc, "top", geometry);
  ASSERT_TRUE(top.has_value()) << top.error().message;
  auto spare = remove_disk(*top, "spare", geometry);
  ASSERT_TRUE(spare.has_value()) << spare.error().message;
  EXPECT_EQ(spare->disks.size(), 1u);
  // Two steps retire an exported disk.
  auto unexported = remove_export(desc, 1);
  ASSERT_TRUE(unexported.has_value());
  EXPECT_TRUE(remove_disk(*unexported, "grow", geometry).has_value());
  EXPECT_FALSE(remove_export(desc, 9).has_value());
}

TEST_F(LayoutEdit, ExportsAddAndValidate) {
  auto ok = add_export(desc, ExportDesc{2, "top", true, {"bob"}}, geometry);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->exports.size(), 2u);
  EXPECT_FALSE(add_export(desc, ExportDesc{1, "top", false, {"*"}}, geometry).has_value());
  EXPECT_FALSE(add_export(desc, ExportDesc{3, "missing", false, {"*"}}, geometry).has_value());
  EXPECT_FALSE(add_export(desc, ExportDesc{3, "spare", false, {"*"}}, geometry).has_value());
}

TEST_F(LayoutEdit, NoDataLossCheckCatchesRemapsShrinksAndIdReuse) {
  LayoutDesc moved = desc;
  moved.disks[0].extents[0].start = Amount{1, true};  // grow now starts one block later
  auto r = check_no_data_loss(desc, moved, geometry);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("map existing blocks elsewhere"), std::string::npos);

  LayoutDesc shrunk = desc;
  shrunk.disks[0].extents[0].size = Amount{50, true};
  r = check_no_data_loss(desc, shrunk, geometry);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("would shrink"), std::string::npos);

  LayoutDesc reused = desc;
  reused.exports[0].disk = "top";
  r = check_no_data_loss(desc, reused, geometry);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("device id 1 would change"), std::string::npos);

  LayoutDesc gone = desc;
  gone.exports.clear();
  gone.disks.erase(gone.disks.begin());
  r = check_no_data_loss(desc, gone, geometry);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("exported"), std::string::npos);

  EXPECT_TRUE(check_no_data_loss(desc, desc, geometry).has_value());
}

TEST_F(LayoutEdit, AddBackendNeedsItsGeometry) {
  EXPECT_FALSE(add_backend(desc, BackendDesc{"p3", "ram:1M"}, geometry).has_value());
  geometry["p3"] = backends::Geometry{512, 2048};
  auto ok = add_backend(desc, BackendDesc{"p3", "ram:1M"}, geometry);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->backends.size(), 3u);
}

}  // namespace
}  // namespace ipsan::virt
