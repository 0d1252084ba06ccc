// fuzz/nfs_fuzz.cc: libFuzzer target for the NAS: ONC-RPC call parsing, AUTH_SYS credentials and
// every NFSv3 / MOUNT v3 / portmapper argument decoder, driven through Nas::handle on a small
// in-memory ext4 file system (so decoded arguments also reach the file-system code). The first
// input byte chooses TCP or UDP limits; the rest is one RPC message. The file system is formatted
// with a fixed UUID so the committed seeds' file handles (fuzz/corpus/nfs/, written by
// make_nfs_seeds below when NFS_FUZZ_WRITE_SEEDS names a directory) resolve.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ipsan/backends/spec.h"
#include "ipsan/nas/block_device.h"
#include "ipsan/nas/nas.h"
#include "ipsan/proto/xdr.h"

namespace {

using namespace ipsan;

struct World {
  std::unique_ptr<nas::BlockDevice> dev;
  std::unique_ptr<nas::Nas> n;
  World() {
    auto b = backends::open_backend("ram:8M");
    if (!b) __builtin_trap();
    dev = nas::make_backend_device(*b);
    nas::MkfsOptions mo;
    mo.root_mode = 0777;
    for (std::size_t i = 0; i < mo.uuid.size(); ++i) mo.uuid[i] = static_cast<std::uint8_t>(i + 1);
    if (!nas::mkfs(*dev, mo)) __builtin_trap();
    auto r = nas::Nas::open(*dev, nas::NasOptions{});
    if (!r) __builtin_trap();
    n = std::move(*r);
  }
};

World& world() {
  static World w;
  return w;
}

Bytes call(std::uint32_t prog, std::uint32_t proc, const Bytes& args) {
  proto::XdrWriter w;
  w.put_u32(1);
  w.put_u32(0);
  w.put_u32(2);
  w.put_u32(prog);
  w.put_u32(prog == 100000 ? 2 : 3);
  w.put_u32(proc);
  proto::XdrWriter c;
  c.put_u32(0);
  c.put_string("fuzz");
  c.put_u32(1000);
  c.put_u32(1000);
  c.put_u32(0);
  w.put_u32(1);
  w.put_opaque(c.bytes());
  w.put_u32(0);
  w.put_u32(0);
  Bytes m = w.release();
  m.insert(m.begin(), 0);  // TCP
  m.insert(m.end(), args.begin(), args.end());
  return m;
}

void write_seeds(const char* dir) {
  auto save = [&](const std::string& name, const Bytes& b) {
    FILE* f = std::fopen((std::string(dir) + "/" + name).c_str(), "wb");
    if (!f) return;
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
  };
  // The root handle: MNT "/".
  proto::XdrWriter mnt;
  mnt.put_string("/");
  Bytes mc = call(100005, 1, mnt.bytes());
  nas::Peer local;
  local.address = boost::asio::ip::make_address_v4("127.0.0.1");
  Bytes rep = world().n->handle(ByteSpan(mc).subspan(1), local);
  proto::XdrReader r(rep);
  for (int i = 0; i < 6; ++i) r.get_u32();
  r.get_u32();
  auto fh = r.get_opaque(64);
  if (!fh) return;
  const Bytes root(fh->begin(), fh->end());
  save("mount_mnt", mc);
  save("mount_export", call(100005, 5, {}));
  proto::XdrWriter gp;
  gp.put_u32(100003);
  gp.put_u32(3);
  gp.put_u32(6);
  gp.put_u32(0);
  save("pmap_getport", call(100000, 3, gp.bytes()));
  auto with_fh = [&](auto&& more) {
    proto::XdrWriter a;
    a.put_opaque(root);
    more(a);
    return a.release();
  };
  save("nfs_getattr", call(100003, 1, with_fh([](auto&) {})));
  save("nfs_lookup", call(100003, 3, with_fh([](auto& a) { a.put_string("lost+found"); })));
  save("nfs_create", call(100003, 8, with_fh([](auto& a) {
         a.put_string("f");
         a.put_u32(0);
         for (int i = 0; i < 4; ++i) a.put_bool(false);
         a.put_u32(0);
         a.put_u32(0);
       })));
  save("nfs_mkdir", call(100003, 9, with_fh([](auto& a) {
         a.put_string("d");
         for (int i = 0; i < 4; ++i) a.put_bool(false);
         a.put_u32(0);
         a.put_u32(0);
       })));
  save("nfs_readdirplus", call(100003, 17, with_fh([](auto& a) {
         a.put_u64(0);
         a.put_u64(0);
         a.put_u32(4096);
         a.put_u32(8192);
       })));
  save("nfs_rename", call(100003, 14, with_fh([&](auto& a) {
         a.put_string("f");
         a.put_opaque(root);
         a.put_string("g");
       })));
  save("nfs_fsstat", call(100003, 18, with_fh([](auto&) {})));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bool seeded = [] {
    if (const char* d = std::getenv("NFS_FUZZ_WRITE_SEEDS")) write_seeds(d);
    return true;
  }();
  (void)seeded;
  if (size == 0) return 0;
  nas::Peer peer;
  peer.address = boost::asio::ip::make_address_v4("127.0.0.1");
  peer.tcp = (data[0] & 1) == 0;
  Bytes reply = world().n->handle(ByteSpan(data + 1, size - 1), peer);
  if (reply.size() > (2u << 20)) __builtin_trap();
  return 0;
}
