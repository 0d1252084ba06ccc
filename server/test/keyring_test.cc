#include "ipsan/server/keyring.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ipsan::server {
namespace {

TEST(KeyRing, SpecsAndFile) {
  KeyRing k;
  EXPECT_TRUE(k.add_spec("alice=secret"));
  EXPECT_FALSE(k.add_spec("alice=other"));  // duplicate
  EXPECT_FALSE(k.add_spec("noequals"));
  EXPECT_FALSE(k.add_spec("=key"));
  EXPECT_FALSE(k.add_spec("bob="));
  EXPECT_TRUE(k.find("alice").has_value());
  EXPECT_FALSE(k.find("bob").has_value());

  auto dir = std::filesystem::temp_directory_path() / ("ipsan-keyring-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "keys");
    f << "# comment\n\nbob " << std::string(64, 'b') << "\ncarol pass # trailing\n";
  }
  EXPECT_TRUE(k.load_file(dir / "keys"));
  ASSERT_TRUE(k.find("bob").has_value());
  EXPECT_EQ((*k.find("bob"))[0], 0xbb);
  {
    std::ofstream f(dir / "bad");
    f << "dave key extra\n";
  }
  auto r = k.load_file(dir / "bad");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(":1:"), std::string::npos) << r.error().message;
  EXPECT_FALSE(k.load_file(dir / "missing"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ipsan::server
