// Device tests for SgBackend and AtaBackend on real SG_IO nodes. They need $SG_SCSI (a SCSI disk's
// sg node) and/or $SG_ATA (an ATA disk behind libata's SAT) and skip without them, so they are
// harmless on a host; test/vm runs them inside a QEMU guest with a virtio-scsi and an AHCI disk.
// The disks' contents are destroyed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipsan/testing/skip.h"
#include "backends/cli/backends_cli.h"
#include "ipsan/backends/ata.h"
#include "ipsan/backends/probe.h"
#include "ipsan/backends/sg.h"
#include "ipsan/backends/spec.h"
#include "ipsan/base/pattern.h"
#include "test_util.h"

namespace ipsan::backends {
namespace {

using testing::flush_sync;
using testing::read_sync;
using testing::trim_sync;
using testing::Waiter;
using testing::write_sync;
using testing::zeroes_sync;

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

bool all_zero(const Bytes& b) {
  for (std::uint8_t x : b) {
    if (x != 0) return false;
  }
  return true;
}

// Writes a pattern at (lba, blocks), reads it back through `reader`, checks every block.
void round_trip(Backend& writer, Backend& reader, std::uint64_t lba, std::uint64_t blocks,
                std::uint64_t generation, bool fua = false) {
  const std::uint32_t bs = writer.geometry().block_size;
  Bytes out(blocks * bs);
  fill_pattern_blocks(out, bs, 42, lba, generation);
  ASSERT_EQ(write_sync(writer, lba, out, fua), Errc::kOk) << "lba " << lba << " blocks " << blocks;
  Bytes in(blocks * bs, 0xEE);
  ASSERT_EQ(read_sync(reader, lba, in), Errc::kOk) << "lba " << lba << " blocks " << blocks;
  for (std::uint64_t i = 0; i < blocks; ++i) {
    ASSERT_TRUE(check_pattern(ByteSpan(in).subspan(i * bs, bs), 42, lba + i, generation))
        << "block " << lba + i << " of request at " << lba << "+" << blocks;
  }
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> cases(std::uint64_t block_count) {
  return {{0, 1},
          {1, 1},
          {7, 3},
          {100, 8},
          {333, 33},
          {4096, 256},
          {10000, 2053},
          {block_count - 5, 5},
          {block_count - 1, 1}};
}

class ScsiDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = env("SG_SCSI");
    if (path_ == nullptr) IPSAN_SKIP_OR_FAIL() << "SG_SCSI not set (no SCSI device on this host)";
    auto b = SgBackend::open(path_);
    ASSERT_TRUE(b) << b.error().message;
    b_ = *b;
  }
  const char* path_ = nullptr;
  std::shared_ptr<SgBackend> b_;
};

TEST_F(ScsiDevice, Discovery) {
  const Geometry g = b_->geometry();
  EXPECT_GT(g.block_count, 0u);
  EXPECT_TRUE(g.block_size == 512 || g.block_size == 4096);
  if (const char* bytes = env("IPSAN_VM_DISK_BYTES")) {
    EXPECT_EQ(g.size_bytes(), std::stoull(bytes));
  }
  const SgDeviceInfo& i = b_->info();
  EXPECT_FALSE(i.inquiry.vendor.empty());
  EXPECT_FALSE(i.inquiry.product.empty());
  EXPECT_EQ(i.inquiry.device_type, 0);
  EXPECT_TRUE(i.used_read_capacity16);
  EXPECT_FALSE(i.designators.empty());
  EXPECT_GT(b_->capabilities().max_transfer_blocks, 0u);
  EXPECT_EQ(b_->test_unit_ready(), Errc::kOk);
  std::printf("%s\n", b_->describe().c_str());
  auto p = probe_device(path_);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->type, "scsi-disk");
  EXPECT_EQ(p->geometry.block_count, g.block_count);
  std::printf("%s", format_probe_report(*p).c_str());
}

TEST_F(ScsiDevice, RoundTripsAtSeveralSizesAndAlignments) {
  std::uint64_t gen = 1;
  for (auto [lba, n] : cases(b_->geometry().block_count)) round_trip(*b_, *b_, lba, n, gen++);
}

TEST_F(ScsiDevice, SplitRequestsWithSmallTransferLimit) {
  SgOptions o;
  o.max_transfer_bytes = 16 * 1024;  // forces many commands per request
  auto small = SgBackend::open(path_, o);
  ASSERT_TRUE(small) << small.error().message;
  EXPECT_EQ((*small)->capabilities().max_transfer_blocks, 16u * 1024 / b_->geometry().block_size);
  round_trip(**small, *b_, 20000, 1000, 77);
  round_trip(*b_, **small, 30000, 999, 78);
}

