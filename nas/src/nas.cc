// nas.cc: the NFSv3 / MOUNT v3 / portmapper core over libext2fs (see ipsan/nas/nas.h).
#include "ipsan/nas/nas.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "fs_util.h"
#include "io_manager.h"
#include "ipsan/base/crypto.h"
#include "ipsan/base/log.h"
#include "ipsan/proto/xdr.h"
#include "nfs3_const.h"

namespace ipsan::nas {

using proto::XdrReader;
using proto::XdrWriter;
namespace n3 = nfs3;

namespace {

constexpr std::uint32_t kFhMagic = 0x49504e31;  // "IPN1"
constexpr std::uint32_t kMaxGroups = 16;
constexpr int kMaxLinks = 65000;

ext2_inode* raw(ext2_inode_large& in) { return reinterpret_cast<ext2_inode*>(&in); }

struct Cred {
  std::uint32_t uid = 65534;
  std::uint32_t gid = 65534;
  std::vector<std::uint32_t> gids;
  std::string machine;
};

// A decoding cursor that remembers the first failure (GARBAGE_ARGS).
struct In {
  explicit In(ByteSpan s) : r(s) {}
  XdrReader r;
  bool ok = true;
  std::uint32_t u32() {
    auto v = r.get_u32();
    if (!v) ok = false;
    return v ? *v : 0;
  }
  std::uint64_t u64() {
    auto v = r.get_u64();
    if (!v) ok = false;
    return v ? *v : 0;
  }
  bool boolean() {
    auto v = r.get_bool();
    if (!v) ok = false;
    return v ? *v : false;
  }
  ByteSpan opaque(std::size_t max) {
    auto v = r.get_opaque(max);
    if (!v) ok = false;
    return v ? *v : ByteSpan{};
  }
  ByteSpan fixed(std::size_t n) {
    auto v = r.get_opaque_fixed(n);
    if (!v) ok = false;
    return v ? *v : ByteSpan{};
  }
  std::string str(std::size_t max) {
    auto v = r.get_string(max);
    if (!v) ok = false;
    return v ? *v : std::string{};
  }
};

struct SetTime {
  std::uint32_t how = 0;  // 0 don't change, 1 server time, 2 client time
  Ts t;
};
struct Sattr {
  std::optional<std::uint32_t> mode, uid, gid;
  std::optional<std::uint64_t> size;
  SetTime atime, mtime;
};

Sattr get_sattr(In& in) {
  Sattr s;
  if (in.boolean()) s.mode = in.u32();
  if (in.boolean()) s.uid = in.u32();
  if (in.boolean()) s.gid = in.u32();
  if (in.boolean()) s.size = in.u64();
  for (SetTime* st : {&s.atime, &s.mtime}) {
    st->how = in.u32();
    if (st->how == 2) {
      st->t.sec = in.u32();
      st->t.nsec = in.u32();
    } else if (st->how > 2) {
      in.ok = false;
    }
  }
  return s;
}

void put_ts(XdrWriter& w, Ts t) {
  w.put_u32(static_cast<std::uint32_t>(t.sec));
  w.put_u32(t.nsec);
}

struct Cidr {
  boost::asio::ip::address net;
  unsigned prefix = 0;
  bool any = false;
};

bool cidr_match(const Cidr& c, const boost::asio::ip::address& a0) {
  if (c.any) return true;
  boost::asio::ip::address a = a0;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    a = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  }
  if (a.is_v4() != c.net.is_v4()) return false;
  std::array<unsigned char, 16> x{}, y{};
  std::size_t len = 0;
  if (a.is_v4()) {
    auto p = a.to_v4().to_bytes(), q = c.net.to_v4().to_bytes();
    std::copy(p.begin(), p.end(), x.begin());
    std::copy(q.begin(), q.end(), y.begin());
    len = 4;
  } else {
    auto p = a.to_v6().to_bytes(), q = c.net.to_v6().to_bytes();
    std::copy(p.begin(), p.end(), x.begin());
    std::copy(q.begin(), q.end(), y.begin());
    len = 16;
  }
  unsigned bits = c.prefix;
  for (std::size_t i = 0; i < len && bits > 0; ++i) {
    const unsigned take = std::min(bits, 8u);
    const unsigned char mask = static_cast<unsigned char>(0xFF00u >> take);
    if ((x[i] & mask) != (y[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

Result<Cidr, Error> parse_cidr(const std::string& s) {
  Cidr c;
  if (s == "*") {
    c.any = true;
    return c;
  }
  std::string addr = s;
  int prefix = -1;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    addr = s.substr(0, slash);
    const std::string p = s.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos) {
      return fail("bad prefix length in '" + s + "'");
    }
    prefix = std::stoi(p);
  }
  boost::system::error_code ec;
  c.net = boost::asio::ip::make_address(addr, ec);
  if (ec) return fail("bad address in '" + s + "'");
  const int max = c.net.is_v4() ? 32 : 128;
  if (prefix > max) return fail("prefix length too large in '" + s + "'");
  c.prefix = static_cast<unsigned>(prefix < 0 ? max : prefix);
  return c;
}

std::string normalize_path(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p.empty() ? "/" : p;
}

n3::Stat map_err(errcode_t e) {
  switch (e) {
    case 0: return n3::kOk;
    case EXT2_ET_BLOCK_ALLOC_FAIL:
    case EXT2_ET_INODE_ALLOC_FAIL:
    case EXT2_ET_DIR_NO_SPACE:
    case EXT2_ET_EA_NO_SPACE:
    case ENOSPC: return n3::kNospc;
    case EXT2_ET_FILE_NOT_FOUND: return n3::kNoent;
    case EXT2_ET_FILE_TOO_BIG:
    case EFBIG: return n3::kFbig;
    case EXT2_ET_NO_DIRECTORY: return n3::kNotdir;
    case EROFS:
    case EXT2_ET_RO_FILSYS: return n3::kRofs;
    case EXT2_ET_DIR_EXISTS:
    case EEXIST: return n3::kExist;
    case EXT2_ET_TOO_MANY_REFS: return n3::kMlink;
    default:
      IPSAN_LOG(LogLevel::kWarn, "nas", "I/O error: ", err_text(e));
      return n3::kIo;
  }
}

}  // namespace

// UNSTABLE writes and their metadata cached (not yet on the device) before a write-back.
constexpr std::size_t kMaxDirtyBytes = std::size_t{64} << 20;

struct Nas::Impl {
  BlockDevice* dev = nullptr;
  std::string dev_name;
  ext2_filsys fs = nullptr;
  NasOptions opt;
  std::vector<std::vector<Cidr>> acl;  // per export
  std::vector<ext2_ino_t> export_ino;
  std::uint64_t fsid = 0;
  std::uint64_t verifier = 0;
  NasStats stats;
  struct MountEntry {
    std::string host, path;
  };
  std::vector<MountEntry> mounts;
  std::uint32_t max_io = n3::kMaxIo;  // per call: smaller over UDP
  bool broken = false;                // a metadata write failed: refuse further changes
  std::vector<std::uint8_t> read_buf;

  ~Impl() { (void)close(); }

  Result<void, Error> close() {
    if (fs == nullptr) return {};
    fs->flags &= ~EXT2_FLAG_MASTER_SB_ONLY;  // refresh the backup superblocks too
    ext2fs_mark_super_dirty(fs);
    errcode_t e = ext2fs_close_free(&fs);
    fs = nullptr;
    unregister_device(dev_name);
    if (e != 0) return fail(Errc::kIoError, "closing the file system: " + err_string(e));
    return {};
  }

  // ---- inode helpers ------------------------------------------------------------------------
  errcode_t load(ext2_ino_t ino, ext2_inode_large& in) {
    std::memset(&in, 0, sizeof(in));
    return ext2fs_read_inode_full(fs, ino, raw(in), sizeof(in));
  }
  errcode_t store(ext2_ino_t ino, ext2_inode_large& in) {
    return ext2fs_write_inode_full(fs, ino, raw(in), sizeof(in));
  }
  std::uint64_t isize(const ext2_inode_large& in) {
    return EXT2_I_SIZE(&in);
  }
  // Durable: writes libext2fs's in-memory metadata (bitmaps, superblock, group descriptors) into
  // the channel's cache, writes the cache back and flushes the device. Not durable: everything
  // stays cached (the in-memory metadata included) until a durable sync, or until too much is
  // dirty; then the metadata goes into the cache and the cache is written back, so the disk moves
  // to this request-boundary state.
  n3::Stat sync(bool durable) {
    errcode_t e = 0;
    const bool meta = (fs->flags & (EXT2_FLAG_DIRTY | EXT2_FLAG_IB_DIRTY | EXT2_FLAG_BB_DIRTY)) != 0;
    if (durable) {
      e = meta ? ext2fs_flush2(fs, 0) : io_channel_flush(fs->io);
    } else if (dirty_bytes(fs->io) > kMaxDirtyBytes) {
      if (meta) e = ext2fs_flush2(fs, EXT2_FLAG_FLUSH_NO_SYNC);
      if (e == 0) e = write_back(fs->io);
    }
    if (e != 0) {
      IPSAN_LOG(LogLevel::kError, "nas", "writing metadata failed: ", err_text(e));
      broken = true;
      return n3::kIo;
    }
    return n3::kOk;
  }

  n3::Ftype ftype(std::uint32_t mode) {
    switch (mode & LINUX_S_IFMT) {
      case LINUX_S_IFDIR: return n3::kDir;
      case LINUX_S_IFBLK: return n3::kBlk;
      case LINUX_S_IFCHR: return n3::kChr;
      case LINUX_S_IFLNK: return n3::kLnk;
      case LINUX_S_IFSOCK: return n3::kSock;
      case LINUX_S_IFIFO: return n3::kFifo;
      default: return n3::kReg;
    }
  }

  void put_fattr(XdrWriter& w, ext2_ino_t ino, const ext2_inode_large& in) {
    w.put_u32(ftype(in.i_mode));
    w.put_u32(in.i_mode & 07777);
    w.put_u32(in.i_links_count);
    w.put_u32(inode_uid_of(in));
    w.put_u32(inode_gid_of(in));
    w.put_u64(isize(in));
    w.put_u64(ext2fs_get_stat_i_blocks(fs, const_cast<ext2_inode*>(
                                               reinterpret_cast<const ext2_inode*>(&in))) *
              512);
    w.put_u32(0);
    w.put_u32(0);
    w.put_u64(fsid);
    w.put_u64(ino);
    put_ts(w, get_time(fs, in, TimeField::kAtime));
    put_ts(w, get_time(fs, in, TimeField::kMtime));
    put_ts(w, get_time(fs, in, TimeField::kCtime));
  }
  void put_post_attr(XdrWriter& w, ext2_ino_t ino) {
    ext2_inode_large in;
    if (ino == 0 || load(ino, in) != 0) {
      w.put_bool(false);
      return;
    }
    w.put_bool(true);
    put_fattr(w, ino, in);
  }
  struct Pre {
    bool valid = false;
    std::uint64_t size = 0;
    Ts mtime, ctime;
  };
  Pre pre_of(ext2_ino_t ino) {
    Pre p;
    ext2_inode_large in;
    if (ino != 0 && load(ino, in) == 0) {
      p.valid = true;
      p.size = isize(in);
      p.mtime = get_time(fs, in, TimeField::kMtime);
      p.ctime = get_time(fs, in, TimeField::kCtime);
    }
    return p;
  }
  void put_wcc(XdrWriter& w, const Pre& p, ext2_ino_t ino) {
    w.put_bool(p.valid);
    if (p.valid) {
      w.put_u64(p.size);
      put_ts(w, p.mtime);
      put_ts(w, p.ctime);
    }
    put_post_attr(w, ino);
  }

  // ---- handles ------------------------------------------------------------------------------
  void put_fh(XdrWriter& w, ext2_ino_t ino, std::uint32_t gen, std::uint32_t exp) {
    XdrWriter h;
    h.put_u32(kFhMagic);
    h.put_u64(fsid);
    h.put_u32(ino);
    h.put_u32(gen);
    h.put_u32(exp);
    w.put_opaque(h.bytes());
  }
  void put_fh(XdrWriter& w, ext2_ino_t ino, std::uint32_t exp) {
    ext2_inode_large in;
    std::uint32_t gen = 0;
    if (load(ino, in) == 0) gen = in.i_generation;
    put_fh(w, ino, gen, exp);
  }

  struct Node {
    ext2_ino_t ino = 0;
    std::uint32_t exp = 0;
    ext2_inode_large in{};
  };

  // Decodes and validates a handle: BADHANDLE if malformed, STALE if the inode is gone.
  n3::Stat resolve(ByteSpan fh, Node& n) {
    if (fh.size() != n3::kFhSize) return n3::kBadhandle;
    XdrReader r(fh);
    auto magic = r.get_u32();
    auto id = r.get_u64();
    auto ino = r.get_u32();
    auto gen = r.get_u32();
    auto exp = r.get_u32();
    if (!magic || *magic != kFhMagic || !id || !ino || !gen || !exp) return n3::kBadhandle;
    if (*id != fsid || *exp >= opt.exports.size()) return n3::kStale;
    if (*ino < EXT2_ROOT_INO || *ino > fs->super->s_inodes_count ||
        (*ino != EXT2_ROOT_INO && *ino < EXT2_FIRST_INODE(fs->super))) {
      return n3::kStale;
    }
    if (!ext2fs_test_inode_bitmap2(fs->inode_map, *ino)) return n3::kStale;
    if (load(*ino, n.in) != 0) return n3::kIo;
    if (n.in.i_links_count == 0 || n.in.i_dtime != 0 || n.in.i_generation != *gen) {
      return n3::kStale;
    }
    n.ino = *ino;
    n.exp = *exp;
    return n3::kOk;
  }

  // ---- permissions --------------------------------------------------------------------------
  Cred squash(const Cred& c, std::uint32_t exp) {
    const Export& e = opt.exports[exp];
    Cred out = c;
    if (e.root_squash) {
      if (out.uid == 0) out.uid = e.anon_uid;
      if (out.gid == 0) out.gid = e.anon_gid;
      for (auto& g : out.gids) {
        if (g == 0) g = e.anon_gid;
      }
    }
    return out;
  }
  bool in_group(const Cred& c, std::uint32_t gid) {
    return c.gid == gid || std::find(c.gids.begin(), c.gids.end(), gid) != c.gids.end();
  }
  // want: 4 read, 2 write, 1 execute/search.
  bool may(const Cred& c, const ext2_inode_large& in, unsigned want) {
    const unsigned mode = in.i_mode;
    if (c.uid == 0) {
      if ((want & 1) == 0) return true;
      return LINUX_S_ISDIR(mode) || (mode & 0111) != 0;
    }
    unsigned bits;
    if (c.uid == inode_uid_of(in)) {
      bits = (mode >> 6) & 7;
    } else if (in_group(c, inode_gid_of(in))) {
      bits = (mode >> 3) & 7;
    } else {
      bits = mode & 7;
    }
    return (bits & want) == want;
  }
  bool allowed(std::uint32_t exp, const Peer& p) {
    for (const auto& c : acl[exp]) {
      if (cidr_match(c, p.address)) return true;
    }
    return false;
  }

  // ---- names --------------------------------------------------------------------------------
  static n3::Stat check_name(const std::string& name) {
    if (name.empty()) return n3::kAcces;
    if (name.size() > n3::kMaxName) return n3::kNametoolong;
    if (name.find('/') != std::string::npos) return n3::kInval;
    return n3::kOk;
  }
  // For operations that create or remove a name: "." and ".." are not allowed.
  static n3::Stat check_new_name(const std::string& name) {
    if (n3::Stat s = check_name(name); s != n3::kOk) return s;
    if (name == "." || name == "..") return n3::kExist;
    return n3::kOk;
  }
  errcode_t lookup(ext2_ino_t dir, const std::string& name, ext2_ino_t& out) {
    return ext2fs_lookup(fs, dir, name.data(), static_cast<int>(name.size()), nullptr, &out);
  }
  errcode_t link(ext2_ino_t dir, const std::string& name, ext2_ino_t ino, int type) {
    errcode_t e = ext2fs_link(fs, dir, name.c_str(), ino, type);
    if (e == EXT2_ET_DIR_NO_SPACE) {
      e = ext2fs_expand_dir(fs, dir);
      if (e == 0) e = ext2fs_link(fs, dir, name.c_str(), ino, type);
    }
    return e;
  }
  void touch_dir(ext2_ino_t dir) {
    ext2_inode_large d;
    if (load(dir, d) != 0) return;
    const Ts t = now_ts();
    set_time(fs, d, TimeField::kMtime, t);
    set_time(fs, d, TimeField::kCtime, t);
    store(dir, d);
  }
  errcode_t adjust_links(ext2_ino_t ino, int delta) {
    ext2_inode_large in;
    if (errcode_t e = load(ino, in); e != 0) return e;
    in.i_links_count = static_cast<__u16>(std::max(0, in.i_links_count + delta));
    set_time(fs, in, TimeField::kCtime, now_ts());
    return store(ino, in);
  }
  // Frees an inode whose last name is gone.
  errcode_t release(ext2_ino_t ino) {
    ext2_inode_large in;
    if (errcode_t e = load(ino, in); e != 0) return e;
    if (ext2fs_inode_has_valid_blocks2(fs, raw(in))) {
      if (errcode_t e = ext2fs_punch(fs, ino, raw(in), nullptr, 0, 0xFFFFFFFFull); e != 0) return e;
      if (errcode_t e = load(ino, in); e != 0) return e;
    }
    in.i_links_count = 0;
    in.i_dtime = static_cast<__u32>(now_ts().sec);
    if (errcode_t e = store(ino, in); e != 0) return e;
    ext2fs_inode_alloc_stats2(fs, ino, -1, LINUX_S_ISDIR(in.i_mode) ? 1 : 0);
    return 0;
  }
  // Drops one name of `ino` (already unlinked from its directory).
  errcode_t drop_name(ext2_ino_t ino) {
    ext2_inode_large in;
    if (errcode_t e = load(ino, in); e != 0) return e;
    if (LINUX_S_ISDIR(in.i_mode) || in.i_links_count <= 1) return release(ino);
    return adjust_links(ino, -1);
  }
  struct EmptyCtx {
    bool empty = true;
  };
  static int empty_cb(ext2_ino_t, int, ext2_dir_entry* d, int, int, char*, void* p) {
    auto* c = static_cast<EmptyCtx*>(p);
    if (d->inode == 0) return 0;
    const int len = ext2fs_dirent_name_len(d);
    if ((len == 1 && d->name[0] == '.') || (len == 2 && d->name[0] == '.' && d->name[1] == '.')) {
      return 0;
    }
    c->empty = false;
    return DIRENT_ABORT;
  }
  bool dir_empty(ext2_ino_t dir) {
    EmptyCtx c;
    errcode_t e = ext2fs_dir_iterate2(fs, dir, 0, nullptr, empty_cb, &c);
    return e == 0 && c.empty;
  }
  struct ReplaceCtx {
    const std::string* name;
    ext2_ino_t ino;
    int type;
    bool done = false;
  };
  static int replace_cb(ext2_ino_t, int, ext2_dir_entry* d, int, int, char*, void* p) {
    auto* c = static_cast<ReplaceCtx*>(p);
    if (d->inode == 0) return 0;
    const auto len = static_cast<std::size_t>(ext2fs_dirent_name_len(d));
    if (len != c->name->size() || std::memcmp(d->name, c->name->data(), len) != 0) return 0;
    d->inode = c->ino;
    ext2fs_dirent_set_file_type(d, c->type);
    c->done = true;
    return DIRENT_CHANGED | DIRENT_ABORT;
  }
  errcode_t replace_entry(ext2_ino_t dir, const std::string& name, ext2_ino_t ino, int type) {
    ReplaceCtx c{&name, ino, type};
    errcode_t e = ext2fs_dir_iterate2(fs, dir, 0, nullptr, replace_cb, &c);
    if (e == 0 && !c.done) e = EXT2_ET_FILE_NOT_FOUND;
    return e;
  }

  // ---- RPC plumbing -------------------------------------------------------------------------
  static void accept_header(XdrWriter& w, std::uint32_t xid, std::uint32_t stat) {
    w.put_u32(xid);
    w.put_u32(1);  // REPLY
    w.put_u32(0);  // MSG_ACCEPTED
    w.put_u32(n3::kAuthNone);
    w.put_u32(0);
    w.put_u32(stat);
  }
  static Bytes accept_only(std::uint32_t xid, std::uint32_t stat) {
    XdrWriter w;
    accept_header(w, xid, stat);
    return w.release();
  }
  static Bytes prog_mismatch(std::uint32_t xid, std::uint32_t lo, std::uint32_t hi) {
    XdrWriter w;
    accept_header(w, xid, 2);
    w.put_u32(lo);
    w.put_u32(hi);
    return w.release();
  }
  static Bytes denied(std::uint32_t xid, std::uint32_t reject, std::uint32_t detail) {
    XdrWriter w;
    w.put_u32(xid);
    w.put_u32(1);
    w.put_u32(1);  // MSG_DENIED
    w.put_u32(reject);
    if (reject == 0) {  // RPC_MISMATCH
      w.put_u32(2);
      w.put_u32(2);
    } else {
      w.put_u32(detail);
    }
    return w.release();
  }

  Bytes handle(ByteSpan msg, const Peer& peer) {
    ++stats.calls;
    XdrReader r(msg);
    auto xid = r.get_u32();
    auto type = r.get_u32();
    if (!xid || !type || *type != 0) return {};
    auto rpcvers = r.get_u32();
    if (!rpcvers) return {};
    if (*rpcvers != 2) return denied(*xid, 0, 0);
    auto prog = r.get_u32();
    auto vers = r.get_u32();
    auto proc = r.get_u32();
    auto cflavor = r.get_u32();
    auto cbody = r.get_opaque(400);
    auto vflavor = r.get_u32();
    auto vbody = r.get_opaque(400);
    if (!prog || !vers || !proc || !cflavor || !cbody || !vflavor || !vbody) {
      ++stats.garbage;
      return accept_only(*xid, 4);
    }
    Cred cred;
    if (*cflavor == n3::kAuthSys) {
      XdrReader a(*cbody);
      auto stamp = a.get_u32();
      auto machine = a.get_string(255);
      auto uid = a.get_u32();
      auto gid = a.get_u32();
      auto ngids = a.get_u32();
      if (!stamp || !machine || !uid || !gid || !ngids || *ngids > kMaxGroups) {
        return denied(*xid, 1, 1);  // AUTH_ERROR / AUTH_BADCRED
      }
      for (std::uint32_t i = 0; i < *ngids; ++i) {
        auto g = a.get_u32();
        if (!g) return denied(*xid, 1, 1);
        cred.gids.push_back(*g);
      }
      cred.uid = *uid;
      cred.gid = *gid;
      cred.machine = *machine;
    } else if (*cflavor != n3::kAuthNone) {
      if (*proc != 0) return denied(*xid, 1, 5);  // AUTH_TOOWEAK
    }
    max_io = peer.tcp ? n3::kMaxIo : 32768;
    const ByteSpan args = r.rest();
    XdrWriter w;
    w.reserve(256);
    accept_header(w, *xid, 0);
    const std::size_t header = w.size();
    bool garbage = false;
    if (*prog == n3::kNfsProg) {
      if (*vers != n3::kNfsVers) return prog_mismatch(*xid, 3, 3);
      if (*proc > n3::kCommit) return accept_only(*xid, 3);
      garbage = !nfs(*proc, args, cred, peer, w);
    } else if (*prog == n3::kMountProg) {
      if (*vers != n3::kMountVers && *vers != 1) return prog_mismatch(*xid, 1, 3);
      if (*proc > n3::kExport) return accept_only(*xid, 3);
      garbage = !mount(*proc, *vers, args, cred, peer, w);
    } else if (*prog == n3::kPmapProg) {
      if (*vers != n3::kPmapVers) return prog_mismatch(*xid, 2, 2);
      if (*proc != n3::kPmapNull && *proc != n3::kPmapGetport && *proc != n3::kPmapDump) {
        return accept_only(*xid, 3);
      }
      garbage = !pmap(*proc, args, w);
    } else {
      return accept_only(*xid, 1);  // PROG_UNAVAIL
    }
    (void)header;
    if (garbage) {
      ++stats.garbage;
      return accept_only(*xid, 4);
    }
    return w.release();
  }

  // ---- portmapper ---------------------------------------------------------------------------
  bool pmap(std::uint32_t proc, ByteSpan args, XdrWriter& w) {
    if (proc == n3::kPmapNull) return true;
    if (proc == n3::kPmapDump) {
      for (std::uint32_t prot : {n3::kIpProtoTcp, n3::kIpProtoUdp}) {
        const std::uint16_t port = prot == n3::kIpProtoTcp ? opt.tcp_port : opt.udp_port;
        if (port == 0) continue;
        const std::pair<std::uint32_t, std::uint32_t> progs[] = {
            {n3::kNfsProg, 3}, {n3::kMountProg, 1}, {n3::kMountProg, 3}};
        for (auto [p, v] : progs) {
          w.put_bool(true);
          w.put_u32(p);
          w.put_u32(v);
          w.put_u32(prot);
          w.put_u32(port);
        }
      }
      w.put_bool(false);
      return true;
    }
    In in(args);
    const std::uint32_t prog = in.u32(), vers = in.u32(), prot = in.u32();
    in.u32();
    if (!in.ok) return false;
    std::uint32_t port = 0;
    const bool known = (prog == n3::kNfsProg && vers == 3) ||
                       (prog == n3::kMountProg && (vers == 1 || vers == 3));
    if (known && prot == n3::kIpProtoTcp) port = opt.tcp_port;
    if (known && prot == n3::kIpProtoUdp) port = opt.udp_port;
    w.put_u32(port);
    return true;
  }

  // ---- MOUNT --------------------------------------------------------------------------------
  bool mount(std::uint32_t proc, std::uint32_t vers, ByteSpan args, const Cred& cred,
             const Peer& peer, XdrWriter& w) {
    In in(args);
    const std::string host = !cred.machine.empty() ? cred.machine : peer.address.to_string();
    switch (proc) {
      case n3::kMntNull: return true;
      case n3::kMnt: {
        std::string path = in.str(n3::kMaxPath);
        if (!in.ok) return false;
        path = normalize_path(path);
        std::optional<std::uint32_t> found;
        bool denied_any = false;
        for (std::uint32_t i = 0; i < opt.exports.size(); ++i) {
          if (normalize_path(opt.exports[i].path) != path) continue;
          if (allowed(i, peer)) {
            found = i;
            break;
          }
          denied_any = true;
        }
        if (!found) {
          w.put_u32(denied_any ? 13 : 2);  // MNT3ERR_ACCES / MNT3ERR_NOENT
          return true;
        }
        w.put_u32(0);
        if (vers == 1) {  // fhandle (v1): 32 fixed bytes
          XdrWriter fh;
          put_fh(fh, export_ino[*found], *found);
          Bytes b = fh.release();
          Bytes fixed(32, 0);
          std::copy(b.begin() + 4, b.end(), fixed.begin());
          w.put_opaque_fixed(fixed);
          return true;
        }
        put_fh(w, export_ino[*found], *found);
        w.put_u32(1);
        w.put_u32(n3::kAuthSys);
        if (std::none_of(mounts.begin(), mounts.end(), [&](const MountEntry& m) {
              return m.host == host && m.path == path;
            })) {
          if (mounts.size() < 4096) mounts.push_back({host, path});
        }
        return true;
      }
      case n3::kDump:
        for (const auto& m : mounts) {
          w.put_bool(true);
          w.put_string(m.host);
          w.put_string(m.path);
        }
        w.put_bool(false);
        return true;
      case n3::kUmnt: {
        std::string path = in.str(n3::kMaxPath);
        if (!in.ok) return false;
        path = normalize_path(path);
        std::erase_if(mounts, [&](const MountEntry& m) { return m.host == host && m.path == path; });
        return true;
      }
      case n3::kUmntall:
        std::erase_if(mounts, [&](const MountEntry& m) { return m.host == host; });
        return true;
      case n3::kExport:
        for (const auto& e : opt.exports) {
          w.put_bool(true);
          w.put_string(normalize_path(e.path));
          for (const auto& c : e.clients) {
            w.put_bool(true);
            w.put_string(c);
          }
          w.put_bool(false);
        }
        w.put_bool(false);
        return true;
      default: return false;
    }
  }

  // ---- NFS ----------------------------------------------------------------------------------
  // Returns false for undecodable arguments (GARBAGE_ARGS).
  bool nfs(std::uint32_t proc, ByteSpan args, const Cred& raw_cred, const Peer& peer,
           XdrWriter& w) {
    if (proc == n3::kNull) return true;
    In in(args);
    ByteSpan fh = in.opaque(n3::kFhMax);
    if (!in.ok) return false;
    Node n;
    n3::Stat st = resolve(fh, n);
    Cred cred;
    if (st == n3::kOk) {
      if (!allowed(n.exp, peer)) st = n3::kAcces;
      cred = squash(raw_cred, n.exp);
    }
    const bool ro = st == n3::kOk && opt.exports[n.exp].read_only;
    switch (proc) {
      case n3::kGetattr: return getattr(in, st, n, w);
      case n3::kSetattr: return setattr(in, st, n, cred, ro, w);
      case n3::kLookup: return lookup_proc(in, st, n, cred, w);
      case n3::kAccess: return access(in, st, n, cred, ro, w);
      case n3::kReadlink: return readlink(in, st, n, w);
      case n3::kRead: return read(in, st, n, cred, w);
      case n3::kWrite: return write(in, st, n, cred, ro, w);
      case n3::kCreate: return create(in, st, n, cred, ro, w);
      case n3::kMkdir: return mkdir(in, st, n, cred, ro, w);
      case n3::kSymlink: return symlink(in, st, n, cred, ro, w);
      case n3::kMknod: return mknod(in, st, n, w);
      case n3::kRemove: return remove(in, st, n, cred, ro, w, false);
      case n3::kRmdir: return remove(in, st, n, cred, ro, w, true);
      case n3::kRename: return rename(in, st, n, cred, ro, peer, w);
      case n3::kLink: return link_proc(in, st, n, cred, ro, peer, w);
      case n3::kReaddir: return readdir(in, st, n, cred, w, false);
      case n3::kReaddirplus: return readdir(in, st, n, cred, w, true);
      case n3::kFsstat: return fsstat(st, n, w);
      case n3::kFsinfo: return fsinfo(st, n, w);
      case n3::kPathconf: return pathconf(st, n, w);
      case n3::kCommit: return commit(in, st, n, w);
      default: return false;
    }
  }

  bool getattr(In& in, n3::Stat st, Node& n, XdrWriter& w) {
    if (!in.ok) return false;
    w.put_u32(st);
    if (st == n3::kOk) put_fattr(w, n.ino, n.in);
    return true;
  }

  // Applies a sattr3 to n (permission checks included). Size changes only for regular files.
  n3::Stat apply_sattr(Node& n, const Sattr& s, const Cred& c) {
    const bool owner = c.uid == 0 || c.uid == inode_uid_of(n.in);
    if (s.mode && !owner) return n3::kPerm;
    if (s.uid && c.uid != 0 && *s.uid != inode_uid_of(n.in)) return n3::kPerm;
    if (s.gid && c.uid != 0 && (!owner || !in_group(c, *s.gid)) && *s.gid != inode_gid_of(n.in)) {
      return n3::kPerm;
    }
    for (const SetTime* t : {&s.atime, &s.mtime}) {
      if (t->how == 2 && !owner) return n3::kPerm;
      if (t->how == 1 && !owner && !may(c, n.in, 2)) return n3::kAcces;
    }
    if (s.size) {
      if (LINUX_S_ISDIR(n.in.i_mode)) return n3::kIsdir;
      if (!LINUX_S_ISREG(n.in.i_mode)) return n3::kInval;
      if (!owner && !may(c, n.in, 2)) return n3::kAcces;
      if (*s.size > max_file_size()) return n3::kFbig;
      if (*s.size != isize(n.in)) {
        ext2_file_t f = nullptr;
        errcode_t e = ext2fs_file_open2(fs, n.ino, raw(n.in), EXT2_FILE_WRITE, &f);
        if (e == 0) {
          e = ext2fs_file_set_size2(f, *s.size);
          errcode_t e2 = ext2fs_file_close(f);
          if (e == 0) e = e2;
        }
        if (e != 0) return map_err(e);
        if ((e = load(n.ino, n.in)) != 0) return map_err(e);
        const Ts t = now_ts();
        set_time(fs, n.in, TimeField::kMtime, t);
      }
    }
    if (s.mode) n.in.i_mode = static_cast<__u16>((n.in.i_mode & LINUX_S_IFMT) | (*s.mode & 07777));
    if (s.uid) set_uid(n.in, *s.uid);
    if (s.gid) set_gid(n.in, *s.gid);
    if ((s.uid || s.gid) && c.uid != 0) n.in.i_mode &= static_cast<__u16>(~(LINUX_S_ISUID | LINUX_S_ISGID));
    const Ts now = now_ts();
    if (s.atime.how != 0) set_time(fs, n.in, TimeField::kAtime, s.atime.how == 1 ? now : s.atime.t);
    if (s.mtime.how != 0) set_time(fs, n.in, TimeField::kMtime, s.mtime.how == 1 ? now : s.mtime.t);
    set_time(fs, n.in, TimeField::kCtime, now);
    if (errcode_t e = store(n.ino, n.in); e != 0) return map_err(e);
    return n3::kOk;
  }

  std::uint64_t max_file_size() const {
    return static_cast<std::uint64_t>(0xFFFFFFFFu) * fs->blocksize;
  }

  bool setattr(In& in, n3::Stat st, Node& n, const Cred& c, bool ro, XdrWriter& w) {
    Sattr s = get_sattr(in);
    const bool guard = in.boolean();
    Ts gctime;
    if (guard) {
      gctime.sec = in.u32();
      gctime.nsec = in.u32();
    }
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(n.ino) : Pre{};
    if (st == n3::kOk && ro) st = n3::kRofs;
    if (st == n3::kOk && guard &&
        (gctime.sec != pre.ctime.sec || gctime.nsec != pre.ctime.nsec)) {
      st = n3::kNotSync;
    }
    if (st == n3::kOk) st = apply_sattr(n, s, c);
    if (st == n3::kOk) st = sync(true);
    w.put_u32(st);
    put_wcc(w, pre, n.ino);
    return true;
  }

  bool lookup_proc(In& in, n3::Stat st, Node& dir, const Cred& c, XdrWriter& w) {
    std::string name = in.str(4096);
    if (!in.ok) return false;
    ext2_ino_t ino = 0;
    if (st == n3::kOk && !LINUX_S_ISDIR(dir.in.i_mode)) st = n3::kNotdir;
    if (st == n3::kOk) st = check_name(name);
    if (st == n3::kOk && !may(c, dir.in, 1)) st = n3::kAcces;
    if (st == n3::kOk) {
      if (name == ".." && dir.ino == export_ino[dir.exp]) {
        ino = dir.ino;
      } else if (errcode_t e = lookup(dir.ino, name, ino); e != 0) {
        st = map_err(e);
      }
    }
    w.put_u32(st);
    if (st == n3::kOk) {
      put_fh(w, ino, dir.exp);
      put_post_attr(w, ino);
    }
    put_post_attr(w, st == n3::kStale || st == n3::kBadhandle ? 0 : dir.ino);
    return true;
  }

  std::uint32_t access_bits(const Node& n, const Cred& c, bool ro) {
    std::uint32_t a = 0;
    const bool dir = LINUX_S_ISDIR(n.in.i_mode);
    if (may(c, n.in, 4)) a |= n3::kAccessRead;
    if (may(c, n.in, 2) && !ro) {
      a |= n3::kAccessModify | n3::kAccessExtend;
      if (dir) a |= n3::kAccessDelete;
    }
    if (may(c, n.in, 1)) a |= dir ? n3::kAccessLookup : n3::kAccessExecute;
    return a;
  }

  bool access(In& in, n3::Stat st, Node& n, const Cred& c, bool ro, XdrWriter& w) {
    const std::uint32_t want = in.u32();
    if (!in.ok) return false;
    w.put_u32(st);
    put_post_attr(w, st == n3::kOk ? n.ino : 0);
    if (st == n3::kOk) w.put_u32(want & access_bits(n, c, ro));
    return true;
  }

  bool readlink(In& in, n3::Stat st, Node& n, XdrWriter& w) {
    if (!in.ok) return false;
    std::string target;
    if (st == n3::kOk && !LINUX_S_ISLNK(n.in.i_mode)) st = n3::kInval;
    if (st == n3::kOk) {
      const std::uint64_t size = isize(n.in);
      if (size > fs->blocksize) {
        st = n3::kIo;
      } else if (ext2fs_is_fast_symlink(raw(n.in))) {
        target.assign(reinterpret_cast<const char*>(n.in.i_block),
                      std::min<std::size_t>(size, sizeof(n.in.i_block)));
      } else {
        target.resize(size);
        ext2_file_t f = nullptr;
        unsigned got = 0;
        errcode_t e = ext2fs_file_open2(fs, n.ino, raw(n.in), 0, &f);
        if (e == 0) {
          e = ext2fs_file_read(f, target.data(), static_cast<unsigned>(size), &got);
          ext2fs_file_close(f);
        }
        if (e != 0 || got != size) st = n3::kIo;
      }
    }
    w.put_u32(st);
    put_post_attr(w, st == n3::kOk || st == n3::kInval || st == n3::kIo ? n.ino : 0);
    if (st == n3::kOk) w.put_string(target);
    return true;
  }

  // Reads [off, off + len) of a regular file into read_buf[read_skip, read_skip + len): maps the
  // blocks with ext2fs_bmap2 and reads each physically contiguous run with one device request
  // (holes and unwritten extents read as zeroes), instead of libext2fs's block-at-a-time file I/O.
  std::size_t read_skip = 0;
  errcode_t read_range(Node& n, std::uint64_t off, std::uint32_t len) {
    const std::uint64_t bs = fs->blocksize;
    const std::uint64_t first = off / bs;
    const std::uint64_t last = (off + len - 1) / bs;
    const std::uint64_t nblocks = last - first + 1;
    read_skip = static_cast<std::size_t>(off - first * bs);
    read_buf.assign(static_cast<std::size_t>(nblocks * bs), 0);
    std::uint64_t i = 0;
    while (i < nblocks) {
      blk64_t pblk = 0;
      int flags = 0;
      errcode_t e = ext2fs_bmap2(fs, n.ino, raw(n.in), nullptr, 0, first + i, &flags, &pblk);
      if (e != 0) return e;
      if (pblk == 0 || (flags & BMAP_RET_UNINIT) != 0) {  // hole: already zero
        ++i;
        continue;
      }
      std::uint64_t run = 1;
      while (i + run < nblocks && run < 256) {
        blk64_t next = 0;
        int nflags = 0;
        e = ext2fs_bmap2(fs, n.ino, raw(n.in), nullptr, 0, first + i + run, &nflags, &next);
        if (e != 0 || next != pblk + run || (nflags & BMAP_RET_UNINIT) != 0) break;
        ++run;
      }
      e = io_channel_read_blk64(fs->io, pblk, static_cast<int>(run),
                                read_buf.data() + static_cast<std::size_t>(i * bs));
      if (e != 0) return e;
      i += run;
    }
    return 0;
  }

  bool read(In& in, n3::Stat st, Node& n, const Cred& c, XdrWriter& w) {
    const std::uint64_t off = in.u64();
    std::uint32_t count = in.u32();
    if (!in.ok) return false;
    if (st == n3::kOk && LINUX_S_ISDIR(n.in.i_mode)) st = n3::kIsdir;
    if (st == n3::kOk && !LINUX_S_ISREG(n.in.i_mode)) st = n3::kInval;
    if (st == n3::kOk && !may(c, n.in, 4) && c.uid != inode_uid_of(n.in)) st = n3::kAcces;
    if (st != n3::kOk) {
      w.put_u32(st);
      put_post_attr(w, n.ino);
      return true;
    }
    const std::uint64_t size = isize(n.in);
    count = std::min(count, max_io);
    const std::uint32_t len =
        off >= size ? 0 : static_cast<std::uint32_t>(std::min<std::uint64_t>(count, size - off));
    std::uint32_t got = 0;
    if (len > 0) {
      if (errcode_t e = read_range(n, off, len); e != 0) {
        w.put_u32(map_err(e));
        put_post_attr(w, n.ino);
        return true;
      }
      got = len;
    }
    w.reserve(w.size() + 4 + 4 + 84 + 12 + got + 4);
    w.put_u32(n3::kOk);
    w.put_bool(true);
    put_fattr(w, n.ino, n.in);
    w.put_u32(got);
    w.put_bool(off + got >= size);
    w.put_opaque(ByteSpan(read_buf.data() + read_skip, got));
    return true;
  }

  bool write(In& in, n3::Stat st, Node& n, const Cred& c, bool ro, XdrWriter& w) {
    const std::uint64_t off = in.u64();
    const std::uint32_t count = in.u32();
    const std::uint32_t stable = in.u32();
    ByteSpan data = in.opaque(n3::kMaxIo);
    if (!in.ok || stable > n3::kFileSync) return false;
    Pre pre = st == n3::kOk ? pre_of(n.ino) : Pre{};
    if (st == n3::kOk && ro) st = n3::kRofs;
    if (st == n3::kOk && LINUX_S_ISDIR(n.in.i_mode)) st = n3::kIsdir;
    if (st == n3::kOk && !LINUX_S_ISREG(n.in.i_mode)) st = n3::kInval;
    if (st == n3::kOk && count > data.size()) st = n3::kInval;
    if (st == n3::kOk && !may(c, n.in, 2) && c.uid != inode_uid_of(n.in)) st = n3::kAcces;
    if (st == n3::kOk && (off > max_file_size() || count > max_file_size() - off)) st = n3::kFbig;
    std::uint32_t done = 0;
    if (st == n3::kOk && broken) st = n3::kIo;
    if (st == n3::kOk && count > 0) {
      ext2_file_t f = nullptr;
      errcode_t e = ext2fs_file_open2(fs, n.ino, raw(n.in), EXT2_FILE_WRITE, &f);
      if (e == 0) e = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, nullptr);
      while (e == 0 && done < count) {
        unsigned chunk = 0;
        e = ext2fs_file_write(f, data.data() + done, count - done, &chunk);
        done += chunk;
        if (chunk == 0) break;
      }
      errcode_t e2 = f != nullptr ? ext2fs_file_close(f) : 0;
      if (e == 0) e = e2;
      // Any error fails the whole WRITE (bytes counted by libext2fs may still sit in its
      // buffer): the client retries or reports it; what did reach the disk is harmless.
      if (e != 0) st = map_err(e);
      else if (done < count) st = n3::kIo;
    }
    if (st == n3::kOk || done > 0) {
      if (load(n.ino, n.in) == 0) {
        const Ts t = now_ts();
        set_time(fs, n.in, TimeField::kMtime, t);
        set_time(fs, n.in, TimeField::kCtime, t);
        if (c.uid != 0) n.in.i_mode &= static_cast<__u16>(~(LINUX_S_ISUID | LINUX_S_ISGID));
        store(n.ino, n.in);
      }
      n3::Stat s2 = sync(stable != n3::kUnstable);
      if (s2 != n3::kOk) st = s2;
    }
    w.put_u32(st);
    put_wcc(w, pre, n.ino);
    if (st == n3::kOk) {
      w.put_u32(done);
      w.put_u32(stable == n3::kUnstable ? n3::kUnstable : n3::kFileSync);
      w.put_u64(verifier);
    }
    return true;
  }

  // Creates a regular file inode `ino` linked as dir/name.
  n3::Stat new_file(Node& dir, const std::string& name, std::uint32_t mode, const Cred& c,
                    ext2_ino_t& out) {
    ext2_ino_t ino = 0;
    errcode_t e = ext2fs_new_inode(fs, dir.ino, LINUX_S_IFREG | 0600, nullptr, &ino);
    if (e != 0) return map_err(e);
    ext2_inode_large in{};
    in.i_mode = static_cast<__u16>(LINUX_S_IFREG | (mode & 07777));
    set_uid(in, c.uid);
    set_gid(in, (dir.in.i_mode & LINUX_S_ISGID) != 0 ? inode_gid_of(dir.in) : c.gid);
    in.i_links_count = 1;
    in.i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    std::uint32_t gen = 0;
    while (gen == 0) gen = static_cast<std::uint32_t>(random_u64());
    in.i_generation = gen;
    const Ts t = now_ts();
    set_time(fs, in, TimeField::kAtime, t);
    set_time(fs, in, TimeField::kMtime, t);
    set_time(fs, in, TimeField::kCtime, t);
    in.i_crtime = static_cast<__u32>(t.sec);
    if (ext2fs_has_feature_extents(fs->super)) {
      ext2_extent_handle_t h = nullptr;
      if ((e = ext2fs_extent_open2(fs, ino, raw(in), &h)) != 0) return map_err(e);
      ext2fs_extent_free(h);
    }
    if ((e = ext2fs_write_new_inode(fs, ino, raw(in))) != 0) return map_err(e);
    if ((e = store(ino, in)) != 0) return map_err(e);
    if ((e = link(dir.ino, name, ino, EXT2_FT_REG_FILE)) != 0) {
      // Not linked, never marked in use: leave the on-disk inode free (links 0, dtime set) so
      // e2fsck does not see an unattached inode.
      ext2_inode_large z{};
      z.i_dtime = static_cast<__u32>(t.sec);
      z.i_extra_isize = in.i_extra_isize;
      store(ino, z);
      return map_err(e);
    }
    ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
    touch_dir(dir.ino);
    out = ino;
    return n3::kOk;
  }

  // Common checks for operations that add a name to `dir`.
  n3::Stat can_add(n3::Stat st, Node& dir, const Cred& c, bool ro, const std::string& name) {
    if (st != n3::kOk) return st;
    if (ro) return n3::kRofs;
    if (!LINUX_S_ISDIR(dir.in.i_mode)) return n3::kNotdir;
    if (n3::Stat s = check_new_name(name); s != n3::kOk) return s;
    if (!may(c, dir.in, 3)) return n3::kAcces;
    if (broken) return n3::kIo;
    return n3::kOk;
  }

  void put_diropres(XdrWriter& w, n3::Stat st, ext2_ino_t ino, std::uint32_t exp, const Pre& pre,
                    ext2_ino_t dir) {
    w.put_u32(st);
    if (st == n3::kOk) {
      w.put_bool(true);
      put_fh(w, ino, exp);
      put_post_attr(w, ino);
    }
    put_wcc(w, pre, dir);
  }

  bool create(In& in, n3::Stat st, Node& dir, const Cred& c, bool ro, XdrWriter& w) {
    std::string name = in.str(4096);
    const std::uint32_t how = in.u32();
    Sattr s;
    std::array<std::uint8_t, 8> verf{};
    if (how == n3::kExclusive) {
      ByteSpan v = in.fixed(8);
      if (in.ok) std::copy(v.begin(), v.end(), verf.begin());
    } else if (how <= n3::kGuarded) {
      s = get_sattr(in);
    } else {
      return false;
    }
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(dir.ino) : Pre{};
    st = can_add(st, dir, c, ro, name);
    ext2_ino_t ino = 0;
    if (st == n3::kOk) {
      errcode_t e = lookup(dir.ino, name, ino);
      if (e == 0) {
        Node ex;
        ex.ino = ino;
        ex.exp = dir.exp;
        if (load(ino, ex.in) != 0) {
          st = n3::kIo;
        } else if (how == n3::kGuarded) {
          st = n3::kExist;
        } else if (how == n3::kExclusive) {
          const std::uint32_t a = (std::uint32_t{verf[0]} << 24) | (std::uint32_t{verf[1]} << 16) |
                                  (std::uint32_t{verf[2]} << 8) | verf[3];
          const std::uint32_t m = (std::uint32_t{verf[4]} << 24) | (std::uint32_t{verf[5]} << 16) |
                                  (std::uint32_t{verf[6]} << 8) | verf[7];
          if (!LINUX_S_ISREG(ex.in.i_mode) || ex.in.i_atime != a || ex.in.i_mtime != m) {
            st = n3::kExist;
          }
        } else if (!LINUX_S_ISREG(ex.in.i_mode)) {
          st = n3::kExist;
        } else if (s.size) {  // UNCHECKED on an existing file: only the size is applied
          Sattr only;
          only.size = s.size;
          st = apply_sattr(ex, only, c);
        }
      } else if (e == EXT2_ET_FILE_NOT_FOUND) {
        const std::uint32_t mode = s.mode ? *s.mode : 0644;
        st = new_file(dir, name, how == n3::kExclusive ? 0600 : mode, c, ino);
        if (st == n3::kOk) {
          Node nn;
          nn.ino = ino;
          nn.exp = dir.exp;
          load(ino, nn.in);
          if (how == n3::kExclusive) {
            // The verifier lives in atime/mtime until the client's SETATTR (as Linux does).
            nn.in.i_atime = (std::uint32_t{verf[0]} << 24) | (std::uint32_t{verf[1]} << 16) |
                            (std::uint32_t{verf[2]} << 8) | verf[3];
            nn.in.i_mtime = (std::uint32_t{verf[4]} << 24) | (std::uint32_t{verf[5]} << 16) |
                            (std::uint32_t{verf[6]} << 8) | verf[7];
            nn.in.i_atime_extra = 0;
            nn.in.i_mtime_extra = 0;
            store(ino, nn.in);
          } else {
            Sattr rest = s;
            rest.mode.reset();
            if (rest.uid && *rest.uid == c.uid) rest.uid.reset();
            if (rest.gid && *rest.gid == inode_gid_of(nn.in)) rest.gid.reset();
            if (rest.size && *rest.size == 0) rest.size.reset();
            if (rest.uid || rest.gid || rest.size || rest.atime.how || rest.mtime.how) {
              Cred owner = c;
              st = apply_sattr(nn, rest, owner);
            }
          }
        }
      } else {
        st = map_err(e);
      }
      n3::Stat s2 = sync(true);
      if (st == n3::kOk) st = s2;
    }
    put_diropres(w, st, ino, dir.exp, pre, dir.ino);
    return true;
  }

  // Sets owner, mode and a fresh generation on an inode made by ext2fs_mkdir / ext2fs_symlink.
  errcode_t init_made(ext2_ino_t ino, std::uint32_t mode, const Cred& c, const Node& dir,
                      const Sattr* s) {
    ext2_inode_large in;
    if (errcode_t e = load(ino, in); e != 0) return e;
    if (in.i_extra_isize == 0 && EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE) {
      in.i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    }
    in.i_mode = static_cast<__u16>((in.i_mode & LINUX_S_IFMT) | (mode & 07777));
    set_uid(in, c.uid);
    set_gid(in, (dir.in.i_mode & LINUX_S_ISGID) != 0 ? inode_gid_of(dir.in) : c.gid);
    std::uint32_t gen = 0;
    while (gen == 0) gen = static_cast<std::uint32_t>(random_u64());
    in.i_generation = gen;
    const Ts t = now_ts();
    set_time(fs, in, TimeField::kAtime, t);
    set_time(fs, in, TimeField::kMtime, t);
    set_time(fs, in, TimeField::kCtime, t);
    if (s != nullptr) {
      if (s->atime.how == 2) set_time(fs, in, TimeField::kAtime, s->atime.t);
      if (s->mtime.how == 2) set_time(fs, in, TimeField::kMtime, s->mtime.t);
    }
    return store(ino, in);
  }

  bool mkdir(In& in, n3::Stat st, Node& dir, const Cred& c, bool ro, XdrWriter& w) {
    std::string name = in.str(4096);
    Sattr s = get_sattr(in);
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(dir.ino) : Pre{};
    st = can_add(st, dir, c, ro, name);
    ext2_ino_t ino = 0;
    if (st == n3::kOk && dir.in.i_links_count >= kMaxLinks &&
        !ext2fs_has_feature_dir_nlink(fs->super)) {
      st = n3::kMlink;
    }
    if (st == n3::kOk) {
      errcode_t e = lookup(dir.ino, name, ino);
      if (e == 0) {
        st = n3::kExist;
      } else if (e != EXT2_ET_FILE_NOT_FOUND) {
        st = map_err(e);
      } else {
        e = ext2fs_mkdir(fs, dir.ino, 0, name.c_str());
        if (e == EXT2_ET_DIR_NO_SPACE) {
          e = ext2fs_expand_dir(fs, dir.ino);
          if (e == 0) e = ext2fs_mkdir(fs, dir.ino, 0, name.c_str());
        }
        if (e == 0) e = lookup(dir.ino, name, ino);
        if (e == 0) e = init_made(ino, s.mode ? *s.mode : 0755, c, dir, &s);
        if (e == 0) touch_dir(dir.ino);
        st = map_err(e);
      }
      n3::Stat s2 = sync(true);
      if (st == n3::kOk) st = s2;
    }
    put_diropres(w, st, ino, dir.exp, pre, dir.ino);
    return true;
  }

  bool symlink(In& in, n3::Stat st, Node& dir, const Cred& c, bool ro, XdrWriter& w) {
    std::string name = in.str(4096);
    Sattr s = get_sattr(in);
    std::string target = in.str(4096);
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(dir.ino) : Pre{};
    st = can_add(st, dir, c, ro, name);
    if (st == n3::kOk && (target.empty() || target.size() >= fs->blocksize)) {
      st = target.empty() ? n3::kInval : n3::kNametoolong;
    }
    ext2_ino_t ino = 0;
    if (st == n3::kOk) {
      errcode_t e = lookup(dir.ino, name, ino);
      if (e == 0) {
        st = n3::kExist;
      } else if (e != EXT2_ET_FILE_NOT_FOUND) {
        st = map_err(e);
      } else {
        e = ext2fs_symlink(fs, dir.ino, 0, name.c_str(), target.c_str());
        if (e == EXT2_ET_DIR_NO_SPACE) {
          e = ext2fs_expand_dir(fs, dir.ino);
          if (e == 0) e = ext2fs_symlink(fs, dir.ino, 0, name.c_str(), target.c_str());
        }
        if (e == 0) e = lookup(dir.ino, name, ino);
        if (e == 0) e = init_made(ino, 0777, c, dir, &s);
        if (e == 0) touch_dir(dir.ino);
        st = map_err(e);
      }
      n3::Stat s2 = sync(true);
      if (st == n3::kOk) st = s2;
    }
    put_diropres(w, st, ino, dir.exp, pre, dir.ino);
    return true;
  }

  bool mknod(In& in, n3::Stat st, Node& dir, XdrWriter& w) {
    in.str(4096);
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(dir.ino) : Pre{};
    w.put_u32(st == n3::kOk ? n3::kNotsupp : st);
    put_wcc(w, pre, st == n3::kOk ? dir.ino : 0);
    return true;
  }

  bool remove(In& in, n3::Stat st, Node& dir, const Cred& c, bool ro, XdrWriter& w, bool rmdir) {
    std::string name = in.str(4096);
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(dir.ino) : Pre{};
    if (st == n3::kOk && ro) st = n3::kRofs;
    if (st == n3::kOk && !LINUX_S_ISDIR(dir.in.i_mode)) st = n3::kNotdir;
    if (st == n3::kOk) st = check_name(name);
    if (st == n3::kOk && (name == "." || name == "..")) st = rmdir ? (name == "." ? n3::kInval : n3::kNotempty) : n3::kAcces;
    if (st == n3::kOk && !may(c, dir.in, 3)) st = n3::kAcces;
    if (st == n3::kOk && broken) st = n3::kIo;
    if (st == n3::kOk) {
      ext2_ino_t ino = 0;
      ext2_inode_large child;
      errcode_t e = lookup(dir.ino, name, ino);
      if (e == 0) e = load(ino, child);
      if (e != 0) {
        st = map_err(e);
      } else if ((dir.in.i_mode & LINUX_S_ISVTX) != 0 && c.uid != 0 &&
                 c.uid != inode_uid_of(child) && c.uid != inode_uid_of(dir.in)) {
        st = n3::kAcces;
      } else if (rmdir && !LINUX_S_ISDIR(child.i_mode)) {
        st = n3::kNotdir;
      } else if (!rmdir && LINUX_S_ISDIR(child.i_mode)) {
        st = n3::kIsdir;
      } else if (rmdir && !dir_empty(ino)) {
        st = n3::kNotempty;
      } else {
        e = ext2fs_unlink(fs, dir.ino, name.c_str(), ino, 0);
        if (e == 0) e = drop_name(ino);
        if (e == 0 && rmdir) e = adjust_links(dir.ino, -1);
        if (e == 0) touch_dir(dir.ino);
        st = map_err(e);
      }
      n3::Stat s2 = sync(true);
      if (st == n3::kOk) st = s2;
    }
    w.put_u32(st);
    put_wcc(w, pre, dir.ino);
    return true;
  }

  struct DotdotCtx {
    ext2_ino_t parent;
    bool done = false;
  };
  static int dotdot_cb(ext2_ino_t, int, ext2_dir_entry* d, int, int, char*, void* p) {
    auto* c = static_cast<DotdotCtx*>(p);
    if (ext2fs_dirent_name_len(d) == 2 && d->name[0] == '.' && d->name[1] == '.') {
      d->inode = c->parent;
      c->done = true;
      return DIRENT_CHANGED | DIRENT_ABORT;
    }
    return 0;
  }

  bool rename(In& in, n3::Stat st, Node& from, const Cred& c, bool ro, const Peer& peer,
              XdrWriter& w) {
    std::string fname = in.str(4096);
    ByteSpan tofh = in.opaque(n3::kFhMax);
    std::string tname = in.str(4096);
    if (!in.ok) return false;
    Node to;
    n3::Stat tst = resolve(tofh, to);
    if (tst == n3::kOk && !allowed(to.exp, peer)) tst = n3::kAcces;
    Pre fpre = st == n3::kOk ? pre_of(from.ino) : Pre{};
    Pre tpre = tst == n3::kOk ? pre_of(to.ino) : Pre{};
    if (st == n3::kOk) st = tst;
    if (st == n3::kOk && (ro || opt.exports[to.exp].read_only)) st = n3::kRofs;
    if (st == n3::kOk && (!LINUX_S_ISDIR(from.in.i_mode) || !LINUX_S_ISDIR(to.in.i_mode))) {
      st = n3::kNotdir;
    }
    if (st == n3::kOk) st = check_new_name(fname) == n3::kOk ? check_new_name(tname) : check_new_name(fname);
    if (st == n3::kExist) st = n3::kInval;
    if (st == n3::kOk && (!may(c, from.in, 3) || !may(c, to.in, 3))) st = n3::kAcces;
    if (st == n3::kOk && broken) st = n3::kIo;
    if (st == n3::kOk) {
      st = do_rename(from, fname, to, tname, c);
      n3::Stat s2 = sync(true);
      if (st == n3::kOk) st = s2;
    }
    w.put_u32(st);
    put_wcc(w, fpre, from.ino);
    put_wcc(w, tpre, to.ino);
    return true;
  }

  n3::Stat do_rename(Node& from, const std::string& fname, Node& to, const std::string& tname,
                     const Cred& c) {
    ext2_ino_t src = 0;
    ext2_inode_large sin;
    if (errcode_t e = lookup(from.ino, fname, src); e != 0) return map_err(e);
    if (errcode_t e = load(src, sin); e != 0) return map_err(e);
    if ((from.in.i_mode & LINUX_S_ISVTX) != 0 && c.uid != 0 && c.uid != inode_uid_of(sin) &&
        c.uid != inode_uid_of(from.in)) {
      return n3::kAcces;
    }
    if (from.ino == to.ino && fname == tname) return n3::kOk;
    const bool sdir = LINUX_S_ISDIR(sin.i_mode);
    if (sdir) {  // not into its own subtree
      ext2_ino_t cur = to.ino;
      for (int depth = 0; depth < 4096; ++depth) {
        if (cur == src) return n3::kInval;
        if (cur == EXT2_ROOT_INO) break;
        ext2_ino_t up = 0;
        if (lookup(cur, "..", up) != 0 || up == cur) break;
        cur = up;
      }
    }
    ext2_ino_t dst = 0;
    errcode_t e = lookup(to.ino, tname, dst);
    if (e != 0 && e != EXT2_ET_FILE_NOT_FOUND) return map_err(e);
    const int type = dirent_type(sin.i_mode);
    if (e == 0) {
      if (dst == src) return n3::kOk;  // two names of one file: nothing to do (POSIX)
      ext2_inode_large din;
      if ((e = load(dst, din)) != 0) return map_err(e);
      if ((to.in.i_mode & LINUX_S_ISVTX) != 0 && c.uid != 0 && c.uid != inode_uid_of(din) &&
          c.uid != inode_uid_of(to.in)) {
        return n3::kAcces;
      }
      const bool ddir = LINUX_S_ISDIR(din.i_mode);
      if (sdir && !ddir) return n3::kNotdir;
      if (!sdir && ddir) return n3::kIsdir;
      if (ddir && !dir_empty(dst)) return n3::kNotempty;
      if ((e = replace_entry(to.ino, tname, src, type)) != 0) return map_err(e);
      if ((e = drop_name(dst)) != 0) return map_err(e);
      if (ddir && (e = adjust_links(to.ino, -1)) != 0) return map_err(e);
    } else {
      if (sdir && from.ino != to.ino && to.in.i_links_count >= kMaxLinks &&
          !ext2fs_has_feature_dir_nlink(fs->super)) {
        return n3::kMlink;
      }
      if ((e = link(to.ino, tname, src, type)) != 0) return map_err(e);
    }
    if ((e = ext2fs_unlink(fs, from.ino, fname.c_str(), src, 0)) != 0) return map_err(e);
    if (sdir && from.ino != to.ino) {
      DotdotCtx dc{to.ino};
      if ((e = ext2fs_dir_iterate2(fs, src, 0, nullptr, dotdot_cb, &dc)) != 0) return map_err(e);
      if ((e = adjust_links(from.ino, -1)) != 0) return map_err(e);
      if ((e = adjust_links(to.ino, +1)) != 0) return map_err(e);
    }
    if ((e = adjust_links(src, 0)) != 0) return map_err(e);  // ctime
    touch_dir(from.ino);
    if (to.ino != from.ino) touch_dir(to.ino);
    return n3::kOk;
  }

  bool link_proc(In& in, n3::Stat st, Node& file, const Cred& c, bool ro, const Peer& peer,
                 XdrWriter& w) {
    ByteSpan dirfh = in.opaque(n3::kFhMax);
    std::string name = in.str(4096);
    if (!in.ok) return false;
    Node dir;
    n3::Stat dst = resolve(dirfh, dir);
    if (dst == n3::kOk && !allowed(dir.exp, peer)) dst = n3::kAcces;
    Pre pre = dst == n3::kOk ? pre_of(dir.ino) : Pre{};
    if (st == n3::kOk) st = can_add(dst, dir, c, ro || opt.exports[dir.exp].read_only, name);
    if (st == n3::kOk && LINUX_S_ISDIR(file.in.i_mode)) st = n3::kIsdir;
    if (st == n3::kOk && file.in.i_links_count >= kMaxLinks) st = n3::kMlink;
    if (st == n3::kOk) {
      ext2_ino_t ex = 0;
      errcode_t e = lookup(dir.ino, name, ex);
      if (e == 0) {
        st = n3::kExist;
      } else if (e != EXT2_ET_FILE_NOT_FOUND) {
        st = map_err(e);
      } else {
        e = link(dir.ino, name, file.ino, dirent_type(file.in.i_mode));
        if (e == 0) e = adjust_links(file.ino, +1);
        if (e == 0) touch_dir(dir.ino);
        st = map_err(e);
      }
      n3::Stat s2 = sync(true);
      if (st == n3::kOk) st = s2;
    }
    w.put_u32(st);
    put_post_attr(w, file.ino);
    put_wcc(w, pre, dst == n3::kOk ? dir.ino : 0);
    return true;
  }

  // READDIR / READDIRPLUS. Cookie = 1 + (directory block ordinal << 32 | offset in block) of the
  // entry: positions stay valid while other entries come and go, so the verifier is constant.
  struct DirCtx {
    Impl* self = nullptr;
    std::uint64_t cookie = 0;
    std::uint32_t block = 0;
    bool first = true;
    struct Ent {
      ext2_ino_t ino;
      std::string name;
      std::uint64_t cookie;
    };
    std::vector<Ent> out{};
    std::size_t budget = 0;
    std::size_t used = 0;
    bool plus = false;
    bool full = false;
  };
  static int dir_cb(ext2_ino_t, int, ext2_dir_entry* d, int offset, int, char*, void* p) {
    auto* c = static_cast<DirCtx*>(p);
    if (offset == 0 && !c->first) ++c->block;
    c->first = false;
    if (d->inode == 0) return 0;
    const std::uint64_t pos = (std::uint64_t{c->block} << 32) | static_cast<std::uint32_t>(offset);
    if (pos + 1 <= c->cookie) return 0;
    const auto len = static_cast<std::size_t>(ext2fs_dirent_name_len(d));
    std::size_t need = 4 + 8 + proto::xdr_opaque_size(len) + 8;
    if (c->plus) need += 4 + 84 + 4 + 4 + n3::kFhSize;
    if (c->used + need > c->budget) {
      c->full = true;
      return DIRENT_ABORT;
    }
    c->used += need;
    c->out.push_back({d->inode, std::string(d->name, len), pos + 1});
    return 0;
  }

  bool readdir(In& in, n3::Stat st, Node& dir, const Cred& c, XdrWriter& w, bool plus) {
    const std::uint64_t cookie = in.u64();
    in.fixed(8);
    std::uint32_t count = in.u32();
    if (plus) count = in.u32();  // maxcount (dircount is advisory)
    if (!in.ok) return false;
    if (st == n3::kOk && !LINUX_S_ISDIR(dir.in.i_mode)) st = n3::kNotdir;
    if (st == n3::kOk && !may(c, dir.in, 4)) st = n3::kAcces;
    count = std::min(count, peer_max_dir());
    DirCtx ctx;
    ctx.self = this;
    ctx.cookie = cookie;
    ctx.plus = plus;
    const std::size_t overhead = 4 + 4 + 84 + 8 + 4 + 4;
    ctx.budget = count > overhead ? count - overhead : 0;
    if (st == n3::kOk) {
      errcode_t e = ext2fs_dir_iterate2(fs, dir.ino, DIRENT_FLAG_INCLUDE_EMPTY, nullptr, dir_cb,
                                        &ctx);
      if (e != 0) st = map_err(e);
      else if (ctx.out.empty() && ctx.full) st = n3::kToosmall;
    }
    w.put_u32(st);
    put_post_attr(w, st == n3::kStale || st == n3::kBadhandle ? 0 : dir.ino);
    if (st != n3::kOk) return true;
    w.put_u64(fsid);  // cookie verifier
    for (const auto& e : ctx.out) {
      w.put_bool(true);
      w.put_u64(e.ino);
      w.put_string(e.name);
      w.put_u64(e.cookie);
      if (plus) {
        ext2_ino_t ino = e.ino;
        if (e.name == ".." && dir.ino == export_ino[dir.exp]) ino = dir.ino;
        ext2_inode_large ein;
        if (load(ino, ein) == 0) {
          w.put_bool(true);
          put_fattr(w, ino, ein);
          w.put_bool(true);
          put_fh(w, ino, ein.i_generation, dir.exp);
        } else {
          w.put_bool(false);
          w.put_bool(false);
        }
      }
    }
    w.put_bool(false);
    w.put_bool(!ctx.full);
    return true;
  }
  std::uint32_t peer_max_dir() const { return max_io < n3::kMaxIo ? max_io : n3::kMaxDirReply; }

  bool fsstat(n3::Stat st, Node& n, XdrWriter& w) {
    w.put_u32(st);
    put_post_attr(w, st == n3::kOk ? n.ino : 0);
    if (st != n3::kOk) return true;
    const std::uint64_t bs = fs->blocksize;
    const std::uint64_t free = ext2fs_free_blocks_count(fs->super);
    const std::uint64_t reserved = ext2fs_r_blocks_count(fs->super);
    w.put_u64(ext2fs_blocks_count(fs->super) * bs);
    w.put_u64(free * bs);
    w.put_u64((free > reserved ? free - reserved : 0) * bs);
    w.put_u64(fs->super->s_inodes_count);
    w.put_u64(fs->super->s_free_inodes_count);
    w.put_u64(fs->super->s_free_inodes_count);
    w.put_u32(0);
    return true;
  }
  bool fsinfo(n3::Stat st, Node& n, XdrWriter& w) {
    w.put_u32(st);
    put_post_attr(w, st == n3::kOk ? n.ino : 0);
    if (st != n3::kOk) return true;
    w.put_u32(max_io);
    w.put_u32(max_io);
    w.put_u32(fs->blocksize);
    w.put_u32(max_io);
    w.put_u32(max_io);
    w.put_u32(fs->blocksize);
    w.put_u32(std::min<std::uint32_t>(max_io, 65536));
    w.put_u64(max_file_size());
    w.put_u32(0);
    w.put_u32(1);
    w.put_u32(0x1 | 0x2 | 0x8 | 0x10);  // LINK SYMLINK HOMOGENEOUS CANSETTIME
    return true;
  }
  bool pathconf(n3::Stat st, Node& n, XdrWriter& w) {
    w.put_u32(st);
    put_post_attr(w, st == n3::kOk ? n.ino : 0);
    if (st != n3::kOk) return true;
    w.put_u32(kMaxLinks);
    w.put_u32(n3::kMaxName);
    w.put_bool(true);   // no_trunc
    w.put_bool(true);   // chown_restricted
    w.put_bool(false);  // case_insensitive
    w.put_bool(true);   // case_preserving
    return true;
  }
  bool commit(In& in, n3::Stat st, Node& n, XdrWriter& w) {
    in.u64();
    in.u32();
    if (!in.ok) return false;
    Pre pre = st == n3::kOk ? pre_of(n.ino) : Pre{};
    if (st == n3::kOk) st = sync(true);
    w.put_u32(st);
    put_wcc(w, pre, st == n3::kOk || st == n3::kIo ? n.ino : 0);
    if (st == n3::kOk) w.put_u64(verifier);
    return true;
  }
};


Nas::Nas(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Nas::~Nas() = default;

Result<std::unique_ptr<Nas>, Error> Nas::open(BlockDevice& dev, NasOptions options) {
  if (options.exports.empty()) return fail("no exports");
  auto impl = std::make_unique<Impl>();
  impl->dev = &dev;
  impl->opt = std::move(options);
  for (const auto& e : impl->opt.exports) {
    std::vector<Cidr> list;
    for (const auto& c : e.clients) {
      auto p = parse_cidr(c);
      if (!p) return fail("export " + e.path + ": " + p.error().message);
      list.push_back(*p);
    }
    impl->acl.push_back(std::move(list));
  }
  if (dev.read_only()) return fail(Errc::kWriteProtected, dev.describe() + " is read-only");
  impl->dev_name = register_device(&dev);
  ext2_filsys fs = nullptr;
  errcode_t e = ext2fs_open2(impl->dev_name.c_str(), nullptr, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0,
                             0, block_device_io_manager(), &fs);
  if (e != 0) {
    unregister_device(impl->dev_name);
    return fail(Errc::kInvalidArgument,
                dev.describe() + ": no usable ext2/3/4 file system (" + err_string(e) +
                    "); format it with `ipsan nas mkfs`");
  }
  impl->fs = fs;
  if (ext2fs_has_feature_journal_needs_recovery(fs->super)) {
    return fail(Errc::kInvalidArgument, dev.describe() + ": the journal needs recovery (e2fsck)");
  }
  if ((fs->super->s_state & EXT2_ERROR_FS) != 0) {
    return fail(Errc::kInvalidArgument, dev.describe() + ": file system has errors (e2fsck)");
  }
  if ((e = ext2fs_read_bitmaps(fs)) != 0) {
    return fail(Errc::kIoError, "reading bitmaps: " + err_string(e));
  }
  if ((e = reserve_last_block(fs)) != 0) {
    return fail(Errc::kIoError, "reserving the last block: " + err_string(e));
  }
  fs->flags |= EXT2_FLAG_MASTER_SB_ONLY;
  std::uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id = (id << 8) | fs->super->s_uuid[i];
  impl->fsid = id;
  impl->verifier = random_u64();
  for (const auto& ex : impl->opt.exports) {
    ext2_ino_t ino = 0;
    const std::string p = normalize_path(ex.path);
    if (p[0] != '/') return fail("export path '" + ex.path + "' is not absolute");
    if (p == "/") {
      ino = EXT2_ROOT_INO;
    } else if ((e = ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, p.c_str() + 1, &ino)) != 0) {
      return fail("export path '" + ex.path + "': " + err_string(e));
    }
    ext2_inode_large in;
    if (impl->load(ino, in) != 0 || !LINUX_S_ISDIR(in.i_mode)) {
      return fail("export path '" + ex.path + "' is not a directory");
    }
    impl->export_ino.push_back(ino);
  }
  return std::unique_ptr<Nas>(new Nas(std::move(impl)));
}

Bytes Nas::handle(ByteSpan call, const Peer& peer) { return impl_->handle(call, peer); }
Result<void, Error> Nas::close() { return impl_->close(); }
void Nas::set_ports(std::uint16_t tcp, std::uint16_t udp) {
  impl_->opt.tcp_port = tcp;
  impl_->opt.udp_port = udp;
}
const NasStats& Nas::stats() const { return impl_->stats; }
std::uint64_t Nas::write_verifier() const { return impl_->verifier; }

}  // namespace ipsan::nas
