// RamBackend: lazily allocated chunks under striped locks.
#include "ipsan/backends/ram.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "ipsan/backends/spec.h"

namespace ipsan::backends {

Result<std::shared_ptr<RamBackend>, Error> RamBackend::create(std::uint64_t size_bytes,
                                                              const RamOptions& options) {
  if (options.block_size != 512 && options.block_size != 4096) {
    return fail("ram: block size " + std::to_string(options.block_size) + " (must be 512 or 4096)");
  }
  if (size_bytes == 0) return fail("ram: size must be greater than zero");
  if (size_bytes % options.block_size != 0) {
    return fail("ram: size " + std::to_string(size_bytes) +
                " is not a multiple of the block size " + std::to_string(options.block_size));
  }
  Geometry g{options.block_size, size_bytes / options.block_size};
  return std::make_shared<RamBackend>(g, options);
}

RamBackend::RamBackend(Geometry geometry, const RamOptions& options)
    : geometry_(geometry), options_(options) {}

Capabilities RamBackend::capabilities() const {
  Capabilities c;
  c.read_only = options_.read_only;
  c.fua = true;
  c.flush = false;  // no volatile cache: flush is a no-op that succeeds
  c.trim = true;
  c.write_zeroes = true;
  return c;
}

std::string RamBackend::describe() const {
  return "ram:" + format_size(geometry_.size_bytes()) + "/" + std::to_string(geometry_.block_size) +
         (options_.read_only ? ",ro" : "");
}

void RamBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (out.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, out.size() / bs); e != Errc::kOk) return done(e);
  std::uint64_t off = lba * bs;
  std::shared_lock<std::shared_mutex> span_lock;
  if (spans_chunks(off, out.size())) span_lock = std::shared_lock(atomic_mu_);
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::uint64_t chunk = off / kChunkBytes;
    const std::uint64_t in_chunk = off % kChunkBytes;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(kChunkBytes - in_chunk, out.size() - pos));
    Stripe& s = stripes_[chunk % kStripes];
    {
      std::lock_guard lock(s.mu);
      auto it = s.chunks.find(chunk);
      if (it == s.chunks.end()) {
        std::memset(out.data() + pos, 0, n);
      } else {
        std::memcpy(out.data() + pos, it->second.get() + in_chunk, n);
      }
    }
    pos += n;
    off += n;
  }
  if (span_lock.owns_lock()) span_lock.unlock();  // the completion may start an atomic write
  done(Errc::kOk);
}

Errc RamBackend::store(std::uint64_t off, std::span<const std::uint8_t> in, bool allocate_only) {
  std::size_t pos = 0;
  while (pos < in.size()) {
    const std::uint64_t chunk = off / kChunkBytes;
    const std::uint64_t in_chunk = off % kChunkBytes;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(kChunkBytes - in_chunk, in.size() - pos));
    Stripe& s = stripes_[chunk % kStripes];
    {
      std::lock_guard lock(s.mu);
      auto it = s.chunks.find(chunk);
      if (it == s.chunks.end()) {
        // Allocation failure on the data path is reported, not thrown.
        Chunk c(new (std::nothrow) std::uint8_t[kChunkBytes]);
        if (!c) return Errc::kNoSpace;
        std::memset(c.get(), 0, kChunkBytes);
        it = s.chunks.emplace(chunk, std::move(c)).first;
        allocated_chunks_.fetch_add(1);
      }
      if (!allocate_only) std::memcpy(it->second.get() + in_chunk, in.data() + pos, n);
    }
    pos += n;
    off += n;
  }
  return Errc::kOk;
}

void RamBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool /*fua*/,
                       Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (in.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, in.size() / bs); e != Errc::kOk) return done(e);
  if (options_.read_only) return done(Errc::kWriteProtected);
  const std::uint64_t off = lba * bs;
  Errc e = Errc::kOk;
  {
    std::shared_lock<std::shared_mutex> span_lock;
    if (spans_chunks(off, in.size())) span_lock = std::shared_lock(atomic_mu_);
    e = store(off, in, false);
  }
  done(e);
}

void RamBackend::write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool /*fua*/,
                              Completion done) {
  const std::uint32_t bs = geometry_.block_size;
  if (in.size() % bs != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(geometry_, lba, in.size() / bs); e != Errc::kOk) return done(e);
  if (options_.read_only) return done(Errc::kWriteProtected);
  const std::uint64_t off = lba * bs;
  Errc e = Errc::kOk;
  {
    std::unique_lock lock(atomic_mu_);
    // Every chunk first (zero-filled chunks read as before), then the data: all or nothing.
    e = store(off, in, true);
    if (e == Errc::kOk) e = store(off, in, false);
  }
  done(e);
}

void RamBackend::flush(Completion done) { done(Errc::kOk); }

void RamBackend::zero_range(std::uint64_t off, std::uint64_t bytes) {
  std::shared_lock<std::shared_mutex> span_lock;
  if (spans_chunks(off, bytes)) span_lock = std::shared_lock(atomic_mu_);
  const std::uint64_t end = off + bytes;
  while (off < end) {
    const std::uint64_t chunk = off / kChunkBytes;
    const std::uint64_t in_chunk = off % kChunkBytes;
    const std::uint64_t n = std::min<std::uint64_t>(kChunkBytes - in_chunk, end - off);
    Stripe& s = stripes_[chunk % kStripes];
    {
      std::lock_guard lock(s.mu);
      auto it = s.chunks.find(chunk);
      if (it != s.chunks.end()) {
        if (n == kChunkBytes) {
          s.chunks.erase(it);
          allocated_chunks_.fetch_sub(1);
        } else {
          std::memset(it->second.get() + in_chunk, 0, static_cast<std::size_t>(n));
        }
      }
    }
    off += n;
  }
}

void RamBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  if (Errc e = check_range(geometry_, lba, blocks); e != Errc::kOk) return done(e);
  if (options_.read_only) return done(Errc::kWriteProtected);
  zero_range(lba * geometry_.block_size, blocks * geometry_.block_size);
  done(Errc::kOk);
}

void RamBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool /*may_trim*/,
                              Completion done) {
  trim(lba, blocks, std::move(done));
}

}  // namespace ipsan::backends
