// ThinPool: copy-on-write block map, metadata log and checkpoints; see thin.h and
// docs/SNAPSHOTS.md (on-disk format).
#include "ipsan/virt/thin.h"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <map>
#include <random>
#include <unordered_map>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crc32c.h"

namespace ipsan::virt {

using backends::BackendPtr;
using backends::Capabilities;
using backends::Completion;
using backends::Geometry;

namespace {

constexpr std::uint64_t kSbBytes = 4096;
constexpr std::uint64_t kMetaStart = 2 * kSbBytes;
constexpr std::uint64_t kLeafBytes = ThinPool::kLeafEntries * 8;
constexpr std::uint64_t kLogHeader = 32;
constexpr char kSbMagic[8] = {'I', 'P', 'S', 'N', 'T', 'H', 'I', 'N'};
constexpr char kCkMagic[8] = {'I', 'P', 'S', 'N', 'C', 'K', 'P', 'T'};
constexpr char kLogMagic[8] = {'I', 'P', 'S', 'N', 'L', 'O', 'G', '1'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kNoLeaf = 0xFFFFFFFFu;

enum RecType : std::uint8_t {
  kRecMap = 1,
  kRecCreate = 2,
  kRecDerive = 3,
  kRecDelete = 4,
  kRecRollback = 5
};

// Waits synchronously for one completion of the inner device.
struct Latch {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Errc e = Errc::kOk;
  Completion cb() {
    return [this](Errc r) {
      std::lock_guard lk(mu);
      e = r;
      done = true;
      cv.notify_all();
    };
  }
  Errc wait() {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return done; });
    return e;
  }
};

bool valid_volume_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Little helpers for (de)serialising big-endian fields.
struct Writer {
  std::vector<std::uint8_t> b;
  void u8(std::uint8_t v) { b.push_back(v); }
  void u16(std::uint16_t v) {
    b.resize(b.size() + 2);
    store_be16(&b[b.size() - 2], v);
  }
  void u32(std::uint32_t v) {
    b.resize(b.size() + 4);
    store_be32(&b[b.size() - 4], v);
  }
  void u64(std::uint64_t v) {
    b.resize(b.size() + 8);
    store_be64(&b[b.size() - 8], v);
  }
  void str(std::string_view s) {
    u16(static_cast<std::uint16_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
};
struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  std::size_t i = 0;
  bool bad = false;
  bool need(std::size_t k) {
    if (bad || n - i < k) bad = true;
    return !bad;
  }
  std::uint8_t u8() { return need(1) ? p[i++] : 0; }
  std::uint16_t u16() {
    if (!need(2)) return 0;
    auto v = load_be16(p + i);
    i += 2;
    return v;
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    auto v = load_be32(p + i);
    i += 4;
    return v;
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    auto v = load_be64(p + i);
    i += 8;
    return v;
  }
  std::string str() {
    const std::uint16_t len = u16();
    if (!need(len)) return {};
    std::string s(reinterpret_cast<const char*>(p + i), len);
    i += len;
    return s;
  }
};

}  // namespace

std::string_view to_string(ThinKind k) noexcept {
  switch (k) {
    case ThinKind::kDisk: return "disk";
    case ThinKind::kSnapshot: return "snapshot";
    case ThinKind::kClone: return "clone";
  }
  return "?";
}

// A leaf: 512 entries, each 0 (unmapped) or physical chunk + 1.
struct ThinPool::Leaf {
  std::array<std::uint64_t, kLeafEntries> e{};
};

struct ThinPool::Volume {
  std::uint32_t id = 0;
  ThinKind kind = ThinKind::kDisk;
  std::string name;
  std::uint32_t origin = 0;  // id of the volume it was derived from (0: none)
  std::uint64_t blocks = 0;
  std::uint64_t created_seq = 0;
  std::vector<std::shared_ptr<Leaf>> table;
};

struct ThinPool::State {
  // Geometry (from the superblock).
  std::uint32_t bs = 512;
  std::uint64_t chunk = 0;
  std::uint64_t ckpt_off = 0, ckpt_bytes = 0, log_off = 0, log_bytes = 0, data_off = 0;
  std::uint64_t nchunks = 0;
  std::uint64_t device_bytes = 0;
  // Commit state.
  std::uint64_t gen = 0;
  std::uint32_t active = 0;  // checkpoint area in use
  std::uint64_t seq = 0;     // sequence number of the next log entry
  std::uint64_t log_tail = 0;
  // Map.
  std::map<std::uint32_t, Volume> vols;
  std::uint32_t next_id = 1;
  std::vector<std::uint32_t> ref;               // per chunk: number of leaves mapping it
  std::vector<std::uint64_t> free_list;         // reusable now
  std::vector<std::uint64_t> pending_free;      // freed since the last commit
  std::unordered_set<std::uint64_t> decreased;  // unshared since the last commit: no in-place
  Writer records;                               // uncommitted log records
  std::size_t nrecords = 0;
  std::uint64_t commits = 0, checkpoints = 0, cow = 0;
  bool failed = false;  // a metadata write failed: refuse further changes

  Volume* find(std::string_view name) {
    for (auto& [id, v] : vols)
      if (v.name == name) return &v;
    return nullptr;
  }
  const Volume* find(std::string_view name) const {
    for (const auto& [id, v] : vols)
      if (v.name == name) return &v;
    return nullptr;
  }
  std::uint64_t vchunks(const Volume& v) const { return (v.blocks * bs + chunk - 1) / chunk; }

  void incref(std::uint64_t e) {
    if (e) ++ref[e - 1];
  }
  void decref(std::uint64_t e) {
    if (!e) return;
    const std::uint64_t p = e - 1;
    if (--ref[p] == 0) pending_free.push_back(p);
    decreased.insert(p);
  }
  // Drops a table reference to a leaf; the last one releases its chunks.
  void drop_leaf(std::shared_ptr<Leaf>& l) {
    if (l && l.use_count() == 1) {
      for (auto e : l->e) decref(e);
    }
    l.reset();
  }
  // The leaf of `v` covering virtual chunk `vc`, made exclusive to v (copied if shared).
  Leaf& own_leaf(Volume& v, std::uint64_t vc) {
    auto& slot = v.table[vc / kLeafEntries];
    if (!slot) {
      slot = std::make_shared<Leaf>();
    } else if (slot.use_count() > 1) {
      auto copy = std::make_shared<Leaf>(*slot);
      for (auto e : copy->e) incref(e);
      slot = std::move(copy);
    }
    return *slot;
  }
  std::uint64_t lookup(const Volume& v, std::uint64_t vc) const {
    const auto& l = v.table[vc / kLeafEntries];
    return l ? l->e[vc % kLeafEntries] : 0;
  }
  // Can virtual chunk vc of v be written in place? (Mapped, leaf and chunk exclusive, and not
  // shared in the committed map.)
  bool exclusive(const Volume& v, std::uint64_t vc) const {
    const auto& l = v.table[vc / kLeafEntries];
    if (!l) return false;
    const std::uint64_t e = l->e[vc % kLeafEntries];
    if (!e) return false;
    if (l.use_count() != 1) return false;
    return ref[e - 1] == 1 && !decreased.count(e - 1);
  }

