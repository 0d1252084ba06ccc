// RBD back end against a real single-node Ceph cluster (scripts/ceph-cluster.sh; the CTest
// fixture `ceph` starts it and sets IPSAN_CEPH_DIR). Without a cluster the tests skip, or fail
// under CI=true. Every test works on images of its own (unique names), so they may run in any
// order; they share the cluster.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "ipsan/backends/rbd.h"
#include "ipsan/base/pattern.h"
#include "ipsan/client/verify.h"
#include "ipsan/testing/skip.h"
#include "test_server.h"

namespace ipsan::backends {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string cluster_dir() {
  const char* d = std::getenv("IPSAN_CEPH_DIR");
  return d == nullptr ? "" : d;
}

// Runs a shell command; returns its exit status and stdout.
std::pair<int, std::string> sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

class Rbd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = cluster_dir();
    if (dir_.empty() || !fs::exists(dir_ + "/ceph.conf")) {
      IPSAN_SKIP_OR_FAIL() << "no Ceph cluster: run under the CTest fixture or set IPSAN_CEPH_DIR "
                              "(scripts/ceph-cluster.sh start DIR)";
    }
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    prefix_ = std::string("t-") + info->name() + "-" + std::to_string(rd() % 1000000);
  }
  void TearDown() override {
    for (const auto& img : images_) {
      sh(rbd_cmd() + " snap purge rbd/" + img);
      sh(rbd_cmd() + " rm rbd/" + img);
    }
  }
  std::string rbd_cmd() const {
    return "timeout 60 rbd --conf " + dir_ + "/ceph.conf --keyring " + dir_ +
           "/client.admin.keyring";
  }
  // Creates a fresh image (layering, exclusive-lock, object-map, fast-diff, deep-flatten).
  std::string make_image(const std::string& size = "64M", const std::string& extra = "") {
    const std::string name = prefix_ + "-" + std::to_string(images_.size());
    auto [rc, out] = sh(rbd_cmd() + " create --size " + size + " " + extra + " rbd/" + name);
    EXPECT_EQ(rc, 0) << out;
    images_.push_back(name);
    return name;
  }
  std::string spec(const std::string& image, const std::string& opts = "") const {
    return "rbd:rbd/" + image + ",conf=" + dir_ + "/ceph.conf,keyring=" + dir_ +
           "/client.admin.keyring" + opts;
  }
  std::shared_ptr<RbdBackend> open(const std::string& image, const std::string& opts = "") {
    register_rbd_backend();
    auto b = open_backend(spec(image, opts));
    EXPECT_TRUE(b.has_value()) << (b ? "" : b.error().message);
    if (!b) return nullptr;
    return std::dynamic_pointer_cast<RbdBackend>(*b);
  }

  std::string dir_;
  std::string prefix_;
  std::vector<std::string> images_;
};

// Synchronous wrappers (bounded: a stuck cluster fails the test instead of hanging it).
Errc wait(std::future<Errc> f, std::chrono::seconds limit = 60s) {
  if (f.wait_for(limit) != std::future_status::ready) return Errc::kTimeout;
  return f.get();
}
Errc do_write(Backend& b, std::uint64_t lba, const std::vector<std::uint8_t>& d, bool fua = false) {
  auto p = std::make_shared<std::promise<Errc>>();
  b.write(lba, d, fua, [p](Errc e) { p->set_value(e); });
  return wait(p->get_future());
}
Errc do_read(Backend& b, std::uint64_t lba, std::vector<std::uint8_t>& d) {
  auto p = std::make_shared<std::promise<Errc>>();
  b.read(lba, d, [p](Errc e) { p->set_value(e); });
  return wait(p->get_future());
}
Errc do_flush(Backend& b) {
  auto p = std::make_shared<std::promise<Errc>>();
  b.flush([p](Errc e) { p->set_value(e); });
  return wait(p->get_future());
}
Errc do_zero(Backend& b, std::uint64_t lba, std::uint64_t n, bool trim) {
  auto p = std::make_shared<std::promise<Errc>>();
  if (trim) {
    b.trim(lba, n, [p](Errc e) { p->set_value(e); });
  } else {
    b.write_zeroes(lba, n, false, [p](Errc e) { p->set_value(e); });
  }
  return wait(p->get_future());
}
std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed * 31 + i * 7 + i / 512);
  return v;
}

