// MirrorDisk: synchronous mirror with a persistent write-intent bitmap; see mirror.h and
// docs/MIRROR.md.
#include "ipsan/virt/mirror.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <future>

#include "ipsan/base/bytes.h"
#include "ipsan/base/crc32c.h"
#include "ipsan/base/log.h"

namespace ipsan::virt {

using backends::BackendPtr;
using backends::Completion;
using backends::Geometry;

namespace {

constexpr char kMagic[8] = {'I', 'P', 'S', 'A', 'N', 'M', 'I', 'R'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint64_t kHeaderBytes = 4096;
constexpr std::uint64_t kDataStart = 2 * kHeaderBytes;  // two header slots
constexpr std::size_t kLegEntry = 96;
constexpr std::size_t kLegTable = 64;
constexpr std::uint64_t kNone = UINT64_MAX;

// Runs an asynchronous back-end call and waits for its completion (bounded: a back end that never
// answers is reported as a timeout, never a hang).
Errc wait_for(const std::function<void(Completion)>& op) {
  auto p = std::make_shared<std::promise<Errc>>();
  auto f = p->get_future();
  op([p](Errc e) { p->set_value(e); });
  if (f.wait_for(std::chrono::seconds(120)) != std::future_status::ready) return Errc::kTimeout;
  return f.get();
}

bool hard_error(Errc e) {
  return e != Errc::kOk && e != Errc::kNotSupported && e != Errc::kInvalidArgument &&
         e != Errc::kLbaOutOfRange;
}

}  // namespace

std::string_view to_string(LegState s) noexcept {
  switch (s) {
    case LegState::kInSync: return "in-sync";
    case LegState::kSyncing: return "syncing";
    case LegState::kFailed: return "failed";
  }
  return "?";
}

struct MirrorDisk::Req {
  OpKind op = OpKind::kWrite;
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
  std::uint8_t* data = nullptr;  // read buffer, or write data (const in fact)
  bool flag = false;             // fua / may_trim
  Completion done;
  std::uint64_t r0 = 0, r1 = 0;  // regions [r0, r1]
  // Fan-out state (mu_).
  std::uint32_t pending = 0;
  std::uint64_t gens[kMaxLegs] = {};
  Errc result[kMaxLegs] = {};
  bool issued[kMaxLegs] = {};
  bool was_in_sync[kMaxLegs] = {};
  BackendPtr target[kMaxLegs];
  // Reads: legs already tried.
  std::uint32_t tried = 0;
  Errc last = Errc::kOk;
};

MirrorDisk::MirrorDisk() = default;
MirrorDisk::~MirrorDisk() = default;

std::uint64_t MirrorDisk::bitmap_bytes_needed(std::uint64_t blocks, std::uint32_t block_size,
                                              std::uint64_t region_bytes) {
  const std::uint64_t region_blocks = std::max<std::uint64_t>(1, region_bytes / block_size);
  const std::uint64_t regions = (blocks + region_blocks - 1) / region_blocks;
  const std::uint64_t area = ((regions + 7) / 8 + kPageBytes - 1) / kPageBytes * kPageBytes;
  return kDataStart + kMaxLegs * std::max<std::uint64_t>(area, kPageBytes);
}

Result<std::shared_ptr<MirrorDisk>, Error> MirrorDisk::open(std::string name,
                                                            std::vector<Member> legs,
                                                            BackendPtr bitmap,
                                                            const MirrorOptions& options) {
  const std::string who = "mirror '" + name + "'";
  if (legs.empty()) return fail(who + ": no legs");
  if (legs.size() > kMaxLegs)
    return fail(who + ": " + std::to_string(legs.size()) + " legs (at most " +
                std::to_string(kMaxLegs) + ")");
  if (!bitmap) return fail(who + ": no bitmap device");
  for (std::size_t i = 0; i < legs.size(); ++i) {
    if (!legs[i].backend) return fail(who + ": leg '" + legs[i].name + "' is not open");
    for (std::size_t j = 0; j < i; ++j)
      if (legs[j].name == legs[i].name || legs[j].backend == legs[i].backend)
        return fail(who + ": leg '" + legs[i].name + "' is named twice");
  }
  const Geometry g0 = legs[0].backend->geometry();
  Geometry g{g0.block_size, options.blocks ? options.blocks : g0.block_count};
  if (g.block_count == 0) return fail(who + ": size 0");
  for (const auto& l : legs) {
    const Geometry lg = l.backend->geometry();
    if (lg.block_size != g.block_size)
      return fail(who + ": leg '" + l.name + "' has block size " + std::to_string(lg.block_size) +
                  ", the mirror " + std::to_string(g.block_size));
    if (lg.block_count < g.block_count)
      return fail(who + ": leg '" + l.name + "' has " + std::to_string(lg.block_count) +
                  " blocks, fewer than the mirror's " + std::to_string(g.block_count));
    if (l.backend->capabilities().read_only)
      return fail(who + ": leg '" + l.name + "' is read-only");
  }
  if (options.region_bytes == 0 || options.region_bytes % g.block_size != 0)
    return fail(who + ": region " + std::to_string(options.region_bytes) +
                " bytes is not a multiple of the block size " + std::to_string(g.block_size));
  const Geometry bg = bitmap->geometry();
  if (bg.block_size > kPageBytes || kPageBytes % bg.block_size != 0)
    return fail(who + ": bitmap device block size " + std::to_string(bg.block_size) +
                " does not divide 4096");
  const std::uint64_t need = bitmap_bytes_needed(g.block_count, g.block_size, options.region_bytes);
  if (bg.size_bytes() < need)
    return fail(who + ": bitmap device has " + std::to_string(bg.size_bytes()) +
                " bytes; a mirror of this size and region needs at least " + std::to_string(need));
  if (bitmap->capabilities().read_only) return fail(who + ": bitmap device is read-only");

  auto m = std::make_shared<MirrorDisk>();
  m->name_ = std::move(name);
  m->geometry_ = g;
  m->bitmap_ = std::move(bitmap);
  m->region_bytes_ = options.region_bytes;
  m->region_blocks_ = options.region_bytes / g.block_size;
  m->regions_ = (g.block_count + m->region_blocks_ - 1) / m->region_blocks_;
  m->words_ = (m->regions_ + 63) / 64;
  m->area_bytes_ =
      std::max<std::uint64_t>(kPageBytes, ((m->regions_ + 7) / 8 + kPageBytes - 1) / kPageBytes *
                                              kPageBytes);
  m->inflight_.assign(m->regions_, 0);
  m->epoch_.assign(m->regions_, 0);
  m->touched_flag_.assign(m->regions_, false);
  m->dirty_flag_.assign(kMaxLegs, std::vector<bool>(m->area_bytes_ / kPageBytes, false));
  if (auto r = m->load(std::move(legs)); !r) return fail(r.error().code, who + ": " + r.error().message);
  return m;
}

std::uint64_t MirrorDisk::page_offset(std::uint32_t leg, std::uint64_t page) const {
  return kDataStart + leg * area_bytes_ + page * kPageBytes;
}

Result<void, Error> MirrorDisk::load(std::vector<Member> given) {
  // Both header slots; the valid one with the higher sequence wins.
  std::vector<std::uint8_t> hdr(2 * kHeaderBytes);
  if (Errc e = wait_for([&](Completion c) {
        bitmap_->read(0, hdr, std::move(c));
      });
      e != Errc::kOk)
    return fail(e, "cannot read the bitmap device: " + std::string(to_string(e)));
  const std::uint8_t* best = nullptr;
  bool blank = true;
  for (int s = 0; s < 2; ++s) {
    const std::uint8_t* h = hdr.data() + s * kHeaderBytes;
    if (std::any_of(h, h + kHeaderBytes, [](std::uint8_t b) { return b != 0; })) blank = false;
    if (std::memcmp(h, kMagic, 8) != 0) continue;
    if (load_be32(h + kHeaderBytes - 4) != crc32c({h, kHeaderBytes - 4})) continue;
    if (!best || load_be64(h + 32) > load_be64(best + 32)) best = h;
  }
  if (!best && !blank)
    return fail(Errc::kBadMessage,
                "the bitmap device holds something else (no valid mirror header); refusing to "
                "overwrite it");
  std::vector<std::string> known(kMaxLegs);
  std::vector<LegState> known_state(kMaxLegs, LegState::kFailed);
  std::vector<bool> known_present(kMaxLegs, false);
  if (best) {
    if (load_be32(best + 8) != kVersion)
      return fail(Errc::kBadMessage, "bitmap version " + std::to_string(load_be32(best + 8)));
    const std::uint32_t bs = load_be32(best + 12);
    const std::uint64_t blocks = load_be64(best + 16), region = load_be64(best + 24);
    if (bs != geometry_.block_size || blocks != geometry_.block_count || region != region_bytes_)
      return fail(Errc::kInvalidArgument,
                  "the bitmap was written for " + std::to_string(blocks) + " blocks of " +
                      std::to_string(bs) + " bytes, region " + std::to_string(region) +
                      "; the layout says " + std::to_string(geometry_.block_count) + " blocks of " +
                      std::to_string(geometry_.block_size) + ", region " +
                      std::to_string(region_bytes_));
    header_seq_ = load_be64(best + 32);
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      const std::uint8_t* e = best + kLegTable + i * kLegEntry;
      if (e[0] != 1) continue;
      const std::size_t len = std::min<std::size_t>(e[2], 64);
      known[i].assign(reinterpret_cast<const char*>(e + 8), len);
      known_present[i] = true;
      const std::uint8_t st = e[1];
      known_state[i] = st == 1 ? LegState::kInSync : st == 2 ? LegState::kSyncing : LegState::kFailed;
    }
  }
  // Slots: known legs keep theirs, new ones take free slots.
  std::vector<bool> fresh(kMaxLegs, false);
  std::vector<int> slots(given.size(), -1);
  for (std::size_t g = 0; g < given.size(); ++g)
    for (std::uint32_t i = 0; i < kMaxLegs; ++i)
      if (known_present[i] && known[i] == given[g].name) slots[g] = static_cast<int>(i);
  std::vector<bool> taken(kMaxLegs, false);
  for (int s : slots)
    if (s >= 0) taken[s] = true;
  for (int pass = 0; pass < 2; ++pass)  // free slots first, then those of dropped legs
    for (std::size_t g = 0; g < given.size(); ++g)
      for (std::uint32_t i = 0; i < kMaxLegs && slots[g] < 0; ++i)
        if (!taken[i] && (pass == 1 || !known_present[i])) {
          slots[g] = static_cast<int>(i);
          taken[i] = true;
          fresh[i] = true;
        }
  for (std::size_t g = 0; g < given.size(); ++g) {
    const Member& l = given[g];
    const int slot = slots[g];
    Leg& L = legs_[slot];
    L.present = true;
    L.name = l.name;
    L.backend = l.backend;
    L.bits.assign(words_, 0);
    L.disk_bits.assign(words_, 0);
    L.stale.assign(words_, 0);
  }
  // Read the bitmaps of the known legs.
  std::vector<std::uint8_t> area(area_bytes_);
  std::vector<std::uint64_t> in_sync_union(words_, 0);
  int primary = -1;
  for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
    Leg& L = legs_[i];
    if (!L.present || fresh[i]) continue;
    if (Errc e = wait_for([&](Completion c) {
          bitmap_->read(page_offset(i, 0) / bitmap_->geometry().block_size, area, std::move(c));
        });
        e != Errc::kOk)
      return fail(e, "cannot read the bitmap of leg '" + L.name + "'");
    for (std::uint64_t w = 0; w < words_; ++w) {
      std::uint64_t v = 0;
      for (int b = 0; b < 8; ++b) v |= std::uint64_t{area[w * 8 + b]} << (8 * b);
      if (w == words_ - 1 && regions_ % 64) v &= (std::uint64_t{1} << (regions_ % 64)) - 1;
      L.bits[w] = v;
    }
    L.state = known_state[i];
    if (L.state == LegState::kInSync) {
      if (primary < 0) primary = static_cast<int>(i);
      for (std::uint64_t w = 0; w < words_; ++w) in_sync_union[w] |= L.bits[w];
    }
  }
  if (best && primary < 0)
    return fail(Errc::kNotReady,
                "no leg named in the layout is in sync according to the bitmap (legs: " + [&] {
                  std::string s;
                  for (std::uint32_t i = 0; i < kMaxLegs; ++i)
                    if (known_present[i])
                      s += (s.empty() ? "" : ", ") + known[i] + "=" +
                           std::string(to_string(known_state[i]));
                  return s;
                }() + "); refusing to guess which leg holds the data");
  if (!best) {
    // A new mirror: the first leg is the truth, the others get a full initial sync.
    for (std::uint32_t i = 0; i < kMaxLegs; ++i)
      if (legs_[i].present && primary < 0) primary = static_cast<int>(i);
    fresh[primary] = false;
    legs_[primary].state = LegState::kInSync;
  }
  // Crash recovery: every region marked in any in-sync leg may differ between legs; the primary
  // is the truth there. Syncing and failed legs keep what they had.
  for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
    Leg& L = legs_[i];
    if (!L.present) continue;
    if (static_cast<int>(i) == primary) {
      std::fill(L.stale.begin(), L.stale.end(), 0);
    } else if (fresh[i]) {
      for (std::uint64_t r = 0; r < regions_; ++r) L.stale[r / 64] |= std::uint64_t{1} << (r % 64);
      L.state = LegState::kSyncing;
    } else {
      for (std::uint64_t w = 0; w < words_; ++w) L.stale[w] = L.bits[w] | in_sync_union[w];
      if (L.state == LegState::kFailed || std::any_of(L.stale.begin(), L.stale.end(),
                                                      [](std::uint64_t v) { return v != 0; }))
        L.state = LegState::kSyncing;
    }
    L.bits = L.stale;
    L.stale_count = 0;
    for (auto v : L.stale) L.stale_count += static_cast<std::uint64_t>(std::popcount(v));
  }
  // Persist the recovered state: bitmaps first, then the header naming the legs.
  for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
    if (!legs_[i].present) continue;
    if (Errc e = write_all_pages_sync(i); e != Errc::kOk)
      return fail(e, "cannot write the bitmap: " + std::string(to_string(e)));
  }
  if (Errc e = write_header_sync(); e != Errc::kOk)
    return fail(e, "cannot write the bitmap header: " + std::string(to_string(e)));
  std::uint64_t recovered = 0;
  for (const auto& L : legs_)
    if (L.present) recovered += L.stale_count;
  IPSAN_LOG(LogLevel::kInfo, "mirror", name_, ": opened, ", regions_, " regions of ",
            region_bytes_, " bytes, ", recovered, " stale leg-regions to resync");
  return {};
}

