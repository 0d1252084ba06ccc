// SgBackend: discovery and block I/O on an SG_IO SCSI device.
#include "ipsan/backends/sg.h"

#include <algorithm>
#include <cstdio>

#include "ipsan/base/log.h"
#include "sg_transport.h"

namespace ipsan::backends {
namespace {

constexpr std::uint32_t kDefaultCapBytes = 4u << 20;  // when neither device nor driver says
constexpr std::uint32_t kMaxZeroBufferBytes = 1u << 20;
constexpr std::uint32_t kDefaultWriteSameBlocks = 0xFFFF;
constexpr std::uint32_t kMaxUnmapDescriptors = 64;

SgDirection to_transport(SgBackend::Direction d) {
  switch (d) {
    case SgBackend::Direction::kIn: return SgDirection::kIn;
    case SgBackend::Direction::kOut: return SgDirection::kOut;
    case SgBackend::Direction::kNone: break;
  }
  return SgDirection::kNone;
}

bool valid_block_size(std::uint32_t bs) { return bs >= 512 && bs <= 65536 && (bs & (bs - 1)) == 0; }

}  // namespace

SgBackend::SgBackend(std::string path, const SgOptions& options,
                     std::unique_ptr<SgTransport> transport)
    : path_(std::move(path)), options_(options), transport_(std::move(transport)) {}

SgBackend::~SgBackend() = default;

Result<std::shared_ptr<SgBackend>, Error> SgBackend::open(const std::string& path,
                                                          const SgOptions& options) {
  auto t = SgTransport::open(path, options.read_only, options.workers);
  if (!t) return make_unexpected(t.error());
  std::shared_ptr<SgBackend> b(new SgBackend(path, options, std::move(*t)));
  auto d = b->discover();
  if (!d) return make_unexpected(d.error());
  return b;
}

ScsiCommandResult SgBackend::execute(std::span<const std::uint8_t> cdb, Direction dir,
                                     std::span<std::uint8_t> data) {
  const SgOutcome o =
      transport_->execute(cdb, to_transport(dir), data.data(), data.size(), options_.timeout_s);
  ScsiCommandResult r;
  r.errc = o.verdict.errc;
  r.status = o.status;
  r.sense = o.sense;
  r.resid = o.resid;
  return r;
}

Errc SgBackend::run_with_retries(std::span<const std::uint8_t> cdb, Direction dir,
                                 std::span<std::uint8_t> data) {
  for (unsigned attempt = 0;; ++attempt) {
    const SgOutcome o =
        transport_->execute(cdb, to_transport(dir), data.data(), data.size(), options_.timeout_s);
    if (o.verdict.errc == Errc::kOk) {
      if (dir == Direction::kIn && o.resid > 0 &&
          static_cast<std::size_t>(o.resid) <= data.size()) {
        // Short read of a fixed-size block transfer: treat the missing tail as an I/O error.
        IPSAN_LOG(LogLevel::kWarn, "sg", path_, ": short transfer, resid ", o.resid);
        return Errc::kIoError;
      }
      return Errc::kOk;
    }
    if (!o.verdict.retry || attempt >= options_.max_retries) {
      if (o.sense.valid) {
        // Medium errors are worth an operator's attention (the failing LBA when the device says).
        const LogLevel level =
            o.verdict.errc == Errc::kMediumError ? LogLevel::kWarn : LogLevel::kDebug;
        IPSAN_LOG(level, "sg", path_, ": opcode ", int(cdb[0]), ": ",
                  scsi::describe_sense(o.sense));
      }
      return o.verdict.errc;
    }
  }
}

Errc SgBackend::test_unit_ready() {
  const auto cdb = scsi::cdb_test_unit_ready();
  return run_with_retries(cdb, Direction::kNone, {});
}

Result<void, Error> SgBackend::discover() {
  // The first command after a reset often meets a unit attention; run_with_retries absorbs it.
  if (Errc e = test_unit_ready(); e != Errc::kOk) {
    return fail(e, path_ + ": TEST UNIT READY failed: " + std::string(to_string(e)));
  }
  Bytes buf(256, 0);
  {
    const auto cdb = scsi::cdb_inquiry(false, 0, 96);
    std::fill(buf.begin(), buf.end(), 0);
    if (Errc e = run_with_retries(cdb, Direction::kIn, std::span(buf).first(96)); e != Errc::kOk) {
      return fail(e, path_ + ": INQUIRY failed: " + std::string(to_string(e)));
    }
    auto q = scsi::parse_standard_inquiry(ByteSpan(buf).first(96));
    if (!q) return fail(Errc::kBadMessage, path_ + ": " + q.error().message);
    info_.inquiry = *q;
    if (q->peripheral_qualifier != 0 || (q->device_type != 0x00 && q->device_type != 0x0E)) {
      char msg[96];
      std::snprintf(msg, sizeof msg, ": not a block device (peripheral type %02Xh, qualifier %u)",
                    q->device_type, q->peripheral_qualifier);
      return fail(Errc::kNotSupported, path_ + msg);
    }
  }
  auto vpd = [&](std::uint8_t page) -> Result<ByteSpan, Errc> {
    std::fill(buf.begin(), buf.end(), 0);
    const auto cdb = scsi::cdb_inquiry(true, page, static_cast<std::uint16_t>(buf.size()));
    // Residual handling is not needed here: parsers bound themselves by the page length.
    const SgOutcome o =
        transport_->execute(cdb, SgDirection::kIn, buf.data(), buf.size(), options_.timeout_s);
    if (o.verdict.errc != Errc::kOk) return fail(o.verdict.errc);
    return ByteSpan(buf);
  };
  if (auto p = vpd(0x00)) {
    if (auto pages = scsi::parse_vpd_supported(*p)) info_.vpd_pages = *pages;
  }
  auto has_page = [&](std::uint8_t pg) {
    return std::find(info_.vpd_pages.begin(), info_.vpd_pages.end(), pg) != info_.vpd_pages.end();
  };
  if (has_page(0x80)) {
    if (auto p = vpd(0x80)) {
      if (auto s = scsi::parse_vpd_serial(*p)) info_.serial = *s;
    }
  }
  if (has_page(0x83)) {
    if (auto p = vpd(0x83)) {
      if (auto ids = scsi::parse_vpd_device_id(*p)) info_.designators = *ids;
    }
  }
  if (has_page(0xB0)) {
    if (auto p = vpd(0xB0)) {
      if (auto l = scsi::parse_vpd_block_limits(*p)) {
        info_.limits = *l;
        info_.has_block_limits = true;
      }
    }
  }
  if (has_page(0xB1)) {
    if (auto p = vpd(0xB1)) {
      if (auto r = scsi::parse_vpd_rotation_rate(*p)) info_.rotation_rate = *r;
    }
  }
  if (has_page(0xB2)) {
    if (auto p = vpd(0xB2)) {
      if (auto v = scsi::parse_vpd_provisioning(*p)) {
        info_.provisioning = *v;
        info_.has_provisioning = true;
      }
    }
  }
  // Capacity: READ CAPACITY(16) first (64-bit LBAs, protection, provisioning), (10) as fallback.
  {
    std::fill(buf.begin(), buf.end(), 0);
    const auto cdb16 = scsi::cdb_read_capacity16(32);
    Errc e = run_with_retries(cdb16, Direction::kIn, std::span(buf).first(32));
    Result<scsi::Capacity, Error> cap = fail(Errc::kNotSupported, "READ CAPACITY(16) failed");
    if (e == Errc::kOk) cap = scsi::parse_read_capacity16(ByteSpan(buf).first(32));
    if (cap) {
      info_.used_read_capacity16 = true;
    } else {
      std::fill(buf.begin(), buf.end(), 0);
      const auto cdb10 = scsi::cdb_read_capacity10();
      e = run_with_retries(cdb10, Direction::kIn, std::span(buf).first(8));
      if (e != Errc::kOk) {
        return fail(e, path_ + ": READ CAPACITY failed: " + std::string(to_string(e)));
      }
      cap = scsi::parse_read_capacity10(ByteSpan(buf).first(8));
      if (!cap) return fail(Errc::kBadMessage, path_ + ": " + cap.error().message);
      if (cap->block_count == 0x100000000ull) {
        return fail(Errc::kNotSupported,
                    path_ + ": device needs READ CAPACITY(16), which it rejected");
      }
    }
    if (!valid_block_size(cap->block_size)) {
      return fail(Errc::kNotSupported,
                  path_ + ": unsupported block size " + std::to_string(cap->block_size));
    }
    info_.capacity = *cap;
  }
  {
    std::fill(buf.begin(), buf.end(), 0);
    const auto cdb = scsi::cdb_mode_sense10(0x08, 64);
    const SgOutcome o =
        transport_->execute(cdb, SgDirection::kIn, buf.data(), 64, options_.timeout_s);
    if (o.verdict.errc == Errc::kOk) {
      if (auto c = scsi::parse_mode_sense10_caching(ByteSpan(buf).first(64))) {
        info_.caching = *c;
        info_.has_caching = true;
      }
    }
  }
  const std::uint32_t bs = info_.capacity.block_size;
  const std::uint32_t cap_blocks =
      (options_.max_transfer_bytes ? options_.max_transfer_bytes : kDefaultCapBytes) / bs;
  info_.driver_max_bytes = transport_->driver_max_bytes();
  info_.max_transfer_blocks =
      scsi::max_transfer_blocks(info_.has_block_limits ? info_.limits.max_transfer_length : 0,
                                info_.driver_max_bytes, bs, std::max<std::uint32_t>(cap_blocks, 1));
  const bool lbpme = info_.capacity.lbpme;
  info_.can_unmap = lbpme && info_.provisioning.lbpu &&
                    (!info_.has_block_limits || (info_.limits.max_unmap_lba_count != 0 &&
                                                 info_.limits.max_unmap_descriptors != 0));
  info_.can_write_same_unmap = lbpme && info_.provisioning.lbpws;

  geometry_.block_size = bs;
  geometry_.block_count = info_.capacity.block_count;
  caps_.read_only = options_.read_only || (info_.has_caching && info_.caching.write_protect);
  caps_.fua = info_.has_caching && info_.caching.dpofua;
  caps_.flush = !info_.has_caching || info_.caching.wce;
  caps_.trim = info_.can_unmap || info_.can_write_same_unmap;
  caps_.write_zeroes = true;
  caps_.rotational = info_.rotation_rate > 1;
  caps_.max_transfer_blocks = info_.max_transfer_blocks;
  return {};
}

Geometry SgBackend::geometry() const { return geometry_; }
Capabilities SgBackend::capabilities() const { return caps_; }

std::string SgBackend::describe() const {
  return "sg:" + path_ + " (" + info_.inquiry.vendor + " " + info_.inquiry.product + ", " +
         std::to_string(geometry_.block_count) + "x" + std::to_string(geometry_.block_size) + ")";
}

void SgBackend::submit(Completion done, std::function<Errc()> work) {
  transport_->post([self = shared_from_this(), done = std::move(done), work = std::move(work)] {
    done(work());
  });
}

Errc SgBackend::do_read(std::uint64_t lba, std::span<std::uint8_t> out) {
  const std::uint32_t bs = geometry_.block_size;
  for (const scsi::Chunk& c :
       scsi::split_request(lba, out.size() / bs, info_.max_transfer_blocks)) {
    const auto cdb = scsi::cdb_read16(c.lba, c.blocks, false);
    const Errc e = run_with_retries(cdb, Direction::kIn,
                                    out.subspan(c.offset_blocks * bs, std::size_t{c.blocks} * bs));
    if (e != Errc::kOk) return e;
  }
  return Errc::kOk;
}

Errc SgBackend::do_write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua) {
  const std::uint32_t bs = geometry_.block_size;
  const bool native_fua = fua && caps_.fua;
  for (const scsi::Chunk& c : scsi::split_request(lba, in.size() / bs, info_.max_transfer_blocks)) {
    const auto cdb = scsi::cdb_write16(c.lba, c.blocks, native_fua);
    // SG_IO never writes into a data-out buffer; the const_cast only satisfies the C API.
    auto* p = const_cast<std::uint8_t*>(in.data()) + c.offset_blocks * bs;
    const Errc e = run_with_retries(cdb, Direction::kOut, std::span(p, std::size_t{c.blocks} * bs));
    if (e != Errc::kOk) return e;
  }
  if (fua && !native_fua) {
    // Emulated FUA: make this range durable.
    const auto cdb = scsi::cdb_sync_cache16(
        lba, static_cast<std::uint32_t>(std::min<std::uint64_t>(in.size() / bs, 0xFFFFFFFFu)));
    const Errc e = run_with_retries(cdb, Direction::kNone, {});
    if (e == Errc::kNotSupported || e == Errc::kInvalidArgument) return do_flush();
    return e;
  }
  return Errc::kOk;
}