TEST_F(Rbd, ReadWriteFlushZeroesAndCapabilities) {
  auto img = make_image("64M");
  auto b = open(img);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->geometry().block_size, 512u);
  EXPECT_EQ(b->geometry().block_count, (64u << 20) / 512);
  EXPECT_EQ(b->describe(), "rbd:rbd/" + img);
  const auto c = b->capabilities();
  EXPECT_FALSE(c.read_only);
  EXPECT_FALSE(c.fua);  // emulated: write then flush
  EXPECT_TRUE(c.flush && c.trim && c.write_zeroes);
  EXPECT_TRUE(b->lock_owner());

  const auto d = pattern(1 << 20, 1);
  ASSERT_EQ(do_write(*b, 100, d), Errc::kOk);
  ASSERT_EQ(do_write(*b, 5000, pattern(4096, 2), /*fua=*/true), Errc::kOk);
  ASSERT_EQ(do_flush(*b), Errc::kOk);
  std::vector<std::uint8_t> back(d.size());
  ASSERT_EQ(do_read(*b, 100, back), Errc::kOk);
  EXPECT_EQ(back, d);
  // Trim and write-zeroes read back as zeroes, also for ranges not aligned to RBD objects.
  ASSERT_EQ(do_zero(*b, 101, 7, /*trim=*/true), Errc::kOk);
  ASSERT_EQ(do_zero(*b, 200, 9, /*trim=*/false), Errc::kOk);
  ASSERT_EQ(do_read(*b, 100, back), Errc::kOk);
  for (std::size_t i = 0; i < back.size(); ++i) {
    const std::uint64_t blk = 100 + i / 512;
    const bool zero = (blk >= 101 && blk < 108) || (blk >= 200 && blk < 209);
    ASSERT_EQ(back[i], zero ? 0 : d[i]) << "byte " << i;
  }
  // Out of range and misaligned requests are refused without touching data.
  std::vector<std::uint8_t> one(512);
  EXPECT_EQ(do_read(*b, b->geometry().block_count, one), Errc::kLbaOutOfRange);
  std::vector<std::uint8_t> odd(100);
  EXPECT_EQ(do_read(*b, 0, odd), Errc::kInvalidArgument);
  EXPECT_EQ(do_zero(*b, b->geometry().block_count - 1, 2, true), Errc::kLbaOutOfRange);
}

TEST_F(Rbd, BlockSize4096AndReadOnly) {
  auto img = make_image("8M");
  {
    auto b = open(img, ",bs=4096");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->geometry().block_count, 2048u);
    ASSERT_EQ(do_write(*b, 3, pattern(4096, 9)), Errc::kOk);
  }
  auto ro = open(img, ",ro");
  ASSERT_TRUE(ro);
  EXPECT_TRUE(ro->capabilities().read_only);
  EXPECT_FALSE(ro->lock_owner());
  EXPECT_EQ(do_write(*ro, 0, pattern(512, 1)), Errc::kWriteProtected);
  std::vector<std::uint8_t> back(512);
  ASSERT_EQ(do_read(*ro, 24, back), Errc::kOk);
  const auto want = pattern(4096, 9);
  EXPECT_EQ(back, std::vector<std::uint8_t>(want.begin(), want.begin() + 512));
}

