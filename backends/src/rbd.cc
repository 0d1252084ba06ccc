// RbdBackend: a Ceph RBD image through librbd's asynchronous C API; see rbd.h.
#include "ipsan/backends/rbd.h"

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <unistd.h>
#include <atomic>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include "ipsan/base/log.h"

namespace ipsan::backends {
namespace {

// Set while this thread runs a completion for the caller: a back end destroyed there must not
// close the image on librbd's own callback thread (rbd_close waits for that thread).
thread_local bool t_in_completion = false;

std::string errno_text(int err) {
  if (err == 108) return "blocklisted by the cluster (fenced)";  // EBLOCKLISTED == ESHUTDOWN
  return std::error_code(err, std::generic_category()).message();
}

}  // namespace

namespace detail {

struct RbdState {
  RbdOptions options;
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  rbd_image_t image = nullptr;
  std::uint64_t watch_handle = 0;
  bool watching = false;
  bool exclusive = false;  // we took the exclusive lock
  std::atomic<std::uint64_t> size_bytes{0};
  std::atomic<bool> fenced{false};

  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t in_flight = 0;
  bool closing = false;

  std::string name() const {
    std::string s = "rbd:" + options.pool + "/";
    if (!options.ns.empty()) s += options.ns + "/";
    s += options.image;
    if (!options.snapshot.empty()) s += "@" + options.snapshot;
    return s;
  }

  bool begin() {
    std::lock_guard lock(mu);
    if (closing) return false;
    ++in_flight;
    return true;
  }
  // Why notify under the lock: once it is released the destructor may free this state.
  void end() {
    std::lock_guard lock(mu);
    --in_flight;
    if (in_flight == 0) cv.notify_all();
  }

  Errc map_error(int r) {
    const int err = -r;
    switch (err) {
      case 0: return Errc::kOk;
      case 108:    // EBLOCKLISTED: another gateway broke our lock and fenced us
      case EROFS:  // the exclusive lock is held elsewhere
        if (!options.read_only && options.snapshot.empty()) {
          bool was = fenced.exchange(true);
          if (!was) {
            IPSAN_LOG(LogLevel::kError, "rbd", name(), ": lost the exclusive lock (",
                      errno_text(err), "); another gateway owns the image, writes now fail");
          }
          return Errc::kNotReady;
        }
        return Errc::kWriteProtected;
      case ENOSPC:
      case EDQUOT: return Errc::kNoSpace;
      case EINVAL: return Errc::kInvalidArgument;
      case ENOMEM:
      case EAGAIN:
      case EBUSY:
      case ETIMEDOUT: return Errc::kBusy;
      case ENOENT:
      case ENXIO:
      case ENODEV: return Errc::kNotReady;
      case EOPNOTSUPP: return Errc::kNotSupported;
      case EILSEQ: return Errc::kMediumError;
      default: return Errc::kIoError;
    }
  }

  void close() {
    if (watching) rbd_update_unwatch(image, watch_handle);
    watching = false;
    if (image != nullptr) {
      if (exclusive && !fenced.load()) rbd_lock_release(image);
      rbd_close(image);
    }
    image = nullptr;
    if (io != nullptr) rados_ioctx_destroy(io);
    io = nullptr;
    if (cluster != nullptr) rados_shutdown(cluster);
    cluster = nullptr;
  }

  void drain_and_close() {
    std::unique_lock lock(mu);
    closing = true;
    cv.wait(lock, [&] { return in_flight == 0; });
    lock.unlock();
    close();
  }

  ~RbdState() { close(); }

  void refresh_size() {
    if (image == nullptr) return;
    std::uint64_t sz = 0;
    if (rbd_get_size(image, &sz) != 0) return;
    const std::uint64_t old = size_bytes.exchange(sz);
    if (old != sz && old != 0) {
      IPSAN_LOG(LogLevel::kInfo, "rbd", name(), ": image size ", old, " -> ", sz, " bytes");
    }
  }