TEST_F(ScsiDevice, FuaWriteAndFlush) {
  // The VM harness gives its SCSI disk DPOFUA, so FUA goes to the device natively.
  if (env("IPSAN_VM_SCSI_DPOFUA")) {
    EXPECT_TRUE(b_->capabilities().fua);
  }
  round_trip(*b_, *b_, 500, 16, 5, /*fua=*/true);
  EXPECT_EQ(flush_sync(*b_), Errc::kOk);
}

TEST_F(ScsiDevice, ConcurrentRequests) {
  const std::uint32_t bs = b_->geometry().block_size;
  constexpr int kN = 16;
  std::vector<Bytes> bufs(kN);
  std::vector<Waiter> waiters(kN);
  for (int k = 0; k < kN; ++k) {
    bufs[k].resize(32 * bs);
    fill_pattern_blocks(bufs[k], bs, 42, 50000 + 32 * k, 9);
    b_->write(50000 + 32 * k, bufs[k], false, waiters[k].cb());
  }
  for (auto& w : waiters) EXPECT_EQ(w.wait(), Errc::kOk);
  Bytes in(kN * 32 * bs);
  ASSERT_EQ(read_sync(*b_, 50000, in), Errc::kOk);
  for (int i = 0; i < kN * 32; ++i) {
    ASSERT_TRUE(check_pattern(ByteSpan(in).subspan(i * bs, bs), 42, 50000 + i, 9)) << i;
  }
}

TEST_F(ScsiDevice, TrimAndWriteZeroes) {
  const std::uint32_t bs = b_->geometry().block_size;
  round_trip(*b_, *b_, 60000, 64, 3);
  if (b_->capabilities().trim) {
    EXPECT_EQ(trim_sync(*b_, 60000, 32), Errc::kOk);
    if (b_->info().capacity.lbprz) {
      Bytes in(32 * bs, 0xEE);
      ASSERT_EQ(read_sync(*b_, 60000, in), Errc::kOk);
      EXPECT_TRUE(all_zero(in)) << "LBPRZ device returned data after UNMAP";
    }
  } else {
    EXPECT_EQ(trim_sync(*b_, 60000, 32), Errc::kNotSupported);
  }
  EXPECT_EQ(zeroes_sync(*b_, 60032, 16, /*may_trim=*/false), Errc::kOk);
  EXPECT_EQ(zeroes_sync(*b_, 60048, 16, /*may_trim=*/true), Errc::kOk);
  Bytes in(32 * bs, 0xEE);
  ASSERT_EQ(read_sync(*b_, 60032, in), Errc::kOk);
  EXPECT_TRUE(all_zero(in));
}

TEST_F(ScsiDevice, PastTheEndGivesLbaOutOfRange) {
  const Geometry g = b_->geometry();
  Bytes buf(2 * g.block_size);
  EXPECT_EQ(read_sync(*b_, g.block_count - 1, buf), Errc::kLbaOutOfRange);
  EXPECT_EQ(write_sync(*b_, g.block_count, buf), Errc::kLbaOutOfRange);
  // The device's own answer, bypassing the back end's range check.
  const auto cdb = scsi::cdb_read16(g.block_count, 1, false);
  const ScsiCommandResult r =
      b_->execute(cdb, SgBackend::Direction::kIn, std::span(buf).first(g.block_size));
  EXPECT_EQ(r.errc, Errc::kLbaOutOfRange);
  EXPECT_EQ(r.status, scsi::kStatusCheckCondition);
  ASSERT_TRUE(r.sense.valid);
  EXPECT_EQ(r.sense.key, 0x5);
  EXPECT_EQ(r.sense.asc, 0x21);
  std::printf("device said: %s\n", scsi::describe_sense(r.sense).c_str());
}

// A SCSI disk whose host-side image fails certain sectors (test/vm's blkdebug rules): the errors
// come back as real sense data through SG_IO and must map to the right Errc.
class FaultyScsiDevice : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kMediumErrorLba = 2000;  // reads fail with ENODATA
  static constexpr std::uint64_t kNoSpaceLba = 3000;      // writes fail with ENOSPC
  static constexpr std::uint64_t kEioLba = 4000;          // reads fail with EIO
  void SetUp() override {
    const char* p = env("SG_SCSI_FAULTY");
    if (p == nullptr) IPSAN_SKIP_OR_FAIL() << "SG_SCSI_FAULTY not set";
    auto b = SgBackend::open(p);
    ASSERT_TRUE(b) << b.error().message;
    b_ = *b;
    ASSERT_EQ(b_->geometry().block_size, 512u);
  }
  std::shared_ptr<SgBackend> b_;
};