// Two gateways never write the image unknowingly: the second is refused while the first holds the
// exclusive lock; with `takeover` it breaks the lock, the first is blocklisted (fenced) and its
// writes fail, and nothing the first acknowledged is lost.
TEST_F(Rbd, SecondGatewayRefusedThenTakeoverFencesTheFirst) {
  auto img = make_image("16M");
  auto a = open(img);
  ASSERT_TRUE(a);
  ASSERT_EQ(do_write(*a, 0, pattern(8192, 3)), Errc::kOk);
  ASSERT_EQ(do_flush(*a), Errc::kOk);

  register_rbd_backend();
  const auto t0 = std::chrono::steady_clock::now();
  auto refused = open_backend(spec(img));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::kBusy);
  EXPECT_NE(refused.error().message.find("exclusive lock held by another gateway"),
            std::string::npos)
      << refused.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
  std::printf("second gateway: %s\n", refused.error().message.c_str());
  // The first is undisturbed.
  EXPECT_TRUE(a->lock_owner());
  ASSERT_EQ(do_write(*a, 16, pattern(512, 4)), Errc::kOk);

  auto b = open(img, ",takeover");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->lock_owner());
  std::vector<std::uint8_t> back(8192);
  ASSERT_EQ(do_read(*b, 0, back), Errc::kOk);
  EXPECT_EQ(back, pattern(8192, 3));
  std::vector<std::uint8_t> one(512);
  ASSERT_EQ(do_read(*b, 16, one), Errc::kOk);
  EXPECT_EQ(one, pattern(512, 4));
  // The deposed gateway is fenced: nothing it writes reaches the image, and a FUA write or a
  // flush fails. (A plain write may first be absorbed by librbd's write-back cache, which is
  // volatile: its FLUSH then fails, as the cache contract allows.)
  (void)do_write(*a, 32, pattern(512, 5));
  EXPECT_EQ(do_write(*a, 33, pattern(512, 5), /*fua=*/true), Errc::kNotReady);
  EXPECT_EQ(do_flush(*a), Errc::kNotReady);
  EXPECT_EQ(do_write(*a, 34, pattern(512, 5), /*fua=*/true), Errc::kNotReady);
  ASSERT_EQ(do_write(*b, 40, pattern(512, 6)), Errc::kOk);
  std::vector<std::uint8_t> three(1536);
  ASSERT_EQ(do_read(*b, 32, three), Errc::kOk);
  EXPECT_EQ(three, std::vector<std::uint8_t>(1536, 0));  // blocks 32..34: none of A's writes
  EXPECT_FALSE(a->lock_owner());
}

TEST_F(Rbd, SnapshotsReadOnlyExportAndDiff) {
  auto img = make_image("16M");
  auto b = open(img);
  ASSERT_TRUE(b);
  ASSERT_EQ(do_write(*b, 0, pattern(65536, 1)), Errc::kOk);
  ASSERT_TRUE(b->snapshot_create("s1").has_value());
  EXPECT_FALSE(b->snapshot_create("s1").has_value());        // exists
  EXPECT_FALSE(b->snapshot_create("bad/name").has_value());  // refused
  ASSERT_EQ(do_write(*b, 0, pattern(4096, 2)), Errc::kOk);
  ASSERT_EQ(do_write(*b, 20000, pattern(4096, 3)), Errc::kOk);
  ASSERT_EQ(do_flush(*b), Errc::kOk);
  auto snaps = b->snapshots();
  ASSERT_TRUE(snaps.has_value());
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ(snaps->front().name, "s1");
  EXPECT_EQ(snaps->front().size_bytes, 16u << 20);

  // The snapshot as a read-only back end: the old data, writes refused.
  auto s = open(img, ",snap=s1");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->capabilities().read_only);
  EXPECT_EQ(s->describe(), "rbd:rbd/" + img + "@s1,ro");
  std::vector<std::uint8_t> back(65536);
  ASSERT_EQ(do_read(*s, 0, back), Errc::kOk);
  EXPECT_EQ(back, pattern(65536, 1));
  EXPECT_EQ(do_write(*s, 0, pattern(512, 1)), Errc::kWriteProtected);

  // Diff since s1: the two rewritten ranges, and nothing outside the two RBD objects (4 MiB)
  // they fall in (an object created after the snapshot is reported from its start).
  auto d = b->diff("s1");
  ASSERT_TRUE(d.has_value()) << d.error().message;
  ASSERT_FALSE(d->empty());
  bool covers_first = false, covers_second = false;
  for (const auto& e : *d) {
    std::printf("diff: %llu +%llu %s\n", static_cast<unsigned long long>(e.offset),
                static_cast<unsigned long long>(e.length), e.data ? "data" : "zero");
    if (e.offset <= 0 && e.offset + e.length >= 4096) covers_first = true;
    if (e.offset <= 20000ull * 512 && e.offset + e.length >= 20000ull * 512 + 4096) {
      covers_second = true;
    }
    constexpr std::uint64_t kObject = 4u << 20;
    const std::uint64_t obj = e.offset / kObject;
    EXPECT_TRUE((obj == 0 || obj == 20000ull * 512 / kObject) &&
                (e.offset + e.length - 1) / kObject == obj)
        << "unchanged range in the diff at " << e.offset;
  }
  EXPECT_TRUE(covers_first && covers_second);
  auto full = b->diff("");
  ASSERT_TRUE(full.has_value());
  EXPECT_FALSE(b->diff("nosuch").has_value());
  s.reset();
  ASSERT_TRUE(b->snapshot_remove("s1").has_value());
  EXPECT_FALSE(b->snapshot_remove("s1").has_value());
  EXPECT_TRUE(b->snapshots()->empty());
}

