// ipsan/testing/skip.h: IPSAN_SKIP_OR_FAIL() << "why": skip a test that cannot run here, except
// under CI=true, where it is a failure. A skip counts as a pass in CTest, so a tool that failed to
// install (a lost dpkg lock, a missing package in scripts/setup.sh) would otherwise leave a whole
// feature untested with CI green. Use it instead of GTEST_SKIP() for "this host cannot run it".
//
// Header-only; every test built with ipsan_test() has it on its include path.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace ipsan::testing {

inline bool ci_mode() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::strcmp(ci, "true") == 0;
}

// Streams like GTEST_SKIP()/FAIL(): the message ends up in the skip or the failure.
class SkipOrFail {
 public:
  SkipOrFail(const char* file, int line) : file_(file), line_(line) {}
  void operator=(const ::testing::Message& message) const {
    const bool ci = ci_mode();
    ::testing::internal::AssertHelper(
        ci ? ::testing::TestPartResult::kFatalFailure : ::testing::TestPartResult::kSkip, file_,
        line_, ci ? "cannot run here, and CI=true forbids skips" : "Skipped") = message;
  }

 private:
  const char* file_;
  int line_;
};

}  // namespace ipsan::testing

#define IPSAN_SKIP_OR_FAIL() \
  return ::ipsan::testing::SkipOrFail(__FILE__, __LINE__) = ::testing::Message()