  // ---- mutators shared by the live path and log replay ----
  void apply_map(Volume& v, std::uint64_t vc, std::uint64_t entry) {
    Leaf& l = own_leaf(v, vc);
    std::uint64_t& slot = l.e[vc % kLeafEntries];
    const std::uint64_t old = slot;
    slot = entry;
    incref(entry);
    decref(old);
  }
  void apply_create(std::uint32_t id, ThinKind kind, std::string name, std::uint64_t blocks) {
    Volume v;
    v.id = id;
    v.kind = kind;
    v.name = std::move(name);
    v.blocks = blocks;
    v.created_seq = seq;
    v.table.resize((vchunks(v) + kLeafEntries - 1) / kLeafEntries);
    vols[id] = std::move(v);
    next_id = std::max(next_id, id + 1);
  }
  void apply_derive(std::uint32_t id, std::uint32_t src, ThinKind kind, std::string name) {
    const Volume& s = vols.at(src);
    Volume v;
    v.id = id;
    v.kind = kind;
    v.name = std::move(name);
    v.origin = src;
    v.blocks = s.blocks;
    v.created_seq = seq;
    v.table = s.table;  // shares every leaf
    vols[id] = std::move(v);
    next_id = std::max(next_id, id + 1);
  }
  void apply_delete(std::uint32_t id) {
    auto it = vols.find(id);
    for (auto& l : it->second.table) drop_leaf(l);
    vols.erase(it);
  }
  void apply_rollback(std::uint32_t dst, std::uint32_t src) {
    Volume& d = vols.at(dst);
    const Volume& s = vols.at(src);
    auto copy = s.table;
    for (auto& l : d.table) drop_leaf(l);
    d.table = std::move(copy);
    d.blocks = s.blocks;
  }

  // After a commit: freed chunks become reusable, nothing is "recently unshared".
  void committed() {
    free_list.insert(free_list.end(), pending_free.begin(), pending_free.end());
    pending_free.clear();
    decreased.clear();
    records.b.clear();
    nrecords = 0;
  }

  // The whole map as a checkpoint image (unpadded).
  std::vector<std::uint8_t> serialize() const {
    std::unordered_map<const Leaf*, std::uint32_t> index;
    std::vector<const Leaf*> leaves;
    for (const auto& [id, v] : vols) {
      for (const auto& l : v.table) {
        if (l && index.emplace(l.get(), static_cast<std::uint32_t>(leaves.size())).second) {
          leaves.push_back(l.get());
        }
      }
    }
    Writer w;
    w.b.insert(w.b.end(), kCkMagic, kCkMagic + 8);
    w.u32(next_id);
    w.u32(static_cast<std::uint32_t>(vols.size()));
    w.u32(static_cast<std::uint32_t>(leaves.size()));
    w.u32(0);
    for (const auto& [id, v] : vols) {
      w.u32(v.id);
      w.u8(static_cast<std::uint8_t>(v.kind));
      w.u8(0);
      w.u32(v.origin);
      w.u64(v.blocks);
      w.u64(v.created_seq);
      w.str(v.name);
      w.u32(static_cast<std::uint32_t>(v.table.size()));
      for (const auto& l : v.table) w.u32(l ? index.at(l.get()) : kNoLeaf);
    }
    w.b.resize(round_up(w.b.size(), 8));
    for (const Leaf* l : leaves) {
      for (auto e : l->e) w.u64(e);
    }
    return std::move(w.b);
  }
  std::uint64_t serialized_size() const {
    std::unordered_set<const Leaf*> seen;
    std::uint64_t n = 24;
    for (const auto& [id, v] : vols) {
      n += 4 + 1 + 1 + 4 + 8 + 8 + 2 + v.name.size() + 4 + 4 * v.table.size();
      for (const auto& l : v.table)
        if (l) seen.insert(l.get());
    }
    return round_up(n, 8) + seen.size() * kLeafBytes;
  }

  Result<void, Error> deserialize(const std::uint8_t* p, std::size_t n) {
    Reader r{p, n};
    if (n < 24 || std::memcmp(p, kCkMagic, 8) != 0) return fail("checkpoint: bad magic");
    r.i = 8;
    next_id = r.u32();
    const std::uint32_t nvols = r.u32();
    const std::uint32_t nleaves = r.u32();
    r.u32();
    struct V {
      Volume v;
      std::vector<std::uint32_t> idx;
    };
    std::vector<V> vs;
    for (std::uint32_t i = 0; i < nvols && !r.bad; ++i) {
      V x;
      x.v.id = r.u32();
      x.v.kind = static_cast<ThinKind>(r.u8());
      r.u8();
      x.v.origin = r.u32();
      x.v.blocks = r.u64();
      x.v.created_seq = r.u64();
      x.v.name = r.str();
      const std::uint32_t nt = r.u32();
      if (r.bad) break;
      if (x.v.kind != ThinKind::kDisk && x.v.kind != ThinKind::kSnapshot &&
          x.v.kind != ThinKind::kClone) {
        return fail("checkpoint: volume " + std::to_string(x.v.id) + " has a bad kind");
      }
      if (x.v.blocks == 0 || x.v.blocks > (std::uint64_t{1} << 48) ||
          (vchunks(x.v) + kLeafEntries - 1) / kLeafEntries != nt) {
        return fail("checkpoint: volume '" + x.v.name + "' has an inconsistent size");
      }
      for (std::uint32_t k = 0; k < nt && !r.bad; ++k) x.idx.push_back(r.u32());
      vs.push_back(std::move(x));
    }
    if (r.bad) return fail("checkpoint: truncated volume table");
    r.i = round_up(r.i, 8);
    if (r.i > n || (n - r.i) / kLeafBytes < nleaves) return fail("checkpoint: truncated leaves");
    std::vector<std::shared_ptr<Leaf>> leaves(nleaves);
    for (auto& l : leaves) {
      l = std::make_shared<Leaf>();
      for (auto& e : l->e) {
        e = r.u64();
        if (e > nchunks) return fail("checkpoint: a map entry points past the data area");
      }
    }
    vols.clear();
    for (auto& x : vs) {
      if (vols.count(x.v.id) || x.v.id == 0 || x.v.id >= next_id)
        return fail("checkpoint: bad or duplicate volume id " + std::to_string(x.v.id));
      for (std::uint32_t k : x.idx) {
        if (k == kNoLeaf) {
          x.v.table.emplace_back();
        } else if (k >= nleaves) {
          return fail("checkpoint: leaf index out of range");
        } else {
          x.v.table.push_back(leaves[k]);
        }
      }
      vols[x.v.id] = std::move(x.v);
    }
    return {};
  }