TEST_F(Rbd, BadInputGivesAClearErrorInBoundedTime) {
  register_rbd_backend();
  auto img = make_image("4M");
  struct Case {
    std::string spec;
    std::string expect;
  };
  // A keyring with a well-formed but wrong key for client.admin.
  const std::string bad_keyring = dir_ + "/wrong-" + prefix_ + ".keyring";
  {
    std::ofstream k(bad_keyring);
    k << "[client.admin]\n\tkey = AQBvRnBlAAAAABAAO1WgWGcDqCrHOZ4uYCMYXQ==\n";
  }
  // A config whose monitor does not answer (a port nothing listens on).
  const std::string dead_conf = dir_ + "/dead-" + prefix_ + ".conf";
  {
    std::ofstream c(dead_conf);
    c << "[global]\nmon host = [v2:127.0.0.1:9]\nauth client required = cephx\n";
  }
  const std::string keyring = ",keyring=" + dir_ + "/client.admin.keyring";
  const std::string conf = ",conf=" + dir_ + "/ceph.conf";
  const std::vector<Case> cases = {
      {"rbd:nosuchpool/" + img + conf + keyring, "pool 'nosuchpool'"},
      {"rbd:rbd/nosuchimage" + conf + keyring, "cannot open image 'nosuchimage'"},
      {"rbd:rbd/" + img + conf + keyring + ",snap=nosuchsnap", "at snapshot 'nosuchsnap'"},
      {"rbd:rbd/" + img + conf + ",keyring=" + bad_keyring + ",timeout=5",
       "cannot connect to the cluster"},
      {"rbd:rbd/" + img + conf + ",keyring=/nonexistent/keyring", "keyring '/nonexistent/keyring'"},
      {"rbd:rbd/" + img + ",conf=" + dead_conf + keyring + ",timeout=3",
       "cannot connect to the cluster"},
      {"rbd:rbd/" + img + ",conf=/nonexistent.conf", "cannot read the Ceph configuration"},
      {"rbd:rbd" + conf, "POOL/IMAGE"},
      {"rbd:rbd//x" + conf, "POOL/IMAGE"},
      {"rbd:rbd/" + img + ",frobnicate", "unknown option 'frobnicate'"},
      {"rbd:rbd/" + img + ",timeout=0", "timeout=0"},
      {"rbd:rbd/" + img + ",takeover,nolock", "exclude each other"},
      {"rbd:rbd/" + img + "@snap", "snap=NAME"},
      {"rbd:rbd/" + img + ",bs=1024", "block size"},
  };
  for (const auto& c : cases) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = open_backend(c.spec);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(r.has_value()) << c.spec;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos)
        << c.spec << " gave: " << r.error().message;
    EXPECT_LT(took, 30s) << c.spec;
    std::printf("%-40.40s -> %s (%.1f s)\n", c.spec.c_str(), r.error().message.c_str(),
                std::chrono::duration<double>(took).count());
  }
  // An image without the exclusive-lock feature is refused for writing unless ,nolock.
  auto plain = make_image("4M", "--image-feature layering");
  auto r = open_backend(spec(plain));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("no exclusive-lock feature"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(open_backend(spec(plain, ",nolock")).has_value());
  fs::remove(bad_keyring);
  fs::remove(dead_conf);
}

