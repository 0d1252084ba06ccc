// ipsan/backends/sg.h: SgBackend, a Backend on a SCSI block device reached through the Linux sg
// driver's SG_IO (libsgutils2's sg_pt layer), spec "sg:/dev/sgN".
//
// Also the pure pieces it is built from, usable and tested without a device: CDB builders
// (namespace scsi), parsers for INQUIRY / VPD / READ CAPACITY answers (device answers are
// untrusted: short or malformed buffers give an error, never a crash), and request splitting.
//
// Threading: SgBackend follows backend.h. Blocking SG_IO calls run on a small worker pool owned by
// the backend; completions run on a worker thread (or inline for argument/range errors). A
// request is executed as sequential chunks on one worker; independent requests run in parallel
// on different workers. open() runs discovery on the caller's thread (start-up time).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ipsan/backends/backend.h"
#include "ipsan/backends/scsi_sense.h"
#include "ipsan/base/bytes.h"
#include "ipsan/base/result.h"

namespace ipsan::backends {

namespace scsi {

// ---- CDB builders (SBC-4 / SPC-5). All multi-byte fields are big-endian.
std::array<std::uint8_t, 6> cdb_test_unit_ready();
std::array<std::uint8_t, 6> cdb_inquiry(bool evpd, std::uint8_t page, std::uint16_t alloc_len);
std::array<std::uint8_t, 10> cdb_read_capacity10();
std::array<std::uint8_t, 16> cdb_read_capacity16(std::uint32_t alloc_len);
std::array<std::uint8_t, 10> cdb_mode_sense10(std::uint8_t page, std::uint16_t alloc_len);
std::array<std::uint8_t, 16> cdb_read16(std::uint64_t lba, std::uint32_t blocks, bool fua);
std::array<std::uint8_t, 16> cdb_write16(std::uint64_t lba, std::uint32_t blocks, bool fua);
std::array<std::uint8_t, 10> cdb_sync_cache10(std::uint32_t lba, std::uint16_t blocks);
std::array<std::uint8_t, 16> cdb_sync_cache16(std::uint64_t lba, std::uint32_t blocks);
std::array<std::uint8_t, 10> cdb_unmap(std::uint16_t param_len);
std::array<std::uint8_t, 16> cdb_write_same16(std::uint64_t lba, std::uint32_t blocks, bool unmap);

struct LbaRange {
  std::uint64_t lba = 0;
  std::uint32_t blocks = 0;
};
// UNMAP parameter list: 8-byte header + 16-byte block descriptors.
Bytes unmap_parameter_list(std::span<const LbaRange> ranges);

// ---- Parsers of device answers.
struct StandardInquiry {
  std::uint8_t peripheral_qualifier = 0;
  std::uint8_t device_type = 0;  // 0 = direct-access block device
  bool removable = false;
  std::uint8_t version = 0;
  bool protect = false;
  std::string vendor, product, revision;  // trailing spaces trimmed
};
Result<StandardInquiry, Error> parse_standard_inquiry(ByteSpan data);

// VPD 00h: the pages the device supports.
Result<std::vector<std::uint8_t>, Error> parse_vpd_supported(ByteSpan data);
// VPD 80h: unit serial number (trimmed).
Result<std::string, Error> parse_vpd_serial(ByteSpan data);
// VPD 83h: designators as readable strings, e.g. "naa:6001405abc...", "t10:ATA     Foo",
// "eui64:...", "name:..."; LU-associated designators only.
Result<std::vector<std::string>, Error> parse_vpd_device_id(ByteSpan data);

struct BlockLimits {                          // VPD B0h; 0 means "not reported / no limit"
  std::uint32_t max_transfer_length = 0;      // blocks
  std::uint16_t optimal_granularity = 0;      // blocks
  std::uint32_t optimal_transfer_length = 0;  // blocks
  std::uint32_t max_unmap_lba_count = 0;
  std::uint32_t max_unmap_descriptors = 0;
  std::uint32_t unmap_granularity = 0;
  std::uint64_t max_write_same_length = 0;
};
Result<BlockLimits, Error> parse_vpd_block_limits(ByteSpan data);

struct Provisioning {  // VPD B2h
  bool lbpu = false;   // UNMAP supported
  bool lbpws = false;  // WRITE SAME(16) with UNMAP supported
  bool lbpws10 = false;
  bool lbprz = false;                  // unmapped blocks read as zeroes
  std::uint8_t provisioning_type = 0;  // 0 full, 1 resource, 2 thin
};
Result<Provisioning, Error> parse_vpd_provisioning(ByteSpan data);

// VPD B1h: medium rotation rate (1 = solid state, 0 = not reported, else rpm).
Result<std::uint16_t, Error> parse_vpd_rotation_rate(ByteSpan data);

struct Capacity {
  std::uint64_t block_count = 0;
  std::uint32_t block_size = 0;
  bool prot_en = false;
  std::uint8_t p_type = 0;
  std::uint8_t physical_exponent = 0;  // 2^n logical blocks per physical block
  bool lbpme = false;                  // logical block provisioning enabled
  bool lbprz = false;
};
Result<Capacity, Error> parse_read_capacity16(ByteSpan data);
// Returns block_count 0xFFFFFFFF+1 when the device says "use READ CAPACITY(16)".
Result<Capacity, Error> parse_read_capacity10(ByteSpan data);

struct CachingPage {    // MODE SENSE(10) caching page 08h + header
  bool wce = false;     // volatile write cache enabled
  bool dpofua = false;  // device honours DPO/FUA
  bool write_protect = false;
};
Result<CachingPage, Error> parse_mode_sense10_caching(ByteSpan data);

// ---- Splitting.
struct Chunk {
  std::uint64_t lba = 0;
  std::uint32_t blocks = 0;
  std::uint64_t offset_blocks = 0;  // from the start of the request
};
// Cuts [lba, lba+blocks) into pieces of at most max_blocks (>= 1). Chunks are in order.
std::vector<Chunk> split_request(std::uint64_t lba, std::uint64_t blocks, std::uint32_t max_blocks);
// The largest transfer, in blocks: min(device limit, driver limit in bytes / block size, cap),
// ignoring zero ("no limit") values; at least 1.
std::uint32_t max_transfer_blocks(std::uint32_t device_max_blocks, std::uint64_t driver_max_bytes,
                                  std::uint32_t block_size, std::uint32_t cap_blocks);

}  // namespace scsi

struct SgOptions {
  unsigned workers = 2;
  unsigned timeout_s = 30;
  unsigned max_retries = 3;  // per command, for transient outcomes (unit attention, aborted)
  bool read_only = false;
  std::uint32_t max_transfer_bytes = 0;  // extra cap on one command's data (0: device/driver only)
};

// What discovery found; shown by `ipsan probe`.
struct SgDeviceInfo {
  scsi::StandardInquiry inquiry;
  std::string serial;
  std::vector<std::string> designators;
  std::vector<std::uint8_t> vpd_pages;
  bool has_block_limits = false;
  scsi::BlockLimits limits;
  bool has_provisioning = false;
  scsi::Provisioning provisioning;
  scsi::Capacity capacity;
  bool used_read_capacity16 = false;
  bool has_caching = false;
  scsi::CachingPage caching;
  std::uint16_t rotation_rate = 0;
  std::uint64_t driver_max_bytes = 0;  // the sg driver's per-command limit (BLKSECTGET)
  std::uint32_t max_transfer_blocks = 0;
  bool can_unmap = false;
  bool can_write_same_unmap = false;
};

// One finished pass-through command, for tests and diagnostics.
struct ScsiCommandResult {
  Errc errc = Errc::kOk;
  std::uint8_t status = 0;
  scsi::SenseInfo sense;
  int resid = 0;
};

class SgTransport;

class SgBackend final : public Backend, public std::enable_shared_from_this<SgBackend> {
 public:
  enum class Direction { kNone, kIn, kOut };

