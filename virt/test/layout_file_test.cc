// save_layout_file: the temporary file is fsync'd before the rename and the directory after it; a
// failed sync leaves the old layout in place. fsync() is interposed in this binary to watch that.
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "ipsan/virt/layout.h"
#include "temp_dir.h"

namespace {
struct Synced {
  bool dir;
  std::string file;  // empty for a directory
};
std::vector<Synced> g_synced;
std::atomic<int> g_fail{0};
}  // namespace

extern "C" int fsync(int fd) {
  struct stat st {};
  ::fstat(fd, &st);
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096] = {};
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  g_synced.push_back(Synced{S_ISDIR(st.st_mode), n > 0 ? std::string(target, n) : ""});
  if (g_fail.load() > 0) {
    g_fail--;
    errno = EIO;
    return -1;
  }
  using Fn = int (*)(int);
  static Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "fsync"));
  return real != nullptr ? real(fd) : 0;
}

namespace ipsan::virt {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

LayoutDesc sample(const std::string& name) {
  LayoutDesc d;
  d.backends.push_back(BackendDesc{name, "ram:size=1M"});
  return d;
}

TEST(LayoutFile, SyncsTheFileThenTheDirectory) {
  backends::testing::TempDir dir;
  const auto path = dir / "layout.toml";
  g_synced.clear();
  auto r = save_layout_file(path, sample("a"));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(slurp(path), to_toml(sample("a")));
  EXPECT_FALSE(std::filesystem::exists(dir / "layout.toml.tmp"));
  ASSERT_EQ(g_synced.size(), 2u);
  EXPECT_FALSE(g_synced[0].dir);
  EXPECT_NE(g_synced[0].file.find("layout.toml.tmp"), std::string::npos) << g_synced[0].file;
  EXPECT_TRUE(g_synced[1].dir);
  EXPECT_EQ(std::filesystem::path(g_synced[1].file), std::filesystem::canonical(dir.path()));
}

TEST(LayoutFile, FailedSyncKeepsTheOldLayout) {
  backends::testing::TempDir dir;
  const auto path = dir / "layout.toml";
  ASSERT_TRUE(save_layout_file(path, sample("old")).has_value());
  g_fail = 1;
  auto r = save_layout_file(path, sample("new"));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("cannot sync"), std::string::npos) << r.error().message;
  EXPECT_EQ(slurp(path), to_toml(sample("old")));
  EXPECT_FALSE(std::filesystem::exists(dir / "layout.toml.tmp"));
}

}  // namespace
}  // namespace ipsan::virt
