// ipsan/backends/ata.h: AtaBackend, a Backend on an ATA disk behind the kernel's SCSI/ATA
// Translation (libata SAT) reached with ATA PASS-THROUGH(16) over SG_IO, spec "ata:/dev/sgN".
//
// Also the pure pieces, tested without a device: the ATA PASS-THROUGH(16) CDB builder (taskfile
// -> CDB), the IDENTIFY DEVICE parser (512 bytes, untrusted: bad checksums and nonsense values
// are errors), DATA SET MANAGEMENT (TRIM) range lists and the 48-bit / 65536-sector arithmetic.
//
// Threading: as SgBackend (sg.h): blocking pass-through calls run on the backend's worker pool;
// completions run on a worker (or inline for argument/range errors).
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

namespace ata {

// ATA commands used (ACS-4).
inline constexpr std::uint8_t kCmdIdentifyDevice = 0xEC;
inline constexpr std::uint8_t kCmdReadDmaExt = 0x25;
inline constexpr std::uint8_t kCmdReadSectorsExt = 0x24;  // PIO
inline constexpr std::uint8_t kCmdWriteDmaExt = 0x35;
inline constexpr std::uint8_t kCmdWriteSectorsExt = 0x34;  // PIO
inline constexpr std::uint8_t kCmdWriteDmaFuaExt = 0x3D;
inline constexpr std::uint8_t kCmdFlushCacheExt = 0xEA;
inline constexpr std::uint8_t kCmdFlushCache = 0xE7;
inline constexpr std::uint8_t kCmdDataSetManagement = 0x06;  // feature 01h = TRIM

// SAT protocol field of ATA PASS-THROUGH.
enum class Protocol : std::uint8_t {
  kNonData = 3,
  kPioDataIn = 4,
  kPioDataOut = 5,
  kDma = 6,
};

enum class XferDir { kNone, kIn, kOut };

// The 48-bit taskfile (registers as the device sees them).
struct Taskfile {
  std::uint8_t command = 0;
  std::uint16_t features = 0;
  std::uint16_t count = 0;     // sectors (0 means 65536 for EXT commands)
  std::uint64_t lba = 0;       // 48 bits
  std::uint8_t device = 0x40;  // LBA mode
};

// ATA PASS-THROUGH(16), opcode 85h. `extend` selects 48-bit registers; data lengths are given in
// sectors in the COUNT field (T_LENGTH = 2, BYT_BLOK = 1); `logical_blocks` sets T_TYPE so a
// sector is the logical sector size (else 512 bytes). `ck_cond` asks for the ATA registers back
// as sense even on success.
std::array<std::uint8_t, 16> build_pass_through16(const Taskfile& tf, Protocol protocol,
                                                  XferDir dir, bool extend, bool ck_cond,
                                                  bool logical_blocks = false);

struct IdentifyInfo {
  std::string model, serial, firmware;
  bool lba48 = false;                        // word 83 bit 10
  std::uint64_t sectors = 0;                 // words 100-103 (lba48) else 60-61
  std::uint32_t logical_sector_size = 512;   // words 106, 117-118
  std::uint32_t physical_sector_size = 512;  // word 106 bits 3:0
  bool write_cache_supported = false;        // word 82 bit 5
  bool write_cache_enabled = false;          // word 85 bit 5
  bool flush_ext = false;                    // word 83 bit 13
  bool fua_ext = false;                      // word 84 bit 6 (WRITE DMA FUA EXT)
  bool dma = false;                          // word 49 bit 8
  bool trim = false;                         // word 169 bit 0
  bool trim_deterministic = false;           // word 69 bit 14 (DRAT)
  bool trim_zeroes = false;                  // word 69 bit 5 (RZAT)
  std::uint16_t dsm_max_blocks = 0;          // word 105: 512-byte pages of TRIM ranges per command
  std::uint16_t rotation_rate = 0;           // word 217: 1 = solid state
};
// Parses a 512-byte IDENTIFY DEVICE page (little-endian words). Checks the integrity word
// (255) when its signature A5h is present.
Result<IdentifyInfo, Error> parse_identify(ByteSpan page);

// DATA SET MANAGEMENT TRIM payload: 8-byte little-endian entries (LBA 47:0, count 63:48, at most
// 65535 sectors each), zero-padded to whole 512-byte pages, at most max_pages pages. Returns the
// payload and how many sectors it covers (<= blocks: the caller loops).
struct TrimPayload {
  Bytes data;
  std::uint64_t covered = 0;
};
TrimPayload build_trim_payload(std::uint64_t lba, std::uint64_t blocks, std::uint16_t max_pages);

inline constexpr std::uint32_t kMaxSectorsExt = 65536;
inline constexpr std::uint64_t kMaxLba48 = (std::uint64_t{1} << 48);

}  // namespace ata

struct AtaOptions {
  unsigned workers = 2;
  unsigned timeout_s = 30;
  unsigned max_retries = 3;
  bool read_only = false;
  std::uint32_t max_transfer_bytes = 0;  // extra cap per command (0: device/driver limits)
};

struct AtaDeviceInfo {
  ata::IdentifyInfo identify;
  std::uint64_t driver_max_bytes = 0;
  std::uint32_t max_transfer_sectors = 0;
};

// A pass-through command's result, for tests and diagnostics.
struct AtaCommandResult {
  Errc errc = Errc::kOk;
  bool has_ata = false;
  scsi::AtaStatusReturn ata;
  scsi::SenseInfo sense;
};

class SgTransport;

class AtaBackend final : public Backend, public std::enable_shared_from_this<AtaBackend> {
 public:
  static Result<std::shared_ptr<AtaBackend>, Error> open(const std::string& path,
                                                         const AtaOptions& options = {});
  ~AtaBackend() override;

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

  const AtaDeviceInfo& info() const { return info_; }
  // One taskfile, blocking, on the caller's thread, no retries and no range checks.
  AtaCommandResult execute(const ata::Taskfile& tf, ata::Protocol protocol, ata::XferDir dir,
                           std::span<std::uint8_t> data);

 private:
  AtaBackend(std::string path, const AtaOptions& options, std::unique_ptr<SgTransport> transport);
  Result<void, Error> discover();
  Errc run(const ata::Taskfile& tf, ata::Protocol protocol, ata::XferDir dir,
           std::span<std::uint8_t> data);
  Errc transfer(bool write, std::uint64_t lba, std::span<std::uint8_t> data, bool fua);
  Errc do_flush();
  Errc do_trim(std::uint64_t lba, std::uint64_t blocks);
  void submit(Completion done, std::function<Errc()> work);

  std::string path_;
  AtaOptions options_;
  std::unique_ptr<SgTransport> transport_;
  AtaDeviceInfo info_;
  Geometry geometry_;
  Capabilities caps_;
  std::atomic<bool> dma_broken_{false};
};

}  // namespace ipsan::backends