Errc MirrorDisk::write_all_pages_sync(std::uint32_t leg) {
  std::vector<std::uint8_t> area(area_bytes_, 0);
  {
    std::lock_guard lk(mu_);
    Leg& L = legs_[leg];
    for (std::uint64_t w = 0; w < words_; ++w)
      for (int b = 0; b < 8; ++b) area[w * 8 + b] = static_cast<std::uint8_t>(L.bits[w] >> (8 * b));
  }
  Errc e = wait_for([&](Completion c) {
    bitmap_->write(page_offset(leg, 0) / bitmap_->geometry().block_size, area, true, std::move(c));
  });
  if (e == Errc::kOk) {
    std::lock_guard lk(mu_);
    Leg& L = legs_[leg];
    // Only what was written: bits set since then are still dirty pages.
    for (std::uint64_t w = 0; w < words_; ++w) {
      std::uint64_t v = 0;
      for (int b = 0; b < 8; ++b) v |= std::uint64_t{area[w * 8 + b]} << (8 * b);
      L.disk_bits[w] = v;
    }
    stats_.bitmap_writes += area_bytes_ / kPageBytes;
  }
  return e;
}

Errc MirrorDisk::write_header_sync() {
  std::lock_guard hl(header_mu_);
  std::vector<std::uint8_t> h(kHeaderBytes, 0);
  std::uint64_t seq;
  {
    std::lock_guard lk(mu_);
    seq = ++header_seq_;
    std::memcpy(h.data(), kMagic, 8);
    store_be32(h.data() + 8, kVersion);
    store_be32(h.data() + 12, geometry_.block_size);
    store_be64(h.data() + 16, geometry_.block_count);
    store_be64(h.data() + 24, region_bytes_);
    store_be64(h.data() + 32, seq);
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      const Leg& L = legs_[i];
      if (!L.present) continue;
      std::uint8_t* e = h.data() + kLegTable + i * kLegEntry;
      e[0] = 1;
      e[1] = static_cast<std::uint8_t>(L.state);
      e[2] = static_cast<std::uint8_t>(std::min<std::size_t>(L.name.size(), 64));
      std::memcpy(e + 8, L.name.data(), e[2]);
    }
  }
  store_be32(h.data() + kHeaderBytes - 4, crc32c({h.data(), kHeaderBytes - 4}));
  const std::uint64_t slot = seq % 2;
  return wait_for([&](Completion c) {
    bitmap_->write(slot * kHeaderBytes / bitmap_->geometry().block_size, h, true, std::move(c));
  });
}

