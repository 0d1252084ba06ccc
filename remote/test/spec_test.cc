// parse_remote_spec: the ipsan:// back-end spec, its options and its errors.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ipsan/backends/spec.h"
#include "ipsan/remote/remote_backend.h"

namespace ipsan::remote {
namespace {

using namespace std::chrono_literals;

class RemoteSpec : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ipsan_remote_spec_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    key_ = (dir_ / "alice.key").string();
    std::ofstream(key_) << std::string(64, 'b') << "\n";
    ::chmod(key_.c_str(), 0600);
    ::unsetenv("IPSAN_KEY");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<RemoteOptions, Error> parse(const std::string& text) {
    auto spec = backends::parse_backend_spec(text);
    if (!spec) return make_unexpected(spec.error());
    return parse_remote_spec(*spec);
  }

  std::filesystem::path dir_;
  std::string key_;
};

TEST_F(RemoteSpec, QueryForm) {
  auto o = parse("ipsan://10.0.0.2:7000/3?client=alice&key-file=" + key_ +
                 "&transport=tcp&timeout=2s&fence-timeout=1s&connect-timeout=3s&slots=8&ro");
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->device_id, 3u);
  EXPECT_TRUE(o->read_only);
  EXPECT_EQ(o->label, "ipsan://10.0.0.2:7000/3");
  EXPECT_EQ(o->runtime.transport.host, "10.0.0.2");
  EXPECT_EQ(o->runtime.transport.port, 7000);
  EXPECT_EQ(o->runtime.transport.kind, proto::TransportKind::kTcp);
  EXPECT_EQ(o->runtime.client.client_name, "alice");
  EXPECT_EQ(o->runtime.client.request_timeout, 2s);
  EXPECT_EQ(o->runtime.client.fence_timeout, 1s);
  EXPECT_EQ(o->runtime.connect_timeout, 3s);
  EXPECT_EQ(o->runtime.client.max_slots, 8u);
  Key256 want;
  want.fill(0xbb);
  EXPECT_EQ(o->runtime.client.key, want);
}

TEST_F(RemoteSpec, CommaFormAndDefaults) {
  auto o = parse("ipsan://127.0.0.1/0,client=alice,key-file=" + key_);
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->runtime.transport.port, 5260);
  EXPECT_EQ(o->runtime.transport.kind, proto::TransportKind::kUdp);
  EXPECT_EQ(o->runtime.client.request_timeout, 30s);
  EXPECT_EQ(o->runtime.client.fence_timeout, 10s);
  EXPECT_FALSE(o->read_only);
}

TEST_F(RemoteSpec, KeyFromEnvironment) {
  ::setenv("IPSAN_KEY", std::string(64, 'c').c_str(), 1);
  auto o = parse("ipsan://127.0.0.1:5260/1?client=bob");
  ::unsetenv("IPSAN_KEY");
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->runtime.client.client_name, "bob");
}

TEST_F(RemoteSpec, ErrorsNameTheProblem) {
  struct Case {
    std::string spec;
    std::string says;
  };
  const std::string k = "&key-file=" + key_;
  const Case cases[] = {
      {"ipsan:127.0.0.1/0", "expected ipsan://HOST"},
      {"ipsan://127.0.0.1", "no device"},
      {"ipsan://127.0.0.1/x?client=a" + k, "device must be a number"},
      {"ipsan://127.0.0.1/99999999999?client=a" + k, "out of range"},
      {"ipsan://127.0.0.1:99999/0?client=a" + k, "HOST[:PORT]"},
      {"ipsan://127.0.0.1/0?client=a&colour=red" + k, "unknown option 'colour'"},
      {"ipsan://127.0.0.1/0?client=a&client=b" + k, "given twice"},
      {"ipsan://127.0.0.1/0?client=a&transport=sctp" + k, "--transport"},
      {"ipsan://127.0.0.1/0?client=a&timeout=soon" + k, "--timeout"},
      {"ipsan://127.0.0.1/0?client=a&fence-timeout=0s" + k, "fence-timeout"},
      {"ipsan://127.0.0.1/0?client=a&slots=0" + k, "slots"},
      {"ipsan://127.0.0.1/0?client=a&ro=1" + k, "takes no value"},
      {"ipsan://127.0.0.1/0?client=a&&ro" + k, "empty option"},
      {"ipsan://127.0.0.1/0?client=a", "no key"},
      {"ipsan://127.0.0.1/0?client=a&key-file=/nonexistent/key", "nonexistent"},
  };
  for (const auto& c : cases) {
    auto o = parse(c.spec);
    ASSERT_FALSE(o) << c.spec;
    EXPECT_NE(o.error().message.find(c.says), std::string::npos)
        << c.spec << " said: " << o.error().message;
  }
}

TEST_F(RemoteSpec, RegisteredKindOpensAndReportsAnAbsentServer) {
  register_remote_backend();
  register_remote_backend();  // idempotent
  auto kinds = backends::backend_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "ipsan"), kinds.end());
  // Nobody listens on TCP port 1 of 127.0.0.1 (privileged; nothing runs there in CI).
  auto b = backends::open_backend("ipsan://127.0.0.1:1/0?client=alice&transport=tcp&key-file=" +
                                  key_);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("ipsan://127.0.0.1:1/0"), std::string::npos)
      << b.error().message;
  EXPECT_NE(b.error().message.find("refused"), std::string::npos) << b.error().message;
}

}  // namespace
}  // namespace ipsan::remote
