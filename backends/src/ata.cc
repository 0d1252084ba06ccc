// AtaBackend: an ATA disk through SAT's ATA PASS-THROUGH(16) over SG_IO.
#include "ipsan/backends/ata.h"

#include <algorithm>

#include "ipsan/backends/sg.h"
#include "ipsan/base/log.h"
#include "sg_transport.h"

namespace ipsan::backends {
namespace {

constexpr std::uint32_t kDefaultCapBytes = 4u << 20;
constexpr std::uint32_t kMaxZeroBufferBytes = 1u << 20;
constexpr std::uint16_t kMaxTrimPages = 8;

SgDirection to_transport(ata::XferDir d) {
  switch (d) {
    case ata::XferDir::kIn: return SgDirection::kIn;
    case ata::XferDir::kOut: return SgDirection::kOut;
    case ata::XferDir::kNone: break;
  }
  return SgDirection::kNone;
}

}  // namespace

AtaBackend::AtaBackend(std::string path, const AtaOptions& options,
                       std::unique_ptr<SgTransport> transport)
    : path_(std::move(path)), options_(options), transport_(std::move(transport)) {}

AtaBackend::~AtaBackend() = default;

Result<std::shared_ptr<AtaBackend>, Error> AtaBackend::open(const std::string& path,
                                                            const AtaOptions& options) {
  auto t = SgTransport::open(path, options.read_only, options.workers);
  if (!t) return make_unexpected(t.error());
  std::shared_ptr<AtaBackend> b(new AtaBackend(path, options, std::move(*t)));
  auto d = b->discover();
  if (!d) return make_unexpected(d.error());
  return b;
}

AtaCommandResult AtaBackend::execute(const ata::Taskfile& tf, ata::Protocol protocol,
                                     ata::XferDir dir, std::span<std::uint8_t> data) {
  const bool logical = geometry_.block_size != 512 && tf.command != ata::kCmdIdentifyDevice &&
                       tf.command != ata::kCmdDataSetManagement;
  const auto cdb = ata::build_pass_through16(tf, protocol, dir, /*extend=*/true,
                                             /*ck_cond=*/false, logical);
  const SgOutcome o =
      transport_->execute(cdb, to_transport(dir), data.data(), data.size(), options_.timeout_s);
  AtaCommandResult r;
  r.errc = o.verdict.errc;
  r.sense = o.sense;
  r.has_ata = o.sense.has_ata;
  r.ata = o.sense.ata;
  return r;
}

Errc AtaBackend::run(const ata::Taskfile& tf, ata::Protocol protocol, ata::XferDir dir,
                     std::span<std::uint8_t> data) {
  for (unsigned attempt = 0;; ++attempt) {
    const bool logical = geometry_.block_size != 512 && tf.command != ata::kCmdIdentifyDevice &&
                         tf.command != ata::kCmdDataSetManagement;
    const auto cdb = ata::build_pass_through16(tf, protocol, dir, true, false, logical);
    const SgOutcome o =
        transport_->execute(cdb, to_transport(dir), data.data(), data.size(), options_.timeout_s);
    if (o.verdict.errc == Errc::kOk) return Errc::kOk;
    if (!o.verdict.retry || attempt >= options_.max_retries) {
      if (o.sense.valid) {
        IPSAN_LOG(LogLevel::kDebug, "ata", path_, ": command ", int(tf.command), ": ",
                  scsi::describe_sense(o.sense));
      }
      return o.verdict.errc;
    }
  }
}

Result<void, Error> AtaBackend::discover() {
  Bytes page(512, 0);
  ata::Taskfile tf;
  tf.command = ata::kCmdIdentifyDevice;
  tf.count = 1;
  tf.device = 0;
  const Errc e = run(tf, ata::Protocol::kPioDataIn, ata::XferDir::kIn, page);
  if (e != Errc::kOk) {
    return fail(e, path_ + ": IDENTIFY DEVICE through ATA PASS-THROUGH failed (" +
                       std::string(to_string(e)) + "); is this an ATA disk behind SAT?");
  }
  auto id = ata::parse_identify(page);
  if (!id) return fail(id.error().code, path_ + ": " + id.error().message);
  if (!id->lba48) {
    return fail(Errc::kNotSupported, path_ + ": disk lacks 48-bit LBA; 28-bit disks unsupported");
  }
  info_.identify = *id;
  info_.driver_max_bytes = transport_->driver_max_bytes();
  const std::uint32_t ss = id->logical_sector_size;
  const std::uint32_t cap = std::max<std::uint32_t>(
      1, (options_.max_transfer_bytes ? options_.max_transfer_bytes : kDefaultCapBytes) / ss);
  info_.max_transfer_sectors =
      scsi::max_transfer_blocks(ata::kMaxSectorsExt, info_.driver_max_bytes, ss, cap);
  if (!id->dma) dma_broken_.store(true);

  geometry_.block_size = ss;
  geometry_.block_count = id->sectors;
  caps_.read_only = options_.read_only;
  caps_.fua = id->fua_ext && id->dma;
  caps_.flush = !id->write_cache_supported || id->write_cache_enabled;
  caps_.trim = id->trim;
  caps_.write_zeroes = true;
  caps_.rotational = id->rotation_rate > 1;
  caps_.max_transfer_blocks = info_.max_transfer_sectors;
  return {};
}

Geometry AtaBackend::geometry() const { return geometry_; }
Capabilities AtaBackend::capabilities() const { return caps_; }

std::string AtaBackend::describe() const {
  return "ata:" + path_ + " (" + info_.identify.model + ", " +
         std::to_string(geometry_.block_count) + "x" + std::to_string(geometry_.block_size) + ")";
}

void AtaBackend::submit(Completion done, std::function<Errc()> work) {
  transport_->post([self = shared_from_this(), done = std::move(done), work = std::move(work)] {
    done(work());
  });
}

Errc AtaBackend::transfer(bool write, std::uint64_t lba, std::span<std::uint8_t> data, bool fua) {
  const std::uint32_t bs = geometry_.block_size;
  for (const scsi::Chunk& c :
       scsi::split_request(lba, data.size() / bs, info_.max_transfer_sectors)) {
    ata::Taskfile tf;
    tf.lba = c.lba;
    tf.count = static_cast<std::uint16_t>(c.blocks & 0xFFFF);  // 65536 encodes as 0
    const auto part = data.subspan(c.offset_blocks * bs, std::size_t{c.blocks} * bs);
    const auto dir = write ? ata::XferDir::kOut : ata::XferDir::kIn;
    Errc e = Errc::kIoError;
    if (!dma_broken_.load()) {
      tf.command = write ? (fua && caps_.fua ? ata::kCmdWriteDmaFuaExt : ata::kCmdWriteDmaExt)
                         : ata::kCmdReadDmaExt;
      e = run(tf, ata::Protocol::kDma, dir, part);
      if (e == Errc::kOk || e == Errc::kMediumError || e == Errc::kLbaOutOfRange ||
          e == Errc::kTimeout) {
        if (e != Errc::kOk) return e;
        continue;
      }
      IPSAN_LOG(LogLevel::kWarn, "ata", path_, ": DMA command failed (", to_string(e),
                "), trying PIO");
    }
    tf.command = write ? ata::kCmdWriteSectorsExt : ata::kCmdReadSectorsExt;
    e = run(tf, write ? ata::Protocol::kPioDataOut : ata::Protocol::kPioDataIn, dir, part);
    if (e != Errc::kOk) return e;
    if (!dma_broken_.load()) {
      dma_broken_.store(true);  // PIO worked where DMA did not: stay on PIO
    }
  }
  if (write && fua && !(caps_.fua && !dma_broken_.load())) return do_flush();
  return Errc::kOk;
}

Errc AtaBackend::do_flush() {
  ata::Taskfile tf;
  tf.command = info_.identify.flush_ext ? ata::kCmdFlushCacheExt : ata::kCmdFlushCache;
  return run(tf, ata::Protocol::kNonData, ata::XferDir::kNone, {});
}

Errc AtaBackend::do_trim(std::uint64_t lba, std::uint64_t blocks) {
  const std::uint16_t pages = static_cast<std::uint16_t>(
      std::clamp<std::uint16_t>(info_.identify.dsm_max_blocks, 1, kMaxTrimPages));
  std::uint64_t done = 0;
  while (done < blocks) {
    ata::TrimPayload p = ata::build_trim_payload(lba + done, blocks - done, pages);
    ata::Taskfile tf;
    tf.command = ata::kCmdDataSetManagement;
    tf.features = 0x0001;  // TRIM
    tf.count = static_cast<std::uint16_t>(p.data.size() / 512);
    const Errc e = run(tf, ata::Protocol::kDma, ata::XferDir::kOut, p.data);
    if (e != Errc::kOk) return e;
    done += p.covered;
  }
  return Errc::kOk;
}

void AtaBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (out.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, out.size() / bs); e != Errc::kOk) return done(e);
  if (out.empty()) return done(Errc::kOk);
  submit(std::move(done), [this, lba, out] { return transfer(false, lba, out, false); });
}

void AtaBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                       Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (in.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, in.size() / bs); e != Errc::kOk) return done(e);
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (in.empty()) return done(Errc::kOk);
  // SG_IO never writes into a data-out buffer; the const_cast only satisfies the C API.
  std::span<std::uint8_t> data(const_cast<std::uint8_t*>(in.data()), in.size());
  submit(std::move(done), [this, lba, data, fua] { return transfer(true, lba, data, fua); });
}

void AtaBackend::flush(Completion done) {
  if (caps_.read_only) return done(Errc::kOk);
  submit(std::move(done), [this] { return do_flush(); });
}

void AtaBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  if (Errc e = check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (!caps_.trim) return done(Errc::kNotSupported);
  if (blocks == 0) return done(Errc::kOk);
  submit(std::move(done), [this, lba, blocks] { return do_trim(lba, blocks); });
}

void AtaBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                              Completion done) {
  if (Errc e = check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (caps_.read_only) return done(Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  // Always written: RZAT claims are unreliable on real drives (Linux trusts them only for a
  // whitelist), so TRIM never stands in for zeroes. may_trim is accepted and ignored.
  (void)may_trim;
  submit(std::move(done), [this, lba, blocks] {
    const std::uint32_t bs = geometry_.block_size;
    const std::uint32_t per = std::max<std::uint32_t>(
        1, std::min<std::uint32_t>(info_.max_transfer_sectors, kMaxZeroBufferBytes / bs));
    Bytes zero(std::size_t{std::min<std::uint64_t>(per, blocks)} * bs, 0);
    for (const scsi::Chunk& c : scsi::split_request(lba, blocks, per)) {
      const Errc e =
          transfer(true, c.lba, std::span(zero).first(std::size_t{c.blocks} * bs), false);
      if (e != Errc::kOk) return e;
    }
    return Errc::kOk;
  });
}

}  // namespace ipsan::backends
