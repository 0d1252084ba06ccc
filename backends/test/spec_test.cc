#include "ipsan/backends/spec.h"

#include <gtest/gtest.h>

#include "ipsan/backends/file.h"
#include "ipsan/backends/ram.h"
#include "ipsan/testing/temp_dir.h"
#include "test_util.h"

namespace ipsan::backends {
namespace {

using ipsan::testing::TempDir;

TEST(ParseSize, AcceptsBinarySuffixes) {
  EXPECT_EQ(*parse_size("512"), 512u);
  EXPECT_EQ(*parse_size("4K"), 4096u);
  EXPECT_EQ(*parse_size("64M"), 64u << 20);
  EXPECT_EQ(*parse_size("1g"), 1u << 30);
  EXPECT_EQ(*parse_size("2T"), std::uint64_t{2} << 40);
  EXPECT_EQ(*parse_size("3GiB"), std::uint64_t{3} << 30);
  EXPECT_EQ(*parse_size("5MB"), 5u << 20);
  EXPECT_EQ(*parse_size("100B"), 100u);
}

TEST(ParseSize, RejectsGarbageAndOverflow) {
  for (const char* bad :
       {"", "M", "-1", "1.5G", "12X", "1Gx", "1 G", "99999999999999999999", "20000000T", "0x10"}) {
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
  }
}

TEST(FormatSize, UsesLargestExactUnit) {
  EXPECT_EQ(format_size(64u << 20), "64MiB");
  EXPECT_EQ(format_size(1536 * 1024), "1536KiB");
  EXPECT_EQ(format_size(100), "100B");
  EXPECT_EQ(format_size(0), "0B");
}

TEST(BackendSpec, ParsesKindTargetOptions) {
  auto s = parse_backend_spec("file:/tmp/x.img,size=1G,ro,bs=4096");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->kind, "file");
  EXPECT_EQ(s->target, "/tmp/x.img");
  ASSERT_EQ(s->options.size(), 3u);
  EXPECT_EQ(s->value("size"), "1G");
  EXPECT_TRUE(s->has("ro"));
  EXPECT_EQ(*s->flag_option("ro"), true);
  EXPECT_EQ(*s->block_size_option(), 4096u);
}

TEST(OpenBackend, OpensRam) {
  auto b = open_backend("ram:64M");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ((*b)->geometry().block_size, 512u);
  EXPECT_EQ((*b)->geometry().size_bytes(), 64u << 20);
  auto b4 = open_backend("ram:1G,bs=4096");
  ASSERT_TRUE(b4.has_value());
  EXPECT_EQ((*b4)->geometry().block_size, 4096u);
  EXPECT_EQ((*b4)->geometry().block_count, (1u << 30) / 4096);
  auto ro = open_backend("ram:1M,ro");
  ASSERT_TRUE(ro.has_value());
  EXPECT_TRUE((*ro)->capabilities().read_only);
}

TEST(OpenBackend, OpensFileCreatingSparseAndReopening) {
  TempDir dir;
  const std::string path = (dir / "d.img").string();
  {
    auto b = open_backend("file:" + path + ",size=16M,threads=2");
    ASSERT_TRUE(b.has_value()) << b.error().message;
    EXPECT_EQ((*b)->geometry().size_bytes(), 16u << 20);
  }
  auto again = open_backend("file:" + path);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_EQ((*again)->geometry().size_bytes(), 16u << 20);
  EXPECT_NE((*again)->describe().find(path), std::string::npos);
  again->reset();
  auto ro = open_backend("file:" + path + ",ro");
  ASSERT_TRUE(ro.has_value());
  EXPECT_TRUE((*ro)->capabilities().read_only);
}

// Every bad spec yields an error whose message points at the problem.
TEST(OpenBackend, BadSpecsGiveClearErrors) {
  TempDir dir;
  const std::string missing = (dir / "missing.img").string();
  const std::pair<std::string, std::string> cases[] = {
      {"", "expected kind:target"},
      {"ram", "expected kind:target"},
      {"tape:/dev/st0", "unknown back-end kind 'tape'"},
      {"ram:", "needs a size"},
      {"ram:lots", "bad size"},
      {"ram:0", "greater than zero"},
      {"ram:1000", "not a multiple of the block size"},
      {"ram:6K,bs=4096", "not a multiple of the block size"},
      {"ram:1M,bs=1024", "block size must be 512 or 4096"},
      {"ram:1M,color=red", "unknown option 'color'"},
      {"ram:1M,ro,ro", "given twice"},
      {"ram:1M,", "empty option"},
      {"ram:1M,ro=yes", "takes no value"},
      {"ram:1M,bs=", "without a value"},
      {"file:", "needs a path"},
      {"file:" + missing, "does not exist"},
      {"file:" + missing + ",size=1X", "bad size suffix"},
      {"file:" + missing + ",size=1000", "not a multiple of the block size"},
      {"file:" + missing + ",size=1M,threads=0", "threads=0"},
      {"file:" + missing + ",size=1M,ro", "cannot be created read-only"},
      {":x", "bad back-end kind"},
  };
  for (const auto& [spec, needle] : cases) {
    auto r = open_backend(spec);
    ASSERT_FALSE(r.has_value()) << spec;
    EXPECT_NE(r.error().message.find(needle), std::string::npos)
        << "spec '" << spec << "' gave: " << r.error().message;
  }
  EXPECT_FALSE(std::filesystem::exists(missing));
}

TEST(OpenBackend, RegistryIsExtensible) {
  auto kinds = backend_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "ram"), kinds.end());
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "file"), kinds.end());
  register_backend_kind("testkind", [](const BackendSpec& s) -> Result<BackendPtr, Error> {
    if (auto ok = s.check_options({"bs"}); !ok) return make_unexpected(ok.error());
    auto bs = s.block_size_option(4096);
    if (!bs) return make_unexpected(bs.error());
    auto size = parse_size(s.target);
    if (!size) return make_unexpected(size.error());
    auto r = RamBackend::create(*size, RamOptions{*bs, false});
    if (!r) return make_unexpected(r.error());
    return BackendPtr(*r);
  });
  auto b = open_backend("testkind:8K");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ((*b)->geometry().block_size, 4096u);
  EXPECT_EQ((*b)->geometry().block_count, 2u);
  auto bad = open_backend("testkind:8K,foo");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("unknown option 'foo'"), std::string::npos);
}

TEST(Spec, BlockdevKindIsTheFileBackEndWithDirectIo) {
  auto dir =
      std::filesystem::temp_directory_path() / ("ipsan-blockdev-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "d.img").string();
  auto b = open_backend("blockdev:" + path + ",size=1M,buffered");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*b)->geometry().block_count, 2048u);
  EXPECT_NE((*b)->describe().find(path), std::string::npos);
  auto bad = open_backend("blockdev:" + path + ",bogus");
  EXPECT_FALSE(bad);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ipsan::backends