  // Reference counts and free list from the maps.
  void rebuild_refs() {
    ref.assign(nchunks, 0);
    std::unordered_set<const Leaf*> seen;
    for (const auto& [id, v] : vols)
      for (const auto& l : v.table)
        if (l && seen.insert(l.get()).second)
          for (auto e : l->e) incref(e);
    free_list.clear();
    pending_free.clear();
    decreased.clear();
    for (std::uint64_t p = nchunks; p-- > 0;)
      if (ref[p] == 0) free_list.push_back(p);
  }
};

ThinPool::ThinPool() : s_(std::make_unique<State>()) {}
ThinPool::~ThinPool() = default;

// ------------------------------------------------------------------ device I/O helpers ----
namespace {

Errc dev_read(backends::Backend& d, std::uint32_t bs, std::uint64_t off,
              std::span<std::uint8_t> b) {
  Latch l;
  d.read(off / bs, b, l.cb());
  return l.wait();
}
Errc dev_write(backends::Backend& d, std::uint32_t bs, std::uint64_t off,
               std::span<const std::uint8_t> b, bool fua = false) {
  Latch l;
  d.write(off / bs, b, fua, l.cb());
  return l.wait();
}
Errc dev_flush(backends::Backend& d) {
  Latch l;
  d.flush(l.cb());
  return l.wait();
}

struct Superblock {
  std::uint32_t bs = 0;
  std::uint64_t chunk = 0, device_bytes = 0, ckpt_off = 0, ckpt_bytes = 0, log_off = 0,
                log_bytes = 0, data_off = 0, nchunks = 0, gen = 0;
  std::uint32_t active = 0;
  std::uint64_t ckpt_len = 0;
  std::uint32_t ckpt_crc = 0;
  std::uint64_t log_seq = 0;
};

std::vector<std::uint8_t> encode_sb(const Superblock& s) {
  std::vector<std::uint8_t> b(kSbBytes, 0);
  std::memcpy(b.data(), kSbMagic, 8);
  store_be32(&b[8], kVersion);
  store_be32(&b[12], s.bs);
  store_be64(&b[16], s.chunk);
  store_be64(&b[24], s.device_bytes);
  store_be64(&b[32], s.ckpt_off);
  store_be64(&b[40], s.ckpt_bytes);
  store_be64(&b[48], s.log_off);
  store_be64(&b[56], s.log_bytes);
  store_be64(&b[64], s.data_off);
  store_be64(&b[72], s.nchunks);
  store_be64(&b[80], s.gen);
  store_be32(&b[88], s.active);
  store_be64(&b[96], s.ckpt_len);
  store_be32(&b[104], s.ckpt_crc);
  store_be64(&b[112], s.log_seq);
  store_be32(&b[kSbBytes - 4], crc32c(std::span<const std::uint8_t>(b.data(), kSbBytes - 4)));
  return b;
}

bool decode_sb(const std::uint8_t* b, Superblock& s) {
  if (std::memcmp(b, kSbMagic, 8) != 0) return false;
  if (load_be32(b + kSbBytes - 4) != crc32c(std::span<const std::uint8_t>(b, kSbBytes - 4)))
    return false;
  if (load_be32(b + 8) != kVersion) return false;
  s.bs = load_be32(b + 12);
  s.chunk = load_be64(b + 16);
  s.device_bytes = load_be64(b + 24);
  s.ckpt_off = load_be64(b + 32);
  s.ckpt_bytes = load_be64(b + 40);
  s.log_off = load_be64(b + 48);
  s.log_bytes = load_be64(b + 56);
  s.data_off = load_be64(b + 64);
  s.nchunks = load_be64(b + 72);
  s.gen = load_be64(b + 80);
  s.active = load_be32(b + 88);
  s.ckpt_len = load_be64(b + 96);
  s.ckpt_crc = load_be32(b + 104);
  s.log_seq = load_be64(b + 112);
  return true;
}

}  // namespace

// ------------------------------------------------------------------ format / open ----

Result<std::shared_ptr<ThinPool>, Error> ThinPool::format(BackendPtr device,
                                                          const ThinFormatOptions& o) {
  if (!device) return fail("thin pool: no device");
  const Geometry g = device->geometry();
  if (device->capabilities().read_only)
    return fail(Errc::kWriteProtected, "thin pool: device is read-only");
  if (g.block_size == 0 || kSbBytes % g.block_size != 0)
    return fail("thin pool: device block size " + std::to_string(g.block_size) +
                " does not divide 4096");
  const std::uint64_t c = o.chunk_bytes;
  if (c < 4096 || (c & (c - 1)) != 0 || c > (std::uint64_t{1} << 30))
    return fail("thin pool: chunk size " + std::to_string(c) +
                " must be a power of two between 4 KiB and 1 GiB");
  const std::uint64_t size = g.size_bytes();
  std::uint64_t meta =
      o.metadata_bytes ? o.metadata_bytes : std::max<std::uint64_t>(size / 64, 1 << 20);
  meta = round_up(meta, 3 * kSbBytes);
  auto p = std::make_shared<ThinPool>();
  State& s = *p->s_;
  s.bs = g.block_size;
  s.chunk = c;
  s.device_bytes = size;
  s.ckpt_bytes = round_up(meta * 2 / 5, kSbBytes);
  s.log_bytes = round_up(meta / 5, kSbBytes);
  s.ckpt_off = kMetaStart;
  s.log_off = s.ckpt_off + 2 * s.ckpt_bytes;
  s.data_off = round_up(s.log_off + s.log_bytes, c);
  if (s.data_off >= size || (size - s.data_off) / c == 0)
    return fail(Errc::kNoSpace, "thin pool: device of " + std::to_string(size) +
                                    " bytes is too small for the metadata and one chunk");
  s.nchunks = (size - s.data_off) / c;
  if (s.nchunks > 0xFFFFFFFFull) return fail("thin pool: more than 2^32 chunks; use bigger chunks");
  p->dev_ = std::move(device);
  s.rebuild_refs();
  s.gen = 0;
  s.active = 1;  // checkpoint_locked() writes area 0 with generation 1
  // A fresh starting sequence number, so log entries of an earlier pool on this device are
  // never taken for ours.
  std::random_device rd;
  s.seq = ((std::uint64_t{rd()} << 16) ^ rd()) + 1;
  // Invalidate both superblock slots first, so a half-done format is never taken for a pool.
  std::vector<std::uint8_t> zero(2 * kSbBytes, 0);
  if (auto e = dev_write(*p->dev_, s.bs, 0, zero); e != Errc::kOk)
    return fail(e, "thin pool: cannot write the superblock area");
  if (auto e = dev_write(*p->dev_, s.bs, s.log_off, std::span(zero).first(kSbBytes));
      e != Errc::kOk)
    return fail(e, "thin pool: cannot write the log area");
  std::lock_guard lk(p->mu_);
  if (auto e = p->checkpoint_locked(); e != Errc::kOk)
    return fail(e, "thin pool: cannot write the first checkpoint");
  return p;
}

Result<bool, Error> ThinPool::is_blank(BackendPtr device) {
  const Geometry g = device->geometry();
  if (g.block_size == 0 || kSbBytes % g.block_size != 0 || g.size_bytes() < kMetaStart)
    return fail("thin pool: unsuitable device");
  std::vector<std::uint8_t> b(kMetaStart);
  if (auto e = dev_read(*device, g.block_size, 0, b); e != Errc::kOk)
    return fail(e, "thin pool: cannot read the superblock area");
  return std::all_of(b.begin(), b.end(), [](std::uint8_t x) { return x == 0; });
}

Result<std::shared_ptr<ThinPool>, Error> ThinPool::open(BackendPtr device) {
  if (!device) return fail("thin pool: no device");
  auto p = std::make_shared<ThinPool>();
  p->dev_ = std::move(device);
  if (auto r = p->load(); !r) return make_unexpected(r.error());
  return p;
}

Result<void, Error> ThinPool::load() {
  State& s = *s_;
  const Geometry g = dev_->geometry();
  if (g.block_size == 0 || kSbBytes % g.block_size != 0 || g.size_bytes() < kMetaStart)
    return fail("thin pool: unsuitable device (block size " + std::to_string(g.block_size) + ")");
  std::vector<std::uint8_t> b(kMetaStart);
  if (auto e = dev_read(*dev_, g.block_size, 0, b); e != Errc::kOk)
    return fail(e, "thin pool: cannot read the superblocks");
  Superblock sb[2];
  const bool ok0 = decode_sb(b.data(), sb[0]);
  const bool ok1 = decode_sb(b.data() + kSbBytes, sb[1]);
  if (!ok0 && !ok1) return fail("thin pool: no valid superblock (not a pool, or destroyed)");
  const Superblock& c = (ok0 && (!ok1 || sb[0].gen > sb[1].gen)) ? sb[0] : sb[1];
  if (c.bs != g.block_size)
    return fail("thin pool: superblock block size " + std::to_string(c.bs) +
                " differs from the device's " + std::to_string(g.block_size));
  if (c.device_bytes > g.size_bytes() || c.chunk < 4096 || (c.chunk & (c.chunk - 1)) ||
      c.ckpt_off != kMetaStart || c.log_off != c.ckpt_off + 2 * c.ckpt_bytes ||
      c.data_off < c.log_off + c.log_bytes || c.data_off % c.chunk ||
      c.nchunks != (c.device_bytes - c.data_off) / c.chunk || c.active > 1 ||
      c.ckpt_len > c.ckpt_bytes || c.ckpt_bytes % kSbBytes || c.log_bytes % kSbBytes)
    return fail("thin pool: superblock fields are inconsistent");
  s.bs = c.bs;
  s.chunk = c.chunk;
  s.device_bytes = c.device_bytes;
  s.ckpt_off = c.ckpt_off;
  s.ckpt_bytes = c.ckpt_bytes;
  s.log_off = c.log_off;
  s.log_bytes = c.log_bytes;
  s.data_off = c.data_off;
  s.nchunks = c.nchunks;
  s.gen = c.gen;
  s.active = c.active;
  s.seq = c.log_seq;
  // Checkpoint.
  std::vector<std::uint8_t> ck(round_up(c.ckpt_len, s.bs));
  if (auto e = dev_read(*dev_, s.bs, s.ckpt_off + s.active * s.ckpt_bytes, ck); e != Errc::kOk)
    return fail(e, "thin pool: cannot read the checkpoint");
  if (crc32c(std::span<const std::uint8_t>(ck.data(), c.ckpt_len)) != c.ckpt_crc)
    return fail("thin pool: checkpoint checksum mismatch");
  if (auto r = s.deserialize(ck.data(), c.ckpt_len); !r) return r;
  s.rebuild_refs();
  // Log replay: consecutive entries with the expected sequence numbers and valid checksums.
  std::vector<std::uint8_t> log(s.log_bytes);
  if (auto e = dev_read(*dev_, s.bs, s.log_off, log); e != Errc::kOk)
    return fail(e, "thin pool: cannot read the metadata log");
  std::uint64_t pos = 0;
  while (pos + kLogHeader <= s.log_bytes) {
    const std::uint8_t* h = log.data() + pos;
    if (std::memcmp(h, kLogMagic, 8) != 0 || load_be64(h + 8) != s.seq) break;
    const std::uint32_t len = load_be32(h + 16);
    if (len > s.log_bytes - pos - kLogHeader) break;
    std::vector<std::uint8_t> tmp(h, h + kLogHeader + len);
    store_be32(&tmp[20], 0);
    if (crc32c(tmp) != load_be32(h + 20)) break;
    // Apply the records.
    Reader r{h + kLogHeader, len};
    while (r.i < len && !r.bad) {
      const std::uint8_t t = r.u8();
      if (t == kRecMap) {
        const std::uint32_t id = r.u32();
        const std::uint64_t vc = r.u64();
        const std::uint64_t e = r.u64();
        auto it = s.vols.find(id);
        if (r.bad || it == s.vols.end() || vc >= s.vchunks(it->second) || e > s.nchunks)
          return fail("thin pool: log entry " + std::to_string(s.seq) + ": bad map record");
        s.apply_map(it->second, vc, e);
      } else if (t == kRecCreate) {
        const std::uint32_t id = r.u32();
        const auto kind = static_cast<ThinKind>(r.u8());
        const std::uint64_t blocks = r.u64();
        std::string name = r.str();
        if (r.bad || s.vols.count(id) || id == 0 || blocks == 0 ||
            blocks > (std::uint64_t{1} << 48) || kind != ThinKind::kDisk)
          return fail("thin pool: log entry " + std::to_string(s.seq) + ": bad create record");
        s.apply_create(id, kind, std::move(name), blocks);
      } else if (t == kRecDerive) {
        const std::uint32_t id = r.u32();
        const std::uint32_t src = r.u32();
        const auto kind = static_cast<ThinKind>(r.u8());
        std::string name = r.str();
        if (r.bad || s.vols.count(id) || id == 0 || !s.vols.count(src) ||
            (kind != ThinKind::kSnapshot && kind != ThinKind::kClone))
          return fail("thin pool: log entry " + std::to_string(s.seq) + ": bad derive record");
        s.apply_derive(id, src, kind, std::move(name));
      } else if (t == kRecDelete) {
        const std::uint32_t id = r.u32();
        if (r.bad || !s.vols.count(id))
          return fail("thin pool: log entry " + std::to_string(s.seq) + ": bad delete record");
        s.apply_delete(id);
      } else if (t == kRecRollback) {
        const std::uint32_t dst = r.u32();
        const std::uint32_t src = r.u32();
        if (r.bad || !s.vols.count(dst) || !s.vols.count(src))
          return fail("thin pool: log entry " + std::to_string(s.seq) + ": bad rollback record");
        s.apply_rollback(dst, src);
      } else {
        return fail("thin pool: log entry " + std::to_string(s.seq) + ": unknown record type");
      }
    }
    if (r.bad) return fail("thin pool: log entry " + std::to_string(s.seq) + ": truncated record");
    ++s.seq;
    pos += round_up(kLogHeader + len, s.bs);
  }
  s.log_tail = pos;
  s.rebuild_refs();  // what was replayed is durable: free list from the final maps
  s.records.b.clear();
  s.nrecords = 0;
  return {};
}

// ------------------------------------------------------------------ commit ----

Errc ThinPool::checkpoint_locked() {
  State& s = *s_;
  std::vector<std::uint8_t> img = s.serialize();
  const std::uint64_t len = img.size();
  if (round_up(len, s.bs) > s.ckpt_bytes) return Errc::kNoSpace;
  const std::uint32_t crc = crc32c(img);
  img.resize(round_up(len, s.bs), 0);
  const std::uint32_t area = 1 - s.active;
  if (auto e = dev_write(*dev_, s.bs, s.ckpt_off + area * s.ckpt_bytes, img); e != Errc::kOk)
    return e;
  if (auto e = dev_flush(*dev_); e != Errc::kOk) return e;
  Superblock sb;
  sb.bs = s.bs;
  sb.chunk = s.chunk;
  sb.device_bytes = s.device_bytes;
  sb.ckpt_off = s.ckpt_off;
  sb.ckpt_bytes = s.ckpt_bytes;
  sb.log_off = s.log_off;
  sb.log_bytes = s.log_bytes;
  sb.data_off = s.data_off;
  sb.nchunks = s.nchunks;
  sb.gen = s.gen + 1;
  sb.active = area;
  sb.ckpt_len = len;
  sb.ckpt_crc = crc;
  sb.log_seq = s.seq;
  auto b = encode_sb(sb);
  if (auto e = dev_write(*dev_, s.bs, (sb.gen % 2) * kSbBytes, b); e != Errc::kOk) return e;
  if (auto e = dev_flush(*dev_); e != Errc::kOk) return e;
  s.gen = sb.gen;
  s.active = area;
  s.log_tail = 0;
  ++s.checkpoints;
  return Errc::kOk;
}

Errc ThinPool::commit_locked() {
  State& s = *s_;
  if (s.failed) return Errc::kIoError;
  // (1) data durable before the map that points at it.
  if (auto e = dev_flush(*dev_); e != Errc::kOk) return e;
  if (s.nrecords == 0) {
    s.committed();
    return Errc::kOk;
  }
  const std::uint64_t len = s.records.b.size();
  const std::uint64_t size = round_up(kLogHeader + len, s.bs);
  Errc e = Errc::kOk;
  if (s.log_tail + size > s.log_bytes) {
    e = checkpoint_locked();
  } else {
    std::vector<std::uint8_t> buf(size, 0);
    std::memcpy(buf.data(), kLogMagic, 8);
    store_be64(&buf[8], s.seq);
    store_be32(&buf[16], static_cast<std::uint32_t>(len));
    std::memcpy(buf.data() + kLogHeader, s.records.b.data(), len);
    store_be32(&buf[20], crc32c(std::span<const std::uint8_t>(buf.data(), kLogHeader + len)));
    e = dev_write(*dev_, s.bs, s.log_off + s.log_tail, buf);
    if (e == Errc::kOk) e = dev_flush(*dev_);
    if (e == Errc::kOk) {
      s.log_tail += size;
      ++s.seq;
    }
  }
  if (e != Errc::kOk) {
    // The records stay pending; a later commit retries. (A torn entry is ignored by replay.)
    return e;
  }
  ++s.commits;
  s.committed();
  return Errc::kOk;
}

Errc ThinPool::commit() {
  std::lock_guard lk(mu_);
  return commit_locked();
}

Result<void, Error> ThinPool::admin_commit() {
  const Errc e = commit_locked();
  if (e == Errc::kOk) return {};
  // The in-memory state is ahead of the disk; stop accepting changes so nothing diverges further.
  s_->failed = true;
  return fail(e, e == Errc::kNoSpace ? "thin pool: metadata area full"
                                     : "thin pool: metadata commit failed");
}

// ------------------------------------------------------------------ admin ----

Result<void, Error> ThinPool::create_disk(std::string_view name, std::uint64_t size_bytes) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  if (s.failed) return fail(Errc::kIoError, "thin pool: failed earlier; reopen it");
  if (!valid_volume_name(name)) return fail("bad volume name '" + std::string(name) + "'");
  if (s.find(name)) return fail("volume '" + std::string(name) + "' already exists");
  if (size_bytes == 0 || size_bytes % s.bs || size_bytes / s.bs > (std::uint64_t{1} << 48))
    return fail("size " + std::to_string(size_bytes) + " must be a non-zero multiple of " +
                std::to_string(s.bs));
  const std::uint32_t id = s.next_id;
  s.records.u8(kRecCreate);
  s.records.u32(id);
  s.records.u8(static_cast<std::uint8_t>(ThinKind::kDisk));
  s.records.u64(size_bytes / s.bs);
  s.records.str(name);
  ++s.nrecords;
  s.apply_create(id, ThinKind::kDisk, std::string(name), size_bytes / s.bs);
  return admin_commit();
}

