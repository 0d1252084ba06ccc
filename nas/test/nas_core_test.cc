// nas_core_test.cc: the NFSv3/MOUNT core driven with hand-built RPC calls on a file-backed disk:
// bad input (malformed XDR, oversized counts, stale handles, bad names, a full file system) gets
// the right NFS errors, EXCLUSIVE create and the write verifier behave, and `e2fsck -fn` finds
// the image clean afterwards.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "ipsan/backends/spec.h"
#include "ipsan/base/rng.h"
#include "ipsan/nas/block_device.h"
#include "ipsan/nas/nas.h"
#include "ipsan/proto/xdr.h"

namespace ipsan::nas {
namespace {

using proto::XdrReader;
using proto::XdrWriter;

constexpr std::uint32_t kNfs = 100003, kMount = 100005;

// Passes everything to a real device and counts what reaches it.
class CountingDevice : public BlockDevice {
 public:
  explicit CountingDevice(std::unique_ptr<BlockDevice> inner) : inner_(std::move(inner)) {}
  std::uint32_t block_size() const override { return inner_->block_size(); }
  std::uint64_t block_count() const override { return inner_->block_count(); }
  bool read_only() const override { return inner_->read_only(); }
  std::string describe() const override { return inner_->describe(); }
  Errc read(std::uint64_t lba, std::span<std::uint8_t> out) override {
    return inner_->read(lba, out);
  }
  Errc write(std::uint64_t lba, std::span<const std::uint8_t> in) override {
    ++writes;
    written += in.size();
    unflushed = true;
    return inner_->write(lba, in);
  }
  Errc flush() override {
    ++flushes;
    unflushed = false;
    return inner_->flush();
  }
  std::uint64_t writes = 0, written = 0, flushes = 0;
  bool unflushed = false;  // a write reached the device after the last flush

 private:
  std::unique_ptr<BlockDevice> inner_;
};

struct Fixture {
  std::filesystem::path dir;
  std::string image;
  std::unique_ptr<BlockDevice> dev;
  CountingDevice* counting = nullptr;  // dev
  std::unique_ptr<Nas> nas;
  Peer peer{boost::asio::ip::make_address("127.0.0.1"), true};
  std::uint32_t xid = 1;