  std::vector<std::string> lock_owners() {
    std::vector<std::string> out;
    rbd_lock_mode_t mode;
    char* owners[8] = {};
    std::size_t n = 8;
    if (rbd_lock_get_owners(image, &mode, owners, &n) == 0) {
      for (std::size_t i = 0; i < n; ++i) out.emplace_back(owners[i]);
      rbd_lock_get_owners_cleanup(owners, n);
    }
    return out;
  }
};

}  // namespace detail

using detail::RbdState;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "unknown" : s;
}

// One asynchronous operation in flight. A FUA write chains a flush after its write.
struct Op {
  RbdState* st;
  Completion done;
  bool flush_after = false;
};

void finish(Op* op, int r) {
  RbdState* st = op->st;
  Completion done = std::move(op->done);
  const Errc e = st->map_error(r);
  delete op;
  st->end();  // after this `st` may be gone: a waiting destructor proceeds
  const bool was = t_in_completion;
  t_in_completion = true;
  done(e);
  t_in_completion = was;
}

void on_complete(rbd_completion_t c, void* arg);

// Starts `submit` with a fresh completion; failures to submit complete inline.
template <typename Submit>
void start(Op* op, Submit submit) {
  rbd_completion_t c = nullptr;
  int r = rbd_aio_create_completion(op, on_complete, &c);
  if (r < 0) return finish(op, r);
  r = submit(c);
  if (r < 0) {
    rbd_aio_release(c);
    finish(op, r);
  }
}

void on_complete(rbd_completion_t c, void* arg) {
  auto* op = static_cast<Op*>(arg);
  const ssize_t r = rbd_aio_get_return_value(c);
  rbd_aio_release(c);
  if (r >= 0 && op->flush_after) {
    op->flush_after = false;
    rbd_image_t image = op->st->image;
    return start(op, [image](rbd_completion_t c2) { return rbd_aio_flush(image, c2); });
  }
  finish(op, r < 0 ? static_cast<int>(r) : 0);
}

extern "C" void on_header_update(void* arg) { static_cast<RbdState*>(arg)->refresh_size(); }

Result<void, Error> check(int r, const std::string& what) {
  if (r >= 0) return {};
  return fail(Errc::kIoError, what + ": " + errno_text(-r));
}

}  // namespace

