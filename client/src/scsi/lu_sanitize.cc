// SCSI logical unit emulation: SANITIZE (SBC-4 5.30, 4.11). The whole medium is sanitized with
// the generic requests the SAN/IP driver already has:
//   OVERWRITE    WRITE of the initialization pattern (repeated to fill a block, inverted between
//                passes with INVERT) over every LBA, OVERWRITE COUNT passes, FUA
//   BLOCK ERASE  TRIM of every LBA (LBPRZ=1: they read back as zeroes and are deallocated);
//   CRYPTO ERASE the same: the server keeps no per-device key to change, so the data is made
//                unreadable by deallocating it (WRITE ZEROES / zero WRITEs without TRIM)
//   EXIT FAILURE MODE  leaves the failure mode a failed sanitize left behind
// in requests of at most LogicalUnitOptions::background_chunk_bytes, one after another, then a
// FLUSH. While it runs every command but INQUIRY, REPORT LUNS and REQUEST SENSE ends with NOT
// READY, LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS (progress indication in the sense-key
// specific bytes); the operation survives task management (ABORT TASK, LUN RESET, ...) and the
// end of the initiator's session, as SBC-4 requires. IMMED=1 answers once the parameters are
// checked. A failure leaves the unit in sanitize failure mode: medium commands get MEDIUM ERROR,
// SANITIZE COMMAND FAILED (31h/03h) until a SANITIZE succeeds or EXIT FAILURE MODE.
#include <algorithm>
#include <memory>

#include "scsi/io_chain.h"
#include "scsi/lu_internal.h"

namespace ipsan::client::scsi {

using detail::Chain;
using detail::run_chain;

namespace {
constexpr std::uint8_t kOverwrite = 0x01;
constexpr std::uint8_t kBlockErase = 0x02;
constexpr std::uint8_t kCryptoErase = 0x03;
constexpr std::uint8_t kExitFailureMode = 0x1F;

// One block of the initialization pattern (repeated to fill the block), optionally inverted.
Bytes pattern_block(const Bytes& pattern, std::uint32_t block_size, bool invert) {
  Bytes b(block_size);
  for (std::size_t i = 0; i < b.size(); ++i) {
    const std::uint8_t v = pattern[i % pattern.size()];
    b[i] = invert ? static_cast<std::uint8_t>(~v) : v;
  }
  return b;
}
}  // namespace

namespace {
std::uint64_t effective_rate(const LogicalUnitOptions& o, std::uint64_t total_bytes,
                             std::chrono::nanoseconds min_duration) {
  if (!o.schedule) return 0;
  std::uint64_t rate = o.background_bytes_per_second;
  if (min_duration.count() > 0 && total_bytes > 0) {
    const long double floor_rate = static_cast<long double>(total_bytes) * 1e9L /
                                   static_cast<long double>(min_duration.count());
    const std::uint64_t r = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(floor_rate));
    rate = rate == 0 ? r : std::min(rate, r);
  }
  return rate;
}
}  // namespace

Pacer::Pacer(GenericTarget& inner, const LogicalUnitOptions& options, std::uint32_t block_size,
             std::uint64_t total_bytes, std::chrono::nanoseconds min_duration)
    : inner_(inner),
      rate_(effective_rate(options, total_bytes, min_duration)),
      schedule_(options.schedule),
      block_size_(block_size),
      start_(std::chrono::steady_clock::now()),
      min_duration_(options.schedule ? min_duration : std::chrono::nanoseconds{0}) {}

void Pacer::after_min_duration(std::function<void()> fn) {
  const auto due = start_ + min_duration_;
  const auto now = std::chrono::steady_clock::now();
  if (min_duration_.count() <= 0 || due <= now) return fn();
  schedule_(std::chrono::duration_cast<std::chrono::nanoseconds>(due - now), std::move(fn));
}

