// ipsan/backends/rbd.h: a Backend on a Ceph RADOS Block Device image (librbd's asynchronous C API).
//
// Spec (register_rbd_backend() adds the kind; docs/CEPH.md):
//   rbd:POOL/IMAGE | rbd:POOL/NAMESPACE/IMAGE
//       [,conf=PATH]      ceph.conf (default: librados' search: $CEPH_CONF, /etc/ceph/ceph.conf)
//       [,id=NAME]        cephx client id without "client." (default "admin")
//       [,keyring=PATH]   keyring file (default: from the ceph.conf)
//       [,snap=NAME]      open that RBD snapshot, read-only
//       [,ro]             read-only (no lock taken)
//       [,bs=512|4096]    block size (default 512)
//       [,timeout=SECS]   bound on connecting to the monitors (client_mount_timeout; default 30)
//       [,takeover]       if another gateway holds the image's exclusive lock, break it: librbd
//                         blocklists that gateway (it is fenced; its writes fail from then on)
//       [,nolock]         do not take the exclusive lock (only for images without the
//                         exclusive-lock feature, when something else guarantees one writer)
//
// One writer: a writable open acquires the image's exclusive lock explicitly (rbd_lock_acquire),
// so librbd does not hand it to another client on request; a second gateway opening the same
// image is refused with the holder's name, unless it passes `takeover` (as ceph-iscsi does on
// failover). A gateway that lost the lock (fenced) answers every write with kNotReady.
//
// I/O: rbd_aio_read2/write2/flush/write_zeroes. Completions run on librbd's callback thread (the
// caller hops to its own thread, as StorageServer does). FUA is a write followed by a flush (librbd
// has no FUA); trim is a write-zeroes (trimmed blocks read back as zeroes: RBD's plain discard may
// leave partial objects untouched). Capacity: the image size, updated live when the image is
// resized (`rbd resize`, resize() here), so the server reports CAPACITY_CHANGED.
//
// Threading: every method is thread-safe. The blocking management calls (snapshots, diff, resize)
// must not be called from an I/O completion. The destructor waits for operations in flight (all
// completions run), then closes the image and the cluster connection; dropping the last reference
// from inside a completion is allowed (the close then runs on a detached thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/backends/native_snapshots.h"
#include "ipsan/backends/spec.h"
#include "ipsan/base/result.h"

namespace ipsan::backends {

struct RbdOptions {
  std::string pool;
  std::string ns;  // RADOS namespace, "" for the default
  std::string image;
  std::string conf_file;  // "" : librados' default search
  std::string client_id = "admin";
  std::string keyring;   // "" : from the config
  std::string snapshot;  // "" : the head; else opened read-only at this snapshot
  bool read_only = false;
  std::uint32_t block_size = 512;
  unsigned connect_timeout_s = 30;
  bool takeover = false;
  bool no_lock = false;
};

using RbdSnapshot = NativeSnapshot;
using RbdExtent = ChangedRange;  // one changed range of an image since a snapshot (rbd diff)

namespace detail {
struct RbdState;
}

class RbdBackend final : public Backend, public NativeSnapshots {
 public:
  static Result<std::shared_ptr<RbdBackend>, Error> open(const RbdOptions& options);
  ~RbdBackend() override;
  RbdBackend(const RbdBackend&) = delete;
  RbdBackend& operator=(const RbdBackend&) = delete;

  Geometry geometry() const override;
  Capabilities capabilities() const override;
  std::string describe() const override;  // "rbd:pool/image[@snap] (size/bs)"

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override;
  void flush(Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    Completion done) override;

  // Management (blocking; not from a completion). Snapshots: NativeSnapshots.
  Result<void, Error> snapshot_create(const std::string& name) override;
  Result<std::vector<RbdSnapshot>, Error> snapshots() override;
  Result<void, Error> snapshot_remove(const std::string& name) override;
  Result<std::vector<RbdExtent>, Error> diff(const std::string& from) override;
  std::string snapshot_spec(std::string_view spec, const std::string& name) const override;
  // Grows (or, with allow_shrink, shrinks) the image; geometry() follows at once.
  Result<void, Error> resize(std::uint64_t size_bytes, bool allow_shrink = false);
  // True while this gateway holds the image's exclusive lock (false for read-only opens).
  bool lock_owner() const;
  // Re-reads the image size (also done on every header update notification from librbd).
  void refresh_size();

  explicit RbdBackend(std::shared_ptr<detail::RbdState> state);  // use open()

 private:
  std::shared_ptr<detail::RbdState> st_;
};

// Parses the rbd: spec into options (no cluster access).
Result<RbdOptions, Error> parse_rbd_spec(const BackendSpec& spec);
// Registers the "rbd" kind with the spec registry (idempotent).
void register_rbd_backend();

}  // namespace ipsan::backends
