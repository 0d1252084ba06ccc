// Keeps docs/CONFIG.md honest: every ```toml example in it parses, validates, builds (ram back
// ends are sparse, so the real sizes cost nothing) and survives a to_toml round trip.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "ipsan/base/bytes.h"
#include "ipsan/base/pattern.h"
#include "ipsan/virt/layout.h"
#include "test_util.h"

namespace ipsan::virt {
namespace {

using backends::testing::read_sync;
using backends::testing::write_sync;

std::vector<std::string> toml_examples() {
  std::ifstream in(IPSAN_CONFIG_MD);
  std::vector<std::string> out;
  std::string line, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```toml") {
      inside = true;
      block.clear();
    } else if (inside && line == "```") {
      inside = false;
      out.push_back(block);
    } else if (inside) {
      block += line + "\n";
    }
  }
  return out;
}

constexpr std::uint64_t kGiB = (std::uint64_t{1} << 30) / 512;

TEST(ConfigDoc, EveryExampleParsesBuildsAndRoundTrips) {
  const auto examples = toml_examples();
  ASSERT_EQ(examples.size(), 6u) << "docs/CONFIG.md examples changed; update this test";
  for (const auto& text : examples) {
    auto l = parse_layout(text, {});
    ASSERT_TRUE(l.has_value()) << l.error().message << "\n" << text;
    EXPECT_FALSE(l->exports.empty());
    auto again = parse_layout_desc(to_toml(l->desc));
    ASSERT_TRUE(again.has_value()) << again.error().message;
    EXPECT_EQ(to_toml(*again), to_toml(l->desc));
  }
}

TEST(ConfigDoc, Figure7aAnd7bSizes) {
  const auto examples = toml_examples();
  ASSERT_GE(examples.size(), 2u);
  auto a = parse_layout(examples[0], {});
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->find_export(720)->backend->geometry().block_count, 60 * kGiB);
  EXPECT_FALSE(a->find_export(720)->allows("someone-else"));
  auto b = parse_layout(examples[1], {});
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->find_export(1)->backend->geometry().block_count, 40 * kGiB);
  EXPECT_EQ(b->find_export(2)->backend->geometry().block_count, 40 * kGiB);
}

TEST(ConfigDoc, Figure8MapsAsDescribed) {
  const auto examples = toml_examples();
  ASSERT_GE(examples.size(), 3u);
  auto l = parse_layout(examples[2], {});
  ASSERT_TRUE(l.has_value()) << l.error().message;
  const Export* e810 = l->find_export(810);
  const Export* e820 = l->find_export(820);
  ASSERT_TRUE(e810 && e820);
  EXPECT_EQ(e810->backend->geometry().block_count, 10 * kGiB);
  EXPECT_EQ(e820->backend->geometry().block_count, 41940992u + 15 * kGiB);
  Bytes w(512), r(512);
  // Logical disk 810 sector 0 is physical sector N = 2048 of disk 840.
  fill_pattern(w, 8, 0, 1);
  ASSERT_EQ(write_sync(*e810->backend, 0, w), Errc::kOk);
  ASSERT_EQ(read_sync(*l->backends.at("p840"), 2048, r), Errc::kOk);
  EXPECT_EQ(r, w);
  // Logical disk 820 sector 0 is physical sector M of disk 840 ...
  fill_pattern(w, 8, 1, 1);
  ASSERT_EQ(write_sync(*e820->backend, 0, w), Errc::kOk);
  ASSERT_EQ(read_sync(*l->backends.at("p840"), 20973568, r), Errc::kOk);
  EXPECT_EQ(r, w);
  // ... and it continues on disk 850 right after the 5 GiB used area.
  fill_pattern(w, 8, 2, 1);
  ASSERT_EQ(write_sync(*e820->backend, 41940992, w), Errc::kOk);
  ASSERT_EQ(read_sync(*l->backends.at("p850"), 5 * kGiB, r), Errc::kOk);
  EXPECT_EQ(r, w);
}

}  // namespace
}  // namespace ipsan::virt