// ------------------------------------------------------------------------------ bits ----

void MirrorDisk::mark_dirty(std::uint32_t leg, std::uint64_t r) {
  const std::uint64_t page = r / (kPageBytes * 8);
  if (!dirty_flag_[leg][page]) {
    dirty_flag_[leg][page] = true;
    dirty_pages_.emplace_back(leg, page);
  }
}

void MirrorDisk::set_bit(std::uint32_t leg, std::uint64_t r) {
  auto& w = legs_[leg].bits[r / 64];
  const std::uint64_t m = std::uint64_t{1} << (r % 64);
  if (!(w & m)) {
    w |= m;
    mark_dirty(leg, r);
  }
}

void MirrorDisk::clear_bit(std::uint32_t leg, std::uint64_t r) {
  auto& w = legs_[leg].bits[r / 64];
  const std::uint64_t m = std::uint64_t{1} << (r % 64);
  if (w & m) {
    w &= ~m;
    mark_dirty(leg, r);
  }
}

void MirrorDisk::set_stale(std::uint32_t leg, std::uint64_t r) {
  auto& w = legs_[leg].stale[r / 64];
  const std::uint64_t m = std::uint64_t{1} << (r % 64);
  if (!(w & m)) {
    w |= m;
    ++legs_[leg].stale_count;
  }
}

void MirrorDisk::clear_stale(std::uint32_t leg, std::uint64_t r) {
  auto& w = legs_[leg].stale[r / 64];
  const std::uint64_t m = std::uint64_t{1} << (r % 64);
  if (w & m) {
    w &= ~m;
    --legs_[leg].stale_count;
  }
}

int MirrorDisk::first_in_sync() const {
  for (std::uint32_t i = 0; i < kMaxLegs; ++i)
    if (legs_[i].present && legs_[i].state == LegState::kInSync) return static_cast<int>(i);
  return -1;
}

// -------------------------------------------------------------------------- data path ----