Result<std::shared_ptr<RbdBackend>, Error> RbdBackend::open(const RbdOptions& o) {
  auto st = std::make_shared<RbdState>();
  st->options = o;
  if (!o.snapshot.empty()) st->options.read_only = true;
  const std::string what = st->name() + ": ";
  if (o.pool.empty() || o.image.empty()) return fail(what + "needs POOL/IMAGE");
  if (o.block_size != 512 && o.block_size != 4096) {
    return fail(what + "block size must be 512 or 4096");
  }
  if (o.takeover && o.no_lock) return fail(what + "takeover and nolock exclude each other");

  const std::string client = "client." + o.client_id;
  int r = rados_create2(&st->cluster, "ceph", client.c_str(), 0);
  if (r < 0) return fail(Errc::kIoError, what + "rados_create2(" + client + "): " + errno_text(-r));
  // CEPH_ARGS first, then our options win.
  rados_conf_parse_env(st->cluster, nullptr);
  r = rados_conf_read_file(st->cluster, o.conf_file.empty() ? nullptr : o.conf_file.c_str());
  if (r < 0) {
    return fail(Errc::kInvalidArgument,
                what + "cannot read the Ceph configuration " +
                    (o.conf_file.empty() ? "(default search: $CEPH_CONF, /etc/ceph/ceph.conf)"
                                         : "'" + o.conf_file + "'") +
                    ": " + errno_text(-r));
  }
  rados_conf_parse_env(st->cluster, nullptr);
  if (!o.keyring.empty()) {
    if (::access(o.keyring.c_str(), R_OK) != 0) {
      return fail(Errc::kInvalidArgument,
                  what + "keyring '" + o.keyring + "': " + errno_text(errno));
    }
    rados_conf_set(st->cluster, "keyring", o.keyring.c_str());
  }
  const std::string t = std::to_string(o.connect_timeout_s);
  rados_conf_set(st->cluster, "client_mount_timeout", t.c_str());
  rados_conf_set(st->cluster, "rados_mon_op_timeout", t.c_str());
  r = rados_connect(st->cluster);
  if (r < 0) {
    std::string hint;
    if (r == -ETIMEDOUT) hint = " (no monitor answered within " + t + " s; check mon_host)";
    if (r == -EACCES || r == -EPERM || r == -ENOENT) {
      hint = " (cephx: check id=" + o.client_id + " and its keyring)";
    }
    return fail(Errc::kNotReady, what + "cannot connect to the cluster: " + errno_text(-r) + hint);
  }
  r = rados_ioctx_create(st->cluster, o.pool.c_str(), &st->io);
  if (r < 0) {
    return fail(Errc::kInvalidArgument, what + "pool '" + o.pool + "': " + errno_text(-r));
  }
  if (!o.ns.empty()) rados_ioctx_set_namespace(st->io, o.ns.c_str());
  const char* snap = o.snapshot.empty() ? nullptr : o.snapshot.c_str();
  r = o.snapshot.empty() ? rbd_open(st->io, o.image.c_str(), &st->image, nullptr)
                         : rbd_open_read_only(st->io, o.image.c_str(), &st->image, snap);
  if (r < 0) {
    st->image = nullptr;
    std::string m = what + "cannot open image '" + o.image + "'";
    if (snap != nullptr) m += " at snapshot '" + o.snapshot + "'";
    return fail(r == -ENOENT ? Errc::kInvalidArgument : Errc::kIoError, m + ": " + errno_text(-r));
  }

  if (!st->options.read_only && !o.no_lock) {
    std::uint64_t features = 0;
    if (auto c = check(rbd_get_features(st->image, &features), what + "features"); !c) {
      return make_unexpected(c.error());
    }
    if ((features & RBD_FEATURE_EXCLUSIVE_LOCK) == 0) {
      return fail(Errc::kInvalidArgument,
                  what +
                      "the image has no exclusive-lock feature, so two gateways could write "
                      "it unknowingly; enable it (rbd feature enable " +
                      o.pool + "/" + o.image + " exclusive-lock) or open with ,nolock");
    }
    r = rbd_lock_acquire(st->image, RBD_LOCK_MODE_EXCLUSIVE);
    if (r < 0) {
      const auto owners = st->lock_owners();
      if (!o.takeover) {
        return fail(Errc::kBusy, what + "exclusive lock held by another gateway (" + join(owners) +
                                     "): " + errno_text(-r) +
                                     "; add ,takeover to break it and fence that gateway");
      }
      for (const auto& owner : owners) {
        IPSAN_LOG(LogLevel::kWarn, "rbd", st->name(), ": breaking the exclusive lock of ", owner,
                  " (it is blocklisted)");
        const int br = rbd_lock_break(st->image, RBD_LOCK_MODE_EXCLUSIVE, owner.c_str());
        if (br < 0 && br != -ENOENT) {
          return fail(Errc::kBusy,
                      what + "cannot break the lock of " + owner + ": " + errno_text(-br));
        }
      }
      r = rbd_lock_acquire(st->image, RBD_LOCK_MODE_EXCLUSIVE);
      if (r < 0) {
        return fail(Errc::kBusy,
                    what + "exclusive lock still unavailable after takeover: " + errno_text(-r));
      }
    }
    st->exclusive = true;
  }

  std::uint64_t size = 0;
  if (auto c = check(rbd_get_size(st->image, &size), what + "size"); !c) {
    return make_unexpected(c.error());
  }
  if (size < o.block_size) return fail(what + "the image is smaller than one block");
  if (size % o.block_size != 0) {
    IPSAN_LOG(LogLevel::kWarn, "rbd", st->name(), ": size ", size,
              " is not a multiple of the block size; the tail is not exported");
  }
  st->size_bytes = size;
  if (snap == nullptr) {
    r = rbd_update_watch(st->image, &st->watch_handle, on_header_update, st.get());
    if (r < 0) {
      IPSAN_LOG(LogLevel::kWarn, "rbd", st->name(), ": no header watch (", errno_text(-r),
                "); resizes are noticed only on refresh");
    } else {
      st->watching = true;
    }
  }
  IPSAN_LOG(LogLevel::kInfo, "rbd", st->name(), ": opened, ", size, " bytes",
            st->exclusive ? ", exclusive lock held" : "");
  return std::make_shared<RbdBackend>(std::move(st));
}

