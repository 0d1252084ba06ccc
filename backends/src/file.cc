// FileBackend: pread/pwrite on a worker pool; see file.h.
#include "ipsan/backends/file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <system_error>

#include "ipsan/backends/spec.h"
#include "ipsan/base/log.h"

namespace ipsan::backends {

Errc errc_from_errno(int err) noexcept {
  switch (err) {
    case 0: return Errc::kOk;
    case EIO:
    case EILSEQ:
    case ENODATA: return Errc::kMediumError;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return Errc::kNoSpace;
    case EROFS:
    case EACCES:
    case EPERM:
    case EBADF:  // write on an fd opened read-only
      return Errc::kWriteProtected;
    case EOPNOTSUPP:
    case ENOSYS:
    case ENOTTY: return Errc::kNotSupported;
    case EINVAL: return Errc::kInvalidArgument;
    case ENOMEM:
    case EAGAIN: return Errc::kBusy;
    case ENXIO:
    case ENODEV:
    case ENOMEDIUM: return Errc::kNotReady;
    default: return Errc::kIoError;
  }
}

namespace {

constexpr std::size_t kPiece = std::size_t{1} << 20;  // bounce-buffer and zero-write unit
constexpr std::size_t kAlign = 4096;

struct FreeDeleter {
  void operator()(std::uint8_t* p) const noexcept { std::free(p); }
};
using AlignedBuf = std::unique_ptr<std::uint8_t, FreeDeleter>;

AlignedBuf aligned_buffer(std::size_t size) {
  const std::size_t rounded = (size + kAlign - 1) / kAlign * kAlign;
  return AlignedBuf(static_cast<std::uint8_t*>(std::aligned_alloc(kAlign, rounded)));
}

bool aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % kAlign == 0; }

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace

namespace detail {

struct FileState {
  int fd = -1;
  std::string path;
  Geometry geometry;
  FileOptions options;
  bool block_device = false;
  std::atomic<bool> dsync_ok{true};
  std::atomic<bool> punch_ok{true};
  std::atomic<bool> zero_range_ok{true};
  // First failed fdatasync (or O_DSYNC write), latched: after a failed sync the kernel may have
  // dropped the dirty pages and cleared the error, so a later fdatasync could "succeed" over lost
  // writes (PostgreSQL "fsyncgate", 2018). Every later FLUSH / FUA write fails with it until the
  // image is opened again.
  std::atomic<int> sync_error{0};
  // Held shared by every read/write/trim/write-zeroes while it runs, exclusive by an atomic write.
  std::shared_mutex io_mu;
  // RWF_ATOMIC (statx STATX_WRITE_ATOMIC) unit in bytes; 0: not offered. Cleared if it fails.
  std::uint32_t atomic_unit_min = 0;
  std::uint32_t atomic_unit_max = 0;
  std::atomic<bool> rwf_atomic_ok{true};

  // A queued operation; called with true instead of running when the backend is shutting down.
  using Task = std::function<void(bool shutdown)>;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> queue;
  bool stop = false;

  ~FileState() {
    if (fd >= 0) ::close(fd);
  }

  // Queues `task`, or completes it with shutdown=true (only if called during destruction).
  // Why notify under the lock: once the lock is released a worker may run the task, whose
  // completion may drop the last reference to the backend and so destroy this state; nothing
  // here may touch it after the unlock.
  void post(Task task) {
    {
      std::lock_guard lock(mu);
      if (!stop) {
        queue.push_back(std::move(task));
        cv.notify_one();
        return;
      }
    }
    task(true);
  }

