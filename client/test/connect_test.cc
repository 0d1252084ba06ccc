// resolve_connect_args: the connection flags shared by `ipsan client`, `iscsi-portal` and
// `replay`, checked in one place.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include "ipsan/client/connect.h"

namespace ipsan::client {
namespace {

const std::string kHexKey(64, 'a');

TEST(ConnectArgs, DefaultsResolve) {
  ConnectArgs a;
  ::setenv("IPSAN_KEY", "a-long-passphrase", 1);
  auto s = resolve_connect_args(a);
  ::unsetenv("IPSAN_KEY");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->transport.kind, proto::TransportKind::kUdp);
  EXPECT_EQ(s->transport.host, "127.0.0.1");
  EXPECT_EQ(s->transport.port, 5260);
  EXPECT_EQ(s->client.client_name, "default");
  EXPECT_EQ(s->client.request_timeout, std::chrono::seconds(30));
  EXPECT_EQ(s->client.login_timeout, std::chrono::seconds(10));
  EXPECT_EQ(s->client.max_slots, 64u);
  EXPECT_EQ(s->key_form, KeyForm::kPassphrase);
  EXPECT_EQ(s->client.key, parse_key_text("a-long-passphrase", "default")->key);
}

TEST(ConnectArgs, EverySettingIsTaken) {
  ConnectArgs a;
  a.server = "10.1.2.3:7000";
  a.transport = "tcp";
  a.name = "alice";
  ::setenv("IPSAN_KEY", kHexKey.c_str(), 1);
  a.timeout = "2s";
  a.slots = 8;
  auto s = resolve_connect_args(a);
  ::unsetenv("IPSAN_KEY");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->key_form, KeyForm::kHex);
  EXPECT_EQ(s->transport.kind, proto::TransportKind::kTcp);
  EXPECT_EQ(s->transport.host, "10.1.2.3");
  EXPECT_EQ(s->transport.port, 7000);
  EXPECT_EQ(s->client.client_name, "alice");
  EXPECT_EQ(s->client.request_timeout, std::chrono::seconds(2));
  EXPECT_EQ(s->client.login_timeout, std::chrono::seconds(2));  // never above the request's
  EXPECT_EQ(s->client.max_slots, 8u);
}

TEST(ConnectArgs, KeyFileWinsOverEnvironment) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ipsan_connect_test_" + std::to_string(::getpid()) + ".key");
  {
    std::ofstream f(path);
    f << "from-the-file-pass\nsecond line ignored\n";
  }
  ::chmod(path.c_str(), 0600);
  ::setenv("IPSAN_KEY", kHexKey.c_str(), 1);
  ConnectArgs a;
  a.name = "alice";
  a.key_file = path.string();
  auto s = resolve_connect_args(a);
  ::unsetenv("IPSAN_KEY");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->client.key, parse_key_text("from-the-file-pass", "alice")->key);
  // The same file readable by others is refused, as ssh does.
  ::chmod(path.c_str(), 0644);
  auto open = resolve_connect_args(a);
  std::filesystem::remove(path);
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message.find("group or others"), std::string::npos)
      << open.error().message;
}

// Keys never come from argv: -k/--key is refused with a message that says where keys go.
TEST(ConnectArgs, KeyOnTheCommandLineIsRefused) {
  ::setenv("IPSAN_KEY", kHexKey.c_str(), 1);
  ConnectArgs a;
  a.key = kHexKey;
  auto s = resolve_connect_args(a);
  ::unsetenv("IPSAN_KEY");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("--key-file"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("IPSAN_KEY"), std::string::npos) << s.error().message;
}

TEST(ConnectArgs, BadKeysInTheEnvironmentAreRefused) {
  ConnectArgs a;
  std::string typo = kHexKey;
  typo[5] = 'o';
  for (const std::string& bad : {typo, std::string("short"), kHexKey.substr(2)}) {
    ::setenv("IPSAN_KEY", bad.c_str(), 1);
    auto s = resolve_connect_args(a);
    ASSERT_FALSE(s) << bad;
    EXPECT_NE(s.error().message.find("IPSAN_KEY"), std::string::npos) << s.error().message;
  }
  ::unsetenv("IPSAN_KEY");
}

// Each bad argument is refused with a message that names it.
TEST(ConnectArgs, BadArgumentsNameTheFlag) {
  auto error_of = [](ConnectArgs a) {
    ::setenv("IPSAN_KEY", kHexKey.c_str(), 1);
    auto s = resolve_connect_args(a);
    ::unsetenv("IPSAN_KEY");
    return s ? std::string() : s.error().message;
  };
  ConnectArgs a;
  a.transport = "sctp";
  EXPECT_NE(error_of(a).find("--transport"), std::string::npos) << error_of(a);
  a = {};
  a.server = "127.0.0.1:99999";
  EXPECT_NE(error_of(a).find("--server"), std::string::npos) << error_of(a);
  a = {};
  a.timeout = "soon";
  EXPECT_NE(error_of(a).find("--timeout"), std::string::npos) << error_of(a);
  a = {};
  a.timeout = "0s";
  EXPECT_NE(error_of(a).find("--timeout"), std::string::npos) << error_of(a);
  a = {};
  a.slots = 0;
  EXPECT_NE(error_of(a).find("--slots"), std::string::npos) << error_of(a);
  a = {};
  a.name = "";
  EXPECT_NE(error_of(a).find("--name"), std::string::npos) << error_of(a);
  a = {};
  a.key_file = "/nonexistent/ipsan.key";
  EXPECT_NE(error_of(a).find("key file"), std::string::npos) << error_of(a);
}

// A caller with a key of its own (bench's embedded server) may go without one.
TEST(ConnectArgs, KeyOptionalOnlyWhenAsked) {
  ::unsetenv("IPSAN_KEY");
  ConnectArgs a;
  auto required = resolve_connect_args(a);
  ASSERT_FALSE(required);
  EXPECT_NE(required.error().message.find("no key"), std::string::npos);
  auto optional = resolve_connect_args(a, /*key_required=*/false);
  ASSERT_TRUE(optional) << optional.error().message;
  EXPECT_EQ(optional->client.key, Key256{});
  a.key_file = "/nonexistent/ipsan.key";  // given but unreadable: still an error
  EXPECT_FALSE(resolve_connect_args(a, /*key_required=*/false));
}

}  // namespace
}  // namespace ipsan::client
