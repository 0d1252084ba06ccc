// VirtualDisk: mapping, multi-command splitting and the completion join; see virtual_disk.h.
#include "ipsan/virt/virtual_disk.h"

#include <algorithm>
#include <limits>
#include <map>

#include "ipsan/backends/spec.h"

namespace ipsan::virt {

using backends::Backend;
using backends::Capabilities;
using backends::Geometry;

struct VirtualDisk::Stats {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> splits{0};
  std::atomic<std::uint64_t> failed{0};
};

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

// Completes the caller once every piece has completed; the first error wins.
struct Join {
  Join(std::size_t parts, Completion d, std::shared_ptr<VirtualDisk::Stats> s)
      : remaining(parts), done(std::move(d)), stats(std::move(s)) {}

  void part_done(Errc e) {
    if (e != Errc::kOk) {
      Errc expected = Errc::kOk;
      first_error.compare_exchange_strong(expected, e, std::memory_order_acq_rel);
    }
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      const Errc result = first_error.load(std::memory_order_acquire);
      if (result != Errc::kOk) stats->failed.fetch_add(1, kRelaxed);
      Completion d = std::move(done);
      d(result);
    }
  }

  std::atomic<std::size_t> remaining;
  std::atomic<Errc> first_error{Errc::kOk};
  Completion done;
  std::shared_ptr<VirtualDisk::Stats> stats;
};

Result<void, Error> check_members(const std::string& name, const std::vector<Member>& members) {
  if (members.empty()) return fail("virtual disk '" + name + "': no members");
  for (const auto& m : members) {
    if (!m.backend) return fail("virtual disk '" + name + "': member '" + m.name + "' is null");
  }
  const std::uint32_t bs = members[0].backend->geometry().block_size;
  for (const auto& m : members) {
    const std::uint32_t mbs = m.backend->geometry().block_size;
    if (mbs != bs) {
      return fail("virtual disk '" + name + "': member '" + m.name + "' has block size " +
                  std::to_string(mbs) + " but '" + members[0].name + "' has " + std::to_string(bs) +
                  " (all members must share one block size)");
    }
  }
  return {};
}

// Every segment inside its member, non-empty, and no two overlapping on the same backend.
Result<void, Error> check_segments(const std::string& name, const std::vector<Member>& members,
                                   const std::vector<Segment>& segments, const char* what) {
  if (segments.empty()) return fail("virtual disk '" + name + "': no " + what + "s");
  std::map<const Backend*, std::vector<std::pair<std::uint64_t, std::uint64_t>>> used;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    const std::string where = "virtual disk '" + name + "': " + what + " " + std::to_string(i);
    if (s.member >= members.size()) return fail(where + " refers to a missing member");
    const Member& m = members[s.member];
    if (s.blocks == 0) return fail(where + " on '" + m.name + "' is empty");
    const std::uint64_t count = m.backend->geometry().block_count;
    if (s.physical_lba > count || s.blocks > count - s.physical_lba) {
      return fail(where + " (blocks " + std::to_string(s.physical_lba) + ".." +
                  std::to_string(s.physical_lba + s.blocks - 1) + ") reaches past the end of '" +
                  m.name + "' (" + std::to_string(count) + " blocks)");
    }
    used[m.backend.get()].emplace_back(s.physical_lba, s.blocks);
  }
  for (auto& [backend, ranges] : used) {
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i) {
      if (ranges[i - 1].first + ranges[i - 1].second > ranges[i].first) {
        return fail("virtual disk '" + name + "': " + what + "s overlap on '" +
                    backend->describe() + "' at block " + std::to_string(ranges[i].first));
      }
    }
  }
  return {};
}

void add_piece(std::vector<Piece>& out, std::size_t first, const Piece& p) {
  if (out.size() > first) {
    Piece& last = out.back();
    if (last.member == p.member && last.physical_lba + last.blocks == p.physical_lba &&
        last.offset + last.blocks == p.offset) {
      last.blocks += p.blocks;
      return;
    }
  }
  out.push_back(p);
}

}  // namespace