Result<void, Error> ThinPool::snapshot(std::string_view volume, std::string_view snap) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  if (s.failed) return fail(Errc::kIoError, "thin pool: failed earlier; reopen it");
  const Volume* v = s.find(volume);
  if (!v) return fail(Errc::kUnknownDevice, "no volume '" + std::string(volume) + "'");
  if (v->kind == ThinKind::kSnapshot)
    return fail("'" + std::string(volume) + "' is a snapshot; clone it first");
  if (!valid_volume_name(snap)) return fail("bad snapshot name '" + std::string(snap) + "'");
  if (s.find(snap)) return fail("volume '" + std::string(snap) + "' already exists");
  const std::uint32_t id = s.next_id;
  const std::uint32_t src = v->id;
  s.records.u8(kRecDerive);
  s.records.u32(id);
  s.records.u32(src);
  s.records.u8(static_cast<std::uint8_t>(ThinKind::kSnapshot));
  s.records.str(snap);
  ++s.nrecords;
  s.apply_derive(id, src, ThinKind::kSnapshot, std::string(snap));
  return admin_commit();
}

Result<void, Error> ThinPool::clone(std::string_view snap, std::string_view name) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  if (s.failed) return fail(Errc::kIoError, "thin pool: failed earlier; reopen it");
  const Volume* v = s.find(snap);
  if (!v) return fail(Errc::kUnknownDevice, "no snapshot '" + std::string(snap) + "'");
  if (v->kind != ThinKind::kSnapshot)
    return fail("'" + std::string(snap) + "' is a " + std::string(to_string(v->kind)) +
                ", not a snapshot");
  if (!valid_volume_name(name)) return fail("bad volume name '" + std::string(name) + "'");
  if (s.find(name)) return fail("volume '" + std::string(name) + "' already exists");
  const std::uint32_t id = s.next_id;
  const std::uint32_t src = v->id;
  s.records.u8(kRecDerive);
  s.records.u32(id);
  s.records.u32(src);
  s.records.u8(static_cast<std::uint8_t>(ThinKind::kClone));
  s.records.str(name);
  ++s.nrecords;
  s.apply_derive(id, src, ThinKind::kClone, std::string(name));
  return admin_commit();
}

