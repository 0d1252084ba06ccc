// The shared TempDir (ipsan/testing/temp_dir.h): created fresh, removed with its contents, kept
// on request, under $TMPDIR.
#include "ipsan/testing/temp_dir.h"

#include <gtest/gtest.h>

#include <fstream>

namespace ipsan::testing {
namespace {

TEST(TempDir, FreshRemovedWithItsContentsOrKept) {
  std::filesystem::path gone, kept;
  {
    TempDir a("ipsan-tempdir-test");
    TempDir b("ipsan-tempdir-test");
    ASSERT_TRUE(std::filesystem::is_directory(a.path()));
    EXPECT_NE(a.path(), b.path());
    EXPECT_NE(a.path().filename().string().find("ipsan-tempdir-test-"), std::string::npos);
    std::ofstream(a.file("x.img")) << "data";
    std::filesystem::create_directories(a / "sub" / "dir");
    gone = a.path();
    b.keep();
    kept = b.path();
  }
  EXPECT_FALSE(std::filesystem::exists(gone));
  EXPECT_TRUE(std::filesystem::exists(kept));
  std::filesystem::remove_all(kept);
}

TEST(TempDir, HonoursTmpdirAndFailsLoudly) {
  TempDir parent("ipsan-tempdir-parent");
  const char* old = std::getenv("TMPDIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("TMPDIR", parent.path().c_str(), 1);
  {
    TempDir child;
    EXPECT_EQ(child.path().parent_path(), parent.path());
  }
  ::setenv("TMPDIR", (parent.path() / "does-not-exist").c_str(), 1);
  EXPECT_THROW(TempDir{}, std::runtime_error);
  if (old != nullptr) {
    ::setenv("TMPDIR", saved.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
}

}  // namespace
}  // namespace ipsan::testing
