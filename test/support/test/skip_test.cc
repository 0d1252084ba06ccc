// IPSAN_SKIP_OR_FAIL: a skip outside CI, a fatal failure under CI=true.
#include "ipsan/testing/skip.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace {

void cannot_run() { IPSAN_SKIP_OR_FAIL() << "tool xyz is missing"; }

class CiEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* v = std::getenv("CI");
    had_ = v != nullptr;
    if (had_) old_ = v;
  }
  void TearDown() override {
    if (had_) {
      ::setenv("CI", old_.c_str(), 1);
    } else {
      ::unsetenv("CI");
    }
  }
  bool had_ = false;
  std::string old_;
};

TEST_F(CiEnv, FailsUnderCi) {
  ::setenv("CI", "true", 1);
  EXPECT_TRUE(ipsan::testing::ci_mode());
  EXPECT_FATAL_FAILURE(cannot_run(), "tool xyz is missing");
}

TEST_F(CiEnv, OnlyTheExactValueTrueCounts) {
  ::setenv("CI", "1", 1);
  EXPECT_FALSE(ipsan::testing::ci_mode());
  ::unsetenv("CI");
  EXPECT_FALSE(ipsan::testing::ci_mode());
}

}  // namespace