Result<void, Error> ThinPool::rollback(std::string_view volume, std::string_view snap) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  if (s.failed) return fail(Errc::kIoError, "thin pool: failed earlier; reopen it");
  const Volume* v = s.find(volume);
  if (!v) return fail(Errc::kUnknownDevice, "no volume '" + std::string(volume) + "'");
  if (v->kind == ThinKind::kSnapshot)
    return fail("'" + std::string(volume) + "' is a snapshot (read-only); roll back a disk");
  const Volume* sn = s.find(snap);
  if (!sn) return fail(Errc::kUnknownDevice, "no snapshot '" + std::string(snap) + "'");
  if (sn->kind != ThinKind::kSnapshot) return fail("'" + std::string(snap) + "' is not a snapshot");
  if (sn->blocks != v->blocks)
    return fail("snapshot '" + std::string(snap) + "' has a different size than '" +
                std::string(volume) + "'");
  const std::uint32_t dst = v->id, src = sn->id;
  s.records.u8(kRecRollback);
  s.records.u32(dst);
  s.records.u32(src);
  ++s.nrecords;
  s.apply_rollback(dst, src);
  return admin_commit();
}

Result<void, Error> ThinPool::remove(std::string_view name) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  if (s.failed) return fail(Errc::kIoError, "thin pool: failed earlier; reopen it");
  const Volume* v = s.find(name);
  if (!v) return fail(Errc::kUnknownDevice, "no volume '" + std::string(name) + "'");
  const std::uint32_t id = v->id;
  s.records.u8(kRecDelete);
  s.records.u32(id);
  ++s.nrecords;
  s.apply_delete(id);
  return admin_commit();
}

