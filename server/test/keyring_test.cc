#include "ipsan/server/keyring.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

namespace ipsan::server {
namespace {

const std::string kHex(64, 'b');

struct TempDir {
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("ipsan-keyring-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    auto p = path / name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::filesystem::path path;
};

TEST(KeyRing, SpecsComeFromFilesOrTheEnvironmentNeverArgv) {
  TempDir dir;
  KeyRing k;
  auto kf = dir.write("alice.key", "secret-passphrase\n");
  EXPECT_TRUE(k.add_spec("alice=file:" + kf.string()));
  EXPECT_FALSE(k.add_spec("alice=file:" + kf.string()));  // duplicate
  ::setenv("IPSAN_TEST_BOB_KEY", kHex.c_str(), 1);
  EXPECT_TRUE(k.add_spec("bob=env:IPSAN_TEST_BOB_KEY"));
  ::unsetenv("IPSAN_TEST_BOB_KEY");
  EXPECT_FALSE(k.add_spec("carol=env:IPSAN_TEST_BOB_KEY"));  // unset
  auto argv = k.add_spec("dave=" + kHex);                     // a key on the command line
  ASSERT_FALSE(argv);
  EXPECT_NE(argv.error().message.find("visible"), std::string::npos) << argv.error().message;
  EXPECT_FALSE(k.add_spec("noequals"));
  EXPECT_FALSE(k.add_spec("=file:x"));
  EXPECT_FALSE(k.add_spec("erin="));
  EXPECT_FALSE(k.add_spec("erin=file:"));
  auto open = dir.write("open.key", kHex + "\n", 0644);
  EXPECT_FALSE(k.add_spec("frank=file:" + open.string()));
  ASSERT_TRUE(k.find("alice").has_value());
  EXPECT_EQ(*k.find("alice"), parse_key_text("secret-passphrase", "alice")->key);
  EXPECT_EQ((*k.find("bob"))[0], 0xbb);
  auto forms = k.forms();
  ASSERT_EQ(forms.size(), 2u);
  EXPECT_EQ(forms[0].second, KeyForm::kPassphrase);
  EXPECT_EQ(forms[1].second, KeyForm::kHex);
}

TEST(KeyRing, File) {
  TempDir dir;
  KeyRing k;
  auto good = dir.write("keys", "# comment\n\nbob " + kHex + "\ncarol a-long-passphrase # trailing\n");
  EXPECT_TRUE(k.load_file(good));
  ASSERT_TRUE(k.find("bob").has_value());
  EXPECT_EQ((*k.find("bob"))[0], 0xbb);
  // Passphrases are salted by the client name: the client derives the same key.
  EXPECT_EQ(*k.find("carol"), parse_key_text("a-long-passphrase", "carol")->key);

  auto bad = dir.write("bad", "dave key extra\n");
  auto r = k.load_file(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(":1:"), std::string::npos) << r.error().message;
  EXPECT_FALSE(k.load_file(dir.path / "missing"));

  std::string typo = kHex;
  typo[63] = 'x';
  auto almost = dir.write("almost", "# x\nerin " + typo + "\n");
  auto ra = k.load_file(almost);
  ASSERT_FALSE(ra);
  EXPECT_NE(ra.error().message.find(":2:"), std::string::npos) << ra.error().message;
  EXPECT_NE(ra.error().message.find("hex"), std::string::npos) << ra.error().message;
  auto shortp = dir.write("short", "frank pw\n");
  EXPECT_FALSE(k.load_file(shortp));
}

TEST(KeyRing, FileReadableByOthersIsRefused) {
  TempDir dir;
  for (mode_t m : {0644, 0640, 0660, 0604}) {
    KeyRing k;
    auto p = dir.write("keys", "bob " + kHex + "\n", m);
    auto r = k.load_file(p);
    ASSERT_FALSE(r) << std::oct << m;
    EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;
    EXPECT_TRUE(k.empty());
  }
  KeyRing k;
  EXPECT_TRUE(k.load_file(dir.write("keys", "bob " + kHex + "\n", 0400)));
}

}  // namespace
}  // namespace ipsan::server
