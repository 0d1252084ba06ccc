// SCSI logical unit emulation: third-party copy inside one logical unit (SPC-4 6.4 EXTENDED
// COPY(LID1), 6.18 RECEIVE COPY RESULTS). Supported: identification CSCD descriptors (E4h) that
// name this logical unit by one of its VPD 83h designators, block-to-block segment descriptors
// (02h). The copy manager is the logical unit itself: each segment is READ from the source and
// WRITTEN to the destination with the SAN/IP driver's generic requests, in chunks of at most
// LogicalUnitOptions::background_chunk_bytes (back to front when the destination overlaps the
// source from above). Copy status is held per (I_T nexus, LIST IDENTIFIER) for RECEIVE COPY
// RESULTS (COPY STATUS), unless LIST ID USAGE says not to; OPERATING PARAMETERS reports the limits.
//
// Every length in the parameter list is checked against the bytes that arrived before use.
#include <algorithm>
#include <bit>
#include <memory>
#include <vector>

#include "scsi/io_chain.h"
#include "scsi/lu_internal.h"

namespace ipsan::client::scsi {

using detail::Chain;
using detail::run_chain;

namespace {

constexpr std::size_t kHeader = 16;
constexpr std::size_t kCscdLength = 32;
constexpr std::size_t kB2bLength = 28;  // block-to-block segment descriptor (02h)
constexpr std::uint8_t kIdentificationCscd = 0xE4;
constexpr std::uint8_t kBlockToBlock = 0x02;

Sense copy_aborted(Asc code) { return make_sense(kCopyAborted, code); }
const Sense kParameterListLength = make_sense(kIllegalRequest, asc::kParameterListLengthError);

struct Segment {
  std::uint64_t src = 0;
  std::uint64_t dst = 0;
  std::uint64_t blocks = 0;
};

}  // namespace

void LuHandlers::extended_copy(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const std::size_t param_len = load_be32(&cdb[10]);
  if (param_len == 0) return c->good();  // no copy (SPC-4 6.4.1)
  const Bytes& p = c->command.data_out;
  if (p.size() < param_len) return c->short_data_out(param_len);
  if (param_len < kHeader) return c->check(kParameterListLength);

  const std::uint8_t list_id = p[0];
  const std::uint8_t usage = (p[1] >> 3) & 0x03;
  if (p[1] & 0x20) return c->check(invalid_field_in_parameter_list(1, 5));  // STR: no streams
  if (usage == 0x01) return c->check(invalid_field_in_parameter_list(1, 4));
  if (usage == 0x03 && list_id != 0) return c->check(invalid_field_in_parameter_list(0));
  const std::size_t cscd_len = load_be16(&p[2]);
  const std::size_t seg_len = load_be32(&p[8]);
  const std::size_t inline_len = load_be32(&p[12]);
  if (cscd_len + seg_len > kXcopyMaxListBytes) return c->check(kParameterListLength);
  if (inline_len != 0) return c->check(invalid_field_in_parameter_list(12));
  if (kHeader + cscd_len + seg_len > param_len) return c->check(kParameterListLength);

  // CSCD descriptors: how many, which types, and whether each names this logical unit.
  if ((cscd_len + kCscdLength - 1) / kCscdLength > kXcopyMaxCscds) {
    return c->check(make_sense(kIllegalRequest, asc::kTooManyTargetDescriptors));
  }
  if (cscd_len % kCscdLength != 0) return c->check(kParameterListLength);
  const std::vector<Bytes> mine = lu_designators(c->s);
  std::vector<bool> reachable;
  for (std::size_t off = kHeader; off < kHeader + cscd_len; off += kCscdLength) {
    const std::uint8_t* d = &p[off];
    if (d[0] != kIdentificationCscd) {
      return c->check(make_sense(kIllegalRequest, asc::kUnsupportedTargetDescriptorType));
    }
    // LU ID TYPE is ignored (SPC-4); the peripheral type must be a block device.
    if ((d[1] & 0x1F) != 0) {
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off + 1), 4));
    }
    // Designation descriptor: bytes 4..23 (header + up to 16 bytes of designator).
    const std::size_t dlen = d[7];
    bool match = false;
    if (dlen <= 16) {
      for (const Bytes& m : mine) {
        if (m.size() == 4 + dlen && (m[0] & 0x0F) == (d[4] & 0x0F) &&
            (m[1] & 0x3F) == (d[5] & 0x3F) && std::equal(m.begin() + 4, m.end(), d + 8)) {
          match = true;
        }
      }
    }
    // DISK BLOCK LENGTH must be this unit's block size.
    const std::uint32_t disk_block = (std::uint32_t{d[29]} << 16) | load_be16(&d[30]);
    if (match && disk_block != c->s.block_size) {
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off + 29)));
    }
    reachable.push_back(match);
  }

  // Segment descriptors.
  std::vector<Segment> segments;
  const std::size_t seg_start = kHeader + cscd_len;
  for (std::size_t off = seg_start; off < seg_start + seg_len;) {
    if (segments.size() >= kXcopyMaxSegments) {
      return c->check(make_sense(kIllegalRequest, asc::kTooManySegmentDescriptors));
    }
    if (off + 4 > seg_start + seg_len) return c->check(kParameterListLength);
    const std::uint8_t* d = &p[off];
    const std::size_t len = 4 + load_be16(&d[2]);
    if (d[0] != kBlockToBlock) {
      return c->check(make_sense(kIllegalRequest, asc::kUnsupportedSegmentDescriptorType));
    }
    if (len != kB2bLength) {
      return c->check(invalid_field_in_parameter_list(static_cast<std::uint16_t>(off + 2)));
    }
    if (off + len > seg_start + seg_len) return c->check(kParameterListLength);
    const std::size_t src_index = load_be16(&d[4]);
    const std::size_t dst_index = load_be16(&d[6]);
    // An index beyond the CSCD list, or a CSCD that is not this logical unit: unreachable.
    if (src_index >= reachable.size() || dst_index >= reachable.size()) {
      return c->check(copy_aborted(asc::kUnreachableCopyTarget));
    }
    if (!reachable[src_index] || !reachable[dst_index]) {
      return c->check(copy_aborted(asc::kCopyTargetDeviceNotReachable));
    }
    Segment s;
    s.blocks = load_be16(&d[10]);
    s.src = load_be64(&d[12]);
    s.dst = load_be64(&d[20]);
    if (out_of_range(c->s, s.src, s.blocks) || out_of_range(c->s, s.dst, s.blocks)) {
      // The copy target cannot be reached at that address (the sense codes libiscsi and LIO
      // agree on for a segment beyond the capacity).
      return c->check(copy_aborted(asc::kCopyTargetDeviceNotReachable));
    }
    segments.push_back(s);
    off += len;
  }
  if (auto wp = write_protect_sense(c->s)) return c->check(*wp);

  // The list identifier is in use by this nexus while the copy runs.
  const auto key = std::make_pair(c->command.nexus, list_id);
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    auto it = c->lu.copies_.find(key);
    if (usage != 0x03 && it != c->lu.copies_.end() && it->second.status == 0) {
      return c->check(make_sense(kIllegalRequest, asc::kOperationInProgress));
    }
    if (usage != 0x03) {
      LogicalUnit::CopyStatus st;
      st.hold = usage == 0x00;
      c->lu.copies_[key] = st;
    }
  }

  // Chunks: segment by segment, each chunk a READ then a WRITE.
  const std::uint32_t bs = c->s.block_size;
  const std::uint64_t per = std::max<std::uint64_t>(
      1, std::min<std::uint64_t>(detail::chunk_blocks(c->s.identity.max_transfer_blocks),
                                 c->s.options.background_chunk_bytes / bs));
  struct Plan {
    std::uint64_t src, dst, blocks;
    std::uint16_t segment;
  };
  auto plan = std::make_shared<std::vector<Plan>>();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    const std::uint64_t n = (s.blocks + per - 1) / per;
    // Back to front when the destination overlaps the source from above (like memmove).
    const bool backwards = s.dst > s.src && s.dst < s.src + s.blocks;
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t j = backwards ? n - 1 - k : k;
      const std::uint64_t off = j * per;
      plan->push_back(
          {s.src + off, s.dst + off, std::min(per, s.blocks - off), static_cast<std::uint16_t>(i)});
    }
  }
  auto pacer = std::make_shared<Pacer>(c->lu.target_, c->s.options, bs);
  auto chain = std::make_shared<Chain>();
  auto buffer = std::make_shared<Bytes>();
  auto progress = std::make_shared<LogicalUnit::CopyStatus>();
  chain->target = pacer.get();
  chain->count = plan->size() * 2;
  const std::uint32_t device = c->lu.device_id_;
  const std::uint32_t flags = write_flags(c->s, false);
  chain->make = [plan, buffer, device, flags, bs](std::size_t i) {
    const Plan& step = (*plan)[i / 2];
    proto::Request r;
    r.device_id = device;
    r.blocks = static_cast<std::uint32_t>(step.blocks);
    if (i % 2 == 0) {
      r.op = proto::Op::kRead;
      r.lba = step.src;
    } else {
      r.op = proto::Op::kWrite;
      r.lba = step.dst;
      r.flags = flags;
      r.data = std::move(*buffer);
      r.data.resize(static_cast<std::size_t>(step.blocks * bs));
    }
    return r;
  };
  chain->on_reply = [plan, buffer, progress, bs](std::size_t i, proto::Reply& reply) {
    const Plan& step = (*plan)[i / 2];
    if (i % 2 == 0) {
      if (reply.data.size() != step.blocks * bs) return Errc::kBadMessage;
      *buffer = std::move(reply.data);
    } else {
      progress->bytes += step.blocks * bs;
      const bool last_of_segment =
          i / 2 + 1 == plan->size() || (*plan)[i / 2 + 1].segment != step.segment;
      if (last_of_segment) ++progress->segments;
    }
    return Errc::kOk;
  };
  chain->done = [c, key, usage, progress, pacer, segments_total = segments.size()](Errc e) {
    {
      std::lock_guard<std::mutex> lock(c->lu.mu_);
      auto it = c->lu.copies_.find(key);
      if (it != c->lu.copies_.end() && it->second.status == 0) {
        if (usage == 0x00) {
          it->second.status = e == Errc::kOk ? 0x01 : 0x02;
          it->second.segments =
              e == Errc::kOk ? static_cast<std::uint16_t>(segments_total) : progress->segments;
          it->second.bytes = progress->bytes;
        } else {
          c->lu.copies_.erase(it);
        }
      }
    }
    if (e != Errc::kOk) {
      // A failed READ or WRITE of a copy target ends the copy: COPY ABORTED with the segment.
      const ErrcMapping m = map_errc(e, Direction::kWrite);
      if (m.status != kStatusCheckCondition) return c->fail(e, Direction::kWrite);
      Sense s = copy_aborted(m.sense.code());
      return c->check(s);
    }
    c->good_write(c->data_out_size);
  };
  if (plan->empty()) return chain->done(Errc::kOk);
  run_chain(std::move(chain));
}

