#include "ipsan/client/ata/device.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "scsi/io_chain.h"

namespace ipsan::client::ata {
namespace {

void put_word(Bytes& d, int word, std::uint16_t v) {
  d[2 * word] = static_cast<std::uint8_t>(v);
  d[2 * word + 1] = static_cast<std::uint8_t>(v >> 8);
}

// ATA strings: two characters per word, the first in the high byte (ACS 3.3.10), space padded.
void put_string(Bytes& d, int first_word, int words, const std::string& s) {
  for (int i = 0; i < words * 2; ++i) {
    char ch = i < static_cast<int>(s.size()) ? s[static_cast<std::size_t>(i)] : ' ';
    if (ch < 0x20 || ch >= 0x7F) ch = '_';
    d[2 * first_word + (i ^ 1)] = static_cast<std::uint8_t>(ch);
  }
}

AtaResult ok_result() {
  AtaResult r;
  r.status = kStatusDrdy;
  return r;
}

AtaResult error_result(std::uint8_t error, std::uint8_t extra_status = 0) {
  AtaResult r;
  r.status = static_cast<std::uint8_t>(kStatusDrdy | kStatusErr | extra_status);
  r.error = error;
  return r;
}

}  // namespace

AtaError map_errc(Errc e, bool write) {
  switch (e) {
    case Errc::kOk: return {kStatusDrdy, 0};
    case Errc::kLbaOutOfRange: return {kStatusDrdy | kStatusErr, kErrorIdnf};
    case Errc::kMediumError:
      if (write) return {kStatusDrdy | kStatusErr | kStatusDf, kErrorAbrt};
      return {kStatusDrdy | kStatusErr, kErrorUnc};
    case Errc::kTimeout:
    case Errc::kConnectionLost:
    case Errc::kStaleSession:
    case Errc::kSeqMisordered:
    case Errc::kBadMessage: return {kStatusDrdy | kStatusErr, kErrorIcrc | kErrorAbrt};
    case Errc::kIoError:
    case Errc::kInternal: return {kStatusDrdy | kStatusErr | kStatusDf, kErrorAbrt};
    default: return {kStatusDrdy | kStatusErr, kErrorAbrt};
  }
}

Device::Device(GenericTarget& target, std::uint32_t device_id, std::uint32_t max_command_bytes)
    : target_(target), device_id_(device_id), max_command_bytes_(max_command_bytes) {}

void Device::attach(std::function<void(Errc)> done) {
  proto::Request r;
  r.op = proto::Op::kIdentify;
  r.device_id = device_id_;
  target_.execute(std::move(r), [this, done = std::move(done)](proto::Reply reply) {
    Errc e = reply.status;
    const auto& id = reply.identity;
    if (e == Errc::kOk &&
        (id.block_size < 512 || id.block_size > (1u << 20) ||
         (id.block_size & (id.block_size - 1)) != 0 || id.block_count > (std::uint64_t{1} << 48))) {
      e = Errc::kBadMessage;
    }
    if (e == Errc::kOk) {
      std::lock_guard<std::mutex> lock(mu_);
      identity_ = id;
      write_cache_default_ = (id.capabilities & proto::kCapFlush) != 0;
      write_cache_ = write_cache_default_;
      attached_ = true;
    }
    done(e);
  });
}

bool Device::attached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attached_;
}

bool Device::write_cache_enabled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return write_cache_;
}

void Device::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  write_cache_ = write_cache_default_;
}