backends::Capabilities MirrorDisk::capabilities() const {
  std::lock_guard lk(mu_);
  backends::Capabilities c;
  c.read_only = false;
  c.fua = true;
  c.flush = true;
  c.trim = true;
  c.write_zeroes = true;
  c.rotational = false;
  c.max_transfer_blocks = 0;
  for (const auto& L : legs_) {
    if (!L.present) continue;
    auto lc = L.backend->capabilities();
    c.trim &= lc.trim;
    c.write_zeroes &= lc.write_zeroes;
    c.rotational |= lc.rotational;
    if (lc.max_transfer_blocks &&
        (c.max_transfer_blocks == 0 || lc.max_transfer_blocks < c.max_transfer_blocks))
      c.max_transfer_blocks = lc.max_transfer_blocks;
  }
  return c;
}

std::string MirrorDisk::describe() const {
  std::lock_guard lk(mu_);
  std::string s = "mirror:" + name_ + "(";
  bool first = true;
  for (const auto& L : legs_) {
    if (!L.present) continue;
    s += (first ? "" : ",") + L.name + "=" + std::string(to_string(L.state));
    first = false;
  }
  return s + ")";
}

void MirrorDisk::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (out.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = backends::check_range(geometry_, lba, out.size() / bs); e != Errc::kOk)
    return done(e);
  if (out.empty()) return done(Errc::kOk);
  auto req = std::make_shared<Req>();
  req->op = OpKind::kRead;
  req->lba = lba;
  req->blocks = out.size() / bs;
  req->data = out.data();
  req->done = std::move(done);
  {
    std::lock_guard lk(mu_);
    ++stats_.reads;
  }
  read_from(std::move(req));
}

void MirrorDisk::read_from(std::shared_ptr<Req> req) {
  int leg = -1;
  BackendPtr b;
  std::uint64_t gen = 0;
  {
    std::lock_guard lk(mu_);
    for (std::uint32_t k = 0; k < kMaxLegs; ++k) {
      const std::uint32_t i = (rr_ + k) % kMaxLegs;
      const Leg& L = legs_[i];
      if (L.present && L.state == LegState::kInSync && !(req->tried & (1u << i))) {
        leg = static_cast<int>(i);
        break;
      }
    }
    if (leg >= 0) {
      rr_ = static_cast<std::uint32_t>(leg) + 1;
      req->tried |= 1u << leg;
      b = legs_[leg].backend;
      gen = legs_[leg].gen;
      if (req->tried != (1u << leg)) ++stats_.read_retries;
    }
  }
  if (leg < 0) {
    auto done = std::move(req->done);
    return done(req->last == Errc::kOk ? Errc::kIoError : req->last);
  }
  const std::size_t bytes = static_cast<std::size_t>(req->blocks * geometry_.block_size);
  auto self = shared_from_this();
  b->read(req->lba, {req->data, bytes}, [self, req, leg, gen](Errc e) {
    if (!hard_error(e)) {
      auto done = std::move(req->done);
      return done(e);
    }
    req->last = e;
    bool failed_now = false;
    {
      std::lock_guard lk(self->mu_);
      Leg& L = self->legs_[leg];
      if (L.present && L.gen == gen) {
        ++L.errors;
        // Never take out the last in-sync leg.
        int others = 0;
        for (std::uint32_t i = 0; i < kMaxLegs; ++i)
          if (static_cast<int>(i) != leg && self->legs_[i].present &&
              self->legs_[i].state == LegState::kInSync)
            ++others;
        if (L.state == LegState::kInSync && others > 0) {
          L.state = LegState::kFailed;
          failed_now = true;
        }
      }
    }
    if (failed_now) {
      IPSAN_LOG(LogLevel::kWarn, "mirror", self->name_, ": leg ", leg, " failed a read (",
                to_string(e), "); degraded");
      self->write_header_sync();
    }
    self->read_from(req);
  });
}

void MirrorDisk::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                       Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (in.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = backends::check_range(geometry_, lba, in.size() / bs); e != Errc::kOk)
    return done(e);
  if (in.empty()) return done(Errc::kOk);
  auto req = std::make_shared<Req>();
  req->op = OpKind::kWrite;
  req->lba = lba;
  req->blocks = in.size() / bs;
  req->data = const_cast<std::uint8_t*>(in.data());
  req->flag = fua;
  req->done = std::move(done);
  submit(std::move(req));
}

void MirrorDisk::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (blocks == 0) return done(Errc::kOk);
  auto req = std::make_shared<Req>();
  req->op = OpKind::kTrim;
  req->lba = lba;
  req->blocks = blocks;
  req->done = std::move(done);
  submit(std::move(req));
}

void MirrorDisk::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                              Completion done) {
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (blocks == 0) return done(Errc::kOk);
  auto req = std::make_shared<Req>();
  req->op = OpKind::kWriteZeroes;
  req->lba = lba;
  req->blocks = blocks;
  req->flag = may_trim;
  req->done = std::move(done);
  submit(std::move(req));
}

void MirrorDisk::submit(std::shared_ptr<Req> req) {
  req->r0 = req->lba / region_blocks_;
  req->r1 = (req->lba + req->blocks - 1) / region_blocks_;
  std::vector<std::shared_ptr<Req>> starts;
  bool commit = false;
  {
    std::lock_guard lk(mu_);
    ++stats_.writes;
    waiting_.push_back(std::move(req));
    pump(starts, commit);
  }
  run(starts, commit);
}

bool MirrorDisk::prepare(Req& req) {
  bool ready = true;
  for (std::uint64_t r = req.r0; r <= req.r1; ++r) {
    if (r == exclusive_) ready = false;
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      if (!legs_[i].present) continue;
      set_bit(i, r);
      if (!test(legs_[i].disk_bits, r)) ready = false;
    }
  }
  return ready;
}

void MirrorDisk::pump(std::vector<std::shared_ptr<Req>>& starts, bool& commit) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    Req& q = **it;
    if (!prepare(q)) {
      ++it;
      continue;
    }
    // Start it: count it in flight, note which legs it goes to.
    for (std::uint64_t r = q.r0; r <= q.r1; ++r) {
      ++inflight_[r];
      ++epoch_[r];
      if (!touched_flag_[r]) {
        touched_flag_[r] = true;
        touched_.push_back(r);
      }
    }
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      Leg& L = legs_[i];
      q.issued[i] = false;
      if (!L.present) continue;
      if (L.state == LegState::kFailed) {
        for (std::uint64_t r = q.r0; r <= q.r1; ++r) set_stale(i, r);
        continue;
      }
      q.issued[i] = true;
      q.target[i] = L.backend;
      q.gens[i] = L.gen;
      q.was_in_sync[i] = L.state == LegState::kInSync;
      q.result[i] = Errc::kOk;
      ++q.pending;
    }
    starts.push_back(*it);
    it = waiting_.erase(it);
  }
  // Set bits (and cleared ones) go to disk as soon as the previous bitmap write is done.
  if (!dirty_pages_.empty() && !commit_inflight_) {
    commit_inflight_ = true;
    commit = true;
  }
}

