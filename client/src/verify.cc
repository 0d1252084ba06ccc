#include "ipsan/client/verify.h"

#include <cstdio>
#include <memory>

#include "ipsan/base/pattern.h"
#include "ipsan/base/units.h"

namespace ipsan::client {

std::string VerifyResult::summary() const {
  auto rate = [](std::uint64_t bytes, Duration d) {
    double s = to_seconds(d);
    return s > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / s : 0.0;
  };
  char buf[512];
  std::string out;
  if (bytes_written) {
    std::snprintf(buf, sizeof buf, "wrote %s in %.3f s (%.1f MiB/s); ",
                  format_bytes(bytes_written).c_str(), to_seconds(write_time),
                  rate(bytes_written, write_time));
    out += buf;
  }
  if (bytes_read) {
    std::snprintf(buf, sizeof buf, "read %s in %.3f s (%.1f MiB/s); ",
                  format_bytes(bytes_read).c_str(), to_seconds(read_time),
                  rate(bytes_read, read_time));
    out += buf;
  }
  if (status != Errc::kOk) {
    out += "FAILED: " + std::string(to_string(status));
    if (!error.empty()) out += " (" + error + ")";
  } else if (bad_blocks) {
    std::snprintf(buf, sizeof buf, "MISMATCH: %llu bad blocks, first at lba %llu",
                  static_cast<unsigned long long>(bad_blocks),
                  static_cast<unsigned long long>(first_bad_lba));
    out += buf;
  } else {
    out += "verified, 0 bad blocks";
  }
  return out;
}

namespace {

class Verifier : public std::enable_shared_from_this<Verifier> {
 public:
  Verifier(GenericTarget& t, VerifyOptions o, std::function<void(VerifyResult)> done)
      : target_(t), opt_(o), done_(std::move(done)) {}

  void start() {
    if (opt_.io_blocks == 0) opt_.io_blocks = 1;
    if (opt_.queue_depth == 0) opt_.queue_depth = 1;
    if (opt_.write) begin_phase(true);
    else if (opt_.read) begin_phase(false);
    else finish();
  }

 private:
  void begin_phase(bool writing) {
    writing_ = writing;
    next_ = 0;
    outstanding_ = 0;
    phase_start_ = steady_now();
    issue();
  }

  void issue() {
    while (outstanding_ < opt_.queue_depth && next_ < opt_.blocks && res_.status == Errc::kOk) {
      std::uint64_t off = next_;
      std::uint32_t n = static_cast<std::uint32_t>(std::min<std::uint64_t>(opt_.io_blocks, opt_.blocks - off));
      next_ += n;
      ++outstanding_;
      proto::Request req;
      req.device_id = opt_.device_id;
      req.lba = opt_.lba + off;
      req.blocks = n;
      auto self = shared_from_this();
      if (writing_) {
        req.op = proto::Op::kWrite;
        req.flags = opt_.fua ? proto::kFlagFua : 0;
        req.data.resize(std::size_t{n} * opt_.block_size);
        fill_pattern_blocks(req.data, opt_.block_size, opt_.seed, req.lba, opt_.generation);
        target_.execute(std::move(req), [self, n](proto::Reply r) { self->done_io(r, n, 0); });
      } else {
        req.op = proto::Op::kRead;
        std::uint64_t lba = req.lba;
        target_.execute(std::move(req), [self, n, lba](proto::Reply r) { self->done_io(r, n, lba); });
      }
    }
    if (outstanding_ == 0 && (next_ >= opt_.blocks || res_.status != Errc::kOk)) end_phase();
  }

  void done_io(const proto::Reply& r, std::uint32_t n, std::uint64_t lba) {
    --outstanding_;
    const std::uint64_t bytes = std::uint64_t{n} * opt_.block_size;
    if (r.status != Errc::kOk) {
      if (res_.status == Errc::kOk) {
        res_.status = r.status;
        res_.error = std::string(writing_ ? "write" : "read") + " failed";
      }
    } else if (writing_) {
      res_.bytes_written += bytes;
    } else {
      res_.bytes_read += bytes;
      if (r.data.size() != bytes) {
        if (res_.status == Errc::kOk) {
          res_.status = Errc::kBadMessage;
          res_.error = "short read";
        }
      } else {
        for (std::uint32_t i = 0; i < n; ++i) {
          std::span<const std::uint8_t> blk(r.data.data() + std::size_t{i} * opt_.block_size,
                                            opt_.block_size);
          if (!check_pattern(blk, opt_.seed, lba + i, opt_.generation)) {
            if (res_.bad_blocks++ == 0 || lba + i < res_.first_bad_lba) res_.first_bad_lba = lba + i;
          }
        }
      }
    }
    if (opt_.on_progress) {
      opt_.on_progress(writing_, writing_ ? res_.bytes_written : res_.bytes_read,
                       opt_.blocks * opt_.block_size);
    }
    issue();
  }

  void end_phase() {
    if (writing_) {
      // FLUSH is a barrier over every acknowledged write: include it in the write time.
      auto self = shared_from_this();
      proto::Request f;
      f.op = proto::Op::kFlush;
      f.device_id = opt_.device_id;
      writing_ = false;
      flushing_ = true;
      target_.execute(std::move(f), [self](proto::Reply r) {
        self->flushing_ = false;
        if (r.status != Errc::kOk && self->res_.status == Errc::kOk) {
          self->res_.status = r.status;
          self->res_.error = "flush failed";
        }
        self->res_.write_time = steady_now() - self->phase_start_;
        if (self->opt_.read && self->res_.status == Errc::kOk) self->begin_phase(false);
        else self->finish();
      });
      return;
    }
    if (flushing_) return;
    res_.read_time = steady_now() - phase_start_;
    finish();
  }

  void finish() {
    if (done_) {
      auto d = std::move(done_);
      done_ = nullptr;
      d(res_);
    }
  }

  GenericTarget& target_;
  VerifyOptions opt_;
  std::function<void(VerifyResult)> done_;
  VerifyResult res_;
  bool writing_ = false;
  bool flushing_ = false;
  std::uint64_t next_ = 0;
  std::uint32_t outstanding_ = 0;
  TimePoint phase_start_;
};

}  // namespace

void run_verify(GenericTarget& target, const VerifyOptions& options,
                std::function<void(VerifyResult)> done) {
  std::make_shared<Verifier>(target, options, std::move(done))->start();
}

}  // namespace ipsan::client