Bytes Device::identify_data(const proto::Identity& id, bool wce) {
  Bytes d(512, 0);
  const std::uint64_t n = id.block_count;
  const bool trim = id.capabilities & proto::kCapTrim;
  put_word(d, 0, 0x0040);  // fixed device, not removable
  put_word(d, 1, 16383);   // obsolete CHS geometry, as real disks report it
  put_word(d, 3, 16);
  put_word(d, 6, 63);
  std::string serial = id.serial;
  if (serial.empty()) serial = to_hex(ByteSpan(id.uuid.data(), 10));
  put_string(d, 10, 10, serial);
  put_string(d, 23, 4, id.revision);
  put_string(d, 27, 20, (id.vendor.empty() ? std::string() : id.vendor + " ") + id.product);
  put_word(d, 47, 0x8010);  // READ/WRITE MULTIPLE: up to 16 sectors per DRQ
  put_word(d, 49, 0x0300);  // LBA and DMA supported
  put_word(d, 50, 0x4000);
  put_word(d, 53, 0x0006);  // words 64-70 and 88 valid
  const std::uint32_t lba28 = static_cast<std::uint32_t>(std::min<std::uint64_t>(n, 0x0FFFFFFF));
  put_word(d, 60, static_cast<std::uint16_t>(lba28));
  put_word(d, 61, static_cast<std::uint16_t>(lba28 >> 16));
  put_word(d, 63, 0x0007);  // multiword DMA 0-2
  put_word(d, 64, 0x0003);  // PIO 3-4
  for (int w = 65; w <= 68; ++w) put_word(d, w, 120);
  put_word(d, 69, trim ? 0x4020 : 0);  // deterministic read after TRIM, zeroes (RZAT)
  put_word(d, 75, 31);                 // NCQ queue depth 32
  put_word(d, 76, 0x0106);             // NCQ, SATA Gen1/Gen2
  put_word(d, 80, 0x01F0);             // ATA8-ACS, ATA/ATAPI-7..4
  put_word(d, 82, 0x0028);             // write cache, power management
  put_word(d, 83, 0x7400);             // FLUSH CACHE EXT, FLUSH CACHE, 48-bit
  put_word(d, 84, 0x4140);             // WWN, WRITE DMA FUA EXT
  put_word(d, 85, static_cast<std::uint16_t>(0x0008 | (wce ? 0x0020 : 0)));
  put_word(d, 86, 0x3400);
  put_word(d, 87, 0x4140);
  put_word(d, 88, 0x207F);  // UDMA 0-6 supported, mode 5 selected
  put_word(d, 100, static_cast<std::uint16_t>(n));
  put_word(d, 101, static_cast<std::uint16_t>(n >> 16));
  put_word(d, 102, static_cast<std::uint16_t>(n >> 32));
  put_word(d, 103, static_cast<std::uint16_t>(n >> 48));
  put_word(d, 105, trim ? 8 : 0);  // DSM: up to 8 blocks of range entries
  put_word(d, 106, static_cast<std::uint16_t>(0x4000 | (id.block_size != 512 ? 0x1000 : 0)));
  // World wide name (NAA 5h) from the uuid: 60 bits, as SCSI's NAA designator.
  std::uint64_t wwn = 0;
  for (int i = 0; i < 8; ++i) wwn = (wwn << 8) | (id.uuid[i] ^ id.uuid[i + 8]);
  wwn = (std::uint64_t{5} << 60) | (wwn & 0x0FFFFFFFFFFFFFFFull);
  for (int i = 0; i < 4; ++i)
    put_word(d, 108 + i, static_cast<std::uint16_t>(wwn >> (48 - 16 * i)));
  if (id.block_size != 512) {
    const std::uint32_t words = id.block_size / 2;
    put_word(d, 117, static_cast<std::uint16_t>(words));
    put_word(d, 118, static_cast<std::uint16_t>(words >> 16));
  }
  put_word(d, 169, trim ? 0x0001 : 0);  // DSM TRIM supported
  put_word(d, 217, (id.capabilities & proto::kCapRotational) ? 0 : 1);
  d[510] = 0xA5;  // integrity word: signature + checksum
  std::uint8_t sum = 0;
  for (int i = 0; i < 511; ++i) sum = static_cast<std::uint8_t>(sum + d[i]);
  d[511] = static_cast<std::uint8_t>(-sum);
  return d;
}