VirtualDisk::VirtualDisk(std::string name, std::vector<Member> members,
                         std::vector<Segment> segments, std::uint64_t chunk_blocks)
    : name_(std::move(name)),
      members_(std::move(members)),
      segments_(std::move(segments)),
      chunk_blocks_(chunk_blocks),
      stats_(std::make_shared<Stats>()) {
  std::uint64_t total = 0;
  if (chunk_blocks_ == 0) {
    starts_.reserve(segments_.size());
    for (const auto& s : segments_) {
      starts_.push_back(total);
      total += s.blocks;
    }
  } else {
    total = segments_.size() * segments_[0].blocks;
  }
  geometry_ = Geometry{members_[0].backend->geometry().block_size, total};

  caps_ = Capabilities{};
  caps_.read_only = false;
  caps_.fua = true;
  caps_.flush = false;
  caps_.trim = true;
  caps_.write_zeroes = true;
  caps_.rotational = false;
  caps_.max_transfer_blocks = 0;
  std::vector<const Backend*> seen;
  for (std::uint32_t i = 0; i < members_.size(); ++i) {
    const Capabilities c = members_[i].backend->capabilities();
    caps_.read_only |= c.read_only;
    caps_.fua &= c.fua;
    caps_.flush |= c.flush;
    caps_.trim &= c.trim;
    caps_.write_zeroes &= c.write_zeroes;
    caps_.rotational |= c.rotational;
    if (c.max_transfer_blocks != 0 &&
        (caps_.max_transfer_blocks == 0 || c.max_transfer_blocks < caps_.max_transfer_blocks)) {
      caps_.max_transfer_blocks = c.max_transfer_blocks;
    }
    const Backend* b = members_[i].backend.get();
    if (std::find(seen.begin(), seen.end(), b) == seen.end()) {
      seen.push_back(b);
      flush_targets_.push_back(i);
    }
  }
}

Result<std::shared_ptr<VirtualDisk>, Error> VirtualDisk::linear(std::string name,
                                                                std::vector<Member> members,
                                                                std::vector<Segment> segments) {
  if (auto ok = check_members(name, members); !ok) return make_unexpected(ok.error());
  if (auto ok = check_segments(name, members, segments, "extent"); !ok) {
    return make_unexpected(ok.error());
  }
  std::uint64_t total = 0;
  for (const auto& s : segments) {
    if (s.blocks > std::numeric_limits<std::uint64_t>::max() - total) {
      return fail("virtual disk '" + name + "': size overflows");
    }
    total += s.blocks;
  }
  return std::make_shared<VirtualDisk>(std::move(name), std::move(members), std::move(segments), 0);
}

Result<std::shared_ptr<VirtualDisk>, Error> VirtualDisk::concat(std::string name,
                                                                std::vector<Member> members) {
  std::vector<Segment> segments;
  for (std::uint32_t i = 0; i < members.size(); ++i) {
    const std::uint64_t n = members[i].backend ? members[i].backend->geometry().block_count : 0;
    segments.push_back(Segment{i, 0, n});
  }
  return linear(std::move(name), std::move(members), std::move(segments));
}

Result<std::shared_ptr<VirtualDisk>, Error> VirtualDisk::striped(std::string name,
                                                                 std::vector<Member> members,
                                                                 std::vector<Segment> legs,
                                                                 std::uint64_t chunk_blocks) {
  if (auto ok = check_members(name, members); !ok) return make_unexpected(ok.error());
  if (chunk_blocks == 0) return fail("virtual disk '" + name + "': stripe chunk must be > 0");
  if (auto ok = check_segments(name, members, legs, "stripe leg"); !ok) {
    return make_unexpected(ok.error());
  }
  const std::uint64_t leg = legs[0].blocks;
  for (std::size_t i = 0; i < legs.size(); ++i) {
    const std::string who = "virtual disk '" + name + "': stripe leg " + std::to_string(i) +
                            " on '" + members[legs[i].member].name + "'";
    if (legs[i].blocks != leg) {
      return fail(who + " has " + std::to_string(legs[i].blocks) + " blocks but leg 0 has " +
                  std::to_string(leg) + " (stripe legs must be equal)");
    }
    if (legs[i].blocks % chunk_blocks != 0) {
      return fail(who + " (" + std::to_string(legs[i].blocks) +
                  " blocks) is not a multiple of the chunk (" + std::to_string(chunk_blocks) +
                  " blocks)");
    }
  }
  if (leg > std::numeric_limits<std::uint64_t>::max() / legs.size()) {
    return fail("virtual disk '" + name + "': size overflows");
  }
  return std::make_shared<VirtualDisk>(std::move(name), std::move(members), std::move(legs),
                                       chunk_blocks);
}