Errc SgBackend::do_flush() {
  const auto cdb10 = scsi::cdb_sync_cache10(0, 0);  // 0/0: the whole medium
  Errc e = run_with_retries(cdb10, Direction::kNone, {});
  if (e == Errc::kNotSupported) {
    const auto cdb16 = scsi::cdb_sync_cache16(0, 0);
    e = run_with_retries(cdb16, Direction::kNone, {});
  }
  return e;
}

Errc SgBackend::do_unmap(std::uint64_t lba, std::uint64_t blocks) {
  const std::uint32_t per_desc =
      info_.has_block_limits ? info_.limits.max_unmap_lba_count : 0xFFFFFFFFu;
  std::uint32_t max_desc = info_.has_block_limits ? info_.limits.max_unmap_descriptors : 1;
  max_desc = std::clamp<std::uint32_t>(max_desc, 1, kMaxUnmapDescriptors);
  const auto chunks = scsi::split_request(lba, blocks, per_desc);
  for (std::size_t i = 0; i < chunks.size(); i += max_desc) {
    std::vector<scsi::LbaRange> ranges;
    for (std::size_t j = i; j < chunks.size() && j < i + max_desc; ++j) {
      ranges.push_back({chunks[j].lba, chunks[j].blocks});
    }
    Bytes param = scsi::unmap_parameter_list(ranges);
    const auto cdb = scsi::cdb_unmap(static_cast<std::uint16_t>(param.size()));
    const Errc e = run_with_retries(cdb, Direction::kOut, param);
    if (e != Errc::kOk) return e;
  }
  return Errc::kOk;
}