void Pacer::execute(proto::Request request, std::function<void(proto::Reply)> done) {
  const std::uint64_t bytes = request.op == proto::Op::kRead
                                  ? std::uint64_t{request.blocks} * block_size_
                                  : request.data.size();
  if (rate_ == 0 || bytes == 0) return inner_.execute(std::move(request), std::move(done));
  // The request may start once the bytes before it fit the rate.
  const auto due =
      start_ + std::chrono::nanoseconds(static_cast<std::int64_t>(
                   static_cast<long double>(bytes_) * 1e9L / static_cast<long double>(rate_)));
  bytes_ += bytes;
  const auto now = std::chrono::steady_clock::now();
  if (due <= now) return inner_.execute(std::move(request), std::move(done));
  auto self = shared_from_this();
  auto req = std::make_shared<proto::Request>(std::move(request));
  schedule_(std::chrono::duration_cast<std::chrono::nanoseconds>(due - now),
            [self, req, done = std::move(done)]() mutable {
              self->inner_.execute(std::move(*req), std::move(done));
            });
}

void LuHandlers::sanitize(CmdPtr c) {
  const Bytes& cdb = c->command.cdb;
  const bool immed = cdb[1] & 0x80;
  const std::uint8_t sa = cdb[1] & 0x1F;
  const std::size_t param_len = load_be16(&cdb[7]);
  const Bytes& p = c->command.data_out;
  const std::uint32_t bs = c->s.block_size;

  if (sa == kExitFailureMode || sa == kBlockErase || sa == kCryptoErase) {
    // No parameter list for these (SBC-4 5.30.1).
    if (param_len != 0) return c->check(invalid_field_in_cdb(7));
  }
  if (sa == kExitFailureMode) {
    {
      std::lock_guard<std::mutex> lock(c->lu.mu_);
      c->lu.sanitize_failed_ = false;
    }
    return c->good();
  }

  Bytes pattern;
  unsigned passes = 1;
  bool invert = false;
  if (sa == kOverwrite) {
    // Parameter list: INVERT, TEST, OVERWRITE COUNT; INITIALIZATION PATTERN LENGTH; pattern.
    if (param_len < 5 || param_len > std::size_t{bs} + 4) return c->check(invalid_field_in_cdb(7));
    if (p.size() < param_len) return c->short_data_out(param_len);
    invert = p[0] & 0x80;
    if (p[0] & 0x60) return c->check(invalid_field_in_parameter_list(0, 6));  // TEST
    passes = p[0] & 0x1F;
    if (passes == 0) return c->check(invalid_field_in_parameter_list(0, 4));
    const std::size_t ipl = load_be16(&p[2]);
    if (ipl == 0 || ipl > bs) return c->check(invalid_field_in_parameter_list(2));
    if (ipl + 4 > param_len)
      return c->check(make_sense(kIllegalRequest, asc::kParameterListLengthError));
    pattern.assign(p.begin() + 4, p.begin() + 4 + static_cast<std::ptrdiff_t>(ipl));
  }
  if (auto wp = write_protect_sense(c->s)) return c->check(*wp);

  const std::uint64_t blocks = c->s.block_count;
  const std::uint32_t caps = c->s.identity.capabilities;
  // Erase by TRIM (deallocate) when the server has it; otherwise write zeroes.
  const bool erase = sa != kOverwrite;
  const bool by_trim = erase && (caps & proto::kCapTrim);
  const bool by_write_zeroes = erase && !by_trim && (caps & proto::kCapWriteZeroes);
  if (erase && !by_trim && !by_write_zeroes) pattern.assign(1, 0);  // zero WRITEs

  std::uint64_t per = 0;
  if (by_trim || by_write_zeroes) {
    per = std::max<std::uint32_t>(1, c->s.options.max_write_same_blocks);
  } else {
    per = std::min<std::uint64_t>(detail::chunk_blocks(c->s.identity.max_transfer_blocks),
                                  c->s.options.background_chunk_bytes / bs);
    per = std::max<std::uint64_t>(1, per);
  }
  const std::uint64_t per_pass = (blocks + per - 1) / per;
  {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    if (c->lu.sanitizing_) return c->check(sanitize_in_progress(c->lu.sanitize_progress_locked()));
    c->lu.sanitizing_ = true;
    c->lu.sanitize_failed_ = false;
    c->lu.erased_all_ = false;
    c->lu.sanitize_done_ = 0;
    c->lu.sanitize_total_ = std::max<std::uint64_t>(1, per_pass * passes);
  }
  if (immed) c->good_write(param_len);

  // The chunk buffers of the pattern (and of its inverse), shared by every request.
  std::shared_ptr<const Bytes> normal;
  std::shared_ptr<const Bytes> inverted;
  if (!pattern.empty()) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(per, blocks));
    auto fill = [&](bool inv) {
      const Bytes block = pattern_block(pattern, bs, inv);
      auto b = std::make_shared<Bytes>();
      b->reserve(chunk * bs);
      for (std::size_t i = 0; i < chunk; ++i) b->insert(b->end(), block.begin(), block.end());
      return std::shared_ptr<const Bytes>(std::move(b));
    };
    normal = fill(false);
    if (invert && passes > 1) inverted = fill(true);
  }

  // An OVERWRITE lasts at least LogicalUnitOptions::sanitize_min_duration (paced over it).
  const bool overwrite = sa == kOverwrite;
  const std::uint64_t total_bytes = overwrite ? blocks * bs * passes : 0;
  auto pacer = std::make_shared<Pacer>(
      c->lu.target_, c->s.options, bs, total_bytes,
      overwrite ? c->s.options.sanitize_min_duration : std::chrono::nanoseconds{0});
  auto chain = std::make_shared<Chain>();
  chain->target = pacer.get();
  chain->count = static_cast<std::size_t>(per_pass * passes);
  const std::uint32_t device = c->lu.device_id_;
  const std::uint32_t fua = (caps & proto::kCapFua) ? proto::kFlagFua : 0u;
  chain->make = [=](std::size_t i) {
    const std::uint64_t pass = i / per_pass;
    const std::uint64_t lba = (i % per_pass) * per;
    proto::Request r;
    r.device_id = device;
    r.lba = lba;
    r.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(per, blocks - lba));
    if (by_trim) {
      r.op = proto::Op::kTrim;
    } else if (by_write_zeroes) {
      r.op = proto::Op::kWriteZeroes;
      r.flags = proto::kFlagMayTrim;
    } else {
      r.op = proto::Op::kWrite;
      r.flags = fua;
      const Bytes& src = (inverted && pass % 2 == 1) ? *inverted : *normal;
      r.data.assign(src.begin(),
                    src.begin() + static_cast<std::ptrdiff_t>(std::uint64_t{r.blocks} * bs));
    }
    return r;
  };
  chain->on_reply = [c](std::size_t, proto::Reply&) {
    std::lock_guard<std::mutex> lock(c->lu.mu_);
    ++c->lu.sanitize_done_;
    return Errc::kOk;
  };
  auto finish = [c, immed, by_trim, param_len](Errc e) {
    {
      std::lock_guard<std::mutex> lock(c->lu.mu_);
      c->lu.sanitizing_ = false;
      c->lu.sanitize_failed_ = e != Errc::kOk;
      c->lu.erased_all_ = e == Errc::kOk && by_trim;
    }
    if (immed) return;  // answered already; a failure shows as sanitize failure mode
    if (e != Errc::kOk) return c->fail(e, Direction::kWrite);
    c->good_write(param_len);
  };
  chain->done = [c, caps, device, finish, pacer](Errc e) {
    if (e != Errc::kOk) return finish(e);
    pacer->after_min_duration([c, caps, device, finish] {
      if (!(caps & proto::kCapFlush)) return finish(Errc::kOk);
      proto::Request r;
      r.op = proto::Op::kFlush;
      r.device_id = device;
      c->lu.target_.execute(std::move(r), [finish](proto::Reply reply) { finish(reply.status); });
    });
  };
  run_chain(std::move(chain));
}

}  // namespace ipsan::client::scsi