std::string VirtualDisk::describe() const {
  std::string s = "virt:" + name_ + " (";
  if (chunk_blocks_ != 0) {
    s += "stripe " + std::to_string(segments_.size()) + "x" +
         backends::format_size(chunk_blocks_ * geometry_.block_size);
  } else {
    s += std::to_string(segments_.size()) + (segments_.size() == 1 ? " extent" : " extents");
  }
  s += " over ";
  for (std::size_t i = 0; i < members_.size(); ++i) s += (i ? "," : "") + members_[i].name;
  return s + "; " + backends::format_size(geometry_.size_bytes()) + "/" +
         std::to_string(geometry_.block_size) + ")";
}

std::size_t VirtualDisk::segment_index(std::uint64_t lba) const {
  auto it = std::upper_bound(starts_.begin(), starts_.end(), lba);
  return static_cast<std::size_t>(it - starts_.begin()) - 1;
}

void VirtualDisk::map(std::uint64_t lba, std::uint64_t blocks, std::vector<Piece>& out) const {
  const std::size_t first = out.size();
  std::uint64_t pos = 0;
  if (chunk_blocks_ == 0) {
    std::size_t i = blocks ? segment_index(lba) : 0;
    while (pos < blocks) {
      const Segment& s = segments_[i];
      const std::uint64_t within = lba + pos - starts_[i];
      const std::uint64_t n = std::min(s.blocks - within, blocks - pos);
      add_piece(out, first, Piece{s.member, s.physical_lba + within, n, pos});
      pos += n;
      ++i;
    }
    return;
  }
  const std::uint64_t c = chunk_blocks_;
  const std::uint64_t legs = segments_.size();
  while (pos < blocks) {
    const std::uint64_t l = lba + pos;
    const std::uint64_t chunk = l / c, in_chunk = l % c;
    const Segment& leg = segments_[chunk % legs];
    const std::uint64_t n = std::min(c - in_chunk, blocks - pos);
    add_piece(out, first,
              Piece{leg.member, leg.physical_lba + (chunk / legs) * c + in_chunk, n, pos});
    pos += n;
  }
}

Counters VirtualDisk::counters() const {
  return Counters{stats_->requests.load(kRelaxed), stats_->commands.load(kRelaxed),
                  stats_->splits.load(kRelaxed), stats_->failed.load(kRelaxed)};
}

void VirtualDisk::issue(OpKind op, std::uint64_t lba, std::uint64_t blocks, std::uint8_t* data,
                        bool flag, Completion done) {
  std::vector<Piece> pieces;
  map(lba, blocks, pieces);
  stats_->commands.fetch_add(pieces.size(), kRelaxed);
  if (pieces.size() > 1) stats_->splits.fetch_add(1, kRelaxed);

  Completion single;
  std::shared_ptr<Join> join;
  if (pieces.size() == 1) {
    single = [stats = stats_, done = std::move(done)](Errc e) {
      if (e != Errc::kOk) stats->failed.fetch_add(1, kRelaxed);
      done(e);
    };
  } else {
    join = std::make_shared<Join>(pieces.size(), std::move(done), stats_);
  }
  const std::uint32_t bs = geometry_.block_size;
  const std::size_t count = pieces.size();
  // Nothing below may touch `this` after the last piece is issued: its completion may run
  // inline and release this disk.
  for (std::size_t i = 0; i < count; ++i) {
    const Piece& p = pieces[i];
    const Member& m = members_[p.member];
    const bool fua = op == OpKind::kWrite && flag;
    if (trace_) trace_(TraceEvent{name_, m.name, op, p.physical_lba, p.blocks, fua});
    Completion cb = join ? Completion([join](Errc e) { join->part_done(e); }) : std::move(single);
    Backend& b = *m.backend;
    const std::size_t off = static_cast<std::size_t>(p.offset) * bs;
    const std::size_t len = static_cast<std::size_t>(p.blocks) * bs;
    switch (op) {
      case OpKind::kRead:
        b.read(p.physical_lba, std::span<std::uint8_t>(data + off, len), std::move(cb));
        break;
      case OpKind::kWrite:
        b.write(p.physical_lba, std::span<const std::uint8_t>(data + off, len), flag,
                std::move(cb));
        break;
      case OpKind::kTrim: b.trim(p.physical_lba, p.blocks, std::move(cb)); break;
      case OpKind::kWriteZeroes:
        b.write_zeroes(p.physical_lba, p.blocks, flag, std::move(cb));
        break;
      case OpKind::kFlush: cb(Errc::kInternal); break;
    }
  }
}