void MirrorDisk::run(std::vector<std::shared_ptr<Req>>& starts, bool commit) {
  if (commit) commit_bitmap();
  for (auto& r : starts) start(std::move(r));
}

void MirrorDisk::start(std::shared_ptr<Req> req) {
  if (req->pending == 0) {
    // No leg to write to (cannot happen while an in-sync leg exists).
    std::vector<std::shared_ptr<Req>> starts;
    bool commit = false;
    {
      std::lock_guard lk(mu_);
      for (std::uint64_t r = req->r0; r <= req->r1; ++r) --inflight_[r];
      cv_.notify_all();
      pump(starts, commit);
    }
    run(starts, commit);
    auto done = std::move(req->done);
    return done(Errc::kIoError);
  }
  BackendPtr targets[kMaxLegs];
  for (std::uint32_t i = 0; i < kMaxLegs; ++i) targets[i] = std::move(req->target[i]);
  auto self = shared_from_this();
  const std::size_t bytes = static_cast<std::size_t>(req->blocks * geometry_.block_size);
  for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
    if (!targets[i]) continue;
    auto cb = [self, req, i](Errc e) { self->leg_done(req, i, e); };
    switch (req->op) {
      case OpKind::kWrite:
        targets[i]->write(req->lba, {req->data, bytes}, req->flag, cb);
        break;
      case OpKind::kTrim: targets[i]->trim(req->lba, req->blocks, cb); break;
      case OpKind::kWriteZeroes:
        targets[i]->write_zeroes(req->lba, req->blocks, req->flag, cb);
        break;
      default: cb(Errc::kInternal); break;
    }
  }
}

void MirrorDisk::leg_done(const std::shared_ptr<Req>& req, std::uint32_t leg, Errc e) {
  bool last;
  {
    std::lock_guard lk(mu_);
    req->result[leg] = e;
    last = --req->pending == 0;
  }
  if (last) finish(req);
}

void MirrorDisk::finish(const std::shared_ptr<Req>& req) {
  Errc result = Errc::kOk;
  bool header = false;
  std::vector<std::shared_ptr<Req>> starts;
  bool commit = false;
  {
    std::lock_guard lk(mu_);
    // Succeeded on an in-sync leg?
    bool ok_in_sync = false;
    Errc first_err = Errc::kOk;
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      if (!req->issued[i]) continue;
      const Errc e = req->result[i];
      if (e == Errc::kOk && req->was_in_sync[i]) ok_in_sync = true;
      if (e != Errc::kOk && first_err == Errc::kOk) first_err = e;
    }
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      if (!req->issued[i]) continue;
      Leg& L = legs_[i];
      const Errc e = req->result[i];
      if (e == Errc::kOk || !L.present || L.gen != req->gens[i]) continue;
      if (!hard_error(e)) continue;
      ++L.errors;
      if (!ok_in_sync && req->was_in_sync[i]) continue;  // nothing took it: report, keep the leg
      for (std::uint64_t r = req->r0; r <= req->r1; ++r) set_stale(i, r);
      if (L.state != LegState::kFailed) {
        L.state = LegState::kFailed;
        header = true;
        IPSAN_LOG(LogLevel::kWarn, "mirror", name_, ": leg '", L.name, "' failed a ",
                  to_string(req->op), " (", to_string(e), "); degraded");
      }
    }
    if (!ok_in_sync) result = first_err == Errc::kOk ? Errc::kIoError : first_err;
    else if (req->op != OpKind::kWrite) {
      // Trim / write-zeroes not supported by some leg is reported as such.
      for (std::uint32_t i = 0; i < kMaxLegs; ++i)
        if (req->issued[i] && req->result[i] == Errc::kNotSupported) result = Errc::kNotSupported;
    }
  }
  // A leg taken out is on disk before the write is acknowledged: a restart never reads from it.
  if (header) {
    if (Errc e = write_header_sync(); e != Errc::kOk) {
      IPSAN_LOG(LogLevel::kError, "mirror", name_, ": cannot record a failed leg in the bitmap (",
                to_string(e), "); failing the write");
      result = Errc::kIoError;
    }
  }
  {
    std::lock_guard lk(mu_);
    for (std::uint64_t r = req->r0; r <= req->r1; ++r) --inflight_[r];
    cv_.notify_all();
    pump(starts, commit);
  }
  run(starts, commit);
  auto done = std::move(req->done);
  done(result);
}

void MirrorDisk::commit_bitmap() {
  struct Page {
    std::uint32_t leg;
    std::uint64_t page;
    std::vector<std::uint8_t> bytes;
  };
  auto pages = std::make_shared<std::vector<Page>>();
  {
    std::lock_guard lk(mu_);
    for (auto [leg, page] : dirty_pages_) {
      dirty_flag_[leg][page] = false;
      if (!legs_[leg].present) continue;
      Page p{leg, page, std::vector<std::uint8_t>(kPageBytes, 0)};
      const auto& bits = legs_[leg].bits;
      for (std::uint64_t w = page * (kPageBytes / 8); w < std::min(words_, (page + 1) * (kPageBytes / 8)); ++w)
        for (int b = 0; b < 8; ++b)
          p.bytes[(w - page * (kPageBytes / 8)) * 8 + b] = static_cast<std::uint8_t>(bits[w] >> (8 * b));
      pages->push_back(std::move(p));
    }
    dirty_pages_.clear();
    stats_.bitmap_writes += pages->size();
  }
  auto self = shared_from_this();
  if (pages->empty()) {
    std::vector<std::shared_ptr<Req>> starts;
    bool commit = false;
    {
      std::lock_guard lk(mu_);
      commit_inflight_ = false;
      pump(starts, commit);
    }
    return run(starts, commit);
  }
  auto state = std::make_shared<std::pair<std::size_t, Errc>>(pages->size(), Errc::kOk);
  const std::uint32_t bbs = bitmap_->geometry().block_size;
  for (auto& p : *pages) {
    bitmap_->write(page_offset(p.leg, p.page) / bbs, p.bytes, true,
                   [self, pages, state, &p](Errc e) {
      std::vector<std::shared_ptr<Req>> starts;
      bool commit = false;
      std::vector<std::shared_ptr<Req>> failed;
      {
        std::lock_guard lk(self->mu_);
        if (e != Errc::kOk) {
          state->second = e;
        } else if (self->legs_[p.leg].present) {
          auto& disk = self->legs_[p.leg].disk_bits;
          const std::uint64_t w0 = p.page * (kPageBytes / 8);
          for (std::uint64_t w = w0; w < std::min(self->words_, w0 + kPageBytes / 8); ++w) {
            std::uint64_t v = 0;
            for (int b = 0; b < 8; ++b) v |= std::uint64_t{p.bytes[(w - w0) * 8 + b]} << (8 * b);
            disk[w] = v;
          }
        }
        if (--state->first != 0) return;
        self->commit_inflight_ = false;
        if (state->second != Errc::kOk) {
          // The bitmap cannot be written: no write may go to the legs unrecorded.
          IPSAN_LOG(LogLevel::kError, "mirror", self->name_, ": bitmap write failed (",
                    to_string(state->second), "); failing the writes that wait for it");
          failed.assign(self->waiting_.begin(), self->waiting_.end());
          self->waiting_.clear();
          // The pages stay to be written again.
          for (auto& q : *pages) self->mark_dirty(q.leg, q.page * kPageBytes * 8);
        } else {
          self->pump(starts, commit);
        }
      }
      self->run(starts, commit);
      for (auto& q : failed) {
        auto done = std::move(q->done);
        done(Errc::kIoError);
      }
    });
  }
}