Errc SgBackend::do_write_same(std::uint64_t lba, std::uint64_t blocks, bool unmap) {
  std::uint64_t max = info_.has_block_limits ? info_.limits.max_write_same_length : 0;
  if (max == 0) max = kDefaultWriteSameBlocks;
  max = std::min<std::uint64_t>(max, 0xFFFFFFFFu);
  Bytes zero(geometry_.block_size, 0);
  for (const scsi::Chunk& c : scsi::split_request(lba, blocks, static_cast<std::uint32_t>(max))) {
    const auto cdb = scsi::cdb_write_same16(c.lba, c.blocks, unmap);
    const Errc e = run_with_retries(cdb, Direction::kOut, zero);
    if (e != Errc::kOk) return e;
  }
  return Errc::kOk;
}

Errc SgBackend::do_write_zero_buffers(std::uint64_t lba, std::uint64_t blocks) {
  const std::uint32_t bs = geometry_.block_size;
  const std::uint32_t per = std::max<std::uint32_t>(
      1, std::min<std::uint32_t>(info_.max_transfer_blocks, kMaxZeroBufferBytes / bs));
  Bytes zero(std::size_t{std::min<std::uint64_t>(per, blocks)} * bs, 0);
  for (const scsi::Chunk& c : scsi::split_request(lba, blocks, per)) {
    const auto cdb = scsi::cdb_write16(c.lba, c.blocks, false);
    const Errc e =
        run_with_retries(cdb, Direction::kOut, std::span(zero).first(std::size_t{c.blocks} * bs));
    if (e != Errc::kOk) return e;
  }
  return Errc::kOk;
}

void SgBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (out.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, out.size() / bs); e != Errc::kOk) return done(e);
  if (out.empty()) return done(Errc::kOk);
  submit(std::move(done), [this, lba, out] { return do_read(lba, out); });
}

void SgBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                      Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (in.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, in.size() / bs); e != Errc::kOk) return done(e);
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (in.empty()) return done(Errc::kOk);
  submit(std::move(done), [this, lba, in, fua] { return do_write(lba, in, fua); });
}

void SgBackend::flush(Completion done) {
  if (caps_.read_only) return done(Errc::kOk);
  submit(std::move(done), [this] { return do_flush(); });
}

void SgBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  if (Errc e = check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (!caps_.trim) return done(Errc::kNotSupported);
  if (blocks == 0) return done(Errc::kOk);
  submit(std::move(done), [this, lba, blocks] {
    return info_.can_unmap ? do_unmap(lba, blocks) : do_write_same(lba, blocks, true);
  });
}

void SgBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                             Completion done) {
  if (Errc e = check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  submit(std::move(done), [this, lba, blocks, may_trim] {
    // WRITE SAME(16) with UNMAP writes the zero block wherever it cannot deallocate, so the range
    // reads as zeroes either way. Plain UNMAP is not used for zeroing: a device may leave blocks
    // outside its unmap granularity mapped, with their old data.
    if (may_trim && info_.capacity.lbprz && info_.can_write_same_unmap) {
      return do_write_same(lba, blocks, true);
    }
    if (!write_same_broken_.load()) {
      const Errc e = do_write_same(lba, blocks, false);
      if (e != Errc::kNotSupported && e != Errc::kInvalidArgument) return e;
      write_same_broken_.store(true);  // remember: fall back to writing zero buffers
    }
    return do_write_zero_buffers(lba, blocks);
  });
}

}  // namespace ipsan::backends
