#include "ipsan/base/key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace ipsan {
namespace {

const std::string kHex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

TEST(Key, HexIsExactly64Digits) {
  auto k = parse_key_text(kHex, "alice");
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->form, KeyForm::kHex);
  EXPECT_EQ(k->key[1], 0x11);
  EXPECT_EQ(k->key[31], 0xff);
  // The client name plays no part in a hex key.
  EXPECT_EQ(parse_key_text(kHex, "bob")->key, k->key);
}

TEST(Key, AlmostHexIsRefusedNotAPassphrase) {
  std::string typo = kHex;
  typo[10] = 'g';  // one typo
  auto r = parse_key_text(typo, "alice");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("11"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("not hex"), std::string::npos) << r.error().message;
  EXPECT_FALSE(parse_key_text(kHex.substr(1), "alice"));       // one digit missing
  EXPECT_FALSE(parse_key_text(kHex + "0", "alice"));           // one too many
  EXPECT_FALSE(parse_key_text(kHex.substr(0, 60) + "zz", "a"));  // 62 characters, 2 bad
  std::string four = kHex;
  for (int i : {1, 2, 3, 4}) four[static_cast<std::size_t>(i)] = 'x';
  EXPECT_FALSE(parse_key_text(four, "alice"));
  // The key text itself never appears in the message.
  EXPECT_EQ(r.error().message.find(typo), std::string::npos);
}

TEST(Key, PassphraseRules) {
  EXPECT_FALSE(parse_key_text("", "alice"));
  auto shortp = parse_key_text("elevenchars", "alice");
  ASSERT_FALSE(shortp);
  EXPECT_NE(shortp.error().message.find("at least 12"), std::string::npos);
  EXPECT_FALSE(parse_key_text("has a space in it", "alice"));
  EXPECT_FALSE(parse_key_text("hash#inside-the-pass", "alice"));
  EXPECT_FALSE(parse_key_text(std::string(kMaxPassphraseLength + 1, 'p'), "alice"));
  auto a = parse_key_text("correct-horse-battery", "alice");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->form, KeyForm::kPassphrase);
  // Deterministic for the same client; salted by the client name.
  auto a2 = parse_key_text("correct-horse-battery", "alice");
  auto b = parse_key_text("correct-horse-battery", "bob");
  ASSERT_TRUE(a2 && b);
  EXPECT_EQ(a->key, a2->key);
  EXPECT_NE(a->key, b->key);
  // Not the old single SHA-256 of the passphrase.
  Key256 old;
  parse_key("correct-horse-battery", old);
  EXPECT_NE(a->key, old);
  // A long string far from hex is a passphrase, even at 64 characters.
  auto p64 = parse_key_text(std::string(64, 'z'), "alice");
  ASSERT_TRUE(p64);
  EXPECT_EQ(p64->form, KeyForm::kPassphrase);
}

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ipsan-key-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& name, const std::string& text, mode_t mode) {
    auto p = dir_ / name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::filesystem::path dir_;
};

TEST_F(KeyFile, ModeMustBePrivate) {
  auto ok = write("ok", kHex + "\r\n", 0600);
  auto k = read_client_key_file(ok, "alice");
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->form, KeyForm::kHex);
  for (mode_t m : {0644, 0640, 0604, 0620, 0602}) {
    auto p = write("open", kHex + "\n", m);
    auto r = read_client_key_file(p, "alice");
    ASSERT_FALSE(r) << std::oct << m;
    EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(read_client_key_file(dir_ / "missing", "alice"));
  EXPECT_FALSE(read_client_key_file(dir_, "alice"));  // a directory
  auto empty = write("empty", "", 0600);
  EXPECT_FALSE(read_client_key_file(empty, "alice"));
  auto pass = write("pass", "  correct-horse-battery  \n", 0400);
  auto pk = read_client_key_file(pass, "alice");
  ASSERT_TRUE(pk) << pk.error().message;
  EXPECT_EQ(pk->form, KeyForm::kPassphrase);
  EXPECT_EQ(pk->key, parse_key_text("correct-horse-battery", "alice")->key);
}

}  // namespace
}  // namespace ipsan