RbdBackend::RbdBackend(std::shared_ptr<RbdState> state) : st_(std::move(state)) {}

RbdBackend::~RbdBackend() {
  if (t_in_completion) {
    // On librbd's callback thread: rbd_close would wait for this very thread.
    std::thread([st = std::move(st_)] { st->drain_and_close(); }).detach();
  } else {
    st_->drain_and_close();
  }
}

Geometry RbdBackend::geometry() const {
  const std::uint32_t bs = st_->options.block_size;
  return Geometry{bs, st_->size_bytes.load(std::memory_order_relaxed) / bs};
}

Capabilities RbdBackend::capabilities() const {
  Capabilities c;
  c.read_only = st_->options.read_only;
  c.fua = false;  // librbd has no FUA: a FUA write is a write then a flush
  c.flush = true;
  c.trim = true;
  c.write_zeroes = true;
  c.rotational = false;
  return c;
}

std::string RbdBackend::describe() const {
  // No size here: StorageServer derives the device UUID from this line, and it must survive a
  // resize and be the same on every gateway exporting the image.
  return st_->name() + (st_->options.read_only ? ",ro" : "");
}

bool RbdBackend::lock_owner() const {
  if (!st_->exclusive) return false;
  int owner = 0;
  return rbd_is_exclusive_lock_owner(st_->image, &owner) == 0 && owner != 0;
}

void RbdBackend::refresh_size() { st_->refresh_size(); }

void RbdBackend::read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) {
  const Geometry g = geometry();
  if (out.size() % g.block_size != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(g, lba, out.size() / g.block_size); e != Errc::kOk) return done(e);
  if (out.empty()) return done(Errc::kOk);
  if (!st_->begin()) return done(Errc::kShutdown);
  rbd_image_t image = st_->image;
  const std::uint64_t off = lba * g.block_size;
  start(new Op{st_.get(), std::move(done)}, [=](rbd_completion_t c) {
    return rbd_aio_read2(image, off, out.size(), reinterpret_cast<char*>(out.data()), c, 0);
  });
}

void RbdBackend::write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
                       Completion done) {
  const Geometry g = geometry();
  if (in.size() % g.block_size != 0) return done(Errc::kInvalidArgument);
  if (Errc e = check_range(g, lba, in.size() / g.block_size); e != Errc::kOk) return done(e);
  if (st_->options.read_only) return done(Errc::kWriteProtected);
  if (st_->fenced.load(std::memory_order_relaxed)) return done(Errc::kNotReady);
  if (in.empty()) return fua ? flush(std::move(done)) : done(Errc::kOk);
  if (!st_->begin()) return done(Errc::kShutdown);
  rbd_image_t image = st_->image;
  const std::uint64_t off = lba * g.block_size;
  start(new Op{st_.get(), std::move(done), fua}, [=](rbd_completion_t c) {
    return rbd_aio_write2(image, off, in.size(), reinterpret_cast<const char*>(in.data()), c, 0);
  });
}

void RbdBackend::flush(Completion done) {
  if (st_->options.read_only) return done(Errc::kOk);
  if (!st_->begin()) return done(Errc::kShutdown);
  rbd_image_t image = st_->image;
  start(new Op{st_.get(), std::move(done)},
        [=](rbd_completion_t c) { return rbd_aio_flush(image, c); });
}