  explicit Fixture(const std::string& size = "16M", std::vector<Export> exports = {Export{}}) {
    dir = std::filesystem::temp_directory_path() /
          ("nas_core_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::create_directories(dir);
    image = (dir / "fs.img").string();
    open_dev(size);
    MkfsOptions mo;
    mo.root_mode = 0777;
    EXPECT_TRUE(mkfs(*dev, mo).has_value());
    NasOptions no;
    no.exports = std::move(exports);
    auto n = Nas::open(*dev, no);
    EXPECT_TRUE(n.has_value()) << (n ? "" : n.error().message);
    nas = std::move(*n);
  }
  ~Fixture() {
    nas.reset();
    dev.reset();
    std::filesystem::remove_all(dir);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
  void open_dev(const std::string& size) {
    auto b = backends::open_backend("file:" + image + ",size=" + size);
    ASSERT_TRUE(b.has_value()) << b.error().message;
    auto c = std::make_unique<CountingDevice>(make_backend_device(*b));
    counting = c.get();
    dev = std::move(c);
  }
  void restart() {
    ASSERT_TRUE(nas->close().has_value());
    nas.reset();
    auto n = Nas::open(*dev, NasOptions{});
    ASSERT_TRUE(n.has_value());
    nas = std::move(*n);
  }
  // Closes everything and runs e2fsck -fn on the image; returns its exit status.
  int fsck() {
    if (nas) {
      EXPECT_TRUE(nas->close().has_value());
    }
    nas.reset();
    dev.reset();
    const std::string cmd = "e2fsck -fn " + image + " >" + (dir / "fsck.log").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    if (rc != 0) {
      const int ignored = std::system(("cat " + (dir / "fsck.log").string()).c_str());
      (void)ignored;
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 99;
  }

  Bytes call_raw(std::uint32_t prog, std::uint32_t vers, std::uint32_t proc, const Bytes& args,
                 std::uint32_t uid = 1000) {
    XdrWriter w;
    w.put_u32(xid++);
    w.put_u32(0);
    w.put_u32(2);
    w.put_u32(prog);
    w.put_u32(vers);
    w.put_u32(proc);
    XdrWriter cred;
    cred.put_u32(0);
    cred.put_string("test");
    cred.put_u32(uid);
    cred.put_u32(uid);
    cred.put_u32(0);
    w.put_u32(1);
    w.put_opaque(cred.bytes());
    w.put_u32(0);
    w.put_u32(0);
    Bytes msg = w.release();
    msg.insert(msg.end(), args.begin(), args.end());
    return nas->handle(msg, peer);
  }
  // Returns the results after checking an accepted SUCCESS header (else accept_stat in `stat`).
  Bytes call(std::uint32_t prog, std::uint32_t proc, const Bytes& args, std::uint32_t* accept = nullptr,
             std::uint32_t uid = 1000) {
    Bytes rep = call_raw(prog, prog == kNfs ? 3 : 3, proc, args, uid);
    XdrReader r(rep);
    r.get_u32();
    EXPECT_EQ(*r.get_u32(), 1u);
    EXPECT_EQ(*r.get_u32(), 0u);
    r.get_u32();
    r.get_opaque(400);
    const std::uint32_t st = *r.get_u32();
    if (accept) {
      *accept = st;
    } else {
      EXPECT_EQ(st, 0u);
    }
    return Bytes(rep.begin() + static_cast<std::ptrdiff_t>(r.offset()), rep.end());
  }
  Bytes root_fh() {
    XdrWriter a;
    a.put_string("/");
    Bytes res = call(kMount, 1, a.release());
    XdrReader r(res);
    EXPECT_EQ(*r.get_u32(), 0u);
    auto fh = r.get_opaque(64);
    return Bytes(fh->begin(), fh->end());
  }
  // CREATE UNCHECKED mode 0644; returns status and the handle.
  std::uint32_t create(const Bytes& dirfh, const std::string& name, Bytes* fh = nullptr) {
    XdrWriter a;
    a.put_opaque(dirfh);
    a.put_string(name);
    a.put_u32(0);
    a.put_bool(true);
    a.put_u32(0644);
    for (int i = 0; i < 3; ++i) a.put_bool(false);
    a.put_u32(0);
    a.put_u32(0);
    Bytes res = call(kNfs, 8, a.release());
    XdrReader r(res);
    const std::uint32_t st = *r.get_u32();
    if (st == 0 && fh) {
      EXPECT_TRUE(*r.get_bool());
      auto h = r.get_opaque(64);
      *fh = Bytes(h->begin(), h->end());
    }
    return st;
  }
  std::uint32_t write(const Bytes& fh, std::uint64_t off, std::size_t n, std::uint32_t stable = 2,
                      std::uint32_t* count = nullptr, std::uint64_t* verf = nullptr) {
    XdrWriter a;
    a.put_opaque(fh);
    a.put_u64(off);
    a.put_u32(static_cast<std::uint32_t>(n));
    a.put_u32(stable);
    Bytes data(n, 0x5a);
    a.put_opaque(data);
    Bytes res = call(kNfs, 7, a.release());
    XdrReader r(res);
    const std::uint32_t st = *r.get_u32();
    if (st == 0) {
      skip_wcc(r);
      if (count) *count = *r.get_u32();
      r.get_u32();
      if (verf) *verf = *r.get_u64();
    }
    return st;
  }
  static void skip_fattr(XdrReader& r) {
    for (int i = 0; i < 21; ++i) r.get_u32();
  }
  static void skip_wcc(XdrReader& r) {
    if (*r.get_bool()) {
      for (int i = 0; i < 6; ++i) r.get_u32();
    }
    if (*r.get_bool()) skip_fattr(r);
  }
  std::uint32_t status(std::uint32_t proc, const Bytes& args) {
    Bytes res = call(kNfs, proc, args);
    XdrReader r(res);
    return *r.get_u32();
  }
};

Bytes fh_name(const Bytes& fh, const std::string& name) {
  XdrWriter a;
  a.put_opaque(fh);
  a.put_string(name);
  return a.release();
}

TEST(NasCore, MountCreateWriteReadAndFsckClean) {
  Fixture f;
  Bytes root = f.root_fh();
  Bytes fh;
  ASSERT_EQ(f.create(root, "hello", &fh), 0u);
  std::uint32_t count = 0;
  ASSERT_EQ(f.write(fh, 0, 100000, 2, &count), 0u);
  EXPECT_EQ(count, 100000u);
  XdrWriter a;
  a.put_opaque(fh);
  a.put_u64(99990);
  a.put_u32(100);
  Bytes res = f.call(kNfs, 6, a.release());
  XdrReader r(res);
  ASSERT_EQ(*r.get_u32(), 0u);
  ASSERT_TRUE(*r.get_bool());
  Fixture::skip_fattr(r);
  EXPECT_EQ(*r.get_u32(), 10u);
  EXPECT_TRUE(*r.get_bool());  // eof
  auto data = r.get_opaque(100);
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ((*data)[0], 0x5a);
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, RemoveFreesBlocks) {
  Fixture f;
  Bytes root = f.root_fh();
  for (std::size_t size : {4096u, 100000u, 1048576u}) {
    Bytes fh;
    ASSERT_EQ(f.create(root, "r", &fh), 0u);
    ASSERT_EQ(f.write(fh, 0, size, 0), 0u);
    EXPECT_EQ(f.status(12, fh_name(root, "r")), 0u) << size;
  }
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, MalformedAndRandomInputNeverCrashes) {
  Fixture f;
  Bytes root = f.root_fh();
  // Truncated arguments: GARBAGE_ARGS (accept_stat 4).
  std::uint32_t accept = 0;
  XdrWriter a;
  a.put_u32(24);
  f.call(kNfs, 1, a.release(), &accept);
  EXPECT_EQ(accept, 4u);
  // Not a call: dropped.
  Bytes junk = {0, 0, 0, 1, 0, 0, 0, 1};
  EXPECT_TRUE(f.nas->handle(junk, f.peer).empty());
  // Unknown program and procedure.
  f.call(kNfs, 99, {}, &accept);
  EXPECT_EQ(accept, 3u);
  // Random mutations of a valid WRITE call.
  XdrWriter wa;
  wa.put_opaque(root);
  wa.put_u64(0);
  wa.put_u32(8);
  wa.put_u32(0);
  wa.put_opaque(Bytes(8, 1));
  Bytes base = wa.release();
  const std::uint64_t seed = 20261207;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  for (int i = 0; i < 3000; ++i) {
    Bytes m = base;
    const int flips = 1 + static_cast<int>(rng.next() % 4);
    for (int k = 0; k < flips; ++k) m[rng.next() % m.size()] = static_cast<std::uint8_t>(rng.next());
    if (rng.next() % 4 == 0) m.resize(rng.next() % m.size());
    for (std::uint32_t proc : {1u, 3u, 6u, 7u, 8u, 12u, 14u, 16u, 17u}) {
      f.call_raw(kNfs, 3, proc, m);
    }
  }
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, OversizedCountsAreClampedOrRefused) {
  Fixture f;
  Bytes root = f.root_fh();
  Bytes fh;
  ASSERT_EQ(f.create(root, "x", &fh), 0u);
  ASSERT_EQ(f.write(fh, 0, 4096), 0u);
  XdrWriter a;
  a.put_opaque(fh);
  a.put_u64(0);
  a.put_u32(0xFFFFFFFFu);
  Bytes res = f.call(kNfs, 6, a.release());
  XdrReader r(res);
  ASSERT_EQ(*r.get_u32(), 0u);
  // WRITE claiming more bytes than it carries: NFS3ERR_INVAL.
  XdrWriter w;
  w.put_opaque(fh);
  w.put_u64(0);
  w.put_u32(1u << 30);
  w.put_u32(2);
  w.put_opaque(Bytes(16, 1));
  EXPECT_EQ(f.status(7, w.release()), 22u);
  // WRITE beyond the largest file: NFS3ERR_FBIG.
  XdrWriter w2;
  w2.put_opaque(fh);
  w2.put_u64(~0ull - 4);
  w2.put_u32(16);
  w2.put_u32(2);
  w2.put_opaque(Bytes(16, 1));
  EXPECT_EQ(f.status(7, w2.release()), 27u);
  // READDIR with a tiny count: NFS3ERR_TOOSMALL; huge count: fine.
  XdrWriter d;
  d.put_opaque(root);
  d.put_u64(0);
  d.put_u64(0);
  d.put_u32(10);
  EXPECT_EQ(f.status(16, d.release()), 10005u);
  XdrWriter d2;
  d2.put_opaque(root);
  d2.put_u64(0);
  d2.put_u64(0);
  d2.put_u32(0xFFFFFFFFu);
  EXPECT_EQ(f.status(16, d2.release()), 0u);
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, StaleHandlesAndBadNames) {
  Fixture f;
  Bytes root = f.root_fh();
  Bytes fh;
  ASSERT_EQ(f.create(root, "gone", &fh), 0u);
  EXPECT_EQ(f.status(12, fh_name(root, "gone")), 0u);
  XdrWriter g;
  g.put_opaque(fh);
  EXPECT_EQ(f.status(1, g.release()), 70u);  // STALE
  // The inode is reused by a new file: the old handle stays stale (generation).
  Bytes fh2;
  ASSERT_EQ(f.create(root, "new", &fh2), 0u);
  XdrWriter g2;
  g2.put_opaque(fh);
  EXPECT_EQ(f.status(1, g2.release()), 70u);
  // Garbage handle: BADHANDLE.
  XdrWriter g3;
  g3.put_opaque(Bytes(24, 7));
  EXPECT_EQ(f.status(1, g3.release()), 10001u);
  EXPECT_EQ(f.create(root, "a/b"), 22u);                    // INVAL
  EXPECT_EQ(f.create(root, std::string(256, 'x')), 63u);    // NAMETOOLONG
  EXPECT_EQ(f.create(root, std::string(255, 'x')), 0u);
  EXPECT_EQ(f.create(root, ".."), 17u);                     // EXIST
  EXPECT_EQ(f.status(3, fh_name(root, "missing")), 2u);     // NOENT
  EXPECT_EQ(f.status(3, fh_name(fh2, "x")), 20u);           // NOTDIR
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, HandlesSurviveRestartAndVerifierChanges) {
  Fixture f;
  Bytes root = f.root_fh();
  Bytes fh;
  ASSERT_EQ(f.create(root, "keep", &fh), 0u);
  std::uint64_t v1 = 0, v2 = 0;
  ASSERT_EQ(f.write(fh, 0, 512, 0, nullptr, &v1), 0u);
  f.restart();
  ASSERT_EQ(f.write(fh, 512, 512, 0, nullptr, &v2), 0u);
  EXPECT_NE(v1, v2);
  EXPECT_EQ(f.fsck(), 0);
}

// UNSTABLE data (and its metadata) stays in the server's cache until COMMIT; COMMIT and FILE_SYNC
// writes are on the device and flushed before the reply; the write-back is coalesced.
TEST(NasCore, StableHowAndCommitReachTheDevice) {
  Fixture f("64M");
  Bytes root = f.root_fh();
  Bytes fh;
  ASSERT_EQ(f.create(root, "unstable", &fh), 0u);
  ASSERT_FALSE(f.counting->unflushed);  // CREATE is durable
  const std::uint64_t w0 = f.counting->written, fl0 = f.counting->flushes;
  std::uint32_t count = 0;
  for (std::uint64_t off = 0; off < (1u << 20); off += 256 * 1024) {
    ASSERT_EQ(f.write(fh, off, 256 * 1024, 0, &count), 0u);
    EXPECT_EQ(count, 256u * 1024);
  }
  EXPECT_EQ(f.counting->written, w0) << "UNSTABLE data reached the device before COMMIT";
  EXPECT_EQ(f.counting->flushes, fl0);
  const std::uint64_t n0 = f.counting->writes;
  XdrWriter a;
  a.put_opaque(fh);
  a.put_u64(0);
  a.put_u32(0);
  ASSERT_EQ(f.status(21, a.release()), 0u);  // COMMIT
  EXPECT_GE(f.counting->written, w0 + (1u << 20));
  EXPECT_FALSE(f.counting->unflushed) << "COMMIT replied before the device flush";
  // 1 MiB of contiguous data plus a few metadata blocks: a handful of requests, not 256.
  EXPECT_LE(f.counting->writes - n0, 24u);
  // FILE_SYNC and DATA_SYNC: durable before the reply.
  for (std::uint32_t how : {1u, 2u}) {
    const std::uint64_t w1 = f.counting->written;
    ASSERT_EQ(f.write(fh, (1u << 20) + how * 8192, 8192, how), 0u);
    EXPECT_GE(f.counting->written, w1 + 8192) << how;
    EXPECT_FALSE(f.counting->unflushed) << how;
  }
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, ExclusiveCreateIsIdempotentPerVerifier) {
  Fixture f;
  Bytes root = f.root_fh();
  auto excl = [&](std::uint64_t verf) {
    XdrWriter a;
    a.put_opaque(root);
    a.put_string("ex");
    a.put_u32(2);
    a.put_u64(verf);
    Bytes res = f.call(kNfs, 8, a.release());
    XdrReader r(res);
    return *r.get_u32();
  };
  EXPECT_EQ(excl(0x1122334455667788ull), 0u);
  EXPECT_EQ(excl(0x1122334455667788ull), 0u);  // retransmission
  EXPECT_EQ(excl(0x99), 17u);                  // someone else's create
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, FullFileSystemIsNospcAndStaysConsistent) {
  Fixture f("8M");
  Bytes root = f.root_fh();
  Bytes fh;
  ASSERT_EQ(f.create(root, "big", &fh), 0u);
  std::uint32_t st = 0;
  std::uint64_t off = 0;
  for (int i = 0; i < 64 && st == 0; ++i) {
    std::uint32_t count = 0;
    st = f.write(fh, off, 1u << 20, 0, &count);
    off += count;
  }
  EXPECT_EQ(st, 28u);  // NOSPC
  // Small files until inodes or blocks run out: NOSPC too, never a crash.
  std::uint32_t cst = 0;
  for (int i = 0; i < 5000 && cst == 0; ++i) cst = f.create(root, "f" + std::to_string(i));
  EXPECT_EQ(cst, 28u);
  // Freeing space makes writes work again.
  EXPECT_EQ(f.status(12, fh_name(root, "big")), 0u);
  Bytes fh2;
  ASSERT_EQ(f.create(root, "after", &fh2), 0u);
  EXPECT_EQ(f.write(fh2, 0, 65536), 0u);
  EXPECT_EQ(f.fsck(), 0);
}

TEST(NasCore, ExportsAclReadOnlyAndParse) {
  auto ex = parse_exports(
      "[[export]]\npath = \"/\"\nclients = [\"10.0.0.0/8\"]\nread_only = true\n"
      "root_squash = false\n");
  ASSERT_TRUE(ex.has_value()) << ex.error().message;
  EXPECT_TRUE((*ex)[0].read_only);
  EXPECT_FALSE(parse_exports("[[export]]\nbogus = 1\n").has_value());
  EXPECT_FALSE(parse_exports("[[export]]\npath = \"relative\"\n").has_value());
  Export ro;
  ro.read_only = true;
  Fixture f("16M", {ro});
  Bytes root = f.root_fh();
  EXPECT_EQ(f.create(root, "nope"), 30u);  // ROFS
  // A client outside the export's addresses: MNT3ERR_ACCES.
  f.peer.address = boost::asio::ip::make_address("192.0.2.1");
  XdrWriter a;
  a.put_string("/");
  Bytes res = f.call(kMount, 1, a.release());
  XdrReader r(res);
  EXPECT_EQ(*r.get_u32(), 13u);
  EXPECT_EQ(f.fsck(), 0);
}

}  // namespace
}  // namespace ipsan::nas