// An OSD killed under load: I/O stalls, then resumes when it is back; every acknowledged write
// reads back, none fails.
TEST_F(Rbd, OsdKilledAndRestartedUnderLoad) {
  const char* script = std::getenv("IPSAN_CEPH_SCRIPT");
  if (script == nullptr) IPSAN_SKIP_OR_FAIL() << "IPSAN_CEPH_SCRIPT not set";
  auto img = make_image("32M");
  auto b = open(img);
  ASSERT_TRUE(b);
  constexpr std::uint64_t kBlocks = 8;  // 4 KiB writes
  constexpr int kQd = 8;
  constexpr std::uint64_t kSlots = 2048;  // 8 MiB written in a ring
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::uint8_t> version(kSlots, 0);  // last acknowledged version per slot
  std::vector<bool> busy(kSlots, false);         // one write per slot at a time
  std::vector<int> free_q;                       // idle buffers
  int in_flight = 0;
  std::atomic<std::uint64_t> acked{0}, failed{0};
  bool stop = false;
  std::vector<std::vector<std::uint8_t>> bufs(kQd);
  std::mt19937_64 rng(20261207);
  std::printf("seed 20261207\n");
  for (int q = 0; q < kQd; ++q) free_q.push_back(q);
  // Submits from its own thread (never from librbd's callback thread).
  std::thread submitter([&] {
    for (;;) {
      std::unique_lock l(mu);
      cv.wait(l, [&] { return stop || !free_q.empty(); });
      if (stop) return;
      const int q = free_q.back();
      free_q.pop_back();
      std::uint64_t slot = rng() % kSlots;
      while (busy[slot]) slot = (slot + 1) % kSlots;
      busy[slot] = true;
      const std::uint8_t ver =
          static_cast<std::uint8_t>(version[slot] == 255 ? 1 : version[slot] + 1);
      ++in_flight;
      l.unlock();
      bufs[q] = pattern(kBlocks * 512, ver);
      bufs[q][0] = static_cast<std::uint8_t>(slot);
      b->write(slot * kBlocks, bufs[q], false, [&, q, slot, ver](Errc e) {
        std::lock_guard g(mu);
        if (e == Errc::kOk) {
          version[slot] = ver;
          acked++;
        } else {
          failed++;
        }
        busy[slot] = false;
        free_q.push_back(q);
        --in_flight;
        cv.notify_all();
      });
    }
  });
  bool osd_down = false;
  const std::string script_s = script;
  // On any exit (also a failed assertion): stop submitting, wait for what is in flight, and bring
  // the OSD back for the other tests.
  struct Guard {
    std::function<void()> f;
    ~Guard() { f(); }
  } guard{[&] {
    {
      std::lock_guard l(mu);
      stop = true;
      cv.notify_all();
    }
    if (submitter.joinable()) submitter.join();
    if (osd_down) sh(script_s + " start-osd " + dir_ + " 0");
    std::unique_lock l(mu);
    cv.wait_for(l, 120s, [&] { return in_flight == 0; });
  }};
  auto wait_acks = [&](std::uint64_t more, std::chrono::seconds limit) {
    const std::uint64_t target = acked + more;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (acked < target && std::chrono::steady_clock::now() < deadline) {
      std::unique_lock l(mu);
      cv.wait_for(l, 100ms);
    }
    return acked >= target;
  };
  ASSERT_TRUE(wait_acks(200, 60s));
  const std::string osd = std::string(script) + " kill-osd " + dir_ + " 0";
  auto [krc, kout] = sh(osd);
  ASSERT_EQ(krc, 0) << kout;
  osd_down = true;
  const std::uint64_t at_kill = acked;
  // Stalled: while the only OSD is down nothing can be acknowledged (a few in flight at the
  // moment of the kill may still complete).
  {
    std::unique_lock l(mu);
    cv.wait_for(l, 3s);
  }
  const std::uint64_t during = acked - at_kill;
  std::printf("acknowledged before the kill %llu, in the 3 s after %llu\n",
              static_cast<unsigned long long>(at_kill), static_cast<unsigned long long>(during));
  EXPECT_LE(during, static_cast<std::uint64_t>(kQd));
  auto [src, sout] = sh(std::string(script) + " start-osd " + dir_ + " 0");
  ASSERT_EQ(src, 0) << sout;
  osd_down = false;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(wait_acks(200, 120s)) << "I/O did not resume after the OSD restarted";
  std::printf("resumed %.1f s after the restart\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  guard.f();
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 60s, [&] { return in_flight == 0; }));
  }
  EXPECT_EQ(failed, 0u);
  ASSERT_EQ(do_flush(*b), Errc::kOk);
  // Everything acknowledged is there, from this handle and from a fresh one (after a takeover).
  b.reset();
  auto fresh = open(img);
  ASSERT_TRUE(fresh);
  std::vector<std::uint8_t> back(kBlocks * 512);
  std::uint64_t checked = 0;
  for (std::uint64_t s = 0; s < kSlots; ++s) {
    if (version[s] == 0) continue;
    ASSERT_EQ(do_read(*fresh, s * kBlocks, back), Errc::kOk);
    auto want = pattern(kBlocks * 512, version[s]);
    want[0] = static_cast<std::uint8_t>(s);
    ASSERT_EQ(back, want) << "slot " << s << " version " << int(version[s]);
    ++checked;
  }
  std::printf("%llu writes acknowledged, %llu slots verified\n",
              static_cast<unsigned long long>(acked.load()),
              static_cast<unsigned long long>(checked));
}

}  // namespace
}  // namespace ipsan::backends