void MirrorDisk::flush(Completion done) { flush_impl(std::move(done), false); }

void MirrorDisk::flush_impl(Completion done, bool clear) {
  // Flush every leg that is not failed. With `clear` (checkpoint): then clear the bits of the
  // regions written before the previous checkpoint and not since (idle for a whole period), so
  // that hot regions keep their bits and need no bitmap write.
  struct State {
    std::size_t pending = 1;
    bool ok_in_sync = false;
    Errc err = Errc::kOk;
    Completion done;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> candidates;  // region, epoch
    std::uint64_t gens[kMaxLegs] = {};
    bool in_sync[kMaxLegs] = {};
  };
  auto st = std::make_shared<State>();
  st->done = std::move(done);
  std::vector<std::pair<std::uint32_t, BackendPtr>> targets;
  {
    std::lock_guard lk(mu_);
    if (clear) {
      st->candidates = std::move(aging_);
      aging_.clear();
      for (std::uint64_t r : touched_) {
        touched_flag_[r] = false;
        aging_.emplace_back(r, epoch_[r]);
      }
      touched_.clear();
    }
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      const Leg& L = legs_[i];
      if (!L.present || L.state == LegState::kFailed) continue;
      st->gens[i] = L.gen;
      st->in_sync[i] = L.state == LegState::kInSync;
      targets.emplace_back(i, L.backend);
    }
    st->pending += targets.size();
  }
  auto self = shared_from_this();
  auto one = [self, st](std::int64_t leg, Errc e) {
    std::vector<std::shared_ptr<Req>> starts;
    bool commit = false;
    bool header = false;
    {
      std::lock_guard lk(self->mu_);
      if (leg >= 0) {
        Leg& L = self->legs_[leg];
        if (e == Errc::kOk) {
          if (st->in_sync[leg]) st->ok_in_sync = true;
        } else {
          if (st->err == Errc::kOk) st->err = e;
          st->gens[leg] = ~std::uint64_t{0};  // no clearing for this leg
          if (hard_error(e) && L.present && L.state != LegState::kFailed) {
            ++L.errors;
            int others = 0;
            for (std::uint32_t i = 0; i < kMaxLegs; ++i)
              if (static_cast<std::int64_t>(i) != leg && self->legs_[i].present &&
                  self->legs_[i].state == LegState::kInSync)
                ++others;
            if (L.state != LegState::kInSync || others > 0) {
              L.state = LegState::kFailed;
              header = true;
            }
          }
        }
      }
      if (--st->pending != 0) return;
      // Clear: regions untouched since the flush began, on legs that flushed and are not stale.
      for (auto [r, ep] : st->candidates) {
        if (self->epoch_[r] != ep) continue;  // written since: aging again
        if (self->inflight_[r] != 0) {
          if (!self->touched_flag_[r]) {
            self->touched_flag_[r] = true;
            self->touched_.push_back(r);
          }
          continue;
        }
        for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
          Leg& L = self->legs_[i];
          if (!L.present || L.gen != st->gens[i] || L.state == LegState::kFailed) continue;
          if (!test(L.stale, r)) self->clear_bit(i, r);
        }
      }
      if (!self->dirty_pages_.empty() && !self->commit_inflight_) {
        self->commit_inflight_ = true;
        commit = true;
      }
    }
    if (header) self->write_header_sync();
    self->run(starts, commit);
    auto finished = std::move(st->done);
    finished(st->ok_in_sync ? Errc::kOk : (st->err == Errc::kOk ? Errc::kIoError : st->err));
  };
  for (auto& t : targets) {
    const std::int64_t leg = t.first;
    t.second->flush([one, leg](Errc e) { one(leg, e); });
  }
  one(-1, Errc::kOk);
}

Errc MirrorDisk::checkpoint() {
  return wait_for([&](Completion c) { flush_impl(std::move(c), true); });
}

// ------------------------------------------------------------------------ management ----

MirrorStatus MirrorDisk::status() const {
  std::lock_guard lk(mu_);
  MirrorStatus s;
  s.name = name_;
  s.block_size = geometry_.block_size;
  s.blocks = geometry_.block_count;
  s.region_bytes = region_bytes_;
  s.regions = regions_;
  s.stats = stats_;
  std::vector<std::uint64_t> u(words_, 0);
  for (const auto& L : legs_) {
    if (!L.present) continue;
    s.legs.push_back(LegStatus{L.name, L.backend->describe(), L.state, L.stale_count, L.errors});
    if (L.state != LegState::kInSync) s.degraded = true;
    if (L.state != LegState::kFailed)
      for (std::uint64_t w = 0; w < words_; ++w) u[w] |= L.stale[w];
  }
  for (auto v : u) s.stale_regions += static_cast<std::uint64_t>(std::popcount(v));
  return s;
}

std::vector<std::string> MirrorDisk::leg_names() const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& L : legs_)
    if (L.present) out.push_back(L.name);
  return out;
}

