// ipsan/nas/block_device.h: the synchronous block device the NAS file system lives on.
//
// libext2fs is synchronous and single-threaded, so the NAS runs every file-system operation on one
// thread and reaches its disk through this interface: a local back end (any backends/ spec: ram,
// file, ...) or an ipsan virtual disk on a server reached through the SAN/IP driver (SanClient).
// Each call blocks the calling thread until the back end completes.
//
// Threading: one caller thread at a time (the NAS file-system thread).
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ipsan/backends/backend.h"
#include "ipsan/base/errc.h"
#include "ipsan/base/result.h"
#include "ipsan/client/generic_target.h"

namespace ipsan::nas {

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  virtual std::uint32_t block_size() const = 0;
  virtual std::uint64_t block_count() const = 0;
  virtual bool read_only() const = 0;
  virtual std::string describe() const = 0;
  // out.size() / in.size() is a multiple of block_size(); [lba, lba + blocks) inside the device.
  virtual Errc read(std::uint64_t lba, std::span<std::uint8_t> out) = 0;
  virtual Errc write(std::uint64_t lba, std::span<const std::uint8_t> in) = 0;
  // Every completed write is durable when this returns kOk.
  virtual Errc flush() = 0;

  std::uint64_t size_bytes() const { return block_count() * block_size(); }
};

// A local back end (backends/spec.h), e.g. open_backend("file:/srv/nas.img,size=1G"). A `file:`
// back end holds an exclusive flock on its image while open: an ipsan server serving the same
// image at the same time is refused (and vice versa).
std::unique_ptr<BlockDevice> make_backend_device(backends::BackendPtr backend);

// Device `device_id` of the server behind `target` (normally a SanClient). Requests are posted to
// `io` (the SanClient's io_context thread) and waited for; IDENTIFY gives the geometry and the
// largest transfer. Fails if the device is unknown or read-only.
Result<std::unique_ptr<BlockDevice>, Error> make_remote_device(boost::asio::io_context& io,
                                                               client::GenericTarget& target,
                                                               std::uint32_t device_id);

}  // namespace ipsan::nas
