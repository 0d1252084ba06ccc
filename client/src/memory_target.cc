#include "ipsan/client/memory_target.h"

#include <algorithm>
#include <utility>

namespace ipsan::client {

proto::Identity MemoryTarget::default_identity(std::uint64_t block_count, std::uint32_t block_size,
                                               std::uint32_t max_transfer_blocks) {
  proto::Identity id;
  id.vendor = "IPSAN";
  id.product = "memory disk";
  id.revision = "0001";
  id.serial = "MEM0001";
  for (std::size_t i = 0; i < id.uuid.size(); ++i) id.uuid[i] = static_cast<std::uint8_t>(0xA0 + i);
  id.block_size = block_size;
  id.block_count = block_count;
  id.capabilities = proto::kCapFua | proto::kCapFlush | proto::kCapTrim | proto::kCapWriteZeroes;
  id.max_transfer_blocks = max_transfer_blocks;
  id.optimal_transfer_blocks = max_transfer_blocks;
  return id;
}

void MemoryTarget::add_device(std::uint32_t device_id, proto::Identity identity) {
  std::lock_guard<std::mutex> lock(mu_);
  Device d;
  d.identity = std::move(identity);
  devices_[device_id] = std::move(d);
}

void MemoryTarget::inject(const Fault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back(fault);
}

void MemoryTarget::clear_faults() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
}

void MemoryTarget::resize(std::uint32_t device_id, std::uint64_t block_count) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return;
  it->second.identity.block_count = block_count;
  it->second.capacity_changed = true;
  erase_range(it->second, block_count, ~std::uint64_t{0} - block_count);
}

void MemoryTarget::set_deferred(bool deferred) {
  std::lock_guard<std::mutex> lock(mu_);
  deferred_ = deferred;
}

std::size_t MemoryTarget::run_pending() {
  std::size_t n = 0;
  for (;;) {
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_.empty()) return n;
      f = std::move(pending_.front());
      pending_.pop_front();
    }
    f();
    ++n;
  }
}

std::vector<proto::Request> MemoryTarget::log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

void MemoryTarget::clear_log() {
  std::lock_guard<std::mutex> lock(mu_);
  log_.clear();
}

void MemoryTarget::set_log_data(bool keep) {
  std::lock_guard<std::mutex> lock(mu_);
  log_data_ = keep;
}

Bytes MemoryTarget::peek(std::uint32_t device_id, std::uint64_t lba, std::uint32_t blocks) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(device_id);
  if (it == devices_.end()) return {};
  const std::uint32_t bs = it->second.identity.block_size;
  Bytes out(std::size_t{blocks} * bs, 0);
  for (std::uint32_t i = 0; i < blocks; ++i) {
    auto b = it->second.blocks.find(lba + i);
    if (b != it->second.blocks.end())
      std::copy(b->second.begin(), b->second.end(), out.begin() + std::ptrdiff_t{i} * bs);
  }
  return out;
}

void MemoryTarget::erase_range(Device& d, std::uint64_t lba, std::uint64_t blocks) {
  const std::uint64_t end = blocks > ~std::uint64_t{0} - lba ? ~std::uint64_t{0} : lba + blocks;
  d.blocks.erase(d.blocks.lower_bound(lba), d.blocks.lower_bound(end));
}

void MemoryTarget::execute(proto::Request request, std::function<void(proto::Reply)> done) {
  proto::Reply reply;
  bool deferred = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reply = handle(request);
    if (!log_data_) request.data.clear();
    log_.push_back(std::move(request));
    deferred = deferred_;
    if (deferred) {
      pending_.push_back(
          [done = std::move(done), reply = std::move(reply)]() mutable { done(std::move(reply)); });
    }
  }
  if (!deferred) done(std::move(reply));
}

