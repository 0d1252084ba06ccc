// ipsan/client/ata/device.h: the ATA (IDE) front end of ipsan's client driver (patent FIG. 4:
// "IDE requests could also be made using ... a SAN IDE driver"). Executes ATA taskfiles
// (ATA/ATAPI-8 ACS) by turning them into the same generic requests as the SCSI front end.
//
// Supported: IDENTIFY DEVICE, READ/WRITE SECTORS (EXT), READ/WRITE DMA (EXT), WRITE DMA FUA EXT,
// READ/WRITE FPDMA QUEUED (NCQ; FUA = device bit 7), FLUSH CACHE (EXT), DATA SET MANAGEMENT
// (TRIM), SET FEATURES (02h/82h write cache, 03h transfer mode accepted), CHECK POWER MODE.
// Anything else: ERR + ABRT.
//
// Errc -> ATA table (status / error registers; status always has DRDY):
//   kLbaOutOfRange                          ERR, IDNF
//   kMediumError                            reads: ERR, UNC; writes: ERR+DF, ABRT
//   kTimeout, kConnectionLost, kStaleSession, kSeqMisordered, kBadMessage
//                                            ERR, ICRC+ABRT (interface CRC: libata retries)
//   kIoError, kInternal                      ERR+DF, ABRT (device fault)
//   everything else (kWriteProtected, kNotSupported, kNotReady, kBusy, kAuthFailed, ...)
//                                            ERR, ABRT
// On errors of READ/WRITE the LBA output registers hold the first LBA of the failed request.
//
// Threading: as scsi::LogicalUnit (thread-safe; completions on the GenericTarget's thread).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "ipsan/base/bytes.h"
#include "ipsan/base/errc.h"
#include "ipsan/client/generic_target.h"

namespace ipsan::client::ata {

// Status register bits.
inline constexpr std::uint8_t kStatusErr = 0x01;
inline constexpr std::uint8_t kStatusDrq = 0x08;
inline constexpr std::uint8_t kStatusDf = 0x20;
inline constexpr std::uint8_t kStatusDrdy = 0x40;
inline constexpr std::uint8_t kStatusBsy = 0x80;
// Error register bits.
inline constexpr std::uint8_t kErrorAbrt = 0x04;
inline constexpr std::uint8_t kErrorIdnf = 0x10;
inline constexpr std::uint8_t kErrorUnc = 0x40;
inline constexpr std::uint8_t kErrorIcrc = 0x80;

// Command codes.
inline constexpr std::uint8_t kCmdDataSetManagement = 0x06;
inline constexpr std::uint8_t kCmdReadSectors = 0x20;
inline constexpr std::uint8_t kCmdReadSectorsExt = 0x24;
inline constexpr std::uint8_t kCmdReadDmaExt = 0x25;
inline constexpr std::uint8_t kCmdWriteSectors = 0x30;
inline constexpr std::uint8_t kCmdWriteSectorsExt = 0x34;
inline constexpr std::uint8_t kCmdWriteDmaExt = 0x35;
inline constexpr std::uint8_t kCmdWriteDmaFuaExt = 0x3D;
inline constexpr std::uint8_t kCmdReadFpdmaQueued = 0x60;
inline constexpr std::uint8_t kCmdWriteFpdmaQueued = 0x61;
inline constexpr std::uint8_t kCmdReadDma = 0xC8;
inline constexpr std::uint8_t kCmdWriteDma = 0xCA;
inline constexpr std::uint8_t kCmdCheckPowerMode = 0xE5;
inline constexpr std::uint8_t kCmdFlushCache = 0xE7;
inline constexpr std::uint8_t kCmdIdentifyDevice = 0xEC;
inline constexpr std::uint8_t kCmdFlushCacheExt = 0xEA;
inline constexpr std::uint8_t kCmdSetFeatures = 0xEF;

// A taskfile as the host writes it. For 28-bit commands LBA bits 27:24 come from device[3:0] and
// `lba` must be below 2^24 (its upper bits would be HOB registers: rejected with ABRT).
struct Taskfile {
  std::uint8_t command = 0;
  std::uint16_t features = 0;
  std::uint16_t count = 0;
  std::uint64_t lba = 0;       // 48 bits
  std::uint8_t device = 0x40;  // bit 6: LBA mode; bit 7: FUA for FPDMA commands
  Bytes data_out;
};

struct AtaResult {
  std::uint8_t status = kStatusDrdy;
  std::uint8_t error = 0;
  std::uint16_t count = 0;  // output count register (CHECK POWER MODE: FFh = active/idle)
  std::uint64_t lba = 0;    // output LBA registers (first failing LBA on errors)
  Bytes data_in;
};

using AtaDone = std::function<void(AtaResult)>;

// The command's name in the device's op table ("READ DMA EXT", ...); "unsupported command" for
// the others (they end with ABRT).
const char* command_name(std::uint8_t command);

struct AtaError {
  std::uint8_t status;
  std::uint8_t error;
};
// THE Errc -> ATA table (see the header comment). `write` selects the write-direction entry.
AtaError map_errc(Errc e, bool write);

class Device {
 public:
  // `max_command_bytes` bounds one command's transfer (larger: ABRT).
  Device(GenericTarget& target, std::uint32_t device_id,
         std::uint32_t max_command_bytes = 32u << 20);
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Fetches and caches the identity (one IDENTIFY request).
  void attach(std::function<void(Errc)> done);
  bool attached() const;
  void execute(const Taskfile& taskfile, AtaDone done);

  bool write_cache_enabled() const;
  // Resets settings (write cache back to its default).
  void reset();

  // IDENTIFY DEVICE data (256 little-endian words, word 255 = integrity checksum).
  static Bytes identify_data(const proto::Identity& identity, bool write_cache_enabled);

 private:
  GenericTarget& target_;
  const std::uint32_t device_id_;
  const std::uint32_t max_command_bytes_;
  mutable std::mutex mu_;
  bool attached_ = false;
  proto::Identity identity_;
  bool write_cache_ = true;
  bool write_cache_default_ = true;
};

}  // namespace ipsan::client::ata
