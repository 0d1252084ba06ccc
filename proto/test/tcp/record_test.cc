#include <gtest/gtest.h>

#include "ipsan/base/rng.h"
#include "ipsan/proto/tcp_transport.h"

namespace ipsan::proto {
namespace {

TEST(RecordMarking, RoundTripAnySplit) {
  const std::uint64_t seed = 42;
  std::printf("seed=%llu\n", static_cast<unsigned long long>(seed));
  Rng rng(seed);
  std::vector<Bytes> messages;
  Bytes stream;
  for (int i = 0; i < 50; ++i) {
    Bytes m(rng.below(5000));
    for (auto& b : m) b = static_cast<std::uint8_t>(rng.next());
    append_record(stream, m, 1 + rng.below(3000));
    messages.push_back(std::move(m));
  }
  RecordReader reader(1 << 20);
  std::vector<Bytes> out;
  std::size_t off = 0;
  while (off < stream.size()) {
    std::size_t n = std::min<std::size_t>(1 + rng.below(700), stream.size() - off);
    ASSERT_EQ(reader.feed(ByteSpan(stream.data() + off, n), out), Errc::kOk);
    off += n;
  }
  EXPECT_EQ(out, messages);
}

TEST(RecordMarking, EmptyMessageIsOneEmptyRecord) {
  Bytes stream;
  append_record(stream, {}, 100);
  ASSERT_EQ(stream.size(), 4u);
  EXPECT_EQ(stream[0], 0x80);
  RecordReader reader(10);
  std::vector<Bytes> out;
  EXPECT_EQ(reader.feed(stream, out), Errc::kOk);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].empty());
}

TEST(RecordMarking, OversizeRecordRejectedBeforeBuffering) {
  RecordReader reader(1000);
  std::vector<Bytes> out;
  std::uint8_t h[4];
  store_be32(h, 0x80000000u | 1001u);
  EXPECT_EQ(reader.feed(ByteSpan(h, 4), out), Errc::kTooLarge);
  // Many small fragments adding up past the limit are rejected too.
  RecordReader r2(1000);
  Bytes stream;
  for (int i = 0; i < 11; ++i) {
    store_be32(h, 100u);  // not last
    stream.insert(stream.end(), h, h + 4);
    stream.insert(stream.end(), 100, 0xAB);
  }
  EXPECT_EQ(r2.feed(stream, out), Errc::kTooLarge);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace ipsan::proto
