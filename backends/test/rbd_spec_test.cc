// rbd: spec parsing (no cluster needed) and the kind's registration.
#include <gtest/gtest.h>

#include "ipsan/backends/rbd.h"

namespace ipsan::backends {
namespace {

Result<RbdOptions, Error> parse(const std::string& text) {
  auto spec = parse_backend_spec(text);
  if (!spec) return make_unexpected(spec.error());
  return parse_rbd_spec(*spec);
}

TEST(RbdSpec, Defaults) {
  auto o = parse("rbd:rbd/vm1");
  ASSERT_TRUE(o.has_value()) << o.error().message;
  EXPECT_EQ(o->pool, "rbd");
  EXPECT_EQ(o->ns, "");
  EXPECT_EQ(o->image, "vm1");
  EXPECT_EQ(o->client_id, "admin");
  EXPECT_EQ(o->block_size, 512u);
  EXPECT_EQ(o->connect_timeout_s, 30u);
  EXPECT_FALSE(o->read_only || o->takeover || o->no_lock);
  EXPECT_TRUE(o->conf_file.empty() && o->keyring.empty() && o->snapshot.empty());
}

TEST(RbdSpec, EveryOption) {
  auto o =
      parse("rbd:pool/ns/img,conf=/etc/c.conf,id=client.gw1,keyring=/k,bs=4096,timeout=5,takeover");
  ASSERT_TRUE(o.has_value()) << o.error().message;
  EXPECT_EQ(o->pool, "pool");
  EXPECT_EQ(o->ns, "ns");
  EXPECT_EQ(o->image, "img");
  EXPECT_EQ(o->conf_file, "/etc/c.conf");
  EXPECT_EQ(o->client_id, "gw1");  // "client." prefix accepted
  EXPECT_EQ(o->keyring, "/k");
  EXPECT_EQ(o->block_size, 4096u);
  EXPECT_EQ(o->connect_timeout_s, 5u);
  EXPECT_TRUE(o->takeover);
  // A snapshot is always read-only.
  auto s = parse("rbd:p/i,snap=monday");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->snapshot, "monday");
  EXPECT_TRUE(s->read_only);
  auto n = parse("rbd:p/i,nolock,ro");
  ASSERT_TRUE(n.has_value());
  EXPECT_TRUE(n->no_lock && n->read_only);
}

TEST(RbdSpec, BadSpecsAreClearErrors) {
  for (const char* bad : {"rbd:", "rbd:pool", "rbd:/img", "rbd:pool/", "rbd:a/b/c/d", "rbd:a//b",
                          "rbd:p/i@s", "rbd:p/i,bs=1024", "rbd:p/i,timeout=0", "rbd:p/i,timeout=x",
                          "rbd:p/i,timeout=99999", "rbd:p/i,takeover,nolock", "rbd:p/i,ro=1",
                          "rbd:p/i,frob", "rbd:p/i,id=client.", "rbd:p/i,takeover=yes"}) {
    auto o = parse(bad);
    EXPECT_FALSE(o.has_value()) << bad;
    if (!o) {
      EXPECT_FALSE(o.error().message.empty()) << bad;
    }
  }
}

TEST(RbdSpec, KindIsRegistered) {
  // Before registration the kind exists but says the program lacks it; after, it is librbd's.
  auto before = open_backend("rbd:p/i,conf=/nonexistent/ceph.conf");
  ASSERT_FALSE(before.has_value());
  EXPECT_NE(before.error().message.find("has no RBD back end"), std::string::npos)
      << before.error().message;
  EXPECT_EQ(before.error().code, Errc::kNotSupported);
  register_rbd_backend();
  register_rbd_backend();  // idempotent
  auto after = open_backend("rbd:p/i,conf=/nonexistent/ceph.conf");
  ASSERT_FALSE(after.has_value());
  EXPECT_NE(after.error().message.find("cannot read the Ceph configuration"), std::string::npos)
      << after.error().message;
}

}  // namespace
}  // namespace ipsan::backends