Result<void, Error> MirrorDisk::add_leg(Member leg) {
  const std::string who = "mirror '" + name_ + "'";
  if (!leg.backend) return fail(who + ": leg '" + leg.name + "' is not open");
  const Geometry g = leg.backend->geometry();
  if (g.block_size != geometry_.block_size)
    return fail(who + ": leg '" + leg.name + "' has block size " + std::to_string(g.block_size) +
                ", the mirror " + std::to_string(geometry_.block_size));
  if (g.block_count < geometry_.block_count)
    return fail(who + ": leg '" + leg.name + "' has " + std::to_string(g.block_count) +
                " blocks, fewer than the mirror's " + std::to_string(geometry_.block_count));
  if (leg.backend->capabilities().read_only)
    return fail(who + ": leg '" + leg.name + "' is read-only");
  std::uint32_t slot = kMaxLegs;
  {
    std::lock_guard lk(mu_);
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      if (legs_[i].present && (legs_[i].name == leg.name || legs_[i].backend == leg.backend))
        return fail(who + ": '" + leg.name + "' is already a leg");
      if (!legs_[i].present && slot == kMaxLegs) slot = i;
    }
    if (slot == kMaxLegs) return fail(who + ": already " + std::to_string(kMaxLegs) + " legs");
    Leg& L = legs_[slot];
    L.present = true;
    L.name = leg.name;
    L.backend = leg.backend;
    L.state = LegState::kSyncing;
    ++L.gen;
    L.errors = 0;
    L.held = false;
    L.stale.assign(words_, 0);
    L.bits.assign(words_, 0);
    L.disk_bits.assign(words_, 0);
    L.stale_count = 0;
    for (std::uint64_t r = 0; r < regions_; ++r) {
      set_stale(slot, r);
      L.bits[r / 64] |= std::uint64_t{1} << (r % 64);
    }
    std::fill(dirty_flag_[slot].begin(), dirty_flag_[slot].end(), false);
  }
  // Bitmap (all stale) before the header that names the leg.
  Errc e = write_all_pages_sync(slot);
  if (e == Errc::kOk) e = write_header_sync();
  if (e != Errc::kOk) {
    std::lock_guard lk(mu_);
    legs_[slot].present = false;
    legs_[slot].backend.reset();
    return fail(e, who + ": cannot write the bitmap: " + std::string(to_string(e)));
  }
  IPSAN_LOG(LogLevel::kInfo, "mirror", name_, ": added leg '", leg.name, "' (full sync pending)");
  return {};
}

Result<void, Error> MirrorDisk::remove_leg(std::string_view name) {
  const std::string who = "mirror '" + name_ + "'";
  {
    std::lock_guard lk(mu_);
    int slot = -1, in_sync = 0;
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      if (!legs_[i].present) continue;
      if (legs_[i].name == name) slot = static_cast<int>(i);
      if (legs_[i].state == LegState::kInSync) ++in_sync;
    }
    if (slot < 0) return fail(who + ": no leg '" + std::string(name) + "'");
    if (legs_[slot].state == LegState::kInSync && in_sync == 1)
      return fail(who + ": '" + std::string(name) +
                  "' is the last in-sync leg (add another and let it sync first)");
    Leg& L = legs_[slot];
    L.present = false;
    ++L.gen;
    L.backend.reset();
    L.stale_count = 0;
  }
  if (Errc e = write_header_sync(); e != Errc::kOk)
    return fail(e, who + ": cannot write the bitmap header: " + std::string(to_string(e)));
  IPSAN_LOG(LogLevel::kInfo, "mirror", name_, ": removed leg '", name, "'");
  return {};
}

Result<void, Error> MirrorDisk::offline_leg(std::string_view name) {
  const std::string who = "mirror '" + name_ + "'";
  {
    std::lock_guard lk(mu_);
    int slot = -1, in_sync = 0;
    for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
      if (!legs_[i].present) continue;
      if (legs_[i].name == name) slot = static_cast<int>(i);
      if (legs_[i].state == LegState::kInSync) ++in_sync;
    }
    if (slot < 0) return fail(who + ": no leg '" + std::string(name) + "'");
    if (legs_[slot].state == LegState::kFailed) return {};
    if (legs_[slot].state == LegState::kInSync && in_sync == 1)
      return fail(who + ": '" + std::string(name) + "' is the last in-sync leg");
    legs_[slot].state = LegState::kFailed;
    legs_[slot].held = true;
  }
  if (Errc e = write_header_sync(); e != Errc::kOk)
    return fail(e, who + ": cannot write the bitmap header: " + std::string(to_string(e)));
  return {};
}

std::uint64_t MirrorDisk::reattach_failed(bool include_offline) {
  std::vector<std::pair<std::uint32_t, BackendPtr>> failed;
  {
    std::lock_guard lk(mu_);
    for (std::uint32_t i = 0; i < kMaxLegs; ++i)
      if (legs_[i].present && legs_[i].state == LegState::kFailed &&
          (include_offline || !legs_[i].held))
        failed.emplace_back(i, legs_[i].backend);
  }
  std::uint64_t back = 0;
  for (auto& [i, leg_b] : failed) {
    BackendPtr b = leg_b;  // (a lambda may not capture a structured binding before clang 16)
    std::vector<std::uint8_t> blk(geometry_.block_size);
    if (wait_for([&](Completion c) { b->read(0, blk, std::move(c)); }) != Errc::kOk) continue;
    std::lock_guard lk(mu_);
    if (legs_[i].present && legs_[i].backend == b && legs_[i].state == LegState::kFailed) {
      legs_[i].state = LegState::kSyncing;
      legs_[i].held = false;
      ++back;
    }
  }
  if (back) {
    write_header_sync();
    IPSAN_LOG(LogLevel::kInfo, "mirror", name_, ": ", back, " failed leg(s) back, resyncing");
  }
  return back;
}