TEST_F(FaultyScsiDevice, HealthyBlocksWork) {
  round_trip(*b_, *b_, 100, 64, 11);
  round_trip(*b_, *b_, kMediumErrorLba + 1, 8, 12);
}

TEST_F(FaultyScsiDevice, UnrecoveredReadIsMediumError) {
  Bytes buf(16 * 512);
  EXPECT_EQ(read_sync(*b_, kMediumErrorLba - 4, buf), Errc::kMediumError);
  const auto cdb = scsi::cdb_read16(kMediumErrorLba, 1, false);
  const ScsiCommandResult r =
      b_->execute(cdb, SgBackend::Direction::kIn, std::span(buf).first(512));
  EXPECT_EQ(r.errc, Errc::kMediumError);
  ASSERT_TRUE(r.sense.valid);
  EXPECT_EQ(r.sense.key, 0x3);
  EXPECT_EQ(r.sense.asc, 0x11);
  std::printf("device said: %s\n", scsi::describe_sense(r.sense).c_str());
}

TEST_F(FaultyScsiDevice, SpaceAllocationFailureIsNoSpace) {
  Bytes buf(512, 0x5A);
  EXPECT_EQ(write_sync(*b_, kNoSpaceLba, buf), Errc::kNoSpace);
  const auto cdb = scsi::cdb_write16(kNoSpaceLba, 1, false);
  const ScsiCommandResult r = b_->execute(cdb, SgBackend::Direction::kOut, buf);
  ASSERT_TRUE(r.sense.valid);
  EXPECT_EQ(r.sense.key, 0x7);
  EXPECT_EQ(r.sense.asc, 0x27);
  EXPECT_EQ(r.sense.ascq, 0x07);
}

TEST_F(FaultyScsiDevice, AbortedCommandIsRetriedThenIoError) {
  Bytes buf(512);
  EXPECT_EQ(read_sync(*b_, kEioLba, buf), Errc::kIoError);
  const auto cdb = scsi::cdb_read16(kEioLba, 1, false);
  const ScsiCommandResult r = b_->execute(cdb, SgBackend::Direction::kIn, buf);
  EXPECT_EQ(r.errc, Errc::kIoError);
  ASSERT_TRUE(r.sense.valid);
  EXPECT_EQ(r.sense.key, 0xB);
}

class AtaDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = env("SG_ATA");
    if (path_ == nullptr) IPSAN_SKIP_OR_FAIL() << "SG_ATA not set (no ATA device on this host)";
    auto b = AtaBackend::open(path_);
    ASSERT_TRUE(b) << b.error().message;
    b_ = *b;
  }
  const char* path_ = nullptr;
  std::shared_ptr<AtaBackend> b_;
};

TEST_F(AtaDevice, Identify) {
  const ata::IdentifyInfo& id = b_->info().identify;
  EXPECT_FALSE(id.model.empty());
  EXPECT_TRUE(id.lba48);
  EXPECT_GT(id.sectors, 0u);
  EXPECT_EQ(b_->geometry().block_count, id.sectors);
  if (const char* bytes = env("IPSAN_VM_DISK_BYTES")) {
    EXPECT_EQ(b_->geometry().size_bytes(), std::stoull(bytes));
  }
  std::printf("%s\n", b_->describe().c_str());
  auto p = probe_device(path_);
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_TRUE(p->ata.has_value());
  EXPECT_EQ(p->ata->model, id.model);
  EXPECT_EQ(p->specs.front(), std::string("ata:") + path_);
  std::printf("%s", format_probe_report(*p).c_str());
}

TEST_F(AtaDevice, RoundTripsAtSeveralSizesAndAlignments) {
  std::uint64_t gen = 100;
  for (auto [lba, n] : cases(b_->geometry().block_count)) round_trip(*b_, *b_, lba, n, gen++);
}

TEST_F(AtaDevice, SplitRequestsAndSatCrossCheck) {
  AtaOptions o;
  o.max_transfer_bytes = 8 * 1024;
  auto small = AtaBackend::open(path_, o);
  ASSERT_TRUE(small) << small.error().message;
  round_trip(**small, *b_, 20000, 300, 201);
  // The same disk through the kernel's SCSI translation must see the same bytes.
  auto sg = SgBackend::open(path_);
  ASSERT_TRUE(sg) << sg.error().message;
  round_trip(*b_, **sg, 25000, 64, 202);
  round_trip(**sg, *b_, 26000, 64, 203);
}