  void run() {
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stop || !queue.empty(); });
        if (queue.empty()) return;
        task = std::move(queue.front());
        queue.pop_front();
      }
      task(false);
    }
  }

  // Reads exactly `len` bytes; EOF (file shrunk behind our back) reads as zeroes.
  Errc pread_raw(std::uint8_t* buf, std::size_t len, std::uint64_t off) {
    while (len > 0) {
      const ssize_t r = ::pread(fd, buf, len, static_cast<off_t>(off));
      if (r < 0) {
        if (errno == EINTR) continue;
        return errc_from_errno(errno);
      }
      if (r == 0) {
        std::memset(buf, 0, len);
        return Errc::kOk;
      }
      buf += r;
      len -= static_cast<std::size_t>(r);
      off += static_cast<std::uint64_t>(r);
    }
    return Errc::kOk;
  }

  // Writes exactly `len` bytes; `dsync` asks for RWF_DSYNC (caller falls back when unsupported).
  Errc pwrite_raw(const std::uint8_t* buf, std::size_t len, std::uint64_t off, bool dsync,
                  bool* dsync_unsupported) {
    while (len > 0) {
      ssize_t r;
      if (dsync) {
        iovec iov{const_cast<std::uint8_t*>(buf), len};
        r = ::pwritev2(fd, &iov, 1, static_cast<off_t>(off), RWF_DSYNC);
        if (r < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
          *dsync_unsupported = true;
          return Errc::kNotSupported;
        }
      } else {
        r = ::pwrite(fd, buf, len, static_cast<off_t>(off));
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        return errc_from_errno(errno);
      }
      if (r == 0) return Errc::kIoError;
      buf += r;
      len -= static_cast<std::size_t>(r);
      off += static_cast<std::uint64_t>(r);
    }
    return Errc::kOk;
  }

  Errc do_read(std::uint64_t off, std::span<std::uint8_t> out) {
    if (!options.direct || aligned(out.data())) return pread_raw(out.data(), out.size(), off);
    AlignedBuf bounce = aligned_buffer(std::min(out.size(), kPiece));
    if (!bounce) return Errc::kBusy;
    for (std::size_t pos = 0; pos < out.size();) {
      const std::size_t n = std::min(out.size() - pos, kPiece);
      if (Errc e = pread_raw(bounce.get(), n, off + pos); e != Errc::kOk) return e;
      std::memcpy(out.data() + pos, bounce.get(), n);
      pos += n;
    }
    return Errc::kOk;
  }

  Errc write_once(std::uint64_t off, std::span<const std::uint8_t> in, bool dsync,
                  bool* unsupported) {
    if (!options.direct || aligned(in.data())) {
      return pwrite_raw(in.data(), in.size(), off, dsync, unsupported);
    }
    AlignedBuf bounce = aligned_buffer(std::min(in.size(), kPiece));
    if (!bounce) return Errc::kBusy;
    for (std::size_t pos = 0; pos < in.size();) {
      const std::size_t n = std::min(in.size() - pos, kPiece);
      std::memcpy(bounce.get(), in.data() + pos, n);
      if (Errc e = pwrite_raw(bounce.get(), n, off + pos, dsync, unsupported); e != Errc::kOk) {
        return e;
      }
      pos += n;
    }
    return Errc::kOk;
  }

  Errc do_write(std::uint64_t off, std::span<const std::uint8_t> in, bool fua) {
    if (fua) {
      if (Errc e = latched(); e != Errc::kOk) return e;
    }
    if (fua && dsync_ok.load(std::memory_order_relaxed)) {
      bool unsupported = false;
      Errc e = write_once(off, in, true, &unsupported);
      if (!unsupported) {
        if (e == Errc::kIoError || e == Errc::kMediumError) latch(EIO);  // its sync may have failed
        return e;
      }
      dsync_ok.store(false);  // fall through: plain write + fdatasync (rewrites are idempotent)
    }
    if (Errc e = write_once(off, in, false, nullptr); e != Errc::kOk) return e;
    return fua ? do_flush() : Errc::kOk;
  }

  Errc latched() const {
    const int err = sync_error.load(std::memory_order_acquire);
    return err == 0 ? Errc::kOk : errc_from_errno(err);
  }
  void latch(int err) {
    int none = 0;
    if (sync_error.compare_exchange_strong(none, err, std::memory_order_acq_rel)) {
      IPSAN_LOG(LogLevel::kError, "file", path, ": sync failed (", errno_text(err),
                "); every later flush fails until the image is reopened");
    }
  }

  // One pwritev2(RWF_ATOMIC) when the kernel offers it for this write; kNotSupported otherwise.
  Errc write_rwf_atomic(std::uint64_t off, std::span<const std::uint8_t> in, bool fua) {
    constexpr int kRwfAtomic = 0x00000040;  // RWF_ATOMIC (Linux 6.11); not in older headers
    const std::size_t len = in.size();
    if (!options.direct || atomic_unit_max == 0 || !rwf_atomic_ok.load() || len < atomic_unit_min ||
        len > atomic_unit_max || (len & (len - 1)) != 0 || off % len != 0) {
      return Errc::kNotSupported;
    }
    AlignedBuf bounce;
    const std::uint8_t* p = in.data();
    if (!aligned(p)) {
      bounce = aligned_buffer(len);
      if (!bounce) return Errc::kBusy;
      std::memcpy(bounce.get(), p, len);
      p = bounce.get();
    }
    iovec iov{const_cast<std::uint8_t*>(p), len};
    for (;;) {
      const ssize_t r =
          ::pwritev2(fd, &iov, 1, static_cast<off_t>(off), kRwfAtomic | (fua ? RWF_DSYNC : 0));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
        rwf_atomic_ok.store(false);  // not for this file after all: the locked path from now on
        return Errc::kNotSupported;
      }
      if (r < 0) return errc_from_errno(errno);
      if (static_cast<std::size_t>(r) != len) return Errc::kIoError;  // cannot happen (atomic)
      return Errc::kOk;
    }
  }

  Errc do_write_atomic(std::uint64_t off, std::span<const std::uint8_t> in, bool fua) {
    if (Errc e = write_rwf_atomic(off, in, fua); e != Errc::kNotSupported) return e;
    return do_write(off, in, fua);
  }

  // statx(STATX_WRITE_ATOMIC) through the raw syscall: Debian's headers predate the fields
  // (stx_atomic_write_unit_min/max at offsets 0xa8/0xac of struct statx).
  void probe_atomic_unit() {
    constexpr unsigned kStatxWriteAtomic = 0x00010000u;
    alignas(8) unsigned char buf[256] = {};
    if (::syscall(SYS_statx, fd, "", AT_EMPTY_PATH, kStatxWriteAtomic, buf) != 0) return;
    std::uint32_t mask = 0, umin = 0, umax = 0;
    std::memcpy(&mask, buf, 4);
    std::memcpy(&umin, buf + 0xa8, 4);
    std::memcpy(&umax, buf + 0xac, 4);
    if ((mask & kStatxWriteAtomic) == 0 || umax == 0) return;
    atomic_unit_min = umin;
    atomic_unit_max = umax;
  }

  Errc do_flush() {
    if (Errc e = latched(); e != Errc::kOk) return e;
    while (::fdatasync(fd) != 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL) return Errc::kOk;  // special file that needs no sync
      const int err = errno;
      latch(err);
      return errc_from_errno(err);
    }
    return latched();  // another thread's sync may have failed meanwhile
  }

  Errc write_zero_bytes(std::uint64_t off, std::uint64_t len) {
    AlignedBuf zeros =
        aligned_buffer(static_cast<std::size_t>(std::min<std::uint64_t>(len, kPiece)));
    if (!zeros) return Errc::kBusy;
    std::memset(zeros.get(), 0, static_cast<std::size_t>(std::min<std::uint64_t>(len, kPiece)));
    while (len > 0) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, kPiece));
      if (Errc e = pwrite_raw(zeros.get(), n, off, false, nullptr); e != Errc::kOk) return e;
      off += n;
      len -= n;
    }
    return Errc::kOk;
  }

  // fallocate with EINTR retry; returns 0 or errno.
  int falloc(int mode, std::uint64_t off, std::uint64_t len) {
    while (::fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    return 0;
  }

  int blk_ioctl(unsigned long req, std::uint64_t off, std::uint64_t len) {
    std::uint64_t range[2] = {off, len};
    while (::ioctl(fd, req, range) != 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    return 0;
  }

  static bool unsupported(int err) { return err == EOPNOTSUPP || err == ENOSYS || err == EINVAL; }

  Errc do_trim(std::uint64_t off, std::uint64_t len) {
    if (block_device) return errc_from_errno(blk_ioctl(BLKDISCARD, off, len));
    if (punch_ok.load(std::memory_order_relaxed)) {
      const int err = falloc(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
      if (err == 0) return Errc::kOk;
      if (!unsupported(err)) return errc_from_errno(err);
      punch_ok.store(false);
    }
    return write_zero_bytes(off, len);  // trimmed blocks must read back as zeroes
  }

  Errc do_write_zeroes(std::uint64_t off, std::uint64_t len, bool may_trim) {
    if (block_device) {
      const int err = blk_ioctl(BLKZEROOUT, off, len);
      if (err == 0) return Errc::kOk;
      if (!unsupported(err) && err != ENOTTY) return errc_from_errno(err);
      return write_zero_bytes(off, len);
    }
    if (may_trim && punch_ok.load(std::memory_order_relaxed)) {
      const int err = falloc(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
      if (err == 0) return Errc::kOk;
      if (!unsupported(err)) return errc_from_errno(err);
      punch_ok.store(false);
    }
    if (zero_range_ok.load(std::memory_order_relaxed)) {
      const int err = falloc(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
      if (err == 0) return Errc::kOk;
      if (!unsupported(err)) return errc_from_errno(err);
      zero_range_ok.store(false);
    }
    return write_zero_bytes(off, len);
  }
};

}  // namespace detail

using detail::FileState;

Result<std::shared_ptr<FileBackend>, Error> FileBackend::open(const std::filesystem::path& path,
                                                              const FileOptions& options) {
  const std::string p = path.string();
  const std::string what = "file:" + p + ": ";
  if (p.empty()) return fail("file: empty path");
  if (options.block_size != 512 && options.block_size != 4096) {
    return fail(what + "block size " + std::to_string(options.block_size) +
                " (must be 512 or 4096)");
  }
  if (options.threads < 1 || options.threads > 64) {
    return fail(what + "threads=" + std::to_string(options.threads) + " (must be 1..64)");
  }
  if (options.size_bytes % options.block_size != 0) {
    return fail(what + "size " + std::to_string(options.size_bytes) +
                " is not a multiple of the block size " + std::to_string(options.block_size));
  }

  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    const int err = errno;
    if (err != ENOENT) return fail(Errc::kIoError, what + errno_text(err));
    if (options.size_bytes == 0) {
      return fail(Errc::kInvalidArgument,
                  what + "does not exist (give size=... to create a sparse image)");
    }
    if (options.read_only) return fail(what + "does not exist and cannot be created read-only");
    const int cfd = ::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (cfd < 0) return fail(Errc::kIoError, what + "cannot create: " + errno_text(errno));
    const int trunc = ::ftruncate(cfd, static_cast<off_t>(options.size_bytes));
    const int terr = errno;
    ::close(cfd);
    if (trunc != 0) {
      ::unlink(p.c_str());
      return fail(errc_from_errno(terr), what + "cannot set size: " + errno_text(terr));
    }
  }

  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (options.direct) flags |= O_DIRECT;
  auto state = std::make_shared<FileState>();
  state->path = p;
  state->options = options;
  state->fd = ::open(p.c_str(), flags);
  if (state->fd < 0) {
    const int err = errno;
    if (options.direct && err == EINVAL) {
      return fail(Errc::kNotSupported, what + "O_DIRECT is not supported here");
    }
    return fail(
        errc_from_errno(err),
        what + "cannot open" + (options.read_only ? "" : " read-write") + ": " + errno_text(err));
  }
  if (::fstat(state->fd, &st) != 0) return fail(Errc::kIoError, what + errno_text(errno));

  std::uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    state->block_device = true;
    if (::ioctl(state->fd, BLKGETSIZE64, &size) != 0) {
      return fail(Errc::kIoError, what + "BLKGETSIZE64: " + errno_text(errno));
    }
    if (options.size_bytes != 0 && options.size_bytes != size) {
      return fail(what + "size=" + std::to_string(options.size_bytes) +
                  " differs from the device size " + std::to_string(size));
    }
    int sector = 0;
    if (options.direct && ::ioctl(state->fd, BLKSSZGET, &sector) == 0 &&
        static_cast<std::uint32_t>(sector) > options.block_size) {
      return fail(what + "direct I/O needs bs >= the device's logical sector size (" +
                  std::to_string(sector) + ")");
    }
    size -= size % options.block_size;
  } else if (S_ISREG(st.st_mode)) {
    // One writer per image: a second server on the same file would corrupt it.
    if (::flock(state->fd, (options.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
      return fail(Errc::kBusy, what + "is in use by another process (flock)");
    }
    size = static_cast<std::uint64_t>(st.st_size);
    if (options.size_bytes != 0) {
      if (size > options.size_bytes) {
        return fail(what + "existing file (" + std::to_string(size) +
                    " bytes) is larger than size=" + std::to_string(options.size_bytes) +
                    "; refusing to shrink it");
      }
      if (size < options.size_bytes) {
        if (options.read_only) {
          return fail(what + "existing file is smaller than size= and opened read-only");
        }
        if (::ftruncate(state->fd, static_cast<off_t>(options.size_bytes)) != 0) {
          return fail(errc_from_errno(errno), what + "cannot grow: " + errno_text(errno));
        }
        size = options.size_bytes;
      }
    }
    if (size == 0) return fail(what + "file is empty (give size=... to grow it)");
    if (size % options.block_size != 0) {
      return fail(what + "file size " + std::to_string(size) +
                  " is not a multiple of the block size " + std::to_string(options.block_size));
    }
  } else {
    return fail(what + "is neither a regular file nor a block device");
  }
  if (size == 0) return fail(what + "device is empty");
  state->geometry = Geometry{options.block_size, size / options.block_size};
  if (options.direct && !options.read_only) state->probe_atomic_unit();

  auto backend = std::make_shared<FileBackend>(std::move(state));
  try {
    for (unsigned i = 0; i < options.threads; ++i) {
      backend->workers_.emplace_back([st2 = backend->st_] { st2->run(); });
    }
  } catch (const std::system_error& e) {
    return fail(Errc::kBusy, what + "cannot start worker threads: " + e.what());
  }
  return backend;
}

FileBackend::FileBackend(std::shared_ptr<FileState> state) : st_(std::move(state)) {}

FileBackend::~FileBackend() {
  {
    std::lock_guard lock(st_->mu);
    st_->stop = true;
  }
  st_->cv.notify_all();
  for (auto& t : workers_) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // last reference dropped in a completion: this worker drains and exits
    } else if (t.joinable()) {
      t.join();
    }
  }
}

Geometry FileBackend::geometry() const { return st_->geometry; }

bool FileBackend::is_block_device() const { return st_->block_device; }

Capabilities FileBackend::capabilities() const {
  Capabilities c;
  c.read_only = st_->options.read_only;
  c.fua = true;
  c.flush = true;
  c.trim = true;
  c.write_zeroes = true;
  return c;
}

std::string FileBackend::describe() const {
  std::string s = "file:" + st_->path;
  if (st_->options.read_only) s += ",ro";
  if (st_->options.direct) s += ",direct";
  return s + " (" + format_size(st_->geometry.size_bytes()) + "/" +
         std::to_string(st_->geometry.block_size) + ")";
}

void FileBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const Geometry& g = st_->geometry;
  if (out.size() % g.block_size != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(g, lba, out.size() / g.block_size); e != Errc::kOk) return done(e);
  if (out.empty()) return done(Errc::kOk);
  FileState* s = st_.get();
  const std::uint64_t off = lba * g.block_size;
  s->post([s, off, out, done = std::move(done)](bool shutdown) {
    if (shutdown) return done(Errc::kShutdown);
    Errc e = Errc::kOk;
    {
      std::shared_lock lock(s->io_mu);
      e = s->do_read(off, out);
    }
    done(e);
  });
}

