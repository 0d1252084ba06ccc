#include "ipsan/base/crc32c.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

#include "ipsan/base/rng.h"

namespace ipsan {
namespace {

std::uint32_t crc_of(std::string_view s) { return crc32c_extend(0, s.data(), s.size()); }

TEST(Crc32c, KnownVectors) {
  // RFC 3720 appendix B.4 and the common "123456789" check value.
  EXPECT_EQ(crc_of("123456789"), 0xE3069283u);
  std::vector<std::uint8_t> zeros(32, 0x00), ones(32, 0xFF), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(crc_of(""), 0u);
}

TEST(Crc32c, HardwareAndPortableAgreeAndExtend) {
  Rng rng(7);
  std::vector<std::uint8_t> buf(10016);  // room for the largest len at the largest offset
  for (auto& b : buf) b = static_cast<std::uint8_t>(rng.next());
  for (std::size_t len : {0u, 1u, 7u, 8u, 9u, 31u, 33u, 1000u, 9999u}) {
    for (std::size_t off : {0u, 1u, 3u}) {
      auto a = crc32c_extend(0, buf.data() + off, len);
      auto b = crc32c_extend_portable(0, buf.data() + off, len);
      EXPECT_EQ(a, b) << "len=" << len << " off=" << off;
      auto split = crc32c_extend(crc32c_extend(0, buf.data() + off, len / 2),
                                 buf.data() + off + len / 2, len - len / 2);
      EXPECT_EQ(a, split);
    }
  }
}

}  // namespace
}  // namespace ipsan