// Through the server and the SAN/IP client.
namespace ipsan::testing {
namespace {

using backends::Rbd;
using backends::register_rbd_backend;
using backends::sh;
using namespace std::chrono_literals;
using proto::Op;
using proto::TransportKind;

client::ClientOptions alice() {
  client::ClientOptions o;
  o.client_name = "alice";
  o.key = test_key();
  o.request_timeout = std::chrono::seconds(60);
  return o;
}

proto::Reply call(boost::asio::io_context& io, client::SanClient& c, proto::Request req) {
  std::optional<proto::Reply> out;
  c.execute(std::move(req), [&](proto::Reply r) { out = std::move(r); });
  EXPECT_TRUE(run_until(
      io, [&] { return out.has_value(); }, std::chrono::seconds(120)));
  return out.value_or(proto::Reply{Errc::kTimeout, {}, {}, {}});
}

client::VerifyResult verify(boost::asio::io_context& io, client::SanClient& c, std::uint64_t blocks,
                            std::uint64_t seed, bool write) {
  client::VerifyOptions vo;
  vo.block_size = 512;
  vo.blocks = blocks;
  vo.io_blocks = 256;
  vo.queue_depth = 8;
  vo.seed = seed;
  vo.write = write;
  std::printf("verify seed %llu\n", static_cast<unsigned long long>(seed));
  std::optional<client::VerifyResult> r;
  client::run_verify(c, vo, [&](client::VerifyResult x) { r = x; });
  EXPECT_TRUE(run_until(
      io, [&] { return r.has_value(); }, std::chrono::seconds(240)));
  if (r) return *r;
  client::VerifyResult timeout;
  timeout.status = Errc::kTimeout;
  return timeout;
}

using RbdServer = Rbd;

TEST_F(RbdServer, VerifyThroughTheServerAndGrowOnline) {
  auto img = make_image("32M");
  auto b = open(img);
  ASSERT_TRUE(b);
  TestServer server({b});
  boost::asio::io_context io;
  client::SanClient c(io, factory(io, TransportKind::kUdp, server.udp_port()), alice());
  auto r = verify(io, c, (32u << 20) / 512, 4242, true);
  EXPECT_TRUE(r.ok()) << r.summary();
  std::printf("%s\n", r.summary().c_str());

  // `rbd resize` on another host: the gateway notices (header watch) and the client gets
  // CAPACITY_CHANGED once, then the new capacity.
  auto [rc, out] = sh(rbd_cmd() + " resize --size 48M rbd/" + img);
  ASSERT_EQ(rc, 0) << out;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (b->geometry().block_count != (48u << 20) / 512 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);  // polling a condition, bounded
  }
  ASSERT_EQ(b->geometry().block_count, (48u << 20) / 512);
  proto::Request req;
  req.op = Op::kRead;
  req.lba = 0;
  req.blocks = 1;
  EXPECT_EQ(call(io, c, req).status, Errc::kCapacityChanged);
  EXPECT_EQ(call(io, c, req).status, Errc::kOk);
  req.op = Op::kCapacity;
  EXPECT_EQ(call(io, c, req).capacity.block_count, (48u << 20) / 512);
  // The new space is usable.
  proto::Request w;
  w.op = Op::kWrite;
  w.lba = (40u << 20) / 512;
  w.blocks = 8;
  w.data = backends::pattern(4096, 7);
  EXPECT_EQ(call(io, c, w).status, Errc::kOk);
  // resize() through the back end API reaches clients the same way.
  ASSERT_TRUE(b->resize(64u << 20).has_value());
  req.op = Op::kReady;
  EXPECT_EQ(call(io, c, req).status, Errc::kCapacityChanged);
  req.op = Op::kCapacity;
  EXPECT_EQ(call(io, c, req).capacity.block_count, (64u << 20) / 512);
  EXPECT_FALSE(b->resize(8u << 20).has_value());  // no silent shrink
}

// Gateway failover over a shared image: gateway A serves and acknowledges writes, then dies;
// gateway B takes the image over (no data copy) and the client's data is all there. A, if it
// were still alive, is fenced.
TEST_F(RbdServer, GatewayFailoverOverASharedImage) {
  auto img = make_image("32M");
  auto a_backend = open(img);
  ASSERT_TRUE(a_backend);
  std::uint64_t written = 0;
  {
    TestServer gateway_a({a_backend});
    boost::asio::io_context io;
    client::SanClient c(io, factory(io, TransportKind::kTcp, gateway_a.tcp_port()), alice());
    auto r = verify(io, c, (16u << 20) / 512, 777, /*write=*/true);
    ASSERT_TRUE(r.ok()) << r.summary();
    written = r.bytes_written;
    proto::Request id;
    id.op = Op::kIdentify;
    EXPECT_EQ(call(io, c, id).status, Errc::kOk);
  }
  EXPECT_EQ(written, 16u << 20);
  // Gateway B while A still holds the lock: refused.
  register_rbd_backend();
  auto refused = backends::open_backend(spec(img));
  ASSERT_FALSE(refused.has_value());
  // A is gone (its server stopped; its librbd handle still holds the lock, as a hung process
  // would): B takes over.
  auto b_backend = open(img, ",takeover");
  ASSERT_TRUE(b_backend);
  TestServer gateway_b({b_backend});
  boost::asio::io_context io;
  client::SanClient c(io, factory(io, TransportKind::kUdp, gateway_b.udp_port()), alice());
  auto r = verify(io, c, (16u << 20) / 512, 777, /*write=*/false);
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.bytes_read, 16u << 20);
  // Same device identity on both gateways (UUID from the image, not the gateway).
  EXPECT_EQ(a_backend->describe(), b_backend->describe());
  // A writes nothing any more.
  EXPECT_EQ(backends::do_write(*a_backend, 0, backends::pattern(512, 1), /*fua=*/true),
            Errc::kNotReady);
  auto r2 = verify(io, c, (16u << 20) / 512, 778, /*write=*/true);
  EXPECT_TRUE(r2.ok()) << r2.summary();
}

}  // namespace
}  // namespace ipsan::testing