namespace {

// WRITE and WRITE ATOMIC: the same checks and queueing; an atomic write holds the device's I/O
// lock exclusively (no read or write overlaps it), a plain one shares it.
void submit_write(detail::FileState* s, std::uint64_t lba, std::span<const std::uint8_t> in,
                  bool fua, bool atomic, Completion done) {
  const Geometry& g = s->geometry;
  if (in.size() % g.block_size != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(g, lba, in.size() / g.block_size); e != Errc::kOk) return done(e);
  if (s->options.read_only) return done(Errc::kWriteProtected);
  if (in.empty() && !fua) return done(Errc::kOk);
  const std::uint64_t off = lba * g.block_size;
  s->post([s, off, in, fua, atomic, done = std::move(done)](bool shutdown) {
    if (shutdown) return done(Errc::kShutdown);
    Errc e = Errc::kOk;
    if (atomic) {
      std::unique_lock lock(s->io_mu);
      e = s->do_write_atomic(off, in, fua);
    } else {
      std::shared_lock lock(s->io_mu);
      e = s->do_write(off, in, fua);
    }
    done(e);
  });
}

}  // namespace

void FileBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                        Completion done) {
  submit_write(st_.get(), lba, in, fua, /*atomic=*/false, std::move(done));
}

void FileBackend::write_atomic(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                               Completion done) {
  submit_write(st_.get(), lba, in, fua, /*atomic=*/true, std::move(done));
}