void RbdBackend::trim(std::uint64_t lba, std::uint64_t blocks, Completion done) {
  write_zeroes(lba, blocks, /*may_trim=*/true, std::move(done));
}

void RbdBackend::write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                              Completion done) {
  const Geometry g = geometry();
  if (Errc e = check_range(g, lba, blocks); e != Errc::kOk) return done(e);
  if (st_->options.read_only) return done(Errc::kWriteProtected);
  if (st_->fenced.load(std::memory_order_relaxed)) return done(Errc::kNotReady);
  if (blocks == 0) return done(Errc::kOk);
  if (!st_->begin()) return done(Errc::kShutdown);
  rbd_image_t image = st_->image;
  const std::uint64_t off = lba * g.block_size, len = blocks * g.block_size;
  // librbd deallocates whole objects and zeroes partial ones; THICK_PROVISION keeps them allocated.
  const int zflags = may_trim ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
  start(new Op{st_.get(), std::move(done)}, [=](rbd_completion_t c) {
    return rbd_aio_write_zeroes(image, off, static_cast<std::size_t>(len), c, zflags, 0);
  });
}

Result<void, Error> RbdBackend::snapshot_create(const std::string& name) {
  if (name.empty() || name.find_first_of("@/,") != std::string::npos) {
    return fail("bad snapshot name '" + name + "' (must be non-empty, without @ / ,)");
  }
  if (!st_->options.snapshot.empty()) return fail(st_->name() + ": is itself a snapshot");
  const int r = rbd_snap_create(st_->image, name.c_str());
  if (r == -EEXIST) return fail(st_->name() + ": snapshot '" + name + "' exists");
  return check(r, st_->name() + ": snapshot create '" + name + "'");
}

Result<std::vector<RbdSnapshot>, Error> RbdBackend::snapshots() {
  std::vector<rbd_snap_info_t> buf(16);
  for (;;) {
    int max = static_cast<int>(buf.size());
    const int n = rbd_snap_list(st_->image, buf.data(), &max);
    if (n == -ERANGE) {
      buf.resize(static_cast<std::size_t>(max) + 1);
      continue;
    }
    if (n < 0) return fail(Errc::kIoError, st_->name() + ": snapshot list: " + errno_text(-n));
    std::vector<RbdSnapshot> out;
    for (int i = 0; i < n; ++i) out.push_back({buf[i].id, buf[i].name, buf[i].size});
    rbd_snap_list_end(buf.data());
    return out;
  }
}

Result<void, Error> RbdBackend::snapshot_remove(const std::string& name) {
  const int r = rbd_snap_remove(st_->image, name.c_str());
  if (r == -ENOENT) return fail(st_->name() + ": no snapshot '" + name + "'");
  return check(r, st_->name() + ": snapshot remove '" + name + "'");
}

Result<std::vector<RbdExtent>, Error> RbdBackend::diff(const std::string& from) {
  std::vector<RbdExtent> out;
  auto cb = [](std::uint64_t off, std::size_t len, int exists, void* arg) -> int {
    auto* v = static_cast<std::vector<RbdExtent>*>(arg);
    v->push_back({off, len, exists != 0});
    return 0;
  };
  const int r = rbd_diff_iterate2(st_->image, from.empty() ? nullptr : from.c_str(), 0,
                                  st_->size_bytes.load(), 1, 0, cb, &out);
  if (r == -ENOENT) return fail(st_->name() + ": no snapshot '" + from + "'");
  if (auto c = check(r, st_->name() + ": diff"); !c) return make_unexpected(c.error());
  return out;
}

std::string RbdBackend::snapshot_spec(std::string_view spec, const std::string& name) const {
  // Drop options a read-only snapshot open has no use for (or that would conflict).
  auto parsed = parse_backend_spec(spec);
  std::string out = "rbd:" + (parsed ? parsed->target : st_->name().substr(4));
  if (parsed) {
    for (const auto& [k, v] : parsed->options) {
      if (k == "snap" || k == "takeover" || k == "nolock" || k == "ro") continue;
      out += "," + k + (v.empty() ? "" : "=" + v);
    }
  }
  return out + ",snap=" + name;
}

