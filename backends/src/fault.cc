// FaultInjectingBackend; see fault.h.
#include "ipsan/backends/fault.h"

#include <utility>

namespace ipsan::backends {

FaultInjectingBackend::FaultInjectingBackend(BackendPtr inner, std::string name)
    : inner_(std::move(inner)), name_(std::move(name)) {}

std::string FaultInjectingBackend::describe() const {
  return name_ + "(" + inner_->describe() + ")";
}

Errc FaultInjectingBackend::admit(OpKind op, std::uint64_t lba, std::uint64_t blocks, bool fua) {
  std::lock_guard lock(mu_);
  ++counts_[static_cast<int>(op)];
  Errc injected = Errc::kOk;
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (it->op && *it->op != op) continue;
    if (it->range) {
      if (op == OpKind::kFlush) continue;
      const bool overlap = lba < it->lba + it->blocks && it->lba < lba + blocks;
      if (!overlap) continue;
      injected = it->error;
      break;
    }
    if (--it->remaining == 0) {
      injected = it->error;
      rules_.erase(it);
      break;
    }
  }
  log_.push_back(OpRecord{op, lba, blocks, fua, injected});
  return injected;
}

void FaultInjectingBackend::finish(Completion done, Errc e) {
  {
    std::lock_guard lock(mu_);
    if (hold_) {
      held_.push_back(Held{std::move(done), e});
      return;
    }
  }
  done(e);
}

Completion FaultInjectingBackend::wrap(Completion done) {
  return [this, done = std::move(done)](Errc e) mutable { finish(std::move(done), e); };
}

void FaultInjectingBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const std::uint32_t bs = inner_->geometry().block_size;
  if (Errc e = admit(OpKind::kRead, lba, out.size() / bs, false); e != Errc::kOk) {
    return finish(std::move(done), e);
  }
  inner_->read(lba, out, wrap(std::move(done)));
}

void FaultInjectingBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                                  Completion done) {
  const std::uint32_t bs = inner_->geometry().block_size;
  if (Errc e = admit(OpKind::kWrite, lba, in.size() / bs, fua); e != Errc::kOk) {
    return finish(std::move(done), e);
  }
  inner_->write(lba, in, fua, wrap(std::move(done)));
}

void FaultInjectingBackend::flush(Completion done) {
  if (Errc e = admit(OpKind::kFlush, 0, 0, false); e != Errc::kOk) {
    return finish(std::move(done), e);
  }
  inner_->flush(wrap(std::move(done)));
}

void FaultInjectingBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  if (Errc e = admit(OpKind::kTrim, lba, blocks, false); e != Errc::kOk) {
    return finish(std::move(done), e);
  }
  inner_->trim(lba, blocks, wrap(std::move(done)));
}

void FaultInjectingBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                                         Completion done) {
  if (Errc e = admit(OpKind::kWriteZeroes, lba, blocks, false); e != Errc::kOk) {
    return finish(std::move(done), e);
  }
  inner_->write_zeroes(lba, blocks, may_trim, wrap(std::move(done)));
}

void FaultInjectingBackend::fail_nth(std::uint64_t n, Errc error, std::optional<OpKind> op) {
  if (n == 0) n = 1;
  std::lock_guard lock(mu_);
  Rule r;
  r.op = op;
  r.remaining = n;
  r.error = error;
  rules_.push_back(r);
}

void FaultInjectingBackend::fail_range(std::uint64_t lba, std::uint64_t blocks, Errc error,
                                       std::optional<OpKind> op) {
  std::lock_guard lock(mu_);
  Rule r;
  r.op = op;
  r.range = true;
  r.lba = lba;
  r.blocks = blocks;
  r.error = error;
  rules_.push_back(r);
}

void FaultInjectingBackend::clear_faults() {
  std::lock_guard lock(mu_);
  rules_.clear();
}

void FaultInjectingBackend::set_hold(bool hold) {
  std::lock_guard lock(mu_);
  hold_ = hold;
}

std::size_t FaultInjectingBackend::held() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

bool FaultInjectingBackend::release(std::size_t index) {
  Held h;
  {
    std::lock_guard lock(mu_);
    if (index >= held_.size()) return false;
    h = std::move(held_[index]);
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(index));
  }
  h.done(h.result);
  return true;
}

void FaultInjectingBackend::release_all() {
  while (release(0)) {
  }
}

std::uint64_t FaultInjectingBackend::count(OpKind op) const {
  std::lock_guard lock(mu_);
  return counts_[static_cast<int>(op)];
}

std::uint64_t FaultInjectingBackend::total_ops() const {
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  for (auto c : counts_) n += c;
  return n;
}

std::vector<FaultInjectingBackend::OpRecord> FaultInjectingBackend::log() const {
  std::lock_guard lock(mu_);
  return log_;
}

void FaultInjectingBackend::clear_log() {
  std::lock_guard lock(mu_);
  log_.clear();
}

}  // namespace ipsan::backends