Result<std::uint64_t, Error> MirrorDisk::resync_step(std::uint64_t max_regions) {
  const std::string who = "mirror '" + name_ + "'";
  std::uint64_t copied = 0;
  std::vector<std::uint8_t> buf;
  while (copied < max_regions) {
    std::uint64_t r = kNone;
    int src = -1;
    BackendPtr src_b;
    std::vector<std::pair<std::uint32_t, BackendPtr>> targets;
    std::uint64_t gens[kMaxLegs] = {};
    {
      std::unique_lock lk(mu_);
      // Next region stale on some leg that can take it, from the cursor, wrapping once.
      for (int pass = 0; pass < 2 && r == kNone; ++pass) {
        for (std::uint64_t w = resync_cursor_ / 64; w < words_ && r == kNone; ++w) {
          std::uint64_t v = 0;
          for (const auto& L : legs_)
            if (L.present && L.state == LegState::kSyncing) v |= L.stale[w];
          if (w == resync_cursor_ / 64) v &= ~std::uint64_t{0} << (resync_cursor_ % 64);
          if (v) r = w * 64 + static_cast<std::uint64_t>(std::countr_zero(v));
        }
        if (r == kNone) resync_cursor_ = 0;
      }
      if (r == kNone) {
        // Done: syncing legs with nothing stale are in sync.
        bool changed = false;
        for (auto& L : legs_)
          if (L.present && L.state == LegState::kSyncing && L.stale_count == 0) {
            L.state = LegState::kInSync;
            changed = true;
          }
        lk.unlock();
        if (changed) {
          if (Errc e = write_header_sync(); e != Errc::kOk)
            return fail(e, who + ": cannot write the bitmap header");
          IPSAN_LOG(LogLevel::kInfo, "mirror", name_, ": resync complete");
        }
        return copied;
      }
      src = first_in_sync();
      if (src < 0) return fail(Errc::kNotReady, who + ": no in-sync leg to copy from");
      src_b = legs_[src].backend;
      // Writes to r wait from now on; wait for those in flight.
      exclusive_ = r;
      cv_.wait(lk, [&] { return inflight_[r] == 0; });
      for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
        const Leg& L = legs_[i];
        if (L.present && L.state == LegState::kSyncing && test(L.stale, r)) {
          targets.emplace_back(i, L.backend);
          gens[i] = L.gen;
        }
      }
    }
    const std::uint64_t lba = r * region_blocks_;
    const std::uint64_t blocks = std::min(region_blocks_, geometry_.block_count - lba);
    buf.resize(static_cast<std::size_t>(blocks * geometry_.block_size));
    Errc re = wait_for([&](Completion c) { src_b->read(lba, buf, std::move(c)); });
    std::vector<std::pair<std::uint32_t, Errc>> results;
    if (re == Errc::kOk) {
      for (auto& [i, leg_b] : targets) {
        BackendPtr b = leg_b;
        Errc e = wait_for([&](Completion c) { b->write(lba, buf, false, std::move(c)); });
        if (e == Errc::kOk) e = wait_for([&](Completion c) { b->flush(std::move(c)); });
        results.emplace_back(i, e);
      }
    }
    bool header = false;
    std::vector<std::shared_ptr<Req>> starts;
    bool commit = false;
    {
      std::lock_guard lk(mu_);
      exclusive_ = kNone;
      resync_cursor_ = r + 1 < regions_ ? r + 1 : 0;
      for (auto& [i, e] : results) {
        Leg& L = legs_[i];
        if (!L.present || L.gen != gens[i]) continue;
        if (e == Errc::kOk) {
          clear_stale(i, r);
          clear_bit(i, r);
          stats_.resync_bytes += buf.size();
        } else if (L.state != LegState::kFailed) {
          ++L.errors;
          L.state = LegState::kFailed;
          header = true;
        }
      }
      if (re == Errc::kOk) ++stats_.resync_regions;
      cv_.notify_all();
      pump(starts, commit);
      if (!dirty_pages_.empty() && !commit_inflight_) {
        commit_inflight_ = true;
        commit = true;
      }
    }
    run(starts, commit);
    if (header) write_header_sync();
    if (re != Errc::kOk)
      return fail(re, who + ": reading region " + std::to_string(r) + " from the in-sync leg: " +
                          std::string(to_string(re)));
    ++copied;
  }
  return copied;
}

Result<bool, Error> MirrorDisk::verify_step(std::uint64_t* cursor, std::uint64_t max_regions,
                                            bool repair, VerifyReport& report) {
  const std::string who = "mirror '" + name_ + "'";
  std::vector<std::uint8_t> ref, other;
  for (std::uint64_t n = 0; n < max_regions; ++n) {
    const std::uint64_t r = *cursor;
    if (r >= regions_) return false;
    BackendPtr src_b;
    std::vector<std::pair<std::uint32_t, BackendPtr>> others;
    {
      std::unique_lock lk(mu_);
      const int src = first_in_sync();
      if (src < 0) return fail(Errc::kNotReady, who + ": no in-sync leg");
      src_b = legs_[src].backend;
      exclusive_ = r;
      cv_.wait(lk, [&] { return inflight_[r] == 0; });
      for (std::uint32_t i = 0; i < kMaxLegs; ++i) {
        const Leg& L = legs_[i];
        if (static_cast<int>(i) == src || !L.present || L.state == LegState::kFailed) continue;
        if (test(L.stale, r)) continue;
        others.emplace_back(i, L.backend);
      }
    }
    const std::uint64_t lba = r * region_blocks_;
    const std::uint64_t blocks = std::min(region_blocks_, geometry_.block_count - lba);
    ref.resize(static_cast<std::size_t>(blocks * geometry_.block_size));
    other.resize(ref.size());
    Errc err = wait_for([&](Completion c) { src_b->read(lba, ref, std::move(c)); });
    bool mismatch = false, repaired = true;
    if (err == Errc::kOk) {
      for (auto& [i, leg_b] : others) {
        BackendPtr b = leg_b;
        Errc e = wait_for([&](Completion c) { b->read(lba, other, std::move(c)); });
        if (e != Errc::kOk) {
          err = e;
          break;
        }
        if (other != ref) {
          mismatch = true;
          if (repair) {
            Errc w = wait_for([&](Completion c) { b->write(lba, ref, true, std::move(c)); });
            if (w != Errc::kOk) repaired = false;
          }
        }
      }
    }
    std::vector<std::shared_ptr<Req>> starts;
    bool commit = false;
    {
      std::lock_guard lk(mu_);
      exclusive_ = kNone;
      cv_.notify_all();
      pump(starts, commit);
      if (err == Errc::kOk) {
        ++stats_.verify_regions;
        if (mismatch) {
          ++stats_.verify_mismatches;
          if (repair && repaired) ++stats_.verify_repairs;
        }
      }
    }
    run(starts, commit);
    if (err != Errc::kOk)
      return fail(err, who + ": verify read of region " + std::to_string(r) + ": " +
                           std::string(to_string(err)));
    ++report.regions_checked;
    if (mismatch) {
      ++report.mismatched_regions;
      if (report.mismatches.size() < 64) report.mismatches.push_back(r);
      if (repair && repaired) ++report.repaired_regions;
    }
    *cursor = r + 1;
  }
  return *cursor < regions_;
}

}  // namespace ipsan::virt