// ------------------------------------------------------------------ queries ----

namespace {
ThinVolumeInfo make_info(const ThinPool::Volume& v,
                         const std::map<std::uint32_t, ThinPool::Volume>& vols,
                         const std::vector<std::uint32_t>& ref) {
  ThinVolumeInfo i;
  i.name = v.name;
  i.id = v.id;
  i.kind = v.kind;
  if (auto it = vols.find(v.origin); it != vols.end()) i.origin = it->second.name;
  i.blocks = v.blocks;
  i.created_seq = v.created_seq;
  for (const auto& l : v.table) {
    if (!l) continue;
    for (auto e : l->e) {
      if (!e) continue;
      ++i.mapped_chunks;
      if (l.use_count() == 1 && ref[e - 1] == 1) ++i.exclusive_chunks;
    }
  }
  return i;
}
}  // namespace

std::vector<ThinVolumeInfo> ThinPool::list() const {
  std::lock_guard lk(mu_);
  std::vector<ThinVolumeInfo> out;
  for (const auto& [id, v] : s_->vols) out.push_back(make_info(v, s_->vols, s_->ref));
  return out;
}

Result<ThinVolumeInfo, Error> ThinPool::info(std::string_view name) const {
  std::lock_guard lk(mu_);
  const Volume* v = s_->find(name);
  if (!v) return fail(Errc::kUnknownDevice, "no volume '" + std::string(name) + "'");
  return make_info(*v, s_->vols, s_->ref);
}

ThinUsage ThinPool::usage() const {
  std::lock_guard lk(mu_);
  const State& s = *s_;
  ThinUsage u;
  u.block_size = s.bs;
  u.chunk_bytes = s.chunk;
  u.total_chunks = s.nchunks;
  u.free_chunks = s.free_list.size() + s.pending_free.size();
  u.used_chunks = s.nchunks - u.free_chunks;
  u.metadata_bytes = s.ckpt_bytes;
  u.metadata_used = s.serialized_size();
  u.log_bytes = s.log_bytes;
  u.log_used = s.log_tail;
  u.commits = s.commits;
  u.checkpoints = s.checkpoints;
  u.cow_copies = s.cow;
  return u;
}

Result<std::vector<ThinExtent>, Error> ThinPool::diff(std::string_view from,
                                                      std::string_view to) const {
  std::lock_guard lk(mu_);
  const State& s = *s_;
  const Volume* a = s.find(from);
  if (!a) return fail(Errc::kUnknownDevice, "no volume '" + std::string(from) + "'");
  const Volume* b = s.find(to);
  if (!b) return fail(Errc::kUnknownDevice, "no volume '" + std::string(to) + "'");
  const std::uint64_t bpc = s.chunk / s.bs;
  const std::uint64_t blocks = std::max(a->blocks, b->blocks);
  const std::uint64_t nvc = (blocks + bpc - 1) / bpc;
  std::vector<ThinExtent> out;
  auto add = [&](std::uint64_t vc) {
    const std::uint64_t lba = vc * bpc;
    const std::uint64_t n = std::min(bpc, blocks - lba);
    if (!out.empty() && out.back().lba + out.back().blocks == lba) {
      out.back().blocks += n;
    } else {
      out.push_back(ThinExtent{lba, n});
    }
  };
  for (std::uint64_t li = 0; li * kLeafEntries < nvc; ++li) {
    const Leaf* la = li < a->table.size() ? a->table[li].get() : nullptr;
    const Leaf* lb = li < b->table.size() ? b->table[li].get() : nullptr;
    if (la == lb) continue;  // shared leaf: identical, skipped without looking inside
    const std::uint64_t end = std::min<std::uint64_t>(nvc, (li + 1) * kLeafEntries);
    for (std::uint64_t vc = li * kLeafEntries; vc < end; ++vc) {
      const std::uint64_t ea = la && vc < s.vchunks(*a) ? la->e[vc % kLeafEntries] : 0;
      const std::uint64_t eb = lb && vc < s.vchunks(*b) ? lb->e[vc % kLeafEntries] : 0;
      if (ea != eb) add(vc);
    }
  }
  return out;
}