std::pair<std::uint32_t, std::uint32_t> FileBackend::atomic_write_unit_bytes() const {
  return {st_->atomic_unit_min, st_->atomic_unit_max};
}

void FileBackend::flush(Completion done) {
  if (st_->options.read_only) return done(Errc::kOk);
  FileState* s = st_.get();
  s->post([s, done = std::move(done)](bool shutdown) {
    done(shutdown ? Errc::kShutdown : s->do_flush());
  });
}

void FileBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  const Geometry& g = st_->geometry;
  if (Errc e = check_range(g, lba, blocks); e != Errc::kOk) return done(e);
  if (st_->options.read_only) return done(Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  FileState* s = st_.get();
  const std::uint64_t off = lba * g.block_size, len = blocks * g.block_size;
  s->post([s, off, len, done = std::move(done)](bool shutdown) {
    if (shutdown) return done(Errc::kShutdown);
    Errc e = Errc::kOk;
    {
      std::shared_lock lock(s->io_mu);
      e = s->do_trim(off, len);
    }
    done(e);
  });
}

void FileBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                               Completion done) {
  const Geometry& g = st_->geometry;
  if (Errc e = check_range(g, lba, blocks); e != Errc::kOk) return done(e);
  if (st_->options.read_only) return done(Errc::kWriteProtected);
  if (blocks == 0) return done(Errc::kOk);
  FileState* s = st_.get();
  const std::uint64_t off = lba * g.block_size, len = blocks * g.block_size;
  s->post([s, off, len, may_trim, done = std::move(done)](bool shutdown) {
    if (shutdown) return done(Errc::kShutdown);
    Errc e = Errc::kOk;
    {
      std::shared_lock lock(s->io_mu);
      e = s->do_write_zeroes(off, len, may_trim);
    }
    done(e);
  });
}

}  // namespace ipsan::backends
