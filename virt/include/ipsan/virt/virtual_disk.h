// ipsan/virt/virtual_disk.h: a virtual disk is a Backend mapped onto member Backends (patent
// FIG. 7A, 7B, 8): concatenation, split/partition, arbitrary extent lists with offsets, and
// striping. Members may themselves be virtual disks, so layouts stack (FIG. 8 layering).
//
// Mapping. A linear disk is a list of segments laid end to end: logical block 0 is the first
// block of segment 0, and so on. Lookup is a binary search over segment start offsets (O(log n),
// 100 000 segments are fine). A striped disk spreads `chunk_blocks`-block chunks round-robin over
// equal-sized legs, by arithmetic.
//
// Multi-command splitting. A request spanning segment (or chunk) boundaries becomes several
// member commands, one per piece, issued in logical order and in parallel (each at its physical
// address; pieces adjacent on the same member and physically contiguous are merged into one
// command). The caller's completion runs exactly once, after every piece has completed, possibly
// on the thread of the last piece; the first piece error wins. FUA is passed to every write piece;
// flush goes to every distinct member backend; trim and write_zeroes split like writes.
//
// Threading: all data-path methods are thread-safe (the Backend rules). set_trace() must be called
// before the disk is shared with other threads; counters() may be read at any time. Completions
// never touch the VirtualDisk object, so it may be released while pieces are in flight (members
// stay alive through their shared_ptrs).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/base/result.h"

namespace ipsan::virt {

using backends::BackendPtr;
using backends::Completion;
using backends::OpKind;

struct Member {
  std::string name;  // for traces and describe(), e.g. the layout name "disk1"
  BackendPtr backend;
};

// `blocks` blocks of member `member` starting at its block `physical_lba`.
struct Segment {
  std::uint32_t member = 0;
  std::uint64_t physical_lba = 0;
  std::uint64_t blocks = 0;
};

// One member command of a request: `blocks` blocks at `physical_lba` of `member`, carrying the
// request's blocks [offset, offset + blocks).
struct Piece {
  std::uint32_t member = 0;
  std::uint64_t physical_lba = 0;
  std::uint64_t blocks = 0;
  std::uint64_t offset = 0;
};

struct TraceEvent {
  std::string_view disk;     // this virtual disk's name
  std::string_view backend;  // member name
  OpKind op = OpKind::kRead;
  std::uint64_t lba = 0;  // physical, on the member
  std::uint64_t blocks = 0;
  bool fua = false;
};
// Called on the issuing thread just before each member command is issued, in issue order.
using TraceHook = std::function<void(const TraceEvent&)>;

struct Counters {
  std::uint64_t requests = 0;          // operations received (flush included)
  std::uint64_t backend_commands = 0;  // member commands issued
  std::uint64_t split_requests = 0;    // requests that needed more than one member command
  std::uint64_t failed_requests = 0;   // requests completed with an error
};

class VirtualDisk final : public backends::Backend {
 public:
  // Segments laid end to end in the given order. Every segment must lie inside its member, have
  // blocks > 0, and all members must share one block size. Segments may not overlap each other
  // on the same member (that would alias data). Members are referenced by index.
  static Result<std::shared_ptr<VirtualDisk>, Error> linear(std::string name,
                                                            std::vector<Member> members,
                                                            std::vector<Segment> segments);
  // Whole members concatenated (FIG. 7A).
  static Result<std::shared_ptr<VirtualDisk>, Error> concat(std::string name,
                                                            std::vector<Member> members);
  // Striping over `legs` (one per stripe column, in order). All legs must have the same length,
  // a non-zero multiple of chunk_blocks; there must be at least one leg.
  static Result<std::shared_ptr<VirtualDisk>, Error> striped(std::string name,
                                                             std::vector<Member> members,
                                                             std::vector<Segment> legs,
                                                             std::uint64_t chunk_blocks);

  backends::Geometry geometry() const override { return geometry_; }
  backends::Capabilities capabilities() const override { return caps_; }
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override;
  void flush(Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    Completion done) override;

  // Appends to `out` the pieces of [lba, lba + blocks), which must be in range.
  void map(std::uint64_t lba, std::uint64_t blocks, std::vector<Piece>& out) const;
  // Index of the segment holding `lba` (linear disks; lba < block_count).
  std::size_t segment_index(std::uint64_t lba) const;

  const std::string& name() const { return name_; }
  const std::vector<Member>& members() const { return members_; }
  const std::vector<Segment>& segments() const { return segments_; }  // legs for striped
  bool is_striped() const { return chunk_blocks_ != 0; }
  std::uint64_t chunk_blocks() const { return chunk_blocks_; }

  void set_trace(TraceHook hook) { trace_ = std::move(hook); }
  Counters counters() const;

  struct Stats;  // shared with in-flight requests
  VirtualDisk(std::string name, std::vector<Member> members, std::vector<Segment> segments,
              std::uint64_t chunk_blocks);  // use the factories

 private:
  // Maps and issues a data operation; `data` is the request buffer (null for trim/zeroes).
  void issue(OpKind op, std::uint64_t lba, std::uint64_t blocks, std::uint8_t* data, bool flag,
             Completion done);

  std::string name_;
  std::vector<Member> members_;
  std::vector<Segment> segments_;
  std::vector<std::uint64_t> starts_;         // logical start of each segment (linear)
  std::uint64_t chunk_blocks_ = 0;            // striped when non-zero
  std::vector<std::uint32_t> flush_targets_;  // one member index per distinct backend
  backends::Geometry geometry_;
  backends::Capabilities caps_;
  TraceHook trace_;
  std::shared_ptr<Stats> stats_;
};

// Wraps a Backend so writes, trims and write_zeroes fail with kWriteProtected (read-only
// exports). Thread-safe as its inner backend.
BackendPtr make_read_only(BackendPtr inner);

}  // namespace ipsan::virt
