#include "ipsan/client/ata/device.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ipsan/proto/codec.h"
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
    // The identity comes from the network: the one geometry check (proto/codec.h).
    if (e == Errc::kOk && !proto::valid_geometry(id.block_size, id.block_count)) {
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

namespace {

// One command in flight: what its handler may use.
struct OpEntry;
struct AtaCall {
  GenericTarget& target;
  std::uint32_t device_id;
  std::uint32_t max_command_bytes;
  std::mutex& mu;           // guards write_cache
  bool& write_cache;
  proto::Identity id;       // snapshot taken under mu
  bool wce;                 // write cache enabled, snapshot
  const Taskfile& tf;
  const OpEntry& op;
  AtaDone done;
};

// Completes with the ATA registers THE Errc table (map_errc) gives.
void finish(AtaDone& done, Errc e, bool write, std::uint64_t lba) {
  const AtaError m = map_errc(e, write);
  AtaResult r;
  r.status = m.status;
  r.error = m.error;
  r.lba = lba;
  done(std::move(r));
}

// The ATA command set ipsan's IDE path implements: one row per command (like the SCSI logical
// unit's table), READ/WRITE variants described by their addressing instead of code.
struct OpEntry {
  std::uint8_t command;
  const char* name;
  void (*run)(AtaCall&);
  bool write = false;  // READ/WRITE family: direction
  bool ext = false;    // 48-bit LBA and 16-bit count (else 28-bit LBA, 8-bit count)
  bool fua = false;    // forced unit access
  bool ncq = false;    // FPDMA QUEUED: count in FEATURES, FUA in DEVICE bit 7
};

void identify_device(AtaCall& c) {
  AtaResult r = ok_result();
  r.data_in = Device::identify_data(c.id, c.wce);
  c.done(std::move(r));
}

void check_power_mode(AtaCall& c) {
  AtaResult r = ok_result();
  r.count = 0xFF;  // active or idle
  c.done(std::move(r));
}

void set_features(AtaCall& c) {
  const std::uint8_t sub = static_cast<std::uint8_t>(c.tf.features);
  if (sub == 0x02 || sub == 0x82) {  // enable / disable the volatile write cache
    std::lock_guard<std::mutex> lock(c.mu);
    c.write_cache = sub == 0x02;
  } else if (sub != 0x03) {  // 03h: set transfer mode (accepted, nothing to do)
    return c.done(error_result(kErrorAbrt));
  }
  c.done(ok_result());
}

void flush_cache(AtaCall& c) {
  if (!(c.id.capabilities & proto::kCapFlush)) return c.done(ok_result());
  proto::Request r;
  r.op = proto::Op::kFlush;
  r.device_id = c.device_id;
  c.target.execute(std::move(r), [done = std::move(c.done)](proto::Reply reply) mutable {
    finish(done, reply.status, true, 0);
  });
}

void data_set_management(AtaCall& c) {
  const Taskfile& tf = c.tf;
  if (!(tf.features & 0x01) || !(c.id.capabilities & proto::kCapTrim) || tf.count == 0 ||
      tf.count > 8) {
    return c.done(error_result(kErrorAbrt));
  }
  if (tf.data_out.size() < std::size_t{tf.count} * 512) return c.done(error_result(kErrorAbrt));
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ranges;
  for (std::size_t off = 0; off < std::size_t{tf.count} * 512; off += 8) {
    std::uint64_t e = 0;
    for (int b = 7; b >= 0; --b) e = (e << 8) | tf.data_out[off + static_cast<std::size_t>(b)];
    const std::uint64_t lba = e & 0xFFFFFFFFFFFFull;
    const std::uint32_t len = static_cast<std::uint32_t>(e >> 48);
    if (len == 0) continue;
    if (lba > c.id.block_count || len > c.id.block_count - lba) {
      AtaResult r = error_result(kErrorIdnf);
      r.lba = lba;
      return c.done(std::move(r));
    }
    ranges.emplace_back(lba, len);
  }
  auto chain = std::make_shared<detail::Chain>();
  chain->target = &c.target;
  chain->count = ranges.size();
  const std::uint32_t device = c.device_id;
  chain->make = [ranges, device](std::size_t i) {
    proto::Request r;
    r.op = proto::Op::kTrim;
    r.device_id = device;
    r.lba = ranges[i].first;
    r.blocks = ranges[i].second;
    return r;
  };
  chain->done = [done = std::move(c.done)](Errc e) mutable { finish(done, e, true, 0); };
  detail::run_chain(std::move(chain));
}

// READ/WRITE SECTORS, DMA, EXT, FUA EXT and FPDMA QUEUED: the row says how to decode.
void read_write(AtaCall& c) {
  const Taskfile& tf = c.tf;
  const OpEntry& op = c.op;
  const std::uint32_t bs = c.id.block_size;
  std::uint64_t lba = tf.lba;
  std::uint64_t blocks = 0;
  bool fua = op.fua;
  if (op.ncq) {
    fua = (tf.device & 0x80) != 0;
    blocks = tf.features == 0 ? 65536 : tf.features;  // NCQ: sector count in FEATURES
  }
  if (!op.ext) {
    if (tf.lba > 0xFFFFFF || !(tf.device & 0x40)) return c.done(error_result(kErrorAbrt));
    lba = tf.lba | (std::uint64_t{tf.device & 0x0Fu} << 24);
    blocks = (tf.count & 0xFF) == 0 ? 256 : (tf.count & 0xFF);
  } else if (blocks == 0) {
    if (tf.lba > 0xFFFFFFFFFFFFull) return c.done(error_result(kErrorAbrt));
    blocks = tf.count == 0 ? 65536 : tf.count;
  }
  if (blocks * bs > c.max_command_bytes) return c.done(error_result(kErrorAbrt));
  if (lba > c.id.block_count || blocks > c.id.block_count - lba) {
    AtaResult r = error_result(kErrorIdnf);
    r.lba = lba;
    return c.done(std::move(r));
  }
  if (!op.write) {
    return detail::read_blocks(c.target, c.device_id, lba, blocks, bs, c.id.max_transfer_blocks,
                               [done = std::move(c.done), lba](Errc e, Bytes data) mutable {
                                 if (e != Errc::kOk) return finish(done, e, false, lba);
                                 AtaResult r = ok_result();
                                 r.data_in = std::move(data);
                                 done(std::move(r));
                               });
  }
  const std::uint64_t bytes = blocks * bs;
  if (tf.data_out.size() < bytes) return c.done(error_result(kErrorAbrt));
  auto data = std::make_shared<Bytes>(tf.data_out.begin(),
                                      tf.data_out.begin() + static_cast<std::ptrdiff_t>(bytes));
  const std::uint32_t flags = (fua || !c.wce) ? proto::kFlagFua : 0u;
  detail::write_blocks(c.target, c.device_id, lba, blocks, bs, c.id.max_transfer_blocks, flags,
                       std::move(data), [done = std::move(c.done), lba](Errc e) mutable {
                         finish(done, e, true, e == Errc::kOk ? 0 : lba);
                       });
}

// {command, name, handler, write, ext, fua, ncq}
constexpr OpEntry kOps[] = {
    {kCmdIdentifyDevice, "IDENTIFY DEVICE", identify_device},
    {kCmdCheckPowerMode, "CHECK POWER MODE", check_power_mode},
    {kCmdSetFeatures, "SET FEATURES", set_features},
    {kCmdFlushCache, "FLUSH CACHE", flush_cache},
    {kCmdFlushCacheExt, "FLUSH CACHE EXT", flush_cache},
    {kCmdDataSetManagement, "DATA SET MANAGEMENT", data_set_management},
    {kCmdReadSectors, "READ SECTORS", read_write, false, false, false, false},
    {kCmdReadDma, "READ DMA", read_write, false, false, false, false},
    {kCmdWriteSectors, "WRITE SECTORS", read_write, true, false, false, false},
    {kCmdWriteDma, "WRITE DMA", read_write, true, false, false, false},
    {kCmdReadSectorsExt, "READ SECTORS EXT", read_write, false, true, false, false},
    {kCmdReadDmaExt, "READ DMA EXT", read_write, false, true, false, false},
    {kCmdWriteSectorsExt, "WRITE SECTORS EXT", read_write, true, true, false, false},
    {kCmdWriteDmaExt, "WRITE DMA EXT", read_write, true, true, false, false},
    {kCmdWriteDmaFuaExt, "WRITE DMA FUA EXT", read_write, true, true, true, false},
    {kCmdReadFpdmaQueued, "READ FPDMA QUEUED", read_write, false, true, false, true},
    {kCmdWriteFpdmaQueued, "WRITE FPDMA QUEUED", read_write, true, true, false, true},
};

const OpEntry* find_op(std::uint8_t command) {
  for (const OpEntry& e : kOps) {
    if (e.command == command) return &e;
  }
  return nullptr;
}

}  // namespace

const char* command_name(std::uint8_t command) {
  const OpEntry* op = find_op(command);
  return op != nullptr ? op->name : "unsupported command";
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
  if (!attached) return done(error_result(kErrorAbrt));
  const OpEntry* op = find_op(tf.command);
  if (op == nullptr) return done(error_result(kErrorAbrt));  // ABRT: command not supported
  AtaCall call{target_, device_id_, max_command_bytes_, mu_, write_cache_, id, wce, tf, *op,
               std::move(done)};
  op->run(call);
}

}  // namespace ipsan::client::ata
