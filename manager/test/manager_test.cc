// The manager's request handling without a network: roles, replay and clock-window refusals,
// allocation with a server that answers (and one that does not: rolled back), grants that a
// server's verifier accepts, revocation lists, schema migrations. Virtual clock.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "ipsan/auth/grant.h"
#include "ipsan/auth/grant_keeper.h"
#include "ipsan/auth/signed_call.h"
#include "ipsan/manager/manager.h"

namespace ipsan::manager {
namespace {

using json = nlohmann::json;

auth::Identity seeded(std::uint8_t n) {
  std::array<std::uint8_t, 32> s{};
  s.fill(n);
  return auth::identity_from_seed(s);
}

struct ManagerTest : ::testing::Test {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("ipsan-mgr-" + std::to_string(::getpid()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  auth::Identity mk = seeded(1), admin = seeded(2), s1 = seeded(3), alice = seeded(4),
                 bob = seeded(5);
  std::atomic<std::uint64_t> now{1'800'000'000};
  std::unique_ptr<Manager> m;

  void SetUp() override {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    open(std::chrono::milliseconds(2000));
  }
  void TearDown() override {
    m.reset();
    std::filesystem::remove_all(dir);
  }
  void open(Duration alloc_timeout) {
    m.reset();
    ManagerOptions o;
    o.db_path = (dir / "state.db").string();
    o.identity = mk;
    o.admin_keys = {admin.public_key};
    o.grant_ttl = 60;
    o.alloc_timeout = alloc_timeout;
    o.clock = [this] { return now.load(); };
    auto r = Manager::open(std::move(o));
    ASSERT_TRUE(r) << r.error().message;
    m = std::move(*r);
  }
  json call(const auth::Identity& who, json body) {
    json env = auth::sign_request(who, std::move(body), now);
    const std::string nonce = json::parse(env["body"].get<std::string>())["nonce"];
    auto r = auth::open_response(m->handle(env), mk.public_key, nonce);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : json{};
  }
  json sync(json results = json::array()) {
    return call(s1, json{{"op", "server-sync"}, {"address", "127.0.0.1:1"}, {"capacity", 1u << 30},
                         {"used", 0}, {"devices", json::array()}, {"results", results},
                         {"refused", json::array()}});
  }
  void setup_world() {
    ASSERT_TRUE(call(admin, {{"op", "server-add"}, {"name", "s1"}, {"key", auth::public_key_hex(s1.public_key)}})["ok"]);
    ASSERT_TRUE(call(admin, {{"op", "client-add"}, {"name", "alice"}, {"key", auth::public_key_hex(alice.public_key)}})["ok"]);
    ASSERT_TRUE(call(admin, {{"op", "client-add"}, {"name", "bob"}, {"key", auth::public_key_hex(bob.public_key)}})["ok"]);
    ASSERT_TRUE(sync()["ok"]);
  }
  // disk-create while a thread plays the server (answering `ok`).
  json create_with_server(const std::string& name, bool ok) {
    std::atomic<bool> done{false};
    std::thread server([&] {
      while (!done) {
        json r = sync();
        json results = json::array();
        for (const auto& op : r["ops"])
          results.push_back(json{{"id", op["id"]}, {"ok", ok}, {"error", ok ? "" : "disk full"}});
        if (!results.empty()) sync(results);
        std::this_thread::yield();
      }
    });
    json r = call(admin, {{"op", "disk-create"}, {"size", 1u << 20}, {"client", "alice"}, {"name", name}});
    done = true;
    server.join();
    return r;
  }
};

TEST_F(ManagerTest, RolesReplayAndClockWindow) {
  setup_world();
  // A client cannot administer; an unknown key is refused.
  EXPECT_FALSE(call(alice, {{"op", "disk-list"}})["ok"]);
  EXPECT_FALSE(call(seeded(9), {{"op", "disk-list"}})["ok"]);
  // A server cannot fetch grants.
  EXPECT_FALSE(call(s1, {{"op", "client-grants"}})["ok"]);
  // Replayed request (same envelope): refused the second time.
  json env = auth::sign_request(s1, json{{"op", "server-sync"}}, now);
  const std::string nonce = json::parse(env["body"].get<std::string>())["nonce"];
  auto first = auth::open_response(m->handle(env), mk.public_key, nonce);
  ASSERT_TRUE(first);
  EXPECT_TRUE((*first)["ok"]);
  auto second = auth::open_response(m->handle(env), mk.public_key, nonce);
  ASSERT_TRUE(second);
  EXPECT_FALSE((*second)["ok"]);
  EXPECT_NE((*second)["error"].get<std::string>().find("replayed"), std::string::npos);
  // Outside the time window.
  json old = auth::sign_request(admin, json{{"op", "disk-list"}}, now - 3600);
  const std::string n2 = json::parse(old["body"].get<std::string>())["nonce"];
  auto r = auth::open_response(m->handle(old), mk.public_key, n2);
  ASSERT_TRUE(r);
  EXPECT_FALSE((*r)["ok"]);
  // Tampered body: bad signature.
  json t = auth::sign_request(admin, json{{"op", "disk-list"}}, now);
  std::string body = t["body"];
  body.replace(body.find("disk-list"), 9, "disk-lisT");
  t["body"] = body;
  EXPECT_FALSE(json::parse(m->handle(t)["body"].get<std::string>())["ok"]);
  // Every refusal is audited.
  json a = call(admin, {{"op", "audit"}, {"limit", 100}});
  int refused = 0;
  for (const auto& e : a["audit"]) refused += e["action"] == "request-refused";
  EXPECT_GE(refused, 4);
}

TEST_F(ManagerTest, AllocationGrantVerifyRevoke) {
  setup_world();
  json r = create_with_server("d1", true);
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["server"], "s1");
  const auto dev = r["device_id"].get<std::uint32_t>();
  json g = call(alice, {{"op", "client-grants"}});
  ASSERT_EQ(g["grants"].size(), 1u);
  auto bytes = auth::parse_grant_text(g["grants"][0]["grant"].get<std::string>());
  ASSERT_TRUE(bytes);
  auth::GrantVerifier v(mk.public_key, s1, [this] { return now.load(); });
  auto ok = v.verify(*bytes, "alice");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->grant.device_id, dev);
  EXPECT_FALSE(v.verify(*bytes, "bob"));  // bob presenting alice's grant
  EXPECT_TRUE(call(bob, {{"op", "client-grants"}})["grants"].empty());
  // Revoke: the next sync carries a list that makes the verifier refuse it.
  ASSERT_TRUE(call(admin, {{"op", "disk-revoke"}, {"disk", "d1"}, {"client", "alice"}})["ok"]);
  json s = sync();
  auto rev = auth::parse_grant_text(s["revocations"].get<std::string>());
  ASSERT_TRUE(rev);
  ASSERT_TRUE(v.update_revocations(*rev));
  EXPECT_FALSE(v.verify(*bytes, "alice"));
  EXPECT_TRUE(call(alice, {{"op", "client-grants"}})["grants"].empty());
  // Granting again gives a new serial, which the list does not cover.
  json again = call(admin, {{"op", "disk-grant"}, {"disk", "d1"}, {"client", "alice"}});
  ASSERT_TRUE(again["ok"]);
  json g2 = call(alice, {{"op", "client-grants"}});
  ASSERT_EQ(g2["grants"].size(), 1u);
  EXPECT_NE(g2["grants"][0]["serial"], g["grants"][0]["serial"]);
  // Expiry on the virtual clock.
  auto b2 = auth::parse_grant_text(g2["grants"][0]["grant"].get<std::string>());
  ASSERT_TRUE(v.verify(*b2, "alice"));
  now += 61;
  EXPECT_FALSE(v.verify(*b2, "alice"));
}

TEST_F(ManagerTest, ServerFailureOrSilenceRollsBack) {
  setup_world();
  json r = create_with_server("bad", false);
  EXPECT_FALSE(r["ok"]);
  EXPECT_NE(r["error"].get<std::string>().find("rolled back"), std::string::npos);
  // The server now gets a delete (idempotent), never the create.
  json s = sync();
  ASSERT_EQ(s["ops"].size(), 1u);
  EXPECT_EQ(s["ops"][0]["kind"], "delete");
  sync(json::array({json{{"id", s["ops"][0]["id"]}, {"ok", true}}}));
  EXPECT_TRUE(call(admin, {{"op", "disk-list"}})["disks"].empty());
  // Silence: no sync during the allocation timeout.
  open(std::chrono::milliseconds(300));
  json q = call(admin, {{"op", "disk-create"}, {"size", 1u << 20}, {"client", "alice"}, {"name", "q"}});
  EXPECT_FALSE(q["ok"]);
  EXPECT_NE(q["error"].get<std::string>().find("did not confirm"), std::string::npos);
  json d = call(admin, {{"op", "disk-show"}, {"disk", "q"}});
  EXPECT_EQ(d["disk"]["state"], "deleting");
  // A server silent for longer than offline_after is not chosen at all.
  now += 60;
  json none = call(admin, {{"op", "disk-create"}, {"size", 1u << 20}, {"client", "alice"}});
  EXPECT_FALSE(none["ok"]);
  EXPECT_NE(none["error"].get<std::string>().find("unreachable"), std::string::npos);
}

TEST_F(ManagerTest, SchemaMigrationsAndNewerFilesRefused) {
  m.reset();
  auto db = Db::open((dir / "state.db").string(), schema_migrations());
  ASSERT_TRUE(db);
  EXPECT_EQ(db->schema_version(), static_cast<int>(schema_migrations().size()));
  db->exec("PRAGMA user_version=99");
  auto again = Db::open((dir / "state.db").string(), schema_migrations());
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("newer"), std::string::npos);
  // A version-1 file is migrated forward, keeping its rows.
  std::filesystem::remove(dir / "v1.db");
  {
    auto v1 = Db::open((dir / "v1.db").string(), {schema_migrations()[0]});
    ASSERT_TRUE(v1);
    v1->exec("INSERT INTO clients(name, key, added) VALUES('x', 'k', 1)");
  }
  auto up = Db::open((dir / "v1.db").string(), schema_migrations());
  ASSERT_TRUE(up);
  EXPECT_EQ(up->schema_version(), static_cast<int>(schema_migrations().size()));
  auto s = up->prepare("SELECT COUNT(*) FROM clients");
  ASSERT_TRUE(s.step());
  EXPECT_EQ(s.i64(0), 1);
}

}  // namespace
}  // namespace ipsan::manager