void Device::execute(const Taskfile& tf, AtaDone done) {
  proto::Identity id;
  bool attached;
  bool wce;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = identity_;
    attached = attached_;
    wce = write_cache_;
  }
  const std::uint8_t cmd = tf.command;
  if (!attached) return done(error_result(kErrorAbrt));
  const std::uint32_t bs = id.block_size;

  auto finish_errc = [done](Errc e, bool write, std::uint64_t lba) mutable {
    const AtaError m = map_errc(e, write);
    AtaResult r;
    r.status = m.status;
    r.error = m.error;
    r.lba = lba;
    done(std::move(r));
  };

  switch (cmd) {
    case kCmdIdentifyDevice: {
      AtaResult r = ok_result();
      r.data_in = identify_data(id, wce);
      return done(std::move(r));
    }
    case kCmdCheckPowerMode: {
      AtaResult r = ok_result();
      r.count = 0xFF;  // active or idle
      return done(std::move(r));
    }
    case kCmdSetFeatures: {
      const std::uint8_t sub = static_cast<std::uint8_t>(tf.features);
      if (sub == 0x02 || sub == 0x82) {
        std::lock_guard<std::mutex> lock(mu_);
        write_cache_ = sub == 0x02;
      } else if (sub != 0x03) {
        return done(error_result(kErrorAbrt));
      }
      return done(ok_result());
    }
    case kCmdFlushCache:
    case kCmdFlushCacheExt: {
      if (!(id.capabilities & proto::kCapFlush)) return done(ok_result());
      proto::Request r;
      r.op = proto::Op::kFlush;
      r.device_id = device_id_;
      return target_.execute(std::move(r), [finish_errc](proto::Reply reply) mutable {
        finish_errc(reply.status, true, 0);
      });
    }
    case kCmdDataSetManagement: {
      if (!(tf.features & 0x01) || !(id.capabilities & proto::kCapTrim) || tf.count == 0 ||
          tf.count > 8) {
        return done(error_result(kErrorAbrt));
      }
      if (tf.data_out.size() < std::size_t{tf.count} * 512) return done(error_result(kErrorAbrt));
      std::vector<std::pair<std::uint64_t, std::uint32_t>> ranges;
      for (std::size_t off = 0; off < std::size_t{tf.count} * 512; off += 8) {
        std::uint64_t e = 0;
        for (int b = 7; b >= 0; --b) e = (e << 8) | tf.data_out[off + static_cast<std::size_t>(b)];
        const std::uint64_t lba = e & 0xFFFFFFFFFFFFull;
        const std::uint32_t len = static_cast<std::uint32_t>(e >> 48);
        if (len == 0) continue;
        if (lba > id.block_count || len > id.block_count - lba) {
          AtaResult r = error_result(kErrorIdnf);
          r.lba = lba;
          return done(std::move(r));
        }
        ranges.emplace_back(lba, len);
      }
      auto chain = std::make_shared<detail::Chain>();
      chain->target = &target_;
      chain->count = ranges.size();
      const std::uint32_t device = device_id_;
      chain->make = [ranges, device](std::size_t i) {
        proto::Request r;
        r.op = proto::Op::kTrim;
        r.device_id = device;
        r.lba = ranges[i].first;
        r.blocks = ranges[i].second;
        return r;
      };
      chain->done = [finish_errc](Errc e) mutable { finish_errc(e, true, 0); };
      return detail::run_chain(std::move(chain));
    }
    default: break;
  }

  // Reads and writes.
  bool write = false;
  bool ext = true;
  bool fua = false;
  std::uint64_t lba = tf.lba;
  std::uint64_t blocks = 0;
  switch (cmd) {
    case kCmdReadSectors:
    case kCmdReadDma:
    case kCmdWriteSectors:
    case kCmdWriteDma:
      ext = false;
      write = cmd == kCmdWriteSectors || cmd == kCmdWriteDma;
      break;
    case kCmdReadSectorsExt:
    case kCmdReadDmaExt: break;
    case kCmdWriteSectorsExt:
    case kCmdWriteDmaExt: write = true; break;
    case kCmdWriteDmaFuaExt:
      write = true;
      fua = true;
      break;
    case kCmdReadFpdmaQueued:
    case kCmdWriteFpdmaQueued:
      write = cmd == kCmdWriteFpdmaQueued;
      fua = tf.device & 0x80;
      blocks = tf.features == 0 ? 65536 : tf.features;  // NCQ: sector count in FEATURES
      break;
    default: return done(error_result(kErrorAbrt));
  }
  if (!ext) {
    if (tf.lba > 0xFFFFFF || !(tf.device & 0x40)) return done(error_result(kErrorAbrt));
    lba = tf.lba | (std::uint64_t{tf.device & 0x0Fu} << 24);
    blocks = (tf.count & 0xFF) == 0 ? 256 : (tf.count & 0xFF);
  } else if (blocks == 0) {
    if (tf.lba > 0xFFFFFFFFFFFFull) return done(error_result(kErrorAbrt));
    blocks = tf.count == 0 ? 65536 : tf.count;
  }
  if (blocks * bs > max_command_bytes_) return done(error_result(kErrorAbrt));
  if (lba > id.block_count || blocks > id.block_count - lba) {
    AtaResult r = error_result(kErrorIdnf);
    r.lba = lba;
    return done(std::move(r));
  }
  if (!write) {
    return detail::read_blocks(target_, device_id_, lba, blocks, bs, id.max_transfer_blocks,
                               [done, lba](Errc e, Bytes data) mutable {
                                 if (e != Errc::kOk) {
                                   const AtaError m = map_errc(e, false);
                                   AtaResult r;
                                   r.status = m.status;
                                   r.error = m.error;
                                   r.lba = lba;
                                   return done(std::move(r));
                                 }
                                 AtaResult r = ok_result();
                                 r.data_in = std::move(data);
                                 done(std::move(r));
                               });
  }
  const std::uint64_t bytes = blocks * bs;
  if (tf.data_out.size() < bytes) return done(error_result(kErrorAbrt));
  auto data = std::make_shared<Bytes>(tf.data_out.begin(),
                                      tf.data_out.begin() + static_cast<std::ptrdiff_t>(bytes));
  const std::uint32_t flags = (fua || !wce) ? proto::kFlagFua : 0u;
  detail::write_blocks(
      target_, device_id_, lba, blocks, bs, id.max_transfer_blocks, flags, std::move(data),
      [finish_errc, lba](Errc e) mutable { finish_errc(e, true, e == Errc::kOk ? 0 : lba); });
}

}  // namespace ipsan::client::ata
