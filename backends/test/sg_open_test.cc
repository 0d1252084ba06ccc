// Opening hardware back ends on nodes that are missing or are not sg devices gives clear errors;
// the "sg" and "ata" spec kinds are registered.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ipsan/backends/ata.h"
#include "ipsan/backends/probe.h"
#include "ipsan/backends/sg.h"
#include "ipsan/backends/spec.h"
#include "ipsan/testing/temp_dir.h"

namespace ipsan::backends {
namespace {

using ::ipsan::testing::TempDir;

TEST(SgOpen, MissingPathIsAClearError) {
  auto b = SgBackend::open("/nonexistent/sg99");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Errc::kUnknownDevice);
  EXPECT_NE(b.error().message.find("/nonexistent/sg99"), std::string::npos);
  auto a = AtaBackend::open("/nonexistent/sg99");
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, Errc::kUnknownDevice);
}

TEST(SgOpen, RegularFileIsNotAnSgDevice) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.file("disk.img");
  std::ofstream(file) << std::string(4096, '\0');
  auto b = SgBackend::open(file);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("not an sg device"), std::string::npos) << b.error().message;
  auto p = probe_device(file);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("not an sg device"), std::string::npos);
}

TEST(SgOpen, CharacterDeviceWithoutSgIoIsRejected) {
  auto b = SgBackend::open("/dev/null");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("not an sg device"), std::string::npos) << b.error().message;
  auto a = AtaBackend::open("/dev/null", AtaOptions{});
  ASSERT_FALSE(a);
}

TEST(SgOpen, SpecKindsAreRegistered) {
  register_hw_backends();
  register_hw_backends();  // idempotent
  const auto kinds = backend_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "sg"), kinds.end());
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "ata"), kinds.end());
  auto b = open_backend("sg:/nonexistent/sg7");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("/nonexistent/sg7"), std::string::npos);
  auto bad = open_backend("ata:/dev/null,workers=0");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("workers"), std::string::npos);
  auto unknown = open_backend("sg:/dev/null,frobnicate");
  ASSERT_FALSE(unknown);
}

}  // namespace
}  // namespace ipsan::backends