  // Opens `path` (e.g. "/dev/sg0"), checks it is an SG_IO device, runs discovery. Errors say what
  // is wrong (missing path, not an sg device, not a block device type, capacity unreadable).
  static Result<std::shared_ptr<SgBackend>, Error> open(const std::string& path,
                                                        const SgOptions& options = {});
  ~SgBackend() override;

  Geometry geometry() const override;
  Capabilities capabilities() const override;
  std::string describe() const override;

  void read(std::uint64_t lba, std::span<std::uint8_t> out, Completion done) override;
  void write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua,
             Completion done) override;
  void flush(Completion done) override;
  void trim(std::uint64_t lba, std::uint64_t blocks, Completion done) override;
  void write_zeroes(std::uint64_t lba, std::uint64_t blocks, bool may_trim,
                    Completion done) override;

  const SgDeviceInfo& info() const { return info_; }
  // TEST UNIT READY, blocking, on the caller's thread.
  Errc test_unit_ready();
  // Any command, blocking, on the caller's thread, no retries; no range checks (tests use it to
  // provoke device errors).
  ScsiCommandResult execute(std::span<const std::uint8_t> cdb, Direction dir,
                            std::span<std::uint8_t> data);

 private:
  SgBackend(std::string path, const SgOptions& options, std::unique_ptr<SgTransport> transport);
  Result<void, Error> discover();
  Errc run_with_retries(std::span<const std::uint8_t> cdb, Direction dir,
                        std::span<std::uint8_t> data);
  Errc do_read(std::uint64_t lba, std::span<std::uint8_t> out);
  Errc do_write(std::uint64_t lba, std::span<const std::uint8_t> in, bool fua);
  Errc do_flush();
  Errc do_unmap(std::uint64_t lba, std::uint64_t blocks);
  Errc do_write_same(std::uint64_t lba, std::uint64_t blocks, bool unmap);
  Errc do_write_zero_buffers(std::uint64_t lba, std::uint64_t blocks);
  void submit(Completion done, std::function<Errc()> work);

  std::string path_;
  SgOptions options_;
  std::unique_ptr<SgTransport> transport_;
  SgDeviceInfo info_;
  Geometry geometry_;
  Capabilities caps_;
  std::atomic<bool> write_same_broken_{false};
};

}  // namespace ipsan::backends