Result<void, Error> ThinPool::check() const {
  std::lock_guard lk(mu_);
  const State& s = *s_;
  std::vector<std::uint32_t> ref(s.nchunks, 0);
  std::unordered_map<const Leaf*, long> uses;
  for (const auto& [id, v] : s.vols) {
    if (v.table.size() != (s.vchunks(v) + kLeafEntries - 1) / kLeafEntries)
      return fail(Errc::kInternal, "volume '" + v.name + "': table size does not match its size");
    for (std::size_t li = 0; li < v.table.size(); ++li) {
      const auto& l = v.table[li];
      if (!l) continue;
      if (uses[l.get()]++ == 0) {
        for (std::size_t k = 0; k < kLeafEntries; ++k) {
          const std::uint64_t e = l->e[k];
          if (!e) continue;
          if (e > s.nchunks)
            return fail(Errc::kInternal, "volume '" + v.name + "': entry past the data area");
          if (li * kLeafEntries + k >= s.vchunks(v))
            return fail(Errc::kInternal, "volume '" + v.name + "': entry past its end");
          ++ref[e - 1];
        }
      }
    }
  }
  for (const auto& [id, v] : s.vols) {
    for (const auto& l : v.table) {
      if (l && l.use_count() != uses[l.get()])
        return fail(Errc::kInternal, "volume '" + v.name + "': leaf sharing count is wrong");
    }
  }
  std::vector<std::uint8_t> listed(s.nchunks, 0);
  for (const auto* lst : {&s.free_list, &s.pending_free}) {
    for (auto p : *lst) {
      if (p >= s.nchunks) return fail(Errc::kInternal, "free list entry past the data area");
      if (listed[p]++)
        return fail(Errc::kInternal, "chunk " + std::to_string(p) + " listed free twice");
    }
  }
  std::uint64_t used = 0;
  for (std::uint64_t p = 0; p < s.nchunks; ++p) {
    if (ref[p] != s.ref[p])
      return fail(Errc::kInternal, "chunk " + std::to_string(p) + ": reference count " +
                                       std::to_string(s.ref[p]) + ", maps say " +
                                       std::to_string(ref[p]));
    if (ref[p] && listed[p])
      return fail(Errc::kInternal,
                  "chunk " + std::to_string(p) + " is mapped and free (doubly owned)");
    if (!ref[p] && !listed[p])
      return fail(Errc::kInternal,
                  "chunk " + std::to_string(p) + " is leaked (unmapped, not free)");
    if (ref[p]) ++used;
  }
  (void)used;
  return {};
}

Result<std::string, Error> check_thin_pool(BackendPtr device) {
  auto p = ThinPool::open(std::move(device));
  if (!p) return make_unexpected(p.error());
  if (auto r = (*p)->check(); !r) return make_unexpected(r.error());
  const ThinUsage u = (*p)->usage();
  const auto vols = (*p)->list();
  return "ok: " + std::to_string(vols.size()) + " volumes, " + std::to_string(u.used_chunks) +
         " of " + std::to_string(u.total_chunks) + " chunks used, no leaked or doubly-owned chunk";
}

std::string ThinPool::describe() const { return "thin-pool:" + dev_->describe(); }

// ------------------------------------------------------------------ data path ----

bool ThinPool::vol_info(std::uint32_t id, Geometry& g, bool& ro) const {
  std::lock_guard lk(mu_);
  auto it = s_->vols.find(id);
  if (it == s_->vols.end()) return false;
  g.block_size = s_->bs;
  g.block_count = it->second.blocks;
  ro = it->second.kind == ThinKind::kSnapshot;
  return true;
}

Errc ThinPool::vol_read(std::uint32_t id, std::uint64_t lba, std::span<std::uint8_t> out) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  auto it = s.vols.find(id);
  if (it == s.vols.end()) return Errc::kUnknownDevice;
  const Volume& v = it->second;
  if (out.size() % s.bs) return Errc::kInvalidArgument;
  if (auto e = backends::check_range(Geometry{s.bs, v.blocks}, lba, out.size() / s.bs);
      e != Errc::kOk)
    return e;
  std::uint64_t off = lba * s.bs;
  std::size_t done = 0;
  while (done < out.size()) {
    const std::uint64_t vc = off / s.chunk;
    const std::uint64_t in = off % s.chunk;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(s.chunk - in, out.size() - done));
    const std::uint64_t e = s.lookup(v, vc);
    if (!e) {
      std::memset(out.data() + done, 0, n);
    } else if (auto r =
                   dev_read(*dev_, s.bs, s.data_off + (e - 1) * s.chunk + in, out.subspan(done, n));
               r != Errc::kOk) {
      return r;
    }
    done += n;
    off += n;
  }
  return Errc::kOk;
}