proto::Reply MemoryTarget::handle(const proto::Request& r) {
  proto::Reply reply;
  auto it = devices_.find(r.device_id);
  if (it == devices_.end()) {
    reply.status = Errc::kUnknownDevice;
    return reply;
  }
  Device& d = it->second;
  const proto::Identity& id = d.identity;
  const std::uint32_t bs = id.block_size;
  // Failure injection first: it stands for the server or its disk failing.
  for (auto f = faults_.begin(); f != faults_.end(); ++f) {
    if (f->op && *f->op != r.op) continue;
    if (f->device_id && *f->device_id != r.device_id) continue;
    const std::uint64_t f_end =
        f->blocks > ~std::uint64_t{0} - f->lba ? ~std::uint64_t{0} : f->lba + f->blocks;
    const bool ranged = proto::op_needs_device_access(r.op) && r.op != proto::Op::kFlush;
    if (ranged && (r.lba + r.blocks <= f->lba || r.lba >= f_end)) continue;
    reply.status = f->error;
    if (f->count > 0 && --f->count == 0) faults_.erase(f);
    return reply;
  }
  if ((proto::op_needs_device_access(r.op) || r.op == proto::Op::kReady) && d.capacity_changed) {
    d.capacity_changed = false;
    reply.status = Errc::kCapacityChanged;
    return reply;
  }
  auto in_range = [&] { return r.lba <= id.block_count && r.blocks <= id.block_count - r.lba; };
  switch (r.op) {
    case proto::Op::kNull: return reply;
    case proto::Op::kReady:
    case proto::Op::kCapacity: reply.capacity = {bs, id.block_count}; return reply;
    case proto::Op::kIdentify:
      reply.identity = id;
      reply.capacity = {bs, id.block_count};
      return reply;
    case proto::Op::kRead: {
      if (!in_range()) {
        reply.status = Errc::kLbaOutOfRange;
        return reply;
      }
      if (id.max_transfer_blocks != 0 && r.blocks > id.max_transfer_blocks) {
        reply.status = Errc::kTooLarge;
        return reply;
      }
      reply.data.assign(std::size_t{r.blocks} * bs, 0);
      for (auto b = d.blocks.lower_bound(r.lba); b != d.blocks.end() && b->first < r.lba + r.blocks;
           ++b) {
        std::copy(b->second.begin(), b->second.end(),
                  reply.data.begin() + static_cast<std::ptrdiff_t>((b->first - r.lba) * bs));
      }
      return reply;
    }
    case proto::Op::kWrite: {
      if (id.capabilities & proto::kCapReadOnly) {
        reply.status = Errc::kWriteProtected;
        return reply;
      }
      if (!in_range()) {
        reply.status = Errc::kLbaOutOfRange;
        return reply;
      }
      if (id.max_transfer_blocks != 0 && r.blocks > id.max_transfer_blocks) {
        reply.status = Errc::kTooLarge;
        return reply;
      }
      if (r.data.size() != std::size_t{r.blocks} * bs) {
        reply.status = Errc::kInvalidArgument;
        return reply;
      }
      for (std::uint32_t i = 0; i < r.blocks; ++i) {
        const auto first = r.data.begin() + std::ptrdiff_t{i} * bs;
        if (std::all_of(first, first + bs, [](std::uint8_t x) { return x == 0; })) {
          d.blocks.erase(r.lba + i);
        } else {
          d.blocks[r.lba + i].assign(first, first + bs);
        }
      }
      return reply;
    }
    case proto::Op::kFlush: return reply;
    case proto::Op::kTrim:
      if (!(id.capabilities & proto::kCapTrim)) {
        reply.status = Errc::kNotSupported;
        return reply;
      }
      [[fallthrough]];
    case proto::Op::kWriteZeroes:
      if (id.capabilities & proto::kCapReadOnly) {
        reply.status = Errc::kWriteProtected;
        return reply;
      }
      if (!in_range()) {
        reply.status = Errc::kLbaOutOfRange;
        return reply;
      }
      erase_range(d, r.lba, r.blocks);
      return reply;
    default: reply.status = Errc::kNotSupported; return reply;
  }
}

}  // namespace ipsan::client
