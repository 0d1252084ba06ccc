// The shared progress line (ipsan/base/progress.h), driven by a virtual clock into a memory file.
#include "ipsan/base/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace ipsan {
namespace {

using std::chrono::milliseconds;

// A FILE* over memory: what was printed, as a string.
struct Captured {
  char* buf = nullptr;
  std::size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  ~Captured() {
    std::fclose(f);
    std::free(buf);
  }
  std::string text() {
    std::fflush(f);
    return std::string(buf, size);
  }
};

TEST(ProgressLine, PrintsAtMostOncePerIntervalOnePerLineOffATerminal) {
  Captured out;
  VirtualClock clock;
  {
    ProgressLine p(out.f, true, false, milliseconds(1000));
    EXPECT_FALSE(p.update(clock.now(), "a"));  // starts the clock
    clock.advance(milliseconds(999));
    EXPECT_FALSE(p.update(clock.now(), "b"));
    clock.advance(milliseconds(1));
    EXPECT_TRUE(p.update(clock.now(), "c"));
    clock.advance(milliseconds(10));
    EXPECT_FALSE(p.update(clock.now(), "d"));
    EXPECT_TRUE(p.update(clock.now(), "final", true));
  }
  EXPECT_EQ(out.text(), "c\nfinal\n");
}

TEST(ProgressLine, RewritesInPlaceOnATerminalAndEndsWithANewline) {
  Captured out;
  VirtualClock clock;
  {
    ProgressLine p(out.f, true, true, milliseconds(100));
    EXPECT_TRUE(p.update(clock.now(), "1/2", true));
    clock.advance(milliseconds(100));
    EXPECT_TRUE(p.update(clock.now(), "2/2"));
    p.finish();
    p.finish();  // idempotent
  }
  EXPECT_EQ(out.text(), "\r1/2\x1b[K\r2/2\x1b[K\n");
}

TEST(ProgressLine, DisabledPrintsNothing) {
  Captured out;
  VirtualClock clock;
  {
    ProgressLine p(out.f, false, true, milliseconds(1));
    EXPECT_FALSE(p.enabled());
    EXPECT_FALSE(p.update(clock.now(), "x", true));
  }
  EXPECT_EQ(out.text(), "");
}

}  // namespace
}  // namespace ipsan
