// io_manager.cc: libext2fs I/O channels over a BlockDevice (see io_manager.h).
#include "io_manager.h"

#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <span>
#include <vector>

namespace ipsan::nas {
namespace {

std::mutex g_mu;
std::map<std::string, BlockDevice*> g_devices;
std::uint64_t g_next = 1;

// Write-back block cache of one channel, in device blocks. Writes land in the cache (dirty);
// write_back() writes every dirty block in LBA order, one device request per contiguous run;
// flush() (io_channel_flush, i.e. every durable sync of the NAS) writes back and then flushes the
// device. Small reads (metadata: directory blocks, inode tables, bitmaps) are kept as clean
// blocks; large reads (file data) only consult the cache. The cache never evicts a dirty block on
// its own: the NAS calls write_back() between requests when dirty_bytes() grows past its limit,
// so the disk only moves between request-boundary states (see io_manager.h).
struct Chan {
  BlockDevice* dev = nullptr;
  std::vector<std::uint8_t> bounce;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  struct Entry {
    std::vector<std::uint8_t> data;
    bool dirty = false;
  };
  std::map<std::uint64_t, Entry> cache;  // lba -> block
  std::size_t dirty = 0;                 // dirty blocks
  std::size_t clean_limit = 8192;        // clean blocks kept (dropped in LBA order when over)
  std::vector<std::uint8_t> run_buf;
};

constexpr std::uint64_t kMaxSmallRead = 16;  // blocks: reads up to this size populate the cache
constexpr std::uint64_t kMaxRun = 1024;      // blocks per write-back request

errcode_t to_errcode(Errc e) {
  switch (e) {
    case Errc::kOk: return 0;
    case Errc::kNoSpace: return ENOSPC;
    case Errc::kWriteProtected: return EROFS;
    case Errc::kLbaOutOfRange: return EXT2_ET_LLSEEK_FAILED;
    default: return EIO;
  }
}

Chan* chan_of(io_channel c) { return static_cast<Chan*>(c->private_data); }

errcode_t write_back_chan(Chan* ch) {
  if (ch->dirty == 0) return 0;
  const std::uint64_t bs = ch->dev->block_size();
  auto it = ch->cache.begin();
  while (it != ch->cache.end()) {
    if (!it->second.dirty) {
      ++it;
      continue;
    }
    const std::uint64_t first = it->first;
    auto end = it;
    std::uint64_t n = 0;
    while (end != ch->cache.end() && end->second.dirty && end->first == first + n && n < kMaxRun) {
      ++end;
      ++n;
    }
    ch->run_buf.resize(static_cast<std::size_t>(n * bs));
    std::size_t at = 0;
    for (auto j = it; j != end; ++j, at += bs) std::memcpy(ch->run_buf.data() + at, j->second.data.data(), bs);
    if (Errc e = ch->dev->write(first, std::span<const std::uint8_t>(ch->run_buf)); e != Errc::kOk) {
      return to_errcode(e);  // blocks stay dirty: a later flush retries
    }
    ch->bytes_written += n * bs;
    for (auto j = it; j != end; ++j) j->second.dirty = false;
    ch->dirty -= static_cast<std::size_t>(n);
    it = end;
  }
  // Trim clean blocks over the limit.
  if (ch->cache.size() > ch->clean_limit) {
    for (auto j = ch->cache.begin(); j != ch->cache.end() && ch->cache.size() > ch->clean_limit;) {
      j = j->second.dirty ? std::next(j) : ch->cache.erase(j);
    }
  }
  return 0;
}

// Reads whole device blocks [lba, lba + out.size()/bs) through the cache.
errcode_t read_blocks(Chan* ch, std::uint64_t lba, std::span<std::uint8_t> out) {
  const std::uint64_t bs = ch->dev->block_size();
  const std::uint64_t n = out.size() / bs;
  const bool keep = n <= kMaxSmallRead;
  std::uint64_t i = 0;
  while (i < n) {
    auto it = ch->cache.find(lba + i);
    if (it != ch->cache.end()) {
      std::memcpy(out.data() + i * bs, it->second.data.data(), bs);
      ++i;
      continue;
    }
    std::uint64_t m = 1;  // a run of misses: one device request
    while (i + m < n && ch->cache.count(lba + i + m) == 0) ++m;
    std::span<std::uint8_t> part(out.data() + i * bs, static_cast<std::size_t>(m * bs));
    if (Errc e = ch->dev->read(lba + i, part); e != Errc::kOk) return to_errcode(e);
    ch->bytes_read += m * bs;
    if (keep) {
      for (std::uint64_t k = 0; k < m; ++k) {
        Chan::Entry& en = ch->cache[lba + i + k];
        en.data.assign(part.begin() + static_cast<std::ptrdiff_t>(k * bs),
                       part.begin() + static_cast<std::ptrdiff_t>((k + 1) * bs));
      }
    }
    i += m;
  }
  if (keep && ch->cache.size() > ch->clean_limit * 2) {
    for (auto j = ch->cache.begin(); j != ch->cache.end() && ch->cache.size() > ch->clean_limit;) {
      j = j->second.dirty ? std::next(j) : ch->cache.erase(j);
    }
  }
  return 0;
}

errcode_t write_blocks(Chan* ch, std::uint64_t lba, std::span<const std::uint8_t> in) {
  const std::uint64_t bs = ch->dev->block_size();
  const std::uint64_t n = in.size() / bs;
  for (std::uint64_t i = 0; i < n; ++i) {
    Chan::Entry& en = ch->cache[lba + i];
    en.data.assign(in.begin() + static_cast<std::ptrdiff_t>(i * bs),
                   in.begin() + static_cast<std::ptrdiff_t>((i + 1) * bs));
    if (!en.dirty) {
      en.dirty = true;
      ++ch->dirty;
    }
  }
  return 0;
}

// Reads or writes [off, off + len) of the device, read-modify-writing partial edge blocks.
errcode_t rw(io_channel c, std::uint64_t off, std::size_t len, void* buf, bool write) {
  Chan* ch = chan_of(c);
  BlockDevice* d = ch->dev;
  const std::uint64_t bs = d->block_size();
  if (len == 0) return 0;
  if (off > d->size_bytes() || len > d->size_bytes() - off) {
    return write ? EXT2_ET_SHORT_WRITE : EXT2_ET_SHORT_READ;
  }
  if (write && d->read_only()) return EROFS;
  auto* p = static_cast<std::uint8_t*>(buf);
  if (off % bs == 0 && len % bs == 0) {
    return write ? write_blocks(ch, off / bs, std::span<const std::uint8_t>(p, len))
                 : read_blocks(ch, off / bs, std::span<std::uint8_t>(p, len));
  }
  const std::uint64_t first = off / bs;
  const std::uint64_t last = (off + len - 1) / bs;
  const std::size_t span_bytes = static_cast<std::size_t>((last - first + 1) * bs);
  ch->bounce.resize(span_bytes);
  std::span<std::uint8_t> b(ch->bounce.data(), span_bytes);
  const std::size_t skip = static_cast<std::size_t>(off - first * bs);
  if (errcode_t e = read_blocks(ch, first, b); e != 0) return e;
  if (!write) {
    std::memcpy(p, b.data() + skip, len);
    return 0;
  }
  std::memcpy(b.data() + skip, p, len);
  return write_blocks(ch, first, b);
}

std::size_t count_bytes(io_channel c, int count) {
  return count < 0 ? static_cast<std::size_t>(-static_cast<long>(count))
                   : static_cast<std::size_t>(count) * static_cast<std::size_t>(c->block_size);
}

errcode_t m_open(const char* name, int flags, io_channel* out);

errcode_t m_close(io_channel c) {
  if (--c->refcount > 0) return 0;
  Chan* ch = chan_of(c);
  errcode_t e = write_back_chan(ch);
  if (e == 0 && ch->dirty == 0) e = to_errcode(ch->dev->flush());
  delete ch;
  ext2fs_free_mem(&c->name);
  ext2fs_free_mem(&c);
  return e;
}
errcode_t m_set_blksize(io_channel c, int blksize) {
  c->block_size = blksize;
  return 0;
}
errcode_t m_read64(io_channel c, unsigned long long block, int count, void* data) {
  return rw(c, block * static_cast<std::uint64_t>(c->block_size), count_bytes(c, count), data,
            false);
}
errcode_t m_write64(io_channel c, unsigned long long block, int count, const void* data) {
  return rw(c, block * static_cast<std::uint64_t>(c->block_size), count_bytes(c, count),
            const_cast<void*>(data), true);
}
errcode_t m_read(io_channel c, unsigned long block, int count, void* data) {
  return m_read64(c, block, count, data);
}
errcode_t m_write(io_channel c, unsigned long block, int count, const void* data) {
  return m_write64(c, block, count, data);
}
errcode_t m_write_byte(io_channel c, unsigned long offset, int count, const void* data) {
  if (count < 0) return EXT2_ET_INVALID_ARGUMENT;
  return rw(c, offset, static_cast<std::size_t>(count), const_cast<void*>(data), true);
}
errcode_t m_flush(io_channel c) {
  if (errcode_t e = write_back_chan(chan_of(c)); e != 0) return e;
  return to_errcode(chan_of(c)->dev->flush());
}
errcode_t m_set_option(io_channel, const char*, const char*) { return EXT2_ET_INVALID_ARGUMENT; }
errcode_t m_get_stats(io_channel c, io_stats* stats) {
  static struct struct_io_stats s;
  s.num_fields = 2;
  s.bytes_read = chan_of(c)->bytes_read;
  s.bytes_written = chan_of(c)->bytes_written;
  if (stats) *stats = &s;
  return 0;
}

struct_io_manager g_manager = [] {
  struct_io_manager m{};
  m.magic = EXT2_ET_MAGIC_IO_MANAGER;
  m.name = "ipsan block device I/O manager";
  m.open = m_open;
  m.close = m_close;
  m.set_blksize = m_set_blksize;
  m.read_blk = m_read;
  m.write_blk = m_write;
  m.flush = m_flush;
  m.write_byte = m_write_byte;
  m.set_option = m_set_option;
  m.get_stats = m_get_stats;
  m.read_blk64 = m_read64;
  m.write_blk64 = m_write64;
  return m;
}();

errcode_t m_open(const char* name, int flags, io_channel* out) {
  if (name == nullptr || out == nullptr) return EXT2_ET_BAD_DEVICE_NAME;
  BlockDevice* dev = nullptr;
  {
    std::lock_guard lock(g_mu);
    auto it = g_devices.find(name);
    if (it == g_devices.end()) return EXT2_ET_BAD_DEVICE_NAME;
    dev = it->second;
  }
  if ((flags & IO_FLAG_RW) != 0 && dev->read_only()) return EROFS;
  io_channel c = nullptr;
  if (errcode_t e = ext2fs_get_mem(sizeof(struct struct_io_channel), &c); e != 0) return e;
  std::memset(c, 0, sizeof(*c));
  c->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  c->manager = &g_manager;
  const std::size_t n = std::strlen(name) + 1;
  if (errcode_t e = ext2fs_get_mem(n, &c->name); e != 0) {
    ext2fs_free_mem(&c);
    return e;
  }
  std::memcpy(c->name, name, n);
  c->block_size = 1024;
  c->refcount = 1;
  c->flags = flags;
  auto* ch = new Chan;
  ch->dev = dev;
  c->private_data = ch;
  *out = c;
  return 0;
}

}  // namespace

io_manager block_device_io_manager() { return &g_manager; }

errcode_t write_back(io_channel c) { return write_back_chan(chan_of(c)); }

std::size_t dirty_bytes(io_channel c) {
  return chan_of(c)->dirty * static_cast<std::size_t>(chan_of(c)->dev->block_size());
}

std::string register_device(BlockDevice* dev) {
  std::lock_guard lock(g_mu);
  std::string name = "ipsan-nas-device-" + std::to_string(g_next++);
  g_devices[name] = dev;
  return name;
}

void unregister_device(const std::string& name) {
  std::lock_guard lock(g_mu);
  g_devices.erase(name);
}

}  // namespace ipsan::nas