Errc ThinPool::vol_write(std::uint32_t id, std::uint64_t lba, std::span<const std::uint8_t> in,
                         bool fua) {
  std::lock_guard lk(mu_);
  State& s = *s_;
  auto it = s.vols.find(id);
  if (it == s.vols.end()) return Errc::kUnknownDevice;
  Volume& v = it->second;
  if (v.kind == ThinKind::kSnapshot) return Errc::kWriteProtected;
  if (s.failed) return Errc::kIoError;
  if (in.size() % s.bs) return Errc::kInvalidArgument;
  if (auto e = backends::check_range(Geometry{s.bs, v.blocks}, lba, in.size() / s.bs);
      e != Errc::kOk)
    return e;
  if (in.empty()) return Errc::kOk;
  const std::uint64_t first = lba * s.bs / s.chunk;
  const std::uint64_t last = (lba * s.bs + in.size() - 1) / s.chunk;
  // Space check first: a write that cannot get all its chunks changes nothing.
  std::uint64_t need = 0;
  for (std::uint64_t vc = first; vc <= last; ++vc)
    if (!s.exclusive(v, vc)) ++need;
  if (need > s.free_list.size() && need <= s.free_list.size() + s.pending_free.size()) {
    // Chunks freed since the last commit become reusable once the map that frees them is durable.
    if (auto e = commit_locked(); e != Errc::kOk) return e;
  }
  if (need > s.free_list.size()) return Errc::kNoSpace;
  // A FUA write is durable only with the map that leads to it: if any map change is still
  // uncommitted (possibly the one that allocated this very chunk), the write ends with a commit.
  const bool commit_after = fua && s.nrecords > 0;
  bool remapped = false;
  std::vector<std::uint8_t> buf;
  std::uint64_t off = lba * s.bs;
  std::size_t done = 0;
  while (done < in.size()) {
    const std::uint64_t vc = off / s.chunk;
    const std::uint64_t within = off % s.chunk;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(s.chunk - within, in.size() - done));
    if (s.exclusive(v, vc)) {
      const std::uint64_t p = s.lookup(v, vc) - 1;
      if (auto r = dev_write(*dev_, s.bs, s.data_off + p * s.chunk + within, in.subspan(done, n),
                             fua && !remapped && !commit_after);
          r != Errc::kOk)
        return r;
    } else {
      const std::uint64_t old = s.lookup(v, vc);
      const std::uint64_t q = s.free_list.back();
      std::span<const std::uint8_t> data;
      if (n == s.chunk) {
        data = in.subspan(done, n);
      } else {
        if (old) {
          buf.resize(s.chunk);  // fully overwritten by the read
          if (auto r = dev_read(*dev_, s.bs, s.data_off + (old - 1) * s.chunk, buf); r != Errc::kOk)
            return r;
          ++s.cow;
        } else {
          buf.assign(s.chunk, 0);
        }
        std::memcpy(buf.data() + within, in.data() + done, n);
        data = buf;
      }
      if (auto r = dev_write(*dev_, s.bs, s.data_off + q * s.chunk, data); r != Errc::kOk) return r;
      s.free_list.pop_back();
      s.records.u8(kRecMap);
      s.records.u32(v.id);
      s.records.u64(vc);
      s.records.u64(q + 1);
      ++s.nrecords;
      s.apply_map(v, vc, q + 1);
      remapped = true;
    }
    done += n;
    off += n;
  }
  if (fua && (remapped || commit_after)) return commit_locked();
  return Errc::kOk;
}

Errc ThinPool::vol_discard(std::uint32_t id, std::uint64_t lba, std::uint64_t blocks, bool zero) {
  std::unique_lock lk(mu_);
  State& s = *s_;
  auto it = s.vols.find(id);
  if (it == s.vols.end()) return Errc::kUnknownDevice;
  Volume& v = it->second;
  if (v.kind == ThinKind::kSnapshot) return Errc::kWriteProtected;
  if (s.failed) return Errc::kIoError;
  if (auto e = backends::check_range(Geometry{s.bs, v.blocks}, lba, blocks); e != Errc::kOk)
    return e;
  const std::uint64_t bpc = s.chunk / s.bs;
  const std::uint64_t end = lba + blocks;
  std::uint64_t cur = lba;
  // Partial chunks at either end: zeroed through the write path (when asked, or mapped).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> partial;
  while (cur < end) {
    const std::uint64_t vc = cur / bpc;
    const std::uint64_t cend = std::min(end, (vc + 1) * bpc);
    const bool whole = cur == vc * bpc && (cend == (vc + 1) * bpc || cend == v.blocks);
    if (whole) {
      if (s.lookup(v, vc)) {
        s.records.u8(kRecMap);
        s.records.u32(v.id);
        s.records.u64(vc);
        s.records.u64(0);
        ++s.nrecords;
        s.apply_map(v, vc, 0);
      }
    } else if (s.lookup(v, vc)) {
      partial.emplace_back(cur, cend - cur);
    }
    cur = cend;
  }
  (void)zero;  // unmapped and partial-zeroed ranges read back as zeroes either way
  lk.unlock();
  for (auto [l, n] : partial) {
    std::vector<std::uint8_t> z(n * s.bs, 0);
    if (auto e = vol_write(id, l, z, false); e != Errc::kOk) return e;
  }
  return Errc::kOk;
}

Errc ThinPool::vol_flush(std::uint32_t id) {
  std::lock_guard lk(mu_);
  if (!s_->vols.count(id)) return Errc::kUnknownDevice;
  return commit_locked();
}

// ------------------------------------------------------------------ volume Backend ----

namespace {

class ThinVolume final : public backends::Backend {
 public:
  ThinVolume(std::shared_ptr<ThinPool> pool, std::uint32_t id, std::string name, Geometry g,
             bool ro)
      : pool_(std::move(pool)), id_(id), name_(std::move(name)), g_(g), ro_(ro) {}

  Geometry geometry() const override {
    Geometry g;
    bool ro;
    if (pool_->vol_info(id_, g, ro)) return g;
    return g_;
  }
  Capabilities capabilities() const override {
    Capabilities c;
    c.read_only = ro_;
    c.fua = true;
    c.flush = true;
    c.trim = !ro_;
    c.write_zeroes = !ro_;
    c.rotational = pool_->device()->capabilities().rotational;
    return c;
  }
  std::string describe() const override {
    return "thin:" + name_ + "@" + pool_->device()->describe();
  }

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override {
    done(pool_->vol_read(id_, lba, out));
  }
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override {
    done(pool_->vol_write(id_, lba, in, fua));
  }
  void flush(Completion done) override { done(pool_->vol_flush(id_)); }
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override {
    done(pool_->vol_discard(id_, lba, blocks, false));
  }
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool /*may_trim*/,
                    Completion done) override {
    done(pool_->vol_discard(id_, lba, blocks, true));
  }

 private:
  std::shared_ptr<ThinPool> pool_;
  std::uint32_t id_;
  std::string name_;
  Geometry g_;
  bool ro_;
};

}  // namespace

Result<BackendPtr, Error> ThinPool::volume(std::string_view name) {
  std::uint32_t id = 0;
  {
    std::lock_guard lk(mu_);
    const Volume* v = s_->find(name);
    if (!v) return fail(Errc::kUnknownDevice, "no volume '" + std::string(name) + "'");
    id = v->id;
  }
  Geometry g;
  bool ro = false;
  if (!vol_info(id, g, ro)) return fail(Errc::kUnknownDevice, "volume vanished");
  return BackendPtr(std::make_shared<ThinVolume>(shared_from_this(), id, std::string(name), g, ro));
}

}  // namespace ipsan::virt