TEST_F(AtaDevice, FuaWriteAndFlush) {
  round_trip(*b_, *b_, 700, 16, 6, /*fua=*/true);
  EXPECT_EQ(flush_sync(*b_), Errc::kOk);
}

TEST_F(AtaDevice, TrimAndWriteZeroes) {
  const std::uint32_t bs = b_->geometry().block_size;
  round_trip(*b_, *b_, 40000, 64, 7);
  if (b_->capabilities().trim) {
    EXPECT_EQ(trim_sync(*b_, 40000, 32), Errc::kOk);
  } else {
    EXPECT_EQ(trim_sync(*b_, 40000, 32), Errc::kNotSupported);
  }
  EXPECT_EQ(zeroes_sync(*b_, 40032, 32, /*may_trim=*/false), Errc::kOk);
  Bytes in(32 * bs, 0xEE);
  ASSERT_EQ(read_sync(*b_, 40032, in), Errc::kOk);
  EXPECT_TRUE(all_zero(in));
}

TEST_F(AtaDevice, PastTheEndFailsWithAtaError) {
  const Geometry g = b_->geometry();
  Bytes buf(g.block_size);
  EXPECT_EQ(read_sync(*b_, g.block_count, buf), Errc::kLbaOutOfRange);
  ata::Taskfile tf;
  tf.command = ata::kCmdReadDmaExt;
  tf.lba = g.block_count;
  tf.count = 1;
  const AtaCommandResult r = b_->execute(tf, ata::Protocol::kDma, ata::XferDir::kIn, buf);
  EXPECT_NE(r.errc, Errc::kOk);
  if (r.has_ata) {
    EXPECT_TRUE(r.ata.status & 0x01) << "ERR expected";
    EXPECT_TRUE(r.ata.error & (0x10 | 0x04)) << "IDNF or ABRT expected";
  }
  std::printf("device said: %s -> %s\n", scsi::describe_sense(r.sense).c_str(),
              std::string(to_string(r.errc)).c_str());
}

// `ipsan probe --json` on both real devices: the JSON parses and names what discovery found.
TEST(ProbeCliDevice, JsonReport) {
  const char* scsi_path = env("SG_SCSI");
  const char* ata_path = env("SG_ATA");
  if (scsi_path == nullptr && ata_path == nullptr) IPSAN_SKIP_OR_FAIL() << "no SG_SCSI / SG_ATA";
  for (const char* path : {scsi_path, ata_path}) {
    if (path == nullptr) continue;
    CLI::App app{"test"};
    add_cli(app);
    const char* argv[] = {"ipsan", "probe", "--json", path};
    ::testing::internal::CaptureStdout();
    EXPECT_NO_THROW(app.parse(4, argv));
    const std::string out = ::testing::internal::GetCapturedStdout();
    const auto j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << out;
    EXPECT_EQ(j["path"], path);
    EXPECT_GT(j["block_count"].get<std::uint64_t>(), 0u);
    EXPECT_TRUE(j["capabilities"].is_object());
    if (path == ata_path) {
      ASSERT_TRUE(j.contains("ata")) << out;
      EXPECT_TRUE(j["ata"]["lba48"].get<bool>());
    }
  }
}

// The registered spec kinds open the real devices.
TEST(SpecKindsDevice, OpenThroughRegistry) {
  register_hw_backends();
  if (const char* p = env("SG_SCSI")) {
    auto b = open_backend(std::string("sg:") + p + ",workers=3");
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_NE((*b)->describe().find(p), std::string::npos);
    auto ro = open_backend(std::string("sg:") + p + ",ro");
    ASSERT_TRUE(ro) << ro.error().message;
    EXPECT_TRUE((*ro)->capabilities().read_only);
    Bytes buf((*ro)->geometry().block_size);
    EXPECT_EQ(write_sync(**ro, 0, buf), Errc::kWriteProtected);
    EXPECT_EQ(read_sync(**ro, 0, buf), Errc::kOk);
  }
  if (const char* p = env("SG_ATA")) {
    auto b = open_backend(std::string("ata:") + p);
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_EQ((*b)->describe().rfind("ata:", 0), 0u);
  }
  if (env("SG_SCSI") == nullptr && env("SG_ATA") == nullptr) IPSAN_SKIP_OR_FAIL() << "no devices";
}

}  // namespace
}  // namespace ipsan::backends