namespace {
// Completes `done` with `e`, counting the request (and the failure).
void reject(VirtualDisk::Stats& stats, Completion& done, Errc e) {
  if (e != Errc::kOk) stats.failed.fetch_add(1, kRelaxed);
  done(e);
}
}  // namespace

void VirtualDisk::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  stats_->requests.fetch_add(1, kRelaxed);
  const std::uint32_t bs = geometry_.block_size;
  if (out.size() % bs != 0) return reject(*stats_, done, Errc::kInvalidArgument);
  const std::uint64_t blocks = out.size() / bs;
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) {
    return reject(*stats_, done, e);
  }
  if (blocks == 0) return done(Errc::kOk);
  issue(OpKind::kRead, lba, blocks, out.data(), false, std::move(done));
}

void VirtualDisk::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                        Completion done) {
  stats_->requests.fetch_add(1, kRelaxed);
  const std::uint32_t bs = geometry_.block_size;
  if (in.size() % bs != 0) return reject(*stats_, done, Errc::kInvalidArgument);
  const std::uint64_t blocks = in.size() / bs;
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) {
    return reject(*stats_, done, e);
  }
  if (caps_.read_only) return reject(*stats_, done, Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  // The member write takes a const span again; the cast only shares issue()'s signature.
  issue(OpKind::kWrite, lba, blocks, const_cast<std::uint8_t*>(in.data()), fua, std::move(done));
}

void VirtualDisk::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  stats_->requests.fetch_add(1, kRelaxed);
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) {
    return reject(*stats_, done, e);
  }
  if (caps_.read_only) return reject(*stats_, done, Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  issue(OpKind::kTrim, lba, blocks, nullptr, false, std::move(done));
}

void VirtualDisk::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                               Completion done) {
  stats_->requests.fetch_add(1, kRelaxed);
  if (Errc e = backends::check_range(geometry_, lba, blocks); e != Errc::kOk) {
    return reject(*stats_, done, e);
  }
  if (caps_.read_only) return reject(*stats_, done, Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  issue(OpKind::kWriteZeroes, lba, blocks, nullptr, may_trim, std::move(done));
}

void VirtualDisk::flush(Completion done) {
  stats_->requests.fetch_add(1, kRelaxed);
  const std::size_t count = flush_targets_.size();
  stats_->commands.fetch_add(count, kRelaxed);
  if (count > 1) stats_->splits.fetch_add(1, kRelaxed);
  auto join = std::make_shared<Join>(count, std::move(done), stats_);
  for (std::size_t i = 0; i < count; ++i) {
    const Member& m = members_[flush_targets_[i]];
    if (trace_) trace_(TraceEvent{name_, m.name, OpKind::kFlush, 0, 0, false});
    m.backend->flush([join](Errc e) { join->part_done(e); });
  }
}

namespace {

class ReadOnlyBackend final : public Backend {
 public:
  explicit ReadOnlyBackend(BackendPtr inner) : inner_(std::move(inner)) {}
  Geometry geometry() const override { return inner_->geometry(); }
  Capabilities capabilities() const override {
    Capabilities c = inner_->capabilities();
    c.read_only = true;
    return c;
  }
  std::string describe() const override { return inner_->describe() + ",ro"; }
  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override {
    inner_->read(lba, out, std::move(done));
  }
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool, Completion done) override {
    const Geometry g = inner_->geometry();
    if (in.size() % g.block_size != 0) return done(Errc::kInvalidArgument);
    Errc e = backends::check_range(g, lba, in.size() / g.block_size);
    done(e != Errc::kOk ? e : Errc::kWriteProtected);
  }
  void flush(Completion done) override { done(Errc::kOk); }
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override {
    Errc e = backends::check_range(inner_->geometry(), lba, blocks);
    done(e != Errc::kOk ? e : Errc::kWriteProtected);
  }
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool, Completion done) override {
    trim(lba, blocks, std::move(done));
  }

 private:
  BackendPtr inner_;
};

}  // namespace

BackendPtr make_read_only(BackendPtr inner) {
  return std::make_shared<ReadOnlyBackend>(std::move(inner));
}

}  // namespace ipsan::virt
