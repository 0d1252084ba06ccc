// fsyncgate (PostgreSQL, 2018): after a failed fdatasync the kernel may drop the dirty pages and
// clear the error, so the next fdatasync succeeds although writes were lost. The file back end
// latches the first sync error: every later FLUSH (and FUA write) fails until the image is opened
// again. The failure is injected by interposing fdatasync() in this test binary (its own
// executable, so no other test sees it); everything else is the real file back end.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "ipsan/backends/file.h"
#include "ipsan/testing/temp_dir.h"
#include "test_util.h"

namespace {
std::atomic<int> g_fail_syncs{0};  // how many upcoming fdatasync calls fail with EIO
std::atomic<int> g_syncs{0};
}  // namespace

extern "C" int fdatasync(int fd) {
  g_syncs++;
  if (g_fail_syncs.load() > 0) {
    g_fail_syncs--;
    errno = EIO;
    return -1;
  }
  using Fn = int (*)(int);
  static Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "fdatasync"));
  return real != nullptr ? real(fd) : ::fsync(fd);
}

namespace ipsan::backends {
namespace {

using ipsan::testing::TempDir;
using testing::flush_sync;
using testing::write_sync;

TEST(FileBackendSync, InterposedFdatasyncIsUsed) {
  // Guards the test itself: if the back end stopped calling fdatasync (or the interposition did
  // not take), the latch test below would prove nothing.
  TempDir dir;
  FileOptions o;
  o.size_bytes = 1 << 20;
  auto b = *FileBackend::open(dir / "d.img", o);
  const int before = g_syncs.load();
  EXPECT_EQ(flush_sync(*b), Errc::kOk);
  EXPECT_GT(g_syncs.load(), before);
}

TEST(FileBackendSync, FailedSyncIsLatchedUntilReopen) {
  TempDir dir;
  FileOptions o;
  o.size_bytes = 1 << 20;
  auto b = *FileBackend::open(dir / "d.img", o);
  std::vector<std::uint8_t> data(512, 0x42);
  ASSERT_EQ(write_sync(*b, 0, data), Errc::kOk);
  g_fail_syncs = 1;  // exactly one fdatasync fails; the kernel would then report success again
  const Errc first = flush_sync(*b);
  EXPECT_NE(first, Errc::kOk);
  EXPECT_EQ(g_fail_syncs.load(), 0);
  // The next fdatasync would succeed, but the writes before the failure may be lost: FLUSH keeps
  // failing, and so does a FUA write (its durability rests on a sync too).
  EXPECT_EQ(flush_sync(*b), first);
  EXPECT_EQ(flush_sync(*b), first);
  EXPECT_EQ(write_sync(*b, 1, data, true), first);
  EXPECT_EQ(write_sync(*b, 2, data), Errc::kOk);  // plain writes still go to the page cache
  EXPECT_EQ(flush_sync(*b), first);
  b.reset();
  // Reopened: a fresh start (the operator has checked the disk).
  auto again = *FileBackend::open(dir / "d.img", o);
  EXPECT_EQ(flush_sync(*again), Errc::kOk);
}

}  // namespace
}  // namespace ipsan::backends
