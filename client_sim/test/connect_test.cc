// resolve_connect_args: the connection flags shared by `ipsan client`, `iscsi-portal` and
// `replay`, checked in one place.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "ipsan/client/connect.h"

namespace ipsan::client {
namespace {

TEST(ConnectArgs, DefaultsResolve) {
  ConnectArgs a;
  a.key = "a passphrase";
  auto s = resolve_connect_args(a);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->transport.kind, proto::TransportKind::kUdp);
  EXPECT_EQ(s->transport.host, "127.0.0.1");
  EXPECT_EQ(s->transport.port, 5260);
  EXPECT_EQ(s->client.client_name, "default");
  EXPECT_EQ(s->client.request_timeout, std::chrono::seconds(30));
  EXPECT_EQ(s->client.login_timeout, std::chrono::seconds(10));
  EXPECT_EQ(s->client.max_slots, 64u);
  Key256 k;
  ASSERT_TRUE(parse_key("a passphrase", k));
  EXPECT_EQ(s->client.key, k);
}

TEST(ConnectArgs, EverySettingIsTaken) {
  ConnectArgs a;
  a.server = "10.1.2.3:7000";
  a.transport = "tcp";
  a.name = "alice";
  a.key = std::string(64, 'a');
  a.timeout = "2s";
  a.slots = 8;
  auto s = resolve_connect_args(a);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->transport.kind, proto::TransportKind::kTcp);
  EXPECT_EQ(s->transport.host, "10.1.2.3");
  EXPECT_EQ(s->transport.port, 7000);
  EXPECT_EQ(s->client.client_name, "alice");
  EXPECT_EQ(s->client.request_timeout, std::chrono::seconds(2));
  EXPECT_EQ(s->client.login_timeout, std::chrono::seconds(2));  // never above the request's
  EXPECT_EQ(s->client.max_slots, 8u);
}

TEST(ConnectArgs, KeyFileWinsOverKey) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ipsan_connect_test_" + std::to_string(::getpid()) + ".key");
  {
    std::ofstream f(path);
    f << "from the file\nsecond line ignored\n";
  }
  ConnectArgs a;
  a.key = "from the flag";
  a.key_file = path.string();
  auto s = resolve_connect_args(a);
  std::filesystem::remove(path);
  ASSERT_TRUE(s) << s.error().message;
  Key256 k;
  ASSERT_TRUE(parse_key("from the file", k));
  EXPECT_EQ(s->client.key, k);
}

// Each bad argument is refused with a message that names it.
TEST(ConnectArgs, BadArgumentsNameTheFlag) {
  auto error_of = [](ConnectArgs a) {
    if (a.key.empty() && a.key_file.empty()) a.key = "k";
    auto s = resolve_connect_args(a);
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