void LuHandlers::receive_copy_results(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const std::uint8_t sa = cdb[1] & 0x1F;
  const std::uint8_t list_id = cdb[2];
  const std::uint32_t alloc = load_be32(&cdb[10]);
  Bytes d;
  if (sa == 0x03) {  // OPERATING PARAMETERS (SPC-4 6.18.4)
    d.assign(46, 0);
    store_be32(&d[0], static_cast<std::uint32_t>(d.size() - 4));
    d[4] = 0x00;  // SNLID=0: a list identifier is required unless LIST ID USAGE is 11b
    store_be16(&d[8], kXcopyMaxCscds);
    store_be16(&d[10], kXcopyMaxSegments);
    store_be32(&d[12], kXcopyMaxListBytes);
    store_be32(&d[16], 0xFFFFu * c->s.block_size);  // MAXIMUM SEGMENT LENGTH (bytes)
    store_be32(&d[20], 0);                          // no inline data
    store_be32(&d[24], 0);                          // no held data
    store_be32(&d[28], 0);                          // no stream devices
    store_be16(&d[34], 1);                          // TOTAL CONCURRENT COPIES
    d[36] = 1;                                      // MAXIMUM CONCURRENT COPIES
    d[37] = static_cast<std::uint8_t>(std::countr_zero(c->s.block_size));  // granularity, log2
    d[43] = 2;  // IMPLEMENTED DESCRIPTOR LIST LENGTH
    d[44] = kBlockToBlock;
    d[45] = kIdentificationCscd;
  } else {  // COPY STATUS (SPC-4 6.18.2)
    LogicalUnit::CopyStatus st;
    {
      std::lock_guard<std::mutex> lock(c->lu.mu_);
      auto it = c->lu.copies_.find(std::make_pair(c->command.nexus, list_id));
      if (it == c->lu.copies_.end()) return c->check(invalid_field_in_cdb(2));
      st = it->second;
      // Held status is discarded once reported (SPC-4 6.18.2).
      if (st.status != 0) c->lu.copies_.erase(it);
    }
    d.assign(12, 0);
    store_be32(&d[0], 8);
    d[4] = st.status;
    store_be16(&d[5], st.segments);
    // TRANSFER COUNT in bytes, or in KiB (units 01h) when bytes do not fit.
    if (st.bytes <= 0xFFFFFFFFu) {
      d[7] = 0x00;
      store_be32(&d[8], static_cast<std::uint32_t>(st.bytes));
    } else {
      d[7] = 0x01;
      store_be32(&d[8],
                 static_cast<std::uint32_t>(std::min<std::uint64_t>(st.bytes >> 10, 0xFFFFFFFFu)));
    }
  }
  if (d.size() > alloc) d.resize(alloc);
  c->good(std::move(d));
}

}  // namespace ipsan::client::scsi
