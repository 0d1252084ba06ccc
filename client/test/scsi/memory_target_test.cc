#include "ipsan/client/memory_target.h"

#include <gtest/gtest.h>

#include <optional>

namespace ipsan::client {
namespace {

using proto::Op;

proto::Reply call(MemoryTarget& t, Op op, std::uint32_t dev, std::uint64_t lba = 0,
                  std::uint32_t blocks = 0, Bytes data = {}, std::uint32_t flags = 0) {
  proto::Request r;
  r.op = op;
  r.device_id = dev;
  r.lba = lba;
  r.blocks = blocks;
  r.data = std::move(data);
  r.flags = flags;
  std::optional<proto::Reply> out;
  t.execute(std::move(r), [&](proto::Reply reply) { out = std::move(reply); });
  EXPECT_TRUE(out.has_value());
  return out.value_or(proto::Reply{});
}

TEST(MemoryTargetTest, OpSemantics) {
  MemoryTarget t;
  t.add_device(1, MemoryTarget::default_identity(100, 512, 4));
  EXPECT_EQ(call(t, Op::kIdentify, 1).identity.block_count, 100u);
  EXPECT_EQ(call(t, Op::kCapacity, 1).capacity.block_count, 100u);
  EXPECT_EQ(call(t, Op::kReady, 1).status, Errc::kOk);
  EXPECT_EQ(call(t, Op::kRead, 2, 0, 1).status, Errc::kUnknownDevice);
  Bytes data(1024, 0x5A);
  EXPECT_EQ(call(t, Op::kWrite, 1, 10, 2, data).status, Errc::kOk);
  EXPECT_EQ(call(t, Op::kRead, 1, 10, 2).data, data);
  EXPECT_EQ(call(t, Op::kWrite, 1, 10, 2, Bytes(100)).status, Errc::kInvalidArgument);
  EXPECT_EQ(call(t, Op::kRead, 1, 99, 2).status, Errc::kLbaOutOfRange);
  EXPECT_EQ(call(t, Op::kRead, 1, 0, 5).status, Errc::kTooLarge);  // max_transfer_blocks 4
  EXPECT_EQ(call(t, Op::kTrim, 1, 11, 1).status, Errc::kOk);
  auto after = call(t, Op::kRead, 1, 10, 2).data;
  EXPECT_EQ(after[0], 0x5A);
  EXPECT_EQ(after[600], 0);
  EXPECT_EQ(call(t, Op::kWriteZeroes, 1, 0, 100, {}, proto::kFlagMayTrim).status, Errc::kOk);
  EXPECT_EQ(t.peek(1, 10, 1), Bytes(512, 0));
  EXPECT_EQ(call(t, Op::kFlush, 1).status, Errc::kOk);
  EXPECT_EQ(t.log().size(), 13u);
}

TEST(MemoryTargetTest, ReadOnlyAndNoTrim) {
  MemoryTarget t;
  auto id = MemoryTarget::default_identity(10);
  id.capabilities = proto::kCapReadOnly;
  t.add_device(1, id);
  EXPECT_EQ(call(t, Op::kWrite, 1, 0, 1, Bytes(512)).status, Errc::kWriteProtected);
  EXPECT_EQ(call(t, Op::kTrim, 1, 0, 1).status, Errc::kNotSupported);
  EXPECT_EQ(call(t, Op::kWriteZeroes, 1, 0, 1).status, Errc::kWriteProtected);
  EXPECT_EQ(call(t, Op::kRead, 1, 0, 1).status, Errc::kOk);
}

TEST(MemoryTargetTest, FaultsResizeAndDeferredCompletion) {
  MemoryTarget t;
  t.add_device(1, MemoryTarget::default_identity(100));
  t.inject({Op::kRead, 1, 50, 10, Errc::kMediumError, 2});
  EXPECT_EQ(call(t, Op::kRead, 1, 40, 8).status, Errc::kOk);  // below the range
  EXPECT_EQ(call(t, Op::kRead, 1, 45, 8).status, Errc::kMediumError);
  EXPECT_EQ(call(t, Op::kWrite, 1, 50, 1, Bytes(512)).status, Errc::kOk);  // other op
  EXPECT_EQ(call(t, Op::kRead, 1, 59, 1).status, Errc::kMediumError);
  EXPECT_EQ(call(t, Op::kRead, 1, 59, 1).status, Errc::kOk);  // count exhausted
  t.inject({std::nullopt, std::nullopt, 0, ~0ull, Errc::kTimeout, -1});
  EXPECT_EQ(call(t, Op::kFlush, 1).status, Errc::kTimeout);
  EXPECT_EQ(call(t, Op::kFlush, 1).status, Errc::kTimeout);
  t.clear_faults();
  t.resize(1, 200);
  EXPECT_EQ(call(t, Op::kCapacity, 1).capacity.block_count, 200u);  // no device access
  EXPECT_EQ(call(t, Op::kRead, 1, 150, 1).status, Errc::kCapacityChanged);
  EXPECT_EQ(call(t, Op::kRead, 1, 150, 1).status, Errc::kOk);
  t.set_deferred(true);
  std::optional<proto::Reply> out;
  proto::Request r;
  r.op = Op::kReady;
  r.device_id = 1;
  t.execute(r, [&](proto::Reply reply) { out = reply; });
  EXPECT_FALSE(out.has_value());
  EXPECT_EQ(t.run_pending(), 1u);
  EXPECT_TRUE(out.has_value());
}

}  // namespace
}  // namespace ipsan::client