Result<void, Error> RbdBackend::resize(std::uint64_t size_bytes, bool allow_shrink) {
  if (st_->options.read_only) return fail(Errc::kWriteProtected, st_->name() + ": read-only");
  if (size_bytes % st_->options.block_size != 0 || size_bytes == 0) {
    return fail(st_->name() + ": new size must be a non-zero multiple of the block size");
  }
  if (size_bytes < st_->size_bytes.load() && !allow_shrink) {
    return fail(st_->name() + ": refusing to shrink the image");
  }
  if (auto c = check(rbd_resize(st_->image, size_bytes), st_->name() + ": resize"); !c) {
    return make_unexpected(c.error());
  }
  st_->refresh_size();
  return {};
}

Result<RbdOptions, Error> parse_rbd_spec(const BackendSpec& spec) {
  if (auto c = spec.check_options(
          {"conf", "id", "keyring", "snap", "ro", "bs", "timeout", "takeover", "nolock"});
      !c) {
    return make_unexpected(c.error());
  }
  RbdOptions o;
  std::vector<std::string> parts;
  std::size_t start_pos = 0;
  for (;;) {
    const auto slash = spec.target.find('/', start_pos);
    parts.push_back(spec.target.substr(start_pos, slash - start_pos));
    if (slash == std::string::npos) break;
    start_pos = slash + 1;
  }
  for (const auto& p : parts) {
    if (p.empty() || parts.size() < 2 || parts.size() > 3) {
      return fail("'" + spec.text + "': rbd needs POOL/IMAGE or POOL/NAMESPACE/IMAGE");
    }
  }
  o.pool = parts.front();
  o.image = parts.back();
  if (parts.size() == 3) o.ns = parts[1];
  if (auto at = o.image.find('@'); at != std::string::npos) {
    return fail("'" + spec.text + "': give a snapshot as ,snap=NAME, not with @");
  }
  if (auto v = spec.value("conf")) o.conf_file = *v;
  if (auto v = spec.value("id")) {
    if (v->rfind("client.", 0) == 0) *v = v->substr(7);
    if (v->empty()) return fail("'" + spec.text + "': empty id");
    o.client_id = *v;
  }
  if (auto v = spec.value("keyring")) o.keyring = *v;
  if (auto v = spec.value("snap")) o.snapshot = *v;
  auto ro = spec.flag_option("ro");
  if (!ro) return make_unexpected(ro.error());
  o.read_only = *ro || !o.snapshot.empty();
  auto bs = spec.block_size_option();
  if (!bs) return make_unexpected(bs.error());
  o.block_size = *bs;
  if (auto v = spec.value("timeout")) {
    auto n = parse_size(*v);
    if (!n || *n < 1 || *n > 3600) {
      return fail("'" + spec.text + "': timeout=" + *v + " (seconds, 1..3600)");
    }
    o.connect_timeout_s = static_cast<unsigned>(*n);
  }
  auto take = spec.flag_option("takeover");
  if (!take) return make_unexpected(take.error());
  o.takeover = *take;
  auto nolock = spec.flag_option("nolock");
  if (!nolock) return make_unexpected(nolock.error());
  o.no_lock = *nolock;
  if (o.takeover && o.no_lock)
    return fail("'" + spec.text + "': takeover and nolock exclude each other");
  return o;
}

void register_rbd_backend() {
  register_backend_kind("rbd", [](const BackendSpec& spec) -> Result<BackendPtr, Error> {
    auto o = parse_rbd_spec(spec);
    if (!o) return make_unexpected(o.error());
    auto b = RbdBackend::open(*o);
    if (!b) return make_unexpected(b.error());
    return BackendPtr(std::move(*b));
  });
}

}  // namespace ipsan::backends
